//! The bridge (README, Live reads): a live reader's HTTP request is held by
//! the Worker, not by the stream's object. The Worker opens one WebSocket to
//! the object per reader (the request to the object carries [`HEADER`],
//! which the Worker strips from clients); the object accepts it with the
//! hibernation API (`sockets.rs`), so while its readers wait it holds no
//! request and can be evicted. Frames are `engine::bridge`'s.
//!
//! This file: the socket, and SSE readers (PROTOCOL.md §5.8). The object
//! sends each reader's SSE events, computed once per distinct position; the
//! Worker streams them to its client, adds keep-alive
//! control events every `SSE_KEEPALIVE_MS`, ends the response after
//! `SSE_MAX_LIFETIME_MS`, and reconnects from the last offset if the socket
//! drops (an object restart, a deploy) without the client noticing.
//!
//! A Worker cannot share an I/O object between requests, so the socket is
//! per reader; the fan-out happens in the object.

use super::BINDING;
use crate::engine::bridge as frame;
use crate::engine::config::Config;
use crate::engine::request::Request as NeutralRequest;
use crate::protocol::cursor;
use crate::protocol::headers as h;
use crate::protocol::sse::{self, Control};
use futures_channel::mpsc;
use futures_util::future::{select, Either};
use futures_util::{stream, StreamExt};
use js_sys::Uint8Array;
use std::time::Duration;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use worker::worker_sys::web_sys;
use worker::{
    Env, Headers, Method, Request, RequestInit, Response, ResponseBody, Result, Url, WebSocket,
};

/// Marks a request from the Worker's bridge: its value is the reader's
/// kind.
pub const HEADER: &str = "x-ds-bridge";

/// A bridged reader's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sse,
    LongPoll,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Sse => "sse",
            Kind::LongPoll => "long-poll",
        }
    }
}

/// Which bridge socket the object is asked for, if any.
pub fn requested(req: &NeutralRequest) -> Option<Kind> {
    let upgrade = req
        .header(h::UPGRADE)
        .is_some_and(|u| u.trim().eq_ignore_ascii_case("websocket"));
    match req.header(HEADER) {
        Some("sse") if upgrade => Some(Kind::Sse),
        Some("long-poll") if upgrade => Some(Kind::LongPoll),
        _ => None,
    }
}

/// What arrives on a bridge socket. A frame's events stay a JavaScript
/// buffer: the response body passes them on as they are, so they are never
/// copied into wasm memory.
pub(super) enum Msg {
    Frame(wasm_bindgen::JsValue),
    Closed(u16),
}

/// Most bytes of frames a socket may have waiting for its reader's client
/// to pull them. Past it the Worker drops the socket (as if the object had
/// restarted) and the reader reopens it from its last offset, where the
/// object pages its catch-up: a slow client costs storage reads, never
/// unbounded memory.
const MAX_QUEUED_BYTES: u64 = 8 * 1024 * 1024;

/// A bridge socket and its listeners (kept alive as long as it is).
pub(super) struct Listener {
    pub(super) ws: WebSocket,
    rx: mpsc::UnboundedReceiver<Msg>,
    /// Bytes of frames in `rx`.
    queued: std::rc::Rc<std::cell::Cell<u64>>,
    _on_message: Closure<dyn FnMut(web_sys::MessageEvent)>,
    _on_close: Closure<dyn FnMut(web_sys::CloseEvent)>,
}

/// A frame's size in bytes (binary or text).
fn frame_len(data: &JsValue) -> u64 {
    match data.dyn_ref::<js_sys::ArrayBuffer>() {
        Some(b) => u64::from(b.byte_length()),
        None => data.as_string().map_or(0, |s| s.len() as u64),
    }
}

impl Listener {
    pub(super) fn new(ws: WebSocket) -> Result<Listener> {
        let (tx, rx) = mpsc::unbounded();
        let frames = tx.clone();
        let queued = std::rc::Rc::new(std::cell::Cell::new(0u64));
        let counter = queued.clone();
        let raw: web_sys::WebSocket = ws.as_ref().clone();
        let mut overflowed = false;
        let on_message =
            Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
                if overflowed {
                    return;
                }
                let data = e.data();
                let total = counter.get().saturating_add(frame_len(&data));
                if total > MAX_QUEUED_BYTES {
                    overflowed = true;
                    let _ = raw.close_with_code_and_reason(1000, "reader too slow");
                    let _ = frames.unbounded_send(Msg::Closed(OVERFLOW));
                    return;
                }
                counter.set(total);
                let _ = frames.unbounded_send(Msg::Frame(data));
            });
        let on_close =
            Closure::<dyn FnMut(web_sys::CloseEvent)>::new(move |e: web_sys::CloseEvent| {
                let _ = tx.unbounded_send(Msg::Closed(e.code()));
            });
        let raw: &web_sys::WebSocket = ws.as_ref();
        raw.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        raw.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        ws.accept()?;
        Ok(Listener {
            ws,
            rx,
            queued,
            _on_message: on_message,
            _on_close: on_close,
        })
    }

    /// The next message (`None`: the socket is gone).
    pub(super) async fn recv(&mut self) -> Option<Msg> {
        let msg = self.rx.next().await;
        if let Some(Msg::Frame(data)) = &msg {
            self.queued
                .set(self.queued.get().saturating_sub(frame_len(data)));
        }
        msg
    }
}

/// The close code a reader sees when its socket overflowed: like a dropped
/// socket, it is reopened from the reader's last offset.
pub(super) const OVERFLOW: u16 = 4999;

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.ws.close(Some(1000), Some("reader gone"));
    }
}

/// What the object answered a bridge request with.
pub(super) enum Opened {
    /// A socket, and the SSE response head (its headers).
    Socket(Listener, Headers),
    /// An answer instead (an error: 404, 400, 410, 503, ...).
    Answer(Response),
}

/// Asks `stream`'s object for a bridge socket of `kind` for the read `url`.
pub(super) async fn open(
    env: &Env,
    stream: &str,
    url: &Url,
    headers: &Headers,
    kind: Kind,
) -> Result<Opened> {
    let h2 = Headers::new();
    for (k, v) in headers.entries() {
        h2.append(&k, &v)?;
    }
    h2.set(h::UPGRADE, "websocket")?;
    h2.set(HEADER, kind.as_str())?;
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(h2);
    let req = Request::new_with_init(url.as_str(), &init)?;
    let stub = env.durable_object(BINDING)?.get_by_name(stream)?;
    let resp = stub.fetch_with_request(req).await?;
    if resp.status_code() != 101 {
        return Ok(Opened::Answer(resp));
    }
    let head = resp.headers().clone();
    match resp.websocket() {
        Some(ws) => Ok(Opened::Socket(Listener::new(ws)?, head)),
        None => Err(worker::Error::RustError(
            "bridge: 101 without a socket".into(),
        )),
    }
}

/// An SSE response's body: the object's events, keep-alives, a bounded
/// lifetime, reconnects.
struct Pump {
    env: Env,
    stream: String,
    url: Url,
    headers: Headers,
    socket: Option<Listener>,
    /// The offset after the last events sent (printed).
    next: String,
    /// The client's cursor, for keep-alive control events.
    cursor: Option<String>,
    interval_s: u64,
    keepalive_ms: u64,
    closes_at: u64,
    done: bool,
    /// Whether the last frame said more is stored: asked for when the
    /// response pulls again, so a reader holds one frame at a time.
    behind: bool,
}

fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

impl Pump {
    /// The URL that resumes at the last offset (and no `Last-Event-ID`,
    /// which would override it).
    fn resume_url(&self) -> Url {
        let mut url = self.url.clone();
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != h::query::OFFSET)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(kept)
            .append_pair(h::query::OFFSET, &self.next);
        url
    }

    async fn next_chunk(&mut self) -> Option<JsValue> {
        for _ in 0..16 {
            let now = now_ms();
            if self.done || now >= self.closes_at {
                return None;
            }
            if self.behind {
                if let Some(socket) = &self.socket {
                    let _ = socket.ws.send_with_str(frame::MORE);
                }
                self.behind = false;
            }
            let Some(socket) = self.socket.as_mut() else {
                // The socket dropped: reconnect from the last offset.
                let _ = self.headers.delete(h::LAST_EVENT_ID);
                let url = self.resume_url();
                match open(&self.env, &self.stream, &url, &self.headers, Kind::Sse).await {
                    Ok(Opened::Socket(l, _)) => self.socket = Some(l),
                    Ok(Opened::Answer(_)) | Err(_) => return None,
                }
                continue;
            };
            let wait = self
                .closes_at
                .min(now.saturating_add(self.keepalive_ms))
                .saturating_sub(now);
            let timer = worker::Delay::from(Duration::from_millis(wait));
            let got = match select(std::pin::pin!(socket.recv()), timer).await {
                Either::Left((msg, _)) => Either::Left(msg),
                Either::Right(_) => Either::Right(()),
            };
            match got {
                Either::Left(Some(Msg::Frame(data))) => {
                    if !data.is_instance_of::<js_sys::ArrayBuffer>() {
                        continue;
                    }
                    let message = Uint8Array::new(&data);
                    let len = message.length();
                    let start = message.subarray(0, len.min(frame::MAX_SSE_HEAD as u32));
                    let start = start.to_vec();
                    let Some(head) = frame::parse_sse(&start) else {
                        continue;
                    };
                    if !head.next.is_empty() {
                        self.next = head.next.to_string();
                    }
                    // Catching up: one batch at a time, asked for.
                    self.behind = head.more;
                    self.done = head.end;
                    let events = message.subarray(head.events_at as u32, len);
                    if events.length() == 0 {
                        continue;
                    }
                    return Some(events.into());
                }
                // The stream closed (its last events went out) or is gone.
                Either::Left(Some(Msg::Closed(1000 | 4410))) => {
                    self.done = true;
                    return None;
                }
                Either::Left(Some(Msg::Closed(_)) | None) => {
                    self.socket = None;
                }
                Either::Right(_) if now_ms() >= self.closes_at => return None,
                Either::Right(_) if !self.next.is_empty() => {
                    let random = (js_sys::Math::random() * 9_007_199_254_740_992.0) as u64;
                    let bytes = sse::control_event(&Control {
                        next_offset: self.next.clone(),
                        cursor: Some(cursor::next(
                            now_ms(),
                            self.interval_s,
                            self.cursor.as_deref(),
                            random,
                        )),
                        up_to_date: true,
                        closed: false,
                    });
                    return Some(Uint8Array::from(bytes.as_slice()).into());
                }
                Either::Right(_) => {}
            }
        }
        None
    }
}

/// Serves an SSE read (`req`, already checked and without credentials)
/// through a bridge socket to `stream`'s object.
pub async fn sse(env: &Env, stream: &str, req: Request, config: &Config) -> Result<Response> {
    let url = req.url()?;
    let headers = req.headers().clone();
    let (socket, head) = match open(env, stream, &url, &headers, Kind::Sse).await? {
        Opened::Socket(l, head) => (l, head),
        Opened::Answer(r) => return Ok(r),
    };
    let cursor = url
        .query_pairs()
        .find(|(k, _)| k == h::query::CURSOR)
        .map(|(_, v)| v.into_owned());
    let pump = Pump {
        env: env.clone(),
        stream: stream.to_string(),
        url,
        headers,
        socket: Some(socket),
        next: String::new(),
        cursor,
        interval_s: config.cursor_interval_s,
        keepalive_ms: config.sse_keepalive_ms,
        closes_at: now_ms().saturating_add(config.sse_max_lifetime_ms),
        done: false,
        behind: false,
    };
    let body = stream::unfold(pump, |mut pump| async move {
        let chunk = pump.next_chunk().await?;
        Some((Ok::<JsValue, JsValue>(chunk), pump))
    });
    let body = wasm_streams::ReadableStream::from_stream(body).into_raw();
    Ok(Response::from_body(ResponseBody::Stream(body))?
        .with_status(200)
        .with_headers(head))
}
