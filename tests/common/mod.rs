//! A host harness: the engine's service over the in-memory store, with a
//! hand-advanced clock (no sleeps, no sockets).
#![allow(dead_code)]

use durable_streams_edge::engine::config::Config;
use durable_streams_edge::engine::ctx::Ctx;
use durable_streams_edge::engine::live::{LongPoll, SseState, SseStep};
use durable_streams_edge::engine::outcome::Action;
use durable_streams_edge::engine::request::{Method, Request};
use durable_streams_edge::engine::response::Response;
use durable_streams_edge::engine::store::MemStore;
use durable_streams_edge::engine::{lifecycle, resume, service};

pub const URL: &str = "http://127.0.0.1:8787/v1/stream/test";
pub const T0: u64 = 1_760_000_000_000;

pub struct Harness {
    pub store: MemStore,
    pub now: u64,
    pub config: Config,
    ids: u64,
    /// Deadlines the service asked the alarm to cover.
    pub alarms: Vec<u64>,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_config(Config::default())
    }

    pub fn with_config(config: Config) -> Harness {
        Harness {
            store: MemStore::new(),
            now: T0,
            config,
            ids: 0,
            alarms: Vec::new(),
        }
    }

    pub fn send(&mut self, req: Request) -> Response {
        match self.act(req) {
            Action::Respond(r) => r,
            other => panic!("expected an immediate response, got {other:?}"),
        }
    }

    /// Runs `f` with the store and a fresh per-request context (a new
    /// stream id and random value each time).
    pub fn with_ctx<R>(&mut self, f: impl FnOnce(&MemStore, &Ctx) -> R) -> R {
        self.ids += 1;
        let id = format!("s{}", self.ids);
        let ctx = Ctx {
            now_ms: self.now,
            new_stream_id: &id,
            config: &self.config,
            random: self.ids,
        };
        f(&self.store, &ctx)
    }

    /// The service's action for a request (a response, or a live read to drive).
    pub fn act(&mut self, req: Request) -> Action {
        let outcome = self.with_ctx(|store, ctx| service::handle(store, &req, ctx, &[]).unwrap());
        self.alarms.extend(outcome.alarm);
        outcome.action
    }

    /// A parked long-poll's next step at the current time.
    pub fn resume(&mut self, wait: LongPoll) -> Action {
        self.with_ctx(|store, ctx| resume::resume_long_poll(store, wait, ctx, &[]).unwrap())
    }

    /// An SSE connection's next step at the current time.
    pub fn sse(&mut self, state: &mut SseState, keepalive: bool) -> SseStep {
        self.with_ctx(|store, ctx| resume::sse_next(store, state, ctx, keepalive, &[]).unwrap())
    }

    /// A WebSocket reader's next step at the current time.
    pub fn ws(
        &mut self,
        state: &mut durable_streams_edge::engine::ws::WsState,
    ) -> durable_streams_edge::engine::ws::WsStep {
        self.with_ctx(|store, ctx| resume::ws_next(store, state, ctx, &[]).unwrap())
    }

    pub fn advance(&mut self, ms: u64) {
        self.now += ms;
    }

    /// Fires the alarm as the object would; returns the next deadline.
    pub fn fire_alarm(&mut self) -> Option<u64> {
        lifecycle::on_alarm(&self.store, self.now, &self.config).unwrap()
    }
}

pub fn req(method: Method, query: &str) -> Request {
    let url = if query.is_empty() {
        URL.to_string()
    } else {
        format!("{URL}?{query}")
    };
    Request::new(method, &url)
}

pub fn put(ct: &str) -> Request {
    req(Method::Put, "").with_header("content-type", ct)
}

pub fn post(ct: &str, body: &[u8]) -> Request {
    req(Method::Post, "")
        .with_header("content-type", ct)
        .with_body(body.to_vec())
}

pub fn get(query: &str) -> Request {
    req(Method::Get, query)
}

pub fn next_offset(r: &Response) -> String {
    r.get("stream-next-offset").unwrap().to_string()
}

/// Reads from `offset` until up to date, following `Stream-Next-Offset`.
pub fn read_all(h: &mut Harness, offset: &str) -> (Vec<Vec<u8>>, String) {
    let mut bodies = Vec::new();
    let mut offset = offset.to_string();
    for _ in 0..10_000 {
        let r = h.send(get(&format!("offset={offset}")));
        assert_eq!(
            r.status,
            200,
            "read at {offset}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
        bodies.push(r.body.clone());
        offset = next_offset(&r);
        if r.get("stream-up-to-date") == Some("true") {
            return (bodies, offset);
        }
    }
    panic!("read never reached the tail");
}
