//! The stream's Durable Object: one per stream path. `fetch` follows the
//! fixed rhythm (convert, load, engine, persist, render); live reads park in
//! [`super::live::Live`] and resume through the engine; fork steps talk to
//! other objects ([`super::fork_object`]); the alarm delivers owed messages,
//! frees an expired stream's storage (PROTOCOL.md §5.1) and wakes its
//! readers. A platform failure is answered with one rendered `503`, never a
//! bare 500.

use super::convert;
use super::faults::Faults;
use super::live::Live;
use super::shared::{now_ms, Shared, Step};
use super::sql_store::SqlStore;
use super::{bridge, forks, sockets, sse_pump, test_routes};
use crate::engine::config::Config;
use crate::engine::lifecycle;
use crate::engine::live::LongPoll;
use crate::engine::outcome::{Action, Outcome};
use crate::engine::request::{Method, Request as NeutralRequest};
use crate::engine::resume;
use crate::engine::service;
use crate::engine::socket_reader::Reader;
use crate::engine::state::Chunk;
use crate::protocol::error::ProtocolError;
use std::cell::Cell;
use std::rc::Rc;
use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, State, WebSocket,
    WebSocketIncomingMessage,
};

#[durable_object]
pub struct StreamObject {
    shared: Rc<Shared>,
}

thread_local! {
    /// Stream objects constructed in this isolate (the tests observe an
    /// eviction as a construction).
    static CONSTRUCTED: Cell<u64> = const { Cell::new(0) };
}

pub fn constructed() -> u64 {
    CONSTRUCTED.with(Cell::get)
}

/// The canonical stream name in a request's absolute URL.
fn stream_path(url: &str) -> Option<String> {
    let u = worker::Url::parse(url).ok()?;
    crate::protocol::path::StreamPath::from_url_path(u.path())
        .ok()
        .flatten()
        .map(|p| p.as_str().to_string())
}

/// A fresh stream id: creation time and 32 random bits, hex.
fn new_stream_id(now: u64) -> String {
    format!("{now:x}{:08x}", super::shared::random_u64() as u32)
}

impl StreamObject {
    /// Parks a long-poll until the stream changes or its deadline passes.
    /// workerd does not tell the object when a long-poll's client goes
    /// away, so an abandoned one stays parked until its deadline (bounded
    /// by `LONG_POLL_TIMEOUT_MS`).
    async fn long_poll(&self, mut wait: LongPoll) -> Result<Response> {
        let shared = &self.shared;
        let mut inherited: Vec<Chunk> = Vec::new();
        loop {
            let current = wait.clone();
            let action = shared
                .with_inherited(&mut inherited, |inherited| {
                    let ctx = shared.ctx(now_ms(), "");
                    Ok(
                        match resume::resume_long_poll(
                            &shared.store,
                            current.clone(),
                            &ctx,
                            inherited,
                        )? {
                            Action::NeedInherited(n) => Step::Need(n),
                            other => Step::Done(other),
                        },
                    )
                })
                .await?;
            match action {
                Ok(Action::LongPoll(w)) => {
                    wait = w;
                    // Nothing inherited is needed while waiting at the tail.
                    inherited = Vec::new();
                    let parked = shared.live.park();
                    parked.until(now_ms(), wait.deadline).await;
                }
                Ok(Action::Respond(r)) | Err(r) => return convert::render(r),
                Ok(_) => return convert::render_error(&ProtocolError::Unavailable),
            }
        }
    }

    /// A client request against this stream.
    async fn public(&self, request: &NeutralRequest) -> Result<Response> {
        let shared = &self.shared;
        shared.requests.set(shared.requests.get() + 1);
        let id = new_stream_id(now_ms());
        let changes = !matches!(request.method, Method::Get | Method::Head);
        let before = if changes {
            shared.tail_before()
        } else {
            String::new()
        };
        let mut inherited: Vec<Chunk> = Vec::new();
        let outcome = shared
            .with_inherited(&mut inherited, |inherited| {
                let ctx = shared.ctx(now_ms(), &id);
                let o = service::handle(&shared.store, request, &ctx, inherited)?;
                Ok(match o.action {
                    Action::NeedInherited(n) => Step::Need(n),
                    _ => Step::Done(o),
                })
            })
            .await?;
        let Outcome {
            action,
            alarm,
            notify,
        } = match outcome {
            Ok(o) => o,
            Err(r) => return convert::render(r),
        };
        shared.effects(notify, alarm).await;
        if notify {
            shared.prune_producers();
        }
        if notify && changes {
            if let Some(path) = stream_path(&request.url) {
                shared.sync_subscriptions(&path, &before).await;
            }
        }
        let bridged = bridge::requested(request);
        let max_readers = shared.config.max_readers_per_stream;
        let crowded = shared.live.readers() >= max_readers;
        match action {
            Action::Respond(r) => {
                if let Some(ms) = shared.faults.slow_read_ms() {
                    worker::Delay::from(std::time::Duration::from_millis(ms)).await;
                }
                convert::render(r)
            }
            Action::LongPoll(_) | Action::Sse { .. } | Action::Ws(_) if crowded => {
                convert::render_error(&ProtocolError::TooManyReaders { limit: max_readers })
            }
            // The Worker's bridge: the long-poll waits as a hibernatable socket.
            Action::LongPoll(wait) if bridged == Some(bridge::Kind::LongPoll) => {
                shared.open_socket(Reader::LongPoll(wait), None).await
            }
            Action::LongPoll(wait) => {
                let _reader = shared.live.long_poll_guard();
                self.long_poll(wait).await
            }
            // The Worker's bridge: the SSE reader waits as a hibernatable socket.
            Action::Sse { head, state } if bridged == Some(bridge::Kind::Sse) => {
                shared.open_socket(Reader::Sse(state), Some(head)).await
            }
            Action::Sse { head, state } => sse_pump::respond(shared, head, state),
            Action::Ws(start) => shared.open_socket(Reader::Client(start), None).await,
            Action::Fork { source, acquire } => shared.create_fork(request, &source, acquire).await,
            Action::NeedInherited(_) => convert::render_error(&ProtocolError::Unavailable),
        }
    }

    async fn route(&self, mut req: Request) -> Result<Response> {
        let shared = &self.shared;
        let path = req.path();
        if path.starts_with(super::TEST_PREFIX) && super::test_routes_enabled(&shared.env) {
            return test_routes::handle(shared, &req).await;
        }
        let config = &shared.config;
        // `_held` keeps the body's bytes reserved until this request ends.
        let (body, _held) = match convert::read_body(
            &mut req,
            config.max_append_bytes,
            config.max_inflight_append_bytes,
        )
        .await
        {
            Ok(b) => b,
            Err(e) => return convert::render_error(&e.protocol()),
        };
        let request = convert::to_neutral(&req, body)?;
        shared.ready()?;
        shared.recover().await;
        if path == super::sub_calls::LINK {
            return shared.sub_link(&request.body);
        }
        if path.starts_with(forks::PREFIX) {
            return shared.serve_fork(&req, &request).await;
        }
        self.public(&request).await
    }
}

impl DurableObject for StreamObject {
    fn new(state: State, env: Env) -> Self {
        CONSTRUCTED.with(|c| c.set(c.get() + 1));
        let config = Config::from_lookup(|name| env.var(name).ok().map(|v| v.to_string()));
        let shared = Rc::new_cyclic(|me| Shared {
            me: me.clone(),
            config,
            env,
            store: SqlStore::new(state.storage()),
            state,
            live: Rc::new(Live::default()),
            schema_ready: Cell::new(false),
            pending_alarm: Cell::new(None),
            faults: Faults::default(),
            requests: Cell::new(0),
            last_prune_ms: Cell::new(0),
            fanning: Cell::new(false),
            socket_count: Cell::new(None),
            fan_again: Cell::new(false),
            sub_tables_ready: Cell::new(false),
        });
        StreamObject { shared }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        if !req.path().starts_with(super::TEST_PREFIX) && self.shared.faults.throw_fault() {
            // The platform failing this request: the caller's stub throws.
            return Err(worker::Error::RustError("test fault: object throws".into()));
        }
        match self.route(req).await {
            Ok(r) => Ok(r),
            Err(e) => {
                worker::console_error!("stream object: {e}");
                convert::render_error(&ProtocolError::Unavailable)
            }
        }
    }

    /// A reader asks for its next batch with `more`; a text `ping` gets
    /// `pong`; anything else is ignored.
    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> Result<()> {
        if let WebSocketIncomingMessage::String(text) = message {
            match text.as_str() {
                crate::engine::bridge::MORE => {
                    let shared = &self.shared;
                    if shared.ready().is_ok() {
                        shared.more(&ws).await;
                    }
                }
                "ping" => {
                    let _ = ws.send_with_str("pong");
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        code: usize,
        _reason: String,
        _was_clean: bool,
    ) -> Result<()> {
        sockets::closed(&ws, code);
        self.shared.socket_closed();
        Ok(())
    }

    async fn websocket_error(&self, ws: WebSocket, error: worker::Error) -> Result<()> {
        worker::console_log!("reader socket error: {error}");
        let _ = ws.close(Some(1011), Some("error"));
        self.shared.socket_closed();
        Ok(())
    }

    async fn alarm(&self) -> Result<Response> {
        let shared = &self.shared;
        shared.ready()?;
        shared.recover().await;
        shared.deliver_outbox().await?;
        shared.prune_producers();
        let next = lifecycle::on_alarm(&shared.store, now_ms(), &shared.config)?;
        shared.sync_owed().await;
        // An expired stream is gone (or soft-deleted): its readers re-check.
        shared.effects(true, next).await;
        Response::empty()
    }
}
