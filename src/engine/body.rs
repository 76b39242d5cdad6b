//! From a request body to the stored chunks of one append or create
//! (PROTOCOL.md §5.1, §5.2, §9.1).

use super::ctx::Ctx;
use super::state::{chunk_append, Chunk, StreamMeta};
use crate::protocol::content_type::ContentType;
use crate::protocol::error::ProtocolError;
use crate::protocol::json::{self, JsonBody, Packing, Refused};
use crate::protocol::offset::{Offset, MAX_SAFE_INTEGER};

/// Where and how an append's chunks are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The stream position the body starts at.
    pub start: u64,
    pub row_bytes: u64,
    /// JSON mode: the most messages one body may hold.
    pub max_messages: u64,
    pub packing: Packing,
    /// The commit time every chunk records.
    pub at_ms: u64,
    /// The stream's own message (or append) count before the body.
    pub count: u64,
}

impl Layout {
    /// The layout of a body appended to `meta` now: one message per row
    /// when the stream trims by message count, so a trim drops whole rows.
    pub fn append(meta: &StreamMeta, ctx: &Ctx) -> Layout {
        Layout {
            start: meta.tail.position(),
            row_bytes: ctx.config.row_bytes,
            max_messages: ctx.config.max_append_messages,
            packing: if meta.retention.max_messages.is_some() {
                Packing::OnePerRow
            } else {
                Packing::Shared
            },
            at_ms: ctx.now_ms,
            count: meta.tail_count,
        }
    }
}

/// The chunks a body becomes when appended as `layout` says, and their
/// total size. JSON mode validates and flattens in one pass, refusing more
/// than `max_messages` messages. Every chunk records the commit time and
/// the running count of messages (JSON mode) or appends ending in it.
pub fn chunks_for(
    ct: &ContentType,
    body: &[u8],
    purpose: JsonBody,
    layout: &Layout,
) -> Result<(Vec<Chunk>, u64), ProtocolError> {
    let row = usize::try_from(layout.row_bytes).unwrap_or(usize::MAX);
    let start = layout.start;
    if body.is_empty() {
        // A PUT without initial content, or a close-only POST.
        return Ok((Vec::new(), 0));
    }
    if !ct.is_json() {
        let mut chunks = chunk_append(start, &[body], row, true);
        for c in &mut chunks {
            c.at_ms = layout.at_ms;
            c.count = layout.count + u64::from(c.append_end);
        }
        return Ok((chunks, body.len() as u64));
    }
    let max_messages = layout.max_messages;
    let flat = json::flatten_packed(body, purpose, row, max_messages, layout.packing).map_err(
        |e| match e {
            Refused::Invalid(v) => ProtocolError::from(v),
            Refused::TooManyMessages => ProtocolError::TooManyMessages {
                limit: max_messages,
            },
        },
    )?;
    let len = flat.stored.len() as u64;
    let mut chunks = Vec::with_capacity(flat.rows.len());
    let mut pos = 0usize;
    let mut count = layout.count;
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
        count += r.messages;
        chunks.push(Chunk {
            start: start + pos as u64,
            data,
            head_boundary: r.head_boundary,
            tail_boundary: r.tail_boundary,
            append_end: false,
            at_ms: layout.at_ms,
            count,
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
