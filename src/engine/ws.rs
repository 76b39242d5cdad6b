//! WebSocket readers, an extension (PROTOCOL.md §11: a new `live` value):
//! `GET <stream>?offset=X&live=ws` with `Upgrade: websocket`. The object
//! accepts the socket with the hibernation API and sends each batch as one
//! JSON text frame:
//!
//! ```text
//! {"data": <batch>, "nextOffset": "...", "upToDate": true|false, "closed": true|false}
//! ```
//!
//! `data` is the JSON array of messages in JSON mode, a string for `text/*`
//! (whole UTF-8 characters), and base64 for any other type, with
//! `"encoding": "base64"`. The first frame at the tail has empty data and
//! `upToDate`; the frame that reaches a closed stream's end has `closed`, and
//! the server then closes the socket. A frame with `upToDate: false` is one
//! batch of a longer backlog: the client sends the text `more` when it wants
//! the next one, so a slow client paces its own catch-up and the server holds
//! one batch per reader. A client resumes by reconnecting with the last
//! `nextOffset`. A reader whose position a retention policy trimmed away
//! gets `{"error": "OFFSET_TRIMMED", "nextOffset": ..., "earliestOffset": ...}`
//! and the socket closes. Pure: the adapter owns the sockets.

use super::ctx::Ctx;
use super::failure::Failure;
use super::fork::Need;
use super::lifecycle::{current_meta, touch};
use super::live::next_batch;
use super::read::{closed_at, render_body};
use super::state::StreamMeta;
use super::store::Store;
use crate::protocol::content_type::SseEncoding;
use crate::protocol::offset::Offset;
use base64::Engine as _;

/// One WebSocket reader's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsState {
    pub offset: Offset,
    /// Whether any frame was sent yet (the first is due at once).
    pub started: bool,
}

/// What a WebSocket reader does next.
#[derive(Debug, PartialEq, Eq)]
pub enum WsStep {
    /// Send this frame; `last`: then close the socket (the stream closed).
    Frame { text: String, last: bool },
    /// Nothing to send until the stream changes.
    Wait,
    /// The stream is gone (deleted or expired): close the socket.
    End,
    /// Fetch these source chunks, then step again with them.
    NeedInherited(Need),
}

/// One frame (see the module doc).
pub fn frame(meta: &StreamMeta, stored: &[u8], next: Offset) -> String {
    let body = render_body(meta, stored);
    let (data, base64) = if meta.content_type.is_json() {
        (String::from_utf8_lossy(&body).into_owned(), false)
    } else if meta.content_type.sse_encoding() == SseEncoding::Text {
        let text = String::from_utf8_lossy(&body);
        (serde_json::Value::from(text.as_ref()).to_string(), false)
    } else {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&body);
        (format!("\"{b64}\""), true)
    };
    let closed = closed_at(meta, next);
    format!(
        "{{\"data\":{data},{}\"nextOffset\":\"{}\",\"upToDate\":{},\"closed\":{closed}}}",
        if base64 {
            "\"encoding\":\"base64\","
        } else {
            ""
        },
        meta.wire(next),
        next == meta.tail,
    )
}

/// The frame that ends a reader whose position was trimmed away (an
/// extension, `protocol::retention`): its own offset, the earliest
/// retained one, and the reason.
fn trimmed_frame(meta: &StreamMeta, offset: Offset) -> String {
    format!(
        "{{\"error\":\"OFFSET_TRIMMED\",\"nextOffset\":\"{}\",\"earliestOffset\":\"{}\"}}",
        meta.wire(offset),
        meta.wire(meta.earliest)
    )
}

/// The next frame of a WebSocket reader.
pub fn ws_step<S: Store>(store: &S, state: &mut WsState, ctx: &Ctx) -> Result<WsStep, S::Error> {
    let Some(meta) = current_meta(store, ctx.now_ms)?.filter(|m| !m.soft_deleted) else {
        return Ok(WsStep::End);
    };
    match touch(store, &meta, ctx.now_ms) {
        Err(Failure::Store(e)) => return Err(e),
        Err(Failure::Protocol(_)) | Ok(()) => {}
    }
    if state.offset < meta.earliest {
        // Trimmed while the reader fell behind: a last frame says so.
        return Ok(WsStep::Frame {
            text: trimmed_frame(&meta, state.offset),
            last: true,
        });
    }
    if state.offset < meta.tail {
        let Some(slice) = next_batch(store, &meta, state.offset, ctx)? else {
            return Ok(WsStep::End);
        };
        state.offset = slice.end;
        state.started = true;
        return Ok(WsStep::Frame {
            text: frame(&meta, &slice.data, slice.end),
            last: closed_at(&meta, slice.end),
        });
    }
    if meta.closed || !state.started {
        state.started = true;
        return Ok(WsStep::Frame {
            text: frame(&meta, &[], state.offset),
            last: meta.closed,
        });
    }
    Ok(WsStep::Wait)
}
