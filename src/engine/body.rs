//! From a request body to the stored chunks of one append or create
//! (PROTOCOL.md §5.1, §5.2, §9.1).

use super::state::{chunk_append, Chunk};
use crate::protocol::content_type::ContentType;
use crate::protocol::error::ProtocolError;
use crate::protocol::json::{self, JsonBody, Refused};
use crate::protocol::offset::{Offset, MAX_SAFE_INTEGER};

/// The chunks a body becomes when appended at `start`, and their total size.
/// JSON mode validates and flattens in one pass, refusing more than
/// `max_messages` messages.
pub fn chunks_for(
    ct: &ContentType,
    body: &[u8],
    purpose: JsonBody,
    start: u64,
    row_bytes: u64,
    max_messages: u64,
) -> Result<(Vec<Chunk>, u64), ProtocolError> {
    let row = usize::try_from(row_bytes).unwrap_or(usize::MAX);
    if body.is_empty() {
        // A PUT without initial content, or a close-only POST.
        return Ok((Vec::new(), 0));
    }
    if !ct.is_json() {
        return Ok((chunk_append(start, &[body], row, true), body.len() as u64));
    }
    let flat = json::flatten(body, purpose, row, max_messages).map_err(|e| match e {
        Refused::Invalid(v) => ProtocolError::from(v),
        Refused::TooManyMessages => ProtocolError::TooManyMessages {
            limit: max_messages,
        },
    })?;
    let len = flat.stored.len() as u64;
    let mut chunks = Vec::with_capacity(flat.rows.len());
    let mut pos = 0usize;
    let one_row = flat.rows.len() == 1;
    let mut stored = Some(flat.stored);
    for r in &flat.rows {
        let data = match (one_row, stored.take()) {
            // The common case: the stored form is the row, no copy.
            (true, Some(all)) => all,
            (_, s) => {
                let piece = s
                    .as_ref()
                    .and_then(|all| all.get(pos..pos + r.len))
                    .unwrap_or_default()
                    .to_vec();
                stored = s;
                piece
            }
        };
        chunks.push(Chunk {
            start: start + pos as u64,
            data,
            head_boundary: r.head_boundary,
            tail_boundary: r.tail_boundary,
            append_end: false,
        });
        pos += r.len;
    }
    if let Some(last) = chunks.last_mut() {
        last.append_end = true;
    }
    Ok((chunks, len))
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
