//! Long-polls through the bridge (PROTOCOL.md §5.7; `bridge.rs`): the
//! Worker holds the client's request and waits on a hibernatable socket to
//! the stream's object, which sends the answer for the timeout as soon as
//! the reader waits and the answer itself when the stream changes. The
//! Worker owns the deadline (`LONG_POLL_TIMEOUT_MS`) and the answer's
//! `Stream-Cursor` (§8.1: from the client's cursor and the clock), so the
//! object computes one answer per distinct position, not per reader, and is
//! never woken for a timeout. If the socket drops, the Worker asks again
//! from the offset the reader waits at. Identical long-polls are collapsed
//! before they get here (`edge_cache.rs`): one socket serves them all.
//! When the client goes away (`Request.signal`, compatibility flag
//! `enable_request_signal`), the Worker closes the socket at once.

use super::bridge::{open, Kind, Msg, Opened};
use super::convert;
use crate::engine::bridge::{self as frame, Answer, AnswerHead};
use crate::engine::config::Config;
use crate::protocol::cursor;
use crate::protocol::error::ProtocolError;
use crate::protocol::headers as h;
use futures_channel::oneshot;
use futures_util::future::{select, Either};
use js_sys::Uint8Array;
use std::time::Duration;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use worker::worker_sys::web_sys;
use worker::{Env, Headers, Response, Result, Url};

/// Reconnects after dropped sockets before the long-poll gives up (503).
const MAX_OPENS: usize = 4;

fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

fn js_err(e: wasm_bindgen::JsValue) -> worker::Error {
    worker::Error::JsError(format!("{e:?}"))
}

/// An answer frame, kept as received (its body stays a JavaScript buffer).
struct Received {
    head: AnswerHead,
    message: Uint8Array,
}

fn receive(data: &wasm_bindgen::JsValue) -> Option<Received> {
    if !data.is_instance_of::<js_sys::ArrayBuffer>() {
        return None;
    }
    let message = Uint8Array::new(data);
    // The head is small: status and a few headers.
    let start = message
        .subarray(0, message.length().min(16 * 1024))
        .to_vec();
    let head = frame::parse_answer(&start)?;
    Some(Received { head, message })
}

/// The `Stream-Cursor` for a client that sent `client` (§8.1).
pub fn fresh_cursor(client: Option<&str>, interval_s: u64) -> String {
    let random = (js_sys::Math::random() * 9_007_199_254_740_992.0) as u64;
    cursor::next(now_ms(), interval_s, client, random)
}

/// The HTTP response for an answer frame, with the cursor this client gets.
fn render(answer: &Received, cursor: Option<&str>, interval_s: u64) -> Result<Response> {
    let headers = web_sys::Headers::new().map_err(js_err)?;
    for (name, value) in &answer.head.headers {
        if name == h::STREAM_CURSOR {
            let fresh = fresh_cursor(cursor, interval_s);
            headers.append(name, &fresh).map_err(js_err)?;
        } else {
            headers.append(name, value).map_err(js_err)?;
        }
    }
    let init = web_sys::ResponseInit::new();
    init.set_status(answer.head.status);
    init.set_headers(&headers);
    let len = answer.message.length();
    let at = u32::try_from(answer.head.body_at).unwrap_or(len).min(len);
    let r = if at < len && !matches!(answer.head.status, 204 | 304) {
        let body = answer.message.subarray(at, len);
        web_sys::Response::new_with_opt_buffer_source_and_init(Some(body.unchecked_ref()), &init)
    } else {
        web_sys::Response::new_with_opt_buffer_source_and_init(None, &init)
    };
    Ok(Response::from(r.map_err(js_err)?))
}

/// `url` with its offset replaced by `offset`.
fn at_offset(url: &Url, offset: &str) -> Url {
    let mut url = url.clone();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != h::query::OFFSET)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair(h::query::OFFSET, offset);
    url
}

/// Resolves when `signal` aborts (the client went away); never without one.
struct Gone {
    rx: Option<oneshot::Receiver<()>>,
    _on_abort: Option<Closure<dyn FnMut()>>,
}

impl Gone {
    fn new(signal: Option<web_sys::AbortSignal>) -> Gone {
        let Some(signal) = signal.filter(|s| !s.aborted()) else {
            let rx = None;
            return Gone {
                rx,
                _on_abort: None,
            };
        };
        let (tx, rx) = oneshot::channel();
        let mut tx = Some(tx);
        let on_abort = Closure::<dyn FnMut()>::new(move || {
            if let Some(tx) = tx.take() {
                let _ = tx.send(());
            }
        });
        signal.set_onabort(Some(on_abort.as_ref().unchecked_ref()));
        Gone {
            rx: Some(rx),
            _on_abort: Some(on_abort),
        }
    }

    async fn wait(&mut self) {
        match self.rx.as_mut() {
            Some(rx) => {
                let _ = rx.await;
            }
            None => futures_util::future::pending::<()>().await,
        }
    }
}

/// Serves a long-poll read of `stream` (`url`: already checked, without
/// credentials) through a bridge socket; `signal` is the client's request's.
pub async fn long_poll(
    env: &Env,
    stream: &str,
    url: Url,
    config: &Config,
    signal: Option<web_sys::AbortSignal>,
) -> Result<Response> {
    let mut gone = Gone::new(signal);
    let deadline = now_ms().saturating_add(config.long_poll_timeout_ms);
    let client_cursor = url
        .query_pairs()
        .find(|(k, _)| k == h::query::CURSOR)
        .map(|(_, v)| v.into_owned());
    let cursor = client_cursor.as_deref();
    let interval = config.cursor_interval_s;
    let mut url = url;
    let mut at_timeout: Option<Received> = None;
    for _ in 0..MAX_OPENS {
        let mut socket = match open(env, stream, &url, &Headers::new(), Kind::LongPoll).await? {
            Opened::Socket(l, _) => l,
            // Answered at once: data, a closed stream, an error.
            Opened::Answer(r) => return Ok(r),
        };
        loop {
            let wait = deadline.saturating_sub(now_ms());
            let timer = worker::Delay::from(Duration::from_millis(wait));
            let left = std::pin::pin!(gone.wait());
            let timer = select(timer, left);
            match select(std::pin::pin!(socket.recv()), timer).await {
                Either::Left((Some(Msg::Frame(data)), _)) => match receive(&data) {
                    Some(r) if r.head.kind == Answer::Now => return render(&r, cursor, interval),
                    Some(r) => at_timeout = Some(r),
                    None => {}
                },
                // Dropped (the object restarted): ask again.
                Either::Left((Some(Msg::Closed(_)), _)) | Either::Left((None, _)) => break,
                // The client left: nobody reads the answer (the socket
                // closes as it is dropped).
                Either::Right((Either::Right(_), _)) => {
                    return convert::render_error(&ProtocolError::Unavailable);
                }
                Either::Right(_) => {
                    return match &at_timeout {
                        Some(r) => render(r, cursor, interval),
                        None => convert::render_error(&ProtocolError::Unavailable),
                    };
                }
            }
        }
        // From the offset the reader waits at (a client's `now` resolved).
        if let Some(next) = at_timeout.as_ref().and_then(|r| {
            r.head
                .headers
                .iter()
                .find(|(n, _)| n == h::STREAM_NEXT_OFFSET)
                .map(|(_, v)| v.clone())
        }) {
            url = at_offset(&url, &next);
        }
        if now_ms() >= deadline {
            break;
        }
    }
    match &at_timeout {
        Some(r) if now_ms() >= deadline => render(r, cursor, interval),
        _ => convert::render_error(&ProtocolError::Unavailable),
    }
}
