//! GET catch-up reads (PROTOCOL.md §5.6, §8 sentinels, §9.1.5, §10.1).
//!
//! A read starts at a server-minted offset (or `-1`/absent = 0) and returns
//! whole chunks up to `max_read_chunk_bytes` (always at least one; in JSON
//! mode never cutting a message). `Stream-Up-To-Date` is set only when the
//! response reaches the tail, `Stream-Closed` only when the stream is closed
//! and the response reaches its final offset. `offset=now` answers the tail
//! with an empty body (`[]` in JSON mode), no ETag and `no-store` (§8).
//!
//! An offset past the tail, or (JSON mode) inside a message, was never
//! issued by this server: 400.

use super::failure::{Failure, StoreResult};
use super::response::Response;
use super::state::StreamMeta;
use super::store::Store;
use crate::protocol::cache;
use crate::protocol::error::{Invalid, ProtocolError};
use crate::protocol::headers as h;
use crate::protocol::json;
use crate::protocol::offset::Offset;
use std::ops::ControlFlow;

/// A contiguous run of stored bytes `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    pub start: Offset,
    pub end: Offset,
    pub data: Vec<u8>,
}

/// Reads stored bytes from `start`, about `cap` bytes, cut where a read may
/// end. Fails with 400 when `start` is not a position this server issued.
pub fn read_range<S: Store>(
    store: &S,
    meta: &StreamMeta,
    start: Offset,
    cap: u64,
) -> Result<Slice, Failure<S::Error>> {
    if start > meta.tail {
        return Err(Invalid::Offset.into());
    }
    if start < meta.earliest {
        return Err(trimmed(meta).into());
    }
    let json_mode = meta.content_type.is_json();
    let from = start.position();
    let mut data: Vec<u8> = Vec::new();
    let mut at_boundary = true;
    let mut bad_start = false;
    let mut first = true;
    store
        .scan(from, &mut |chunk| {
            if chunk.end() <= from {
                return ControlFlow::Continue(());
            }
            let skip = usize::try_from(from.saturating_sub(chunk.start)).unwrap_or(usize::MAX);
            if first {
                first = false;
                if json_mode {
                    let ok = chunk.head_boundary
                        && (skip == 0 || json::boundaries(&chunk.data).contains(&skip));
                    if !ok {
                        bad_start = true;
                        return ControlFlow::Break(());
                    }
                }
            }
            let piece = chunk.data.get(skip..).unwrap_or_default();
            if !data.is_empty() && at_boundary && (data.len() + piece.len()) as u64 > cap {
                return ControlFlow::Break(());
            }
            data.extend_from_slice(piece);
            at_boundary = chunk.tail_boundary;
            ControlFlow::Continue(())
        })
        .store()?;
    if bad_start {
        return Err(Invalid::OffsetNotOnBoundary.into());
    }
    let end = start
        .advance(data.len() as u64)
        .filter(|e| *e <= meta.tail)
        .ok_or(Invalid::Offset)?;
    Ok(Slice { start, end, data })
}

/// The 410 for an offset before the earliest retained one.
pub fn trimmed(meta: &StreamMeta) -> ProtocolError {
    ProtocolError::OffsetTrimmed {
        earliest: meta.wire(meta.earliest),
    }
}

/// Checks that a read may start at `start` (on the stream, and in JSON mode
/// on a message boundary) without reading more than the first chunk.
pub fn check_start<S: Store>(
    store: &S,
    meta: &StreamMeta,
    start: Offset,
) -> Result<(), Failure<S::Error>> {
    if start == meta.tail {
        return Ok(());
    }
    read_range(store, meta, start, 0).map(|_| ())
}

/// The body of a read: stored bytes, or a JSON array of stored messages.
pub fn render_body(meta: &StreamMeta, stored: &[u8]) -> Vec<u8> {
    if meta.content_type.is_json() {
        json::wrap_stored(stored)
    } else {
        stored.to_vec()
    }
}

/// Whether a read ending at `end` tells the client the stream is over.
pub fn closed_at(meta: &StreamMeta, end: Offset) -> bool {
    meta.closed && end == meta.tail
}

/// How a catch-up read may be cached (see `protocol::cache`).
#[derive(Debug, Clone)]
pub struct Caching {
    /// The request named an offset of this incarnation, so a chunk that
    /// ends before the tail does not change while the stream exists.
    pub pinned: bool,
    /// `Cache-Control` for such a chunk.
    pub chunk: String,
}

/// The catch-up response for `[start, …)`, or 304 when `if_none_match`
/// names the same range in the same state.
pub fn catch_up<S: Store>(
    store: &S,
    meta: &StreamMeta,
    start: Offset,
    caching: &Caching,
    if_none_match: Option<&str>,
    cap: u64,
) -> Result<Response, Failure<S::Error>> {
    if start > meta.tail {
        return Err(Invalid::Offset.into());
    }
    // When the rest of the stream fits in one response, the range and hence
    // the ETag are known without reading a byte.
    let fits = meta.tail.position() - start.position() <= cap;
    if let (true, Some(inm)) = (fits, if_none_match) {
        let tag = cache::etag(
            &meta.stream_id,
            start,
            meta.tail,
            closed_at(meta, meta.tail),
        );
        if cache::if_none_match(inm, &tag) {
            return Ok(not_modified(meta, tag, meta.tail, caching));
        }
    }
    let slice = read_range(store, meta, start, cap)?;
    let closed = closed_at(meta, slice.end);
    let tag = cache::etag(&meta.stream_id, start, slice.end, closed);
    if if_none_match.is_some_and(|inm| cache::if_none_match(inm, &tag)) {
        return Ok(not_modified(meta, tag, slice.end, caching));
    }
    let mut r = Response::new(200)
        .header(h::CONTENT_TYPE, meta.content_type.as_str())
        .header(h::STREAM_NEXT_OFFSET, meta.wire(slice.end))
        .header(h::ETAG, tag)
        .header(h::CACHE_CONTROL, policy(meta, slice.end, caching));
    if slice.end == meta.tail {
        r = r.header(h::STREAM_UP_TO_DATE, "true");
    }
    if closed {
        r = r.header(h::STREAM_CLOSED, "true");
    }
    Ok(r.inert(&meta.content_type)
        .body(render_body(meta, &slice.data)))
}

/// The catch-up policy of `protocol::cache`.
fn policy(meta: &StreamMeta, end: Offset, caching: &Caching) -> String {
    if caching.pinned && end < meta.tail {
        caching.chunk.clone()
    } else {
        cache::REVALIDATE.to_string()
    }
}

fn not_modified(meta: &StreamMeta, tag: String, end: Offset, caching: &Caching) -> Response {
    let r = Response::new(304)
        .header(h::ETAG, tag)
        .header(h::CACHE_CONTROL, policy(meta, end, caching))
        .header(h::STREAM_NEXT_OFFSET, meta.wire(end));
    if end == meta.tail {
        r.header(h::STREAM_UP_TO_DATE, "true")
    } else {
        r
    }
}

/// `offset=now` in catch-up mode (§8).
pub fn at_now(meta: &StreamMeta) -> Response {
    let mut r = Response::new(200)
        .header(h::CONTENT_TYPE, meta.content_type.as_str())
        .header(h::STREAM_NEXT_OFFSET, meta.wire(meta.tail))
        .header(h::STREAM_UP_TO_DATE, "true")
        .header(h::CACHE_CONTROL, cache::NO_STORE);
    if meta.closed {
        r = r.header(h::STREAM_CLOSED, "true");
    }
    r.inert(&meta.content_type).body(render_body(meta, &[]))
}

/// HEAD (§5.5): metadata, `no-store`, no body, no TTL renewal.
pub fn head(meta: &StreamMeta) -> Response {
    use crate::protocol::expiry::Expiry;
    let mut r = Response::new(200)
        .header(h::CONTENT_TYPE, meta.content_type.as_str())
        .header(h::STREAM_NEXT_OFFSET, meta.wire(meta.tail))
        .header(h::CACHE_CONTROL, cache::NO_STORE);
    match &meta.expiry {
        Expiry::Never => {}
        Expiry::Ttl { secs } => r = r.header(h::STREAM_TTL, secs.to_string()),
        Expiry::At { text, .. } => r = r.header(h::STREAM_EXPIRES_AT, text.clone()),
    }
    if meta.closed {
        r = r.header(h::STREAM_CLOSED, "true");
    }
    // Retention (an extension): the first readable offset, and the policy.
    r = r.header(h::STREAM_EARLIEST_OFFSET, meta.wire(meta.earliest));
    for (name, value) in meta.retention.headers() {
        r = r.header(name, value);
    }
    r
}
