//! Live reads (PROTOCOL.md §5.7 long-poll, §5.8 SSE, §8 `offset=now`): pure
//! decisions that answer now or say "wait". The adapter parks the reader and
//! calls back here when the stream changes, a timer fires, or a deadline
//! passes; a spurious call just answers "wait" again.

use super::ctx::Ctx;
use super::failure::Failure;
use super::fork::Need;
use super::lifecycle::{cache_budget_s, current_meta, touch};
use super::read::{closed_at, read_range, render_body, Slice};
use super::response::Response;
use super::state::StreamMeta;
use super::store::Store;
use crate::protocol::cache;
use crate::protocol::content_type::SseEncoding;
use crate::protocol::cursor;
use crate::protocol::error::{Invalid, ProtocolError};
use crate::protocol::headers as h;
use crate::protocol::offset::{Offset, OffsetParam};
use crate::protocol::sse::{self, Control};

/// Where a read starts: `-1` the beginning, `now` the tail, else the
/// position the client's offset names in this stream.
pub fn start_offset(meta: &StreamMeta, param: OffsetParam) -> Result<Offset, ProtocolError> {
    match param {
        // `-1` (or no offset) starts at the earliest retained position.
        OffsetParam::Start => Ok(meta.earliest),
        OffsetParam::Now => Ok(meta.tail),
        OffsetParam::At(w) => Ok(meta.resolve(w)?),
    }
}

fn cursor_for(ctx: &Ctx, client: Option<&str>) -> String {
    cursor::next(ctx.now_ms, ctx.config.cursor_interval_s, client, ctx.random)
}

// ---------------------------------------------------------------------------
// Long-poll (§5.7).

/// A parked long-poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongPoll {
    pub offset: Offset,
    /// When to answer 204 if nothing happens.
    pub deadline: u64,
    /// The client's echoed cursor.
    pub cursor: Option<String>,
    /// `offset=-1`: the client is not caught up by definition, never wait.
    pub from_start: bool,
    /// The offset names this incarnation: a 200 may be cached for one
    /// cursor interval (§10.1).
    pub pinned: bool,
}

/// What a long-poll does next.
#[derive(Debug)]
pub enum PollStep {
    Respond(Response),
    Wait(LongPoll),
}

fn data_response(
    meta: &StreamMeta,
    slice: &Slice,
    cursor: String,
    cache_control: String,
) -> Response {
    let closed = closed_at(meta, slice.end);
    let mut r = Response::new(200)
        .header(h::CONTENT_TYPE, meta.content_type.as_str())
        .header(h::STREAM_NEXT_OFFSET, meta.wire(slice.end))
        .header(
            h::ETAG,
            cache::etag(&meta.stream_id, slice.start, slice.end, closed),
        )
        .header(h::CACHE_CONTROL, cache_control);
    if !closed {
        r = r.header(h::STREAM_CURSOR, cursor);
    }
    if slice.end == meta.tail {
        r = r.header(h::STREAM_UP_TO_DATE, "true");
    }
    if closed {
        r = r.header(h::STREAM_CLOSED, "true");
    }
    r.inert(&meta.content_type)
        .body(render_body(meta, &slice.data))
}

/// Decides a long-poll: data now, 204 now, or wait. `meta` is the stream as
/// loaded for this call (`None`: gone, 404).
pub fn poll<S: Store>(
    store: &S,
    meta: Option<&StreamMeta>,
    wait: LongPoll,
    ctx: &Ctx,
) -> Result<PollStep, Failure<S::Error>> {
    let meta = meta.ok_or(ProtocolError::NotFound)?;
    if wait.offset > meta.tail {
        return Err(Invalid::Offset.into());
    }
    if wait.offset < meta.tail || wait.from_start {
        let slice = read_range(store, meta, wait.offset, ctx.config.max_read_chunk_bytes)?;
        let cursor = cursor_for(ctx, wait.cursor.as_deref());
        let cc = if wait.pinned {
            cache::for_interval(
                ctx.config.cursor_interval_s,
                cache_budget_s(meta, ctx.now_ms),
            )
        } else {
            cache::NO_STORE.to_string()
        };
        return Ok(PollStep::Respond(data_response(meta, &slice, cursor, cc)));
    }
    let no_content = || {
        Response::new(204)
            .header(h::STREAM_NEXT_OFFSET, meta.wire(meta.tail))
            .header(h::STREAM_UP_TO_DATE, "true")
            .header(h::CACHE_CONTROL, cache::NO_STORE)
    };
    if meta.closed {
        return Ok(PollStep::Respond(
            no_content().header(h::STREAM_CLOSED, "true"),
        ));
    }
    if ctx.now_ms >= wait.deadline {
        let cursor = cursor_for(ctx, wait.cursor.as_deref());
        return Ok(PollStep::Respond(
            no_content().header(h::STREAM_CURSOR, cursor),
        ));
    }
    Ok(PollStep::Wait(wait))
}

// ---------------------------------------------------------------------------
// SSE (§5.8).

/// One SSE connection's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseState {
    pub offset: Offset,
    pub cursor: Option<String>,
    /// Whether any event was sent yet (the first control event is due at once).
    pub started: bool,
}

/// What an SSE connection does next.
#[derive(Debug, PartialEq, Eq)]
pub enum SseStep {
    /// Send these bytes; `last` ends the connection after them.
    Emit { bytes: Vec<u8>, last: bool },
    /// Nothing to send until the stream changes.
    Wait,
    /// The stream is gone (deleted or expired): end the connection.
    End,
    /// Fetch these source chunks, then step again with them.
    NeedInherited(Need),
}

/// The response head of an SSE connection.
pub fn sse_head(meta: &StreamMeta) -> Response {
    let r = Response::new(200)
        .header(h::CONTENT_TYPE, "text/event-stream")
        .header(h::CACHE_CONTROL, cache::SSE);
    match meta.content_type.sse_encoding() {
        SseEncoding::Text => r,
        SseEncoding::Base64 => r.header(h::STREAM_SSE_DATA_ENCODING, "base64"),
    }
}

/// The next batch for a live reader at `offset` (before the tail): about
/// `MAX_READ_CHUNK_BYTES`, and for text streams cut back to a whole UTF-8
/// character (or read on until one is whole). `None`: the offset is no
/// longer readable, which ends the reader.
pub fn next_batch<S: Store>(
    store: &S,
    meta: &StreamMeta,
    offset: Offset,
    ctx: &Ctx,
) -> Result<Option<Slice>, S::Error> {
    let encoding = meta.content_type.sse_encoding();
    let text = encoding == SseEncoding::Text && !meta.content_type.is_json();
    let mut cap = ctx.config.max_read_chunk_bytes;
    loop {
        let mut slice = match read_range(store, meta, offset, cap) {
            Ok(s) => s,
            Err(Failure::Store(e)) => return Err(e),
            // The start offset was validated when the reader opened.
            Err(Failure::Protocol(_)) => return Ok(None),
        };
        if !text {
            return Ok(Some(slice));
        }
        // Text goes out whole characters at a time: cut a batch back to a
        // character boundary, or read on if it holds no whole one.
        let keep = sse::utf8_prefix_len(&slice.data);
        if keep == 0 && slice.end < meta.tail {
            cap = (slice.data.len() as u64).saturating_add(ctx.config.row_bytes);
            continue;
        }
        if keep > 0 {
            slice.data.truncate(keep);
            slice.end = offset.advance(keep as u64).unwrap_or(slice.end);
        }
        return Ok(Some(slice));
    }
}

/// The next thing to send on an SSE connection. `keepalive` asks for a
/// control event even when nothing changed (the adapter's keep-alive timer).
pub fn sse_step<S: Store>(
    store: &S,
    state: &mut SseState,
    ctx: &Ctx,
    keepalive: bool,
) -> Result<SseStep, S::Error> {
    let Some(meta) = current_meta(store, ctx.now_ms)? else {
        return Ok(SseStep::End);
    };
    match touch(store, &meta, ctx.now_ms) {
        Err(Failure::Store(e)) => return Err(e),
        Err(Failure::Protocol(_)) | Ok(()) => {}
    }
    let encoding = meta.content_type.sse_encoding();
    if state.offset < meta.earliest {
        // Trimmed while the reader fell behind: it ends with the reason.
        let bytes = sse::trimmed_event(&meta.wire(state.offset), &meta.wire(meta.earliest));
        return Ok(SseStep::Emit { bytes, last: true });
    }
    if state.offset < meta.tail {
        let Some(slice) = next_batch(store, &meta, state.offset, ctx)? else {
            return Ok(SseStep::End);
        };
        let closed = closed_at(&meta, slice.end);
        let id = meta.wire(slice.end);
        let mut bytes = sse::data_event(&render_body(&meta, &slice.data), encoding, &id);
        bytes.extend(sse::control_event(&Control {
            next_offset: meta.wire(slice.end),
            cursor: (!closed).then(|| cursor_for(ctx, state.cursor.as_deref())),
            up_to_date: slice.end == meta.tail,
            closed,
        }));
        state.offset = slice.end;
        state.started = true;
        return Ok(SseStep::Emit {
            bytes,
            last: closed,
        });
    }
    if meta.closed {
        let bytes = sse::control_event(&Control {
            next_offset: meta.wire(meta.tail),
            cursor: None,
            up_to_date: true,
            closed: true,
        });
        return Ok(SseStep::Emit { bytes, last: true });
    }
    if !state.started || keepalive {
        state.started = true;
        let bytes = sse::control_event(&Control {
            next_offset: meta.wire(state.offset),
            cursor: Some(cursor_for(ctx, state.cursor.as_deref())),
            up_to_date: true,
            closed: false,
        });
        return Ok(SseStep::Emit { bytes, last: false });
    }
    Ok(SseStep::Wait)
}
