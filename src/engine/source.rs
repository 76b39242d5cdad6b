//! The source's side of the fork protocol (PROTOCOL.md §4.2; the messages
//! are stated in `cloudflare/forks.rs`): answer a fork's acquire, serve its
//! inherited chunks, and drop its reference on release (cascading up a chain
//! of soft-deleted sources). Pure over [`Store`], tested on the host.

use super::ctx::Ctx;
use super::fork::{self, reading, Acquire, Need};
use super::lifecycle::{current_meta, need};
use super::outcome::Action;
use super::response::Response;
use super::state::Chunk;
use super::store::{Commit, Store};
use crate::protocol::error::{Invalid, ProtocolError};
use crate::protocol::headers as h;
use crate::protocol::offset::Offset;

/// An acquire from a fork (§4.2 creation): validate, resolve the point, and
/// record the reference; or ask for inherited chunks to resolve a sub-offset.
pub fn acquire<S: Store>(
    store: &S,
    req: &Acquire,
    ctx: &Ctx,
    inherited: &[Chunk],
) -> Result<Action, S::Error> {
    let meta = current_meta(store, ctx.now_ms)?;
    let mut chunks = Vec::new();
    if let (Some(m), true) = (&meta, req.sub_offset > 0) {
        // An offset the source never issued is refused by `fork::acquire`.
        let offset = match req.offset {
            None => m.tail,
            Some(w) => m.resolve(w).unwrap_or(m.tail),
        };
        if offset < m.tail && !m.soft_deleted {
            if let Some(n) = need(m, offset, inherited) {
                return Ok(Action::NeedInherited(n));
            }
            chunks = fork::slice_chunks(
                &reading(store, m, inherited),
                m,
                offset.position(),
                m.tail.position(),
                // Only the append at the offset matters, and no append is
                // larger than this: never the rest of the stream.
                ctx.config.max_append_bytes,
            )?;
        }
    }
    match fork::acquire(meta.as_ref(), req, &chunks) {
        Ok((acquired, commit)) => {
            store.commit(commit)?;
            let r = Response::new(200)
                .header(h::CONTENT_TYPE, "application/json")
                .body(crate::engine::wire::encode_acquired(&acquired));
            Ok(Action::Respond(r))
        }
        Err(e) => Ok(Action::Respond(Response::error(&e))),
    }
}

/// Chunks of `[from, to)` for a fork's read (soft-deleted streams still
/// serve them), or a request for this stream's own inherited chunks.
pub fn chunks<S: Store>(
    store: &S,
    want: &Need,
    ctx: &Ctx,
    inherited: &[Chunk],
) -> Result<Action, S::Error> {
    let (from, to) = (want.from, want.to);
    let meta = current_meta(store, ctx.now_ms)?;
    // Only the incarnation the fork was made from may answer: a stream
    // re-created at this path holds other bytes at the same positions.
    let Some(meta) = meta.filter(|m| m.stream_id == want.source_id) else {
        return Ok(Action::Respond(Response::error(
            &ProtocolError::InheritedGone,
        )));
    };
    let Some(start) = Offset::new(from).filter(|o| *o <= meta.tail) else {
        return Ok(Action::Respond(Response::error(&Invalid::Offset.into())));
    };
    if start < meta.earliest {
        // This stream's retention trimmed it: the fork answers 410 too,
        // with the first offset it can read (printed as this stream prints
        // it, which the fork accepts up to its point).
        let earliest = meta.earliest.min(Offset::new(to).unwrap_or(meta.earliest));
        return Ok(Action::Respond(Response::error(
            &ProtocolError::OffsetTrimmed {
                earliest: meta.wire(earliest),
            },
        )));
    }
    if let Some(n) = need(&meta, start, inherited) {
        return Ok(Action::NeedInherited(n));
    }
    let cap = ctx.config.max_read_chunk_bytes;
    let found = fork::slice_chunks(&reading(store, &meta, inherited), &meta, from, to, cap)?;
    Ok(Action::Respond(
        Response::new(200).body(crate::engine::wire::encode_chunks(&found)),
    ))
}

/// A fork's release of its reference (idempotent). A soft-deleted stream
/// whose last reference goes is dropped, and releases its own reference at
/// its source in turn (the cascade of §4.2).
pub fn release<S: Store>(store: &S, fork_id: &str, ctx: &Ctx) -> Result<Response, S::Error> {
    store.commit(Commit::RemoveRef {
        fork_id: fork_id.to_string(),
    })?;
    if let Some(meta) = store.meta()? {
        if meta.soft_deleted && store.refs()? == 0 {
            store.commit(fork::retire(&meta, 0, ctx.now_ms))?;
        }
    }
    Ok(Response::new(204))
}
