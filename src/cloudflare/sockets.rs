//! Hibernatable socket readers in the stream's object: clients' WebSocket
//! readers (`live=ws`, `engine::ws`: JSON frames) and the Worker's bridge
//! sockets for SSE readers (`bridge.rs`: SSE event bytes, which the Worker
//! streams to its client). Accepted with the hibernation API: while its
//! readers wait, the object holds no request and can be evicted from
//! memory; the sockets stay open, and each one's position lives in its
//! attachment, so a new instance of the object picks up where the evicted
//! one left off.
//!
//! On every change (append, close, delete, expiry) [`Shared::fan_out`]
//! groups the sockets by position and computes each group's next frame
//! once, however many readers wait there. A frame is one batch (up to
//! `MAX_READ_CHUNK_BYTES`); a reader further behind asks for the next one
//! by sending `more` (the Worker's bridge does so itself), so catching up
//! is paced by the reader and the object holds one batch at a time.
//!
//! What a socket remembers of its reader, and how a reader comes back from
//! it, is `engine::socket_reader`.

use super::convert;
use super::shared::{now_ms, Shared, Step};
use crate::engine::bridge::{self, Answer};
use crate::engine::live::{LongPoll, SseStep};
use crate::engine::outcome::Action;
use crate::engine::response::Response as Neutral;
use crate::engine::resume;
use crate::engine::socket_reader::{Attachment, Reader};
use crate::engine::state::Chunk;
use crate::engine::store::Store;
use crate::engine::ws::WsStep;
use crate::protocol::error::ProtocolError;
use crate::protocol::offset::Offset;
use std::collections::BTreeMap;
use worker::{Response, ResponseBuilder, Result, WebSocket, WebSocketPair};

/// Most sockets one object accepts (the platform's limit is 32,768).
const MAX_SOCKETS: u64 = 32_768;
/// Close codes: the stream closed (normal), or it is gone.
const CLOSED: u16 = 1000;
const GONE: u16 = 4410;

/// One message to a socket: a client's JSON frame, or a bridge frame.
enum Out {
    Text(String),
    Binary(Vec<u8>),
}

/// A group's frames after one step: what to send, and how the readers end.
struct Frames {
    texts: Vec<Out>,
    after: Reader,
    /// Whether more is stored after `after` (the reader asks for it).
    pending: bool,
    /// `Some(code)`: close the sockets after sending.
    close: Option<(u16, &'static str)>,
}

/// A reader's step, whatever its kind.
enum Emitted {
    /// Send this; `true`: then close (the stream closed).
    Frame(Out, bool),
    Wait,
    End,
}

/// Socket readers get batches of at most this many stored bytes: many
/// readers of one isolate catch up at once, each with a batch in flight in
/// the object, on its socket and in the Worker's response (all in one
/// isolate's 128 MB when the Worker and the object share it).
const SOCKET_BATCH_BYTES: u64 = 256 * 1024;

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

    /// Accepts a socket reader at `start` and sends its first frames; the
    /// 101 carries `head`'s headers (an SSE bridge's response head).
    pub async fn open_socket(&self, start: Reader, head: Option<Neutral>) -> Result<Response> {
        let limit = self.config.max_readers_per_stream.min(MAX_SOCKETS);
        let full = |open: u64| open + self.live.readers() >= limit;
        // The count can drift (a close the runtime never reported): at the
        // limit it is taken again from the runtime, so a full stream costs a
        // recount, not every open.
        if full(self.socket_count()) {
            let open = self.sockets().len() as u64;
            self.socket_count.set(Some(open));
            if full(open) {
                return convert::render_error(&ProtocolError::TooManyReaders { limit });
            }
        }
        let tail = self.tail();
        // A long-poll first gets the answer for its timeout, which the
        // Worker gives without asking the object again.
        let at_timeout = match &start {
            Reader::LongPoll(w) => Some(self.timeout_answer(w)?),
            _ => None,
        };
        let mut frames = self.frames(start).await;
        if let Some(frame) = at_timeout {
            frames.texts.insert(0, Out::Binary(frame));
        }
        if let (Some(head), Some(_)) = (&head, frames.close) {
            // The reader ends at once (the stream closed, or is gone): no
            // socket, the events as a plain SSE body.
            let mut body = Vec::new();
            for out in &frames.texts {
                if let Out::Binary(b) = out {
                    body.extend_from_slice(bridge::sse_events(b).unwrap_or_default());
                }
            }
            return convert::render(head.clone().body(body));
        }
        let pair = WebSocketPair::new()?;
        self.state.as_raw().accept_websocket(pair.server.as_ref())?;
        self.socket_count.set(Some(self.socket_count() + 1));
        self.deliver(std::slice::from_ref(&pair.server), &frames);
        // A change that landed while the first frames were computed (a
        // fork's inherited read waits on another object) reaches it too.
        if self.tail() != tail {
            self.fan_out_once().await;
        }
        let mut builder = ResponseBuilder::new().with_status(101);
        if let Some(head) = head {
            builder = builder.with_headers(convert::headers_of(&head)?);
        }
        Ok(builder.with_websocket(pair.client).empty())
    }

    /// A waiting long-poll's answer at its deadline (a 204).
    fn timeout_answer(&self, w: &LongPoll) -> Result<Vec<u8>> {
        let mut due = w.clone();
        due.deadline = 0;
        let ctx = self.ctx(now_ms(), "");
        let r = match resume::resume_long_poll(&self.store, due, &ctx, &[])? {
            Action::Respond(r) => r,
            _ => Neutral::error(&ProtocolError::Unavailable),
        };
        Ok(bridge::answer_frame(Answer::AtTimeout, &r))
    }

    /// Open reader sockets (see `Shared::socket_count`).
    fn socket_count(&self) -> u64 {
        match self.socket_count.get() {
            Some(n) => n,
            None => {
                let n = self.sockets().len() as u64;
                self.socket_count.set(Some(n));
                n
            }
        }
    }

    /// A reader's socket closed.
    pub fn socket_closed(&self) {
        if let Some(n) = self.socket_count.get() {
            self.socket_count.set(Some(n.saturating_sub(1)));
        }
    }

    /// The stream's tail now, if it exists.
    fn tail(&self) -> Option<Offset> {
        Store::meta(&self.store).ok().flatten().map(|m| m.tail)
    }

    /// One engine step of a reader: `Ok(Ok(step))`, or `Ok(Err(()))` when
    /// the source of a fork's inherited range could not answer.
    async fn step(
        &self,
        reader: &mut Reader,
        inherited: &mut Vec<Chunk>,
    ) -> Result<std::result::Result<Emitted, ()>> {
        let now = now_ms();
        let mut config = self.config;
        config.max_read_chunk_bytes = config.max_read_chunk_bytes.min(SOCKET_BATCH_BYTES);
        let step = self
            .with_inherited(inherited, |inherited| {
                let mut ctx = self.ctx(now, "");
                ctx.config = &config;
                Ok(match reader {
                    Reader::Client(st) => {
                        match resume::ws_next(&self.store, st, &ctx, inherited)? {
                            WsStep::NeedInherited(n) => Step::Need(n),
                            WsStep::Frame { text, last } => {
                                Step::Done(Emitted::Frame(Out::Text(text), last))
                            }
                            WsStep::Wait => Step::Done(Emitted::Wait),
                            WsStep::End => Step::Done(Emitted::End),
                        }
                    }
                    Reader::Sse(st) => {
                        match resume::sse_next(&self.store, st, &ctx, false, inherited)? {
                            SseStep::NeedInherited(n) => Step::Need(n),
                            SseStep::Emit { bytes, last } => {
                                Step::Done(Emitted::Frame(Out::Binary(bytes), last))
                            }
                            SseStep::Wait => Step::Done(Emitted::Wait),
                            SseStep::End => Step::Done(Emitted::End),
                        }
                    }
                    Reader::LongPoll(w) => {
                        match resume::resume_long_poll(&self.store, w.clone(), &ctx, inherited)? {
                            Action::NeedInherited(n) => Step::Need(n),
                            Action::LongPoll(_) => Step::Done(Emitted::Wait),
                            Action::Respond(r) => Step::Done(Emitted::Frame(
                                Out::Binary(bridge::answer_frame(Answer::Now, &r)),
                                true,
                            )),
                            _ => Step::Done(Emitted::End),
                        }
                    }
                })
            })
            .await?;
        let offset = reader.offset().position();
        inherited.retain(|c| c.end() > offset);
        Ok(step.map_err(|_| ()))
    }

    /// A bridge frame around SSE events (see [`BridgeFrame`]).
    fn bridge_frame(&self, events: &[u8], offset: Offset, end: bool) -> Vec<u8> {
        let meta = Store::meta(&self.store).ok().flatten();
        let next = meta.as_ref().map(|m| m.wire(offset)).unwrap_or_default();
        let more = !end && meta.is_some_and(|m| offset < m.tail);
        bridge::sse_frame(&next, more, end, events)
    }

    /// The next frame of readers at `from` (one batch at most).
    async fn frames(&self, from: Reader) -> Frames {
        let mut state = from;
        let mut texts = Vec::new();
        let mut inherited: Vec<Chunk> = Vec::new();
        let close = match self.step(&mut state, &mut inherited).await {
            Ok(Ok(Emitted::Frame(out, last))) => {
                texts.push(out);
                last.then_some((CLOSED, "stream closed"))
            }
            Ok(Ok(Emitted::Wait)) => None,
            Ok(Ok(Emitted::End)) => Some((GONE, "stream gone")),
            Ok(Err(())) => Some((GONE, "source unavailable")),
            Err(e) => {
                worker::console_error!("socket frames: {e}");
                Some((1011, "server error"))
            }
        };
        if let Reader::Sse(s) = &state {
            // The Worker's frames carry the position and whether this ends.
            let events = match texts.pop() {
                Some(Out::Binary(b)) => b,
                _ => Vec::new(),
            };
            let end = close.is_some();
            if !events.is_empty() || end {
                texts.push(Out::Binary(self.bridge_frame(&events, s.offset, end)));
            }
        }
        let pending = close.is_none() && self.tail().is_some_and(|t| state.offset() < t);
        Frames {
            texts,
            after: state,
            pending,
            close,
        }
    }

    /// Sends `frames` to each socket, records the new position, and closes
    /// the sockets when the stream ended. A socket that fails to send is
    /// dropped (its client went away).
    fn deliver(&self, sockets: &[WebSocket], frames: &Frames) {
        let attachment = frames.after.attachment(frames.pending);
        for ws in sockets {
            let sent = frames.texts.iter().try_for_each(|out| match out {
                Out::Text(t) => ws.send_with_str(t),
                Out::Binary(b) => ws.send_with_bytes(b),
            });
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

    /// A reader asked for its next batch. Only a reader with more stored
    /// asks, and one `more` is answered at a time (see
    /// [`Attachment::answers_more`]); any other is ignored.
    pub async fn more(&self, ws: &WebSocket) {
        let Some(attachment) = ws.deserialize_attachment::<Attachment>().ok().flatten() else {
            return unknown(ws);
        };
        if !attachment.answers_more() {
            return;
        }
        let Some(from) = attachment.reader() else {
            return unknown(ws);
        };
        if ws.serialize_attachment(attachment.answering()).is_err() {
            return unknown(ws);
        }
        let frames = self.frames(from).await;
        self.deliver(std::slice::from_ref(ws), &frames);
    }

    /// After a change: every waiting socket gets what is new, computed once
    /// per distinct position.
    pub async fn fan_out(&self) {
        let mut groups: BTreeMap<Attachment, Vec<WebSocket>> = BTreeMap::new();
        for ws in self.sockets() {
            match ws.deserialize_attachment::<Attachment>() {
                Ok(Some(a)) => groups.entry(a).or_default().push(ws),
                _ => unknown(&ws),
            }
        }
        for (attachment, sockets) in groups {
            if attachment.pending() {
                continue;
            }
            let Some(from) = attachment.reader() else {
                sockets.iter().for_each(unknown);
                continue;
            };
            let frames = self.frames(from).await;
            self.deliver(&sockets, &frames);
        }
    }
}

/// Closes a socket that names no reader of ours (its attachment is gone or
/// names none), so it cannot wait forever.
fn unknown(ws: &WebSocket) {
    let _ = ws.close(Some(1011), Some("unknown reader"));
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
