//! WebSocket readers in the stream's object (`live=ws`, `engine::ws`),
//! accepted with the hibernation API: while its readers wait, the object
//! holds no request and can be evicted from memory; the sockets stay open,
//! and each one's position lives in its attachment, so a new instance of
//! the object picks up where the evicted one left off.
//!
//! On every change (append, close, delete, expiry) [`Shared::fan_out`]
//! groups the sockets by position and computes each group's frames once,
//! however many readers wait there. A reader is sent at most
//! [`MAX_BYTES_PER_WAKE`] per change; one further behind gets the rest on
//! the next change, or reconnects from its last `nextOffset`.

use super::convert;
use super::shared::{now_ms, Shared, Step};
use crate::engine::resume;
use crate::engine::state::Chunk;
use crate::engine::ws::{WsState, WsStep};
use crate::protocol::error::ProtocolError;
use crate::protocol::offset::Offset;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use worker::{Response, ResponseBuilder, Result, WebSocket, WebSocketPair};

/// Most sockets one object accepts (the platform's limit is 32,768).
const MAX_SOCKETS: u64 = 32_768;
/// Most bytes one reader is sent for one change.
const MAX_BYTES_PER_WAKE: usize = 16 * 1024 * 1024;
/// Close codes: the stream closed (normal), or it is gone.
const CLOSED: u16 = 1000;
const GONE: u16 = 4410;

/// What a socket remembers across evictions (at most 16 KiB; positions as
/// strings, so no value nears JavaScript's 2^53).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Attachment {
    /// The reader's position.
    o: String,
    /// Whether its first frame went out.
    s: bool,
}

impl Attachment {
    fn of(state: &WsState) -> Attachment {
        Attachment {
            o: state.offset.position().to_string(),
            s: state.started,
        }
    }

    fn state(&self) -> Option<WsState> {
        Some(WsState {
            offset: Offset::new(self.o.parse().ok()?)?,
            started: self.s,
        })
    }
}

/// A group's frames after one step: what to send, and how the readers end.
struct Frames {
    texts: Vec<String>,
    after: WsState,
    /// `Some(code)`: close the sockets after sending.
    close: Option<(u16, &'static str)>,
}

impl Shared {
    fn sockets(&self) -> Vec<WebSocket> {
        match self.state.as_raw().get_websockets() {
            Ok(all) => all.into_iter().map(WebSocket::from).collect(),
            Err(e) => {
                worker::console_error!("getWebSockets: {e:?}");
                Vec::new()
            }
        }
    }

    /// Accepts a WebSocket reader at `start` and sends its first frames.
    pub async fn open_socket(&self, start: WsState) -> Result<Response> {
        let limit = self.config.max_readers_per_stream.min(MAX_SOCKETS);
        if self.sockets().len() as u64 + self.live.readers() >= limit {
            return convert::render_error(&ProtocolError::TooManyReaders { limit });
        }
        let pair = WebSocketPair::new()?;
        self.state.as_raw().accept_websocket(pair.server.as_ref())?;
        let frames = self.frames(start).await;
        self.deliver(std::slice::from_ref(&pair.server), &frames);
        Ok(ResponseBuilder::new()
            .with_status(101)
            .with_websocket(pair.client)
            .empty())
    }

    /// The frames of readers at `from`, up to the per-wake cap.
    async fn frames(&self, from: WsState) -> Frames {
        let mut state = from;
        let mut texts = Vec::new();
        let mut sent = 0usize;
        let mut inherited: Vec<Chunk> = Vec::new();
        loop {
            let now = now_ms();
            let step = self
                .with_inherited(&mut inherited, |inherited| {
                    let ctx = self.ctx(now, "");
                    Ok(
                        match resume::ws_next(&self.store, &mut state, &ctx, inherited)? {
                            WsStep::NeedInherited(n) => Step::Need(n),
                            other => Step::Done(other),
                        },
                    )
                })
                .await;
            let offset = state.offset.position();
            inherited.retain(|c| c.end() > offset);
            let close = match step {
                Ok(Ok(WsStep::Frame { text, last })) => {
                    sent += text.len();
                    texts.push(text);
                    if !last && sent < MAX_BYTES_PER_WAKE {
                        continue;
                    }
                    last.then_some((CLOSED, "stream closed"))
                }
                Ok(Ok(WsStep::Wait)) => None,
                Ok(Ok(WsStep::End)) => Some((GONE, "stream gone")),
                Ok(Ok(WsStep::NeedInherited(_))) | Ok(Err(_)) => Some((GONE, "source unavailable")),
                Err(e) => {
                    worker::console_error!("ws frames: {e}");
                    Some((1011, "server error"))
                }
            };
            return Frames {
                texts,
                after: state,
                close,
            };
        }
    }

    /// Sends `frames` to each socket, records the new position, and closes
    /// the sockets when the stream ended. A socket that fails to send is
    /// dropped (its client went away).
    fn deliver(&self, sockets: &[WebSocket], frames: &Frames) {
        let attachment = Attachment::of(&frames.after);
        for ws in sockets {
            let sent = frames.texts.iter().try_for_each(|t| ws.send_with_str(t));
            let kept = sent.is_ok() && ws.serialize_attachment(&attachment).is_ok();
            match (kept, frames.close) {
                (true, None) => {}
                (true, Some((code, reason))) => {
                    let _ = ws.close(Some(code), Some(reason));
                }
                (false, _) => {
                    let _ = ws.close(Some(1011), Some("send failed"));
                }
            }
        }
    }

    /// After a change: every waiting socket gets what is new, computed once
    /// per distinct position.
    pub async fn fan_out(&self) {
        let mut groups: BTreeMap<Attachment, Vec<WebSocket>> = BTreeMap::new();
        for ws in self.sockets() {
            match ws.deserialize_attachment::<Attachment>() {
                Ok(Some(a)) => groups.entry(a).or_default().push(ws),
                // Not a reader of ours (or its attachment is gone): close it.
                _ => {
                    let _ = ws.close(Some(1011), Some("unknown reader"));
                }
            }
        }
        for (attachment, sockets) in groups {
            let Some(from) = attachment.state() else {
                continue;
            };
            let frames = self.frames(from).await;
            self.deliver(&sockets, &frames);
        }
    }
}

/// The object's answer to a socket's close: close it back (workerd before
/// the 2026-04-07 compatibility date does not), never echoing the codes a
/// close frame may not carry.
pub fn closed(ws: &WebSocket, code: usize) {
    let code = u16::try_from(code)
        .ok()
        .filter(|c| matches!(c, 1000 | 1001 | 3000..=4999))
        .unwrap_or(1000);
    let _ = ws.close(Some(code), Some("bye"));
}
