//! Several streams on one SSE connection (`protocol::multi` has the wire
//! format; README, "Several streams on one connection"). The Worker checks
//! access for every stream named (a read of each), opens one
//! WebSocket-transport socket (`live=ws`, `engine::ws`) per stream to its
//! object, which holds it with the hibernation API, and merges their frames
//! into one SSE response, each tagged with its stream and carrying every
//! stream's next offset in `id:`. It waits for each stream's first frame
//! before sending anything, so every `id:` names real offsets. Like the
//! single-stream bridge (`bridge.rs`): a catching-up stream gets its next
//! batch (`more`) only when the client pulls; keep-alive comments every
//! `SSE_KEEPALIVE_MS`; the response ends after `SSE_MAX_LIFETIME_MS` (the
//! client's `Last-Event-ID` resumes every stream); a dropped socket is
//! reopened from that stream's last offset.

use super::bridge::{Listener, Msg};
use super::{access, convert, BINDING};
use crate::engine::bridge::MORE;
use crate::engine::config::Config;
use crate::protocol::error::ProtocolError;
use crate::protocol::headers as h;
use crate::protocol::multi::{self, Named};
use crate::protocol::path::StreamPath;
use futures_util::future::{join_all, select, select_all, Either};
use futures_util::stream;
use js_sys::Uint8Array;
use std::time::Duration;
use wasm_bindgen::JsValue;
use worker::{Env, Headers, Method, Request, RequestInit, Response, ResponseBody, Result};

fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

/// One stream of the connection.
struct Member {
    path: StreamPath,
    /// The offset after the last frame sent.
    next: String,
    socket: Option<Listener>,
    /// The last frame said more is stored: ask when the client pulls.
    behind: bool,
    /// Closed or gone: nothing more comes.
    done: bool,
}

/// What opening a member's socket gave.
enum Opened {
    Socket(Listener),
    Answer(Response),
}

/// Opens a WebSocket-transport socket to `path`'s object at `offset`.
async fn open(env: &Env, origin: &str, path: &StreamPath, offset: &str) -> Result<Opened> {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair(h::query::OFFSET, offset)
        .append_pair(h::query::LIVE, "ws")
        .finish();
    let url = format!("{origin}{}?{query}", path.url_path());
    let headers = Headers::new();
    headers.set(h::UPGRADE, "websocket")?;
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let req = Request::new_with_init(&url, &init)?;
    let stub = env.durable_object(BINDING)?.get_by_name(path.as_str())?;
    let resp = stub.fetch_with_request(req).await?;
    if resp.status_code() != 101 {
        return Ok(Opened::Answer(resp));
    }
    match resp.websocket() {
        Some(ws) => Ok(Opened::Socket(Listener::new(ws)?)),
        None => Err(worker::Error::RustError(
            "multi: 101 without a socket".into(),
        )),
    }
}

/// The merged response body.
struct Pump {
    env: Env,
    origin: String,
    members: Vec<Member>,
    /// Events to send before reading any socket (the first frames).
    ready: Vec<u8>,
    keepalive_ms: u64,
    closes_at: u64,
}

impl Pump {
    fn id(&self) -> String {
        multi::resume_id(self.members.iter().map(|m| m.next.as_str()))
    }

    /// Turns one socket message of member `i` into bytes to send, if any.
    fn take(&mut self, i: usize, msg: Option<Msg>) -> Option<Vec<u8>> {
        let member = self.members.get_mut(i)?;
        match msg {
            Some(Msg::Frame(data)) => {
                let text = data.as_string()?;
                let head = multi::frame_head(&text)?;
                member.next = head.next_offset;
                member.behind = !head.up_to_date && !head.closed;
                member.done = head.closed;
                let path = member.path.clone();
                multi::event(&path, &text, &self.id())
            }
            // The stream is gone (deleted or expired).
            Some(Msg::Closed(4410)) => {
                member.done = true;
                member.socket = None;
                let path = member.path.clone();
                Some(multi::gone_event(&path, &self.id()))
            }
            // After its closing frame.
            Some(Msg::Closed(1000)) if member.done => {
                member.socket = None;
                None
            }
            // Dropped (the object restarted): reopened on the next turn.
            Some(Msg::Closed(_)) | None => {
                member.socket = None;
                None
            }
        }
    }

    /// Reopens every live member whose socket dropped; `false` if one
    /// cannot be (the client reconnects with `Last-Event-ID`).
    async fn reopen(&mut self) -> bool {
        for i in 0..self.members.len() {
            let Some(m) = self.members.get(i) else {
                continue;
            };
            if m.done || m.socket.is_some() {
                continue;
            }
            let (path, next) = (m.path.clone(), m.next.clone());
            match open(&self.env, &self.origin, &path, &next).await {
                Ok(Opened::Socket(l)) => {
                    if let Some(m) = self.members.get_mut(i) {
                        // Its first frame repeats the position: no data.
                        m.socket = Some(l);
                        m.behind = false;
                    }
                }
                Ok(Opened::Answer(_)) | Err(_) => return false,
            }
        }
        true
    }

    async fn next_chunk(&mut self) -> Option<Vec<u8>> {
        if !self.ready.is_empty() {
            return Some(std::mem::take(&mut self.ready));
        }
        for _ in 0..64 {
            let now = now_ms();
            if now >= self.closes_at || self.members.iter().all(|m| m.done) {
                return None;
            }
            for m in self.members.iter_mut().filter(|m| m.behind) {
                if let Some(s) = &m.socket {
                    let _ = s.ws.send_with_str(MORE);
                }
                m.behind = false;
            }
            if !self.reopen().await {
                return None;
            }
            let wait = self
                .closes_at
                .min(now.saturating_add(self.keepalive_ms))
                .saturating_sub(now);
            let timer = worker::Delay::from(Duration::from_millis(wait));
            let (index, receivers): (Vec<usize>, Vec<_>) = self
                .members
                .iter_mut()
                .enumerate()
                .filter(|(_, m)| !m.done)
                .filter_map(|(i, m)| m.socket.as_mut().map(|s| (i, Box::pin(s.recv()))))
                .unzip();
            if receivers.is_empty() {
                return None;
            }
            let got = match select(select_all(receivers), timer).await {
                Either::Left(((msg, k, _), _)) => Either::Left((msg, k)),
                Either::Right(_) => Either::Right(()),
            };
            match got {
                Either::Left((msg, k)) => {
                    let i = index.get(k).copied().unwrap_or(usize::MAX);
                    if let Some(bytes) = self.take(i, msg) {
                        return Some(bytes);
                    }
                }
                Either::Right(_) if now_ms() < self.closes_at => {
                    return Some(b":\n\n".to_vec());
                }
                Either::Right(_) => return None,
            }
        }
        // Only empty turns (drops): send a keep-alive and go on.
        Some(b":\n\n".to_vec())
    }
}

/// Serves `GET /v1/multi` (see the module doc).
pub async fn sse(env: &Env, req: Request, config: &Config) -> Result<Response> {
    if req.method() != Method::Get {
        return convert::render_error(&ProtocolError::MethodNotAllowed {
            allow: multi::METHODS,
        });
    }
    let url = req.url()?;
    let last_event_id = req.headers().get(h::LAST_EVENT_ID)?;
    let named = match multi::parse(url.query().unwrap_or_default(), last_event_id.as_deref()) {
        Ok(n) => n,
        Err(e) => return convert::render_error(&e),
    };
    let now = now_ms();
    for n in &named {
        if let Err(e) = access::check(env, &req, &url, &n.path, now).await? {
            return convert::render_error(&e);
        }
    }
    let origin = url.origin().ascii_serialization();
    let opened = join_all(
        named
            .iter()
            .map(|Named { path, offset }| open(env, &origin, path, offset)),
    )
    .await;
    let mut members = Vec::with_capacity(named.len());
    for (n, o) in named.into_iter().zip(opened) {
        match o? {
            Opened::Socket(l) => members.push(Member {
                path: n.path,
                next: n.offset,
                socket: Some(l),
                behind: false,
                done: false,
            }),
            // Refused (not found, gone, too many readers, ...): the
            // request as a whole, with the object's reason.
            Opened::Answer(r) => return Ok(r),
        }
    }
    let mut pump = Pump {
        env: env.clone(),
        origin,
        members,
        ready: Vec::new(),
        keepalive_ms: config.sse_keepalive_ms,
        closes_at: now.saturating_add(config.sse_max_lifetime_ms),
    };
    // Every stream's first frame. A stream read from `now` learns its
    // offset from it (its data is empty: it starts at the tail) before any
    // event goes out, so no `id:` says `now`; the others keep the offset
    // they were asked from until their own event, so each `id:` names only
    // what the client has.
    let mut first = Vec::with_capacity(pump.members.len());
    for i in 0..pump.members.len() {
        let msg = match pump.members.get_mut(i).and_then(|m| m.socket.as_mut()) {
            Some(s) => s.recv().await,
            None => None,
        };
        if let (Some(m), Some(Msg::Frame(data))) = (pump.members.get_mut(i), &msg) {
            if m.next == "now" {
                if let Some(head) = data.as_string().and_then(|t| multi::frame_head(&t)) {
                    m.next = head.next_offset;
                }
            }
        }
        first.push(msg);
    }
    for (i, msg) in first.into_iter().enumerate() {
        if let Some(bytes) = pump.take(i, msg) {
            pump.ready.extend_from_slice(&bytes);
        }
    }
    if pump.members.iter().any(|m| m.socket.is_none() && !m.done) {
        return convert::render_error(&ProtocolError::Unavailable);
    }
    let body = stream::unfold(pump, |mut pump| async move {
        let chunk = pump.next_chunk().await?;
        let js: JsValue = Uint8Array::from(chunk.as_slice()).into();
        Some((Ok::<JsValue, JsValue>(js), pump))
    });
    let body = wasm_streams::ReadableStream::from_stream(body).into_raw();
    let headers = Headers::new();
    headers.set(h::CONTENT_TYPE, "text/event-stream")?;
    headers.set(h::CACHE_CONTROL, crate::protocol::cache::SSE)?;
    Ok(Response::from_body(ResponseBody::Stream(body))?
        .with_status(200)
        .with_headers(headers))
}
