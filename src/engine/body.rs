//! From a request body to the stored messages of one append or create
//! (PROTOCOL.md §5.1, §5.2, §9.1).

use super::state::{chunk_append, Chunk};
use crate::protocol::content_type::ContentType;
use crate::protocol::error::ProtocolError;
use crate::protocol::json::{split_messages, JsonBody, TERMINATOR};
use crate::protocol::offset::{Offset, MAX_SAFE_INTEGER};

/// The chunks a body becomes when appended at `start`, and their total size.
pub fn chunks_for(
    ct: &ContentType,
    body: &[u8],
    purpose: JsonBody,
    start: u64,
    row_bytes: u64,
) -> Result<(Vec<Chunk>, u64), ProtocolError> {
    let row = usize::try_from(row_bytes).unwrap_or(usize::MAX);
    if body.is_empty() {
        // A PUT without initial content, or a close-only POST.
        return Ok((Vec::new(), 0));
    }
    if ct.is_json() {
        let stored: Vec<Vec<u8>> = split_messages(body, purpose)?
            .into_iter()
            .map(|m| {
                let mut v = Vec::with_capacity(m.len() + 1);
                v.extend_from_slice(m);
                v.push(TERMINATOR);
                v
            })
            .collect();
        let refs: Vec<&[u8]> = stored.iter().map(Vec::as_slice).collect();
        let len = refs.iter().map(|m| m.len() as u64).sum();
        Ok((chunk_append(start, &refs, row, false), len))
    } else {
        Ok((chunk_append(start, &[body], row, true), body.len() as u64))
    }
}

/// A body larger than the configured limit.
pub fn check_size(body: &[u8], limit: u64) -> Result<(), ProtocolError> {
    if body.len() as u64 > limit {
        return Err(ProtocolError::PayloadTooLarge { limit });
    }
    Ok(())
}

/// Advances `tail` by `len`; a stream can never pass the safe-integer bound.
pub fn advance(tail: Offset, len: u64) -> Result<Offset, ProtocolError> {
    tail.advance(len).ok_or(ProtocolError::PayloadTooLarge {
        limit: MAX_SAFE_INTEGER - tail.position(),
    })
}
