//! The stream's Durable Object: one per stream path. `fetch` follows the
//! fixed rhythm (convert, load, engine, persist, render); live reads park in
//! [`Live`] and resume through the engine; fork steps talk to other objects
//! through [`forks`]; the alarm delivers owed messages, frees an expired
//! stream's storage (PROTOCOL.md §5.1) and wakes its readers.

use super::convert;
use super::forks::{self, Refused};
use super::live::{Live, Woke};
use super::sql_store::SqlStore;
use crate::engine::config::Config;
use crate::engine::fork::Acquire;
use crate::engine::live::{LongPoll, SseState, SseStep};
use crate::engine::request::Request as NeutralRequest;
use crate::engine::response::Response as Neutral;
use crate::engine::service::{self, Action, Ctx};
use crate::engine::state::Chunk;
use crate::engine::store::{Commit, Outgoing, OutgoingKind, Store};
use crate::engine::wire;
use crate::protocol::error::{Invalid, ProtocolError};
use futures_util::stream;
use std::cell::Cell;
use std::rc::Rc;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

/// Test-only faults (`POST /__test/stream/<path>?fault=…`, only with
/// `TEST_ROUTES=1`), to exercise the fork protocol's failure paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The next fork creation stops right after the source recorded its
    /// reference, as if the object had crashed.
    AfterAcquire,
    /// The next `n` release deliveries fail.
    ReleaseFails(u32),
}

/// What the object's concurrent requests (and SSE bodies that outlive them)
/// share.
struct Shared {
    env: Env,
    /// Read once: variables cannot change without a redeploy, which
    /// restarts the object.
    config: Config,
    store: SqlStore,
    live: Rc<Live>,
    schema_ready: Cell<bool>,
    fault: Cell<Option<Fault>>,
    /// Client requests served (the edge-cache tests observe it).
    requests: Cell<u64>,
}

#[durable_object]
pub struct StreamObject {
    state: State,
    shared: Rc<Shared>,
}

fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

fn random_u64() -> u64 {
    (js_sys::Math::random() * 9_007_199_254_740_992.0) as u64
}

/// A fresh stream id: creation time and 32 random bits, hex.
fn new_stream_id(now: u64) -> String {
    format!("{now:x}{:08x}", random_u64() as u32)
}

/// How many times a request may ask for inherited chunks before giving up
/// (each answer normally satisfies it at once).
const MAX_INHERITED_FETCHES: usize = 4;

impl Shared {
    fn ready(&self) -> Result<()> {
        if !self.schema_ready.get() {
            self.store.ensure_schema()?;
            self.schema_ready.set(true);
        }
        Ok(())
    }

    fn ctx<'a>(&'a self, now: u64, id: &'a str) -> Ctx<'a> {
        Ctx {
            now_ms: now,
            new_stream_id: id,
            config: &self.config,
            random: random_u64(),
        }
    }

    /// Inherited chunks from `source`, or the response to give instead.
    async fn inherited(
        &self,
        source: &str,
        from: u64,
        to: u64,
    ) -> std::result::Result<Vec<Chunk>, Neutral> {
        match forks::chunks(&self.env, source, from, to).await {
            Ok(c) if c.first().is_some_and(|c| c.start <= from && c.end() > from) => Ok(c),
            Ok(_) => Err(Neutral::error(&ProtocolError::Unavailable)),
            Err(Refused(r)) => Err(r),
        }
    }
}

/// An SSE connection's body: events from the engine, parked between them,
/// with keep-alive control events and a bounded lifetime (§5.8).
struct SsePump {
    shared: Rc<Shared>,
    state: SseState,
    inherited: Vec<Chunk>,
    closes_at: u64,
    done: bool,
    _guard: super::live::SseGuard,
}

impl SsePump {
    async fn next_chunk(&mut self) -> Option<Result<Vec<u8>>> {
        let mut keepalive = false;
        for _ in 0..1_000_000 {
            let now = now_ms();
            if self.done || now >= self.closes_at {
                return None;
            }
            let ctx = self.shared.ctx(now, "");
            match service::sse_next(
                &self.shared.store,
                &mut self.state,
                &ctx,
                keepalive,
                &self.inherited,
            ) {
                Err(e) => {
                    worker::console_error!("sse: {e}");
                    return None;
                }
                Ok(SseStep::End) => return None,
                Ok(SseStep::Emit { bytes, last }) => {
                    self.done = last;
                    return Some(Ok(bytes));
                }
                Ok(SseStep::NeedInherited { source, from, to }) => {
                    self.inherited = self.shared.inherited(&source, from, to).await.ok()?;
                }
                Ok(SseStep::Wait) => {
                    let parked = self.shared.live.park();
                    let keepalive_ms = self.shared.config.sse_keepalive_ms;
                    let until = now.saturating_add(keepalive_ms).min(self.closes_at);
                    keepalive = parked.until(now, until).await == Woke::Timeout;
                }
            }
        }
        None
    }
}

impl StreamObject {
    fn store(&self) -> &SqlStore {
        &self.shared.store
    }

    /// `/__test/stream/<path>`: GET reads the object's internals; POST
    /// `?fault=after-acquire` or `?fault=release-fails&count=N` arms a fault.
    async fn test_route(&self, req: &Request) -> Result<Response> {
        self.shared.ready()?;
        if req.method() == worker::Method::Post {
            let url = req.url()?;
            let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
            let fault = match q.get("fault").map(String::as_str) {
                Some("after-acquire") => Some(Fault::AfterAcquire),
                Some("release-fails") => Some(Fault::ReleaseFails(
                    q.get("count").and_then(|c| c.parse().ok()).unwrap_or(1),
                )),
                _ => None,
            };
            self.shared.fault.set(fault);
            return Response::empty();
        }
        let alarm = self.state.storage().get_alarm().await?;
        let live = &self.shared.live;
        let meta = self.store().meta()?;
        let body = serde_json::json!({
            "chunkRows": self.store().chunk_rows()?,
            "alarm": alarm,
            "parked": live.parked(),
            "sseConnections": live.sse_connections(),
            "refs": self.store().refs()?,
            "outbox": self.store().outbox()?.len(),
            "exists": meta.is_some(),
            "softDeleted": meta.is_some_and(|m| m.soft_deleted),
            // The isolate's wasm heap: linear memory never shrinks, so this is its peak.
            "wasmMemoryBytes": core::arch::wasm32::memory_size::<0>() * 65536,
            "requests": self.shared.requests.get(),
        });
        Response::from_json(&body)
    }

    /// Makes sure the alarm fires no later than `deadline`.
    async fn arm(&self, deadline: u64) -> Result<()> {
        let storage = self.state.storage();
        let current = storage.get_alarm().await?;
        let due = i64::try_from(deadline).unwrap_or(i64::MAX);
        if current.is_none_or(|c| c > due) {
            let at = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(deadline as f64));
            storage.set_alarm(worker::ScheduledTime::new(at)).await?;
        }
        Ok(())
    }

    /// The effects an outcome owes: wake readers, arm the alarm, deliver
    /// queued messages.
    async fn effects(&self, notify: bool, alarm: Option<u64>) -> Result<()> {
        if notify {
            self.shared.live.wake_all();
        }
        if let Some(deadline) = alarm {
            self.arm(deadline).await?;
        }
        if self.store().take_outbox_dirty() {
            self.deliver_outbox().await?;
        }
        Ok(())
    }

    fn release_fault(&self) -> bool {
        match self.shared.fault.get() {
            Some(Fault::ReleaseFails(n)) if n > 0 => {
                self.shared
                    .fault
                    .set((n > 1).then_some(Fault::ReleaseFails(n - 1)));
                true
            }
            _ => false,
        }
    }

    /// Sends every due message (releases, and intents past their grace);
    /// failures are retried by the alarm.
    async fn deliver_outbox(&self) -> Result<()> {
        let now = now_ms();
        for entry in self.store().outbox()? {
            if entry.due_ms > now {
                continue;
            }
            let delivered = !self.release_fault()
                && forks::release(&self.shared.env, &entry.source, &entry.fork_id).await;
            let commit = if delivered {
                Commit::Settle {
                    fork_id: entry.fork_id,
                }
            } else {
                Commit::Send(Outgoing {
                    kind: OutgoingKind::Release,
                    due_ms: now_ms().saturating_add(self.shared.config.fork_retry_ms),
                    ..entry
                })
            };
            self.store().commit(commit)?;
        }
        self.store().take_outbox_dirty();
        if let Some(next) = self.store().outbox()?.iter().map(|e| e.due_ms).min() {
            self.arm(next).await?;
        }
        Ok(())
    }

    /// Parks a long-poll until the stream changes or its deadline passes.
    /// workerd does not tell the object when a long-poll's client goes
    /// away, so an abandoned one stays parked until its deadline (bounded
    /// by `LONG_POLL_TIMEOUT_MS`).
    async fn long_poll(&self, mut wait: LongPoll) -> Result<Response> {
        let mut inherited: Vec<Chunk> = Vec::new();
        let mut fetches = 0;
        loop {
            let ctx = self.shared.ctx(now_ms(), "");
            match service::resume_long_poll(self.store(), wait.clone(), &ctx, &inherited)? {
                Action::LongPoll(w) => {
                    wait = w;
                    let parked = self.shared.live.park();
                    parked.until(now_ms(), wait.deadline).await;
                }
                Action::NeedInherited { source, from, to } if fetches < MAX_INHERITED_FETCHES => {
                    fetches += 1;
                    match self.shared.inherited(&source, from, to).await {
                        Ok(c) => inherited = c,
                        Err(r) => return convert::render(r),
                    }
                }
                Action::Respond(r) => return convert::render(r),
                _ => return convert::render_error(&ProtocolError::Unavailable),
            }
        }
    }

    fn sse(&self, head: Neutral, state: SseState) -> Result<Response> {
        let pump = SsePump {
            shared: Rc::clone(&self.shared),
            closes_at: now_ms().saturating_add(self.shared.config.sse_max_lifetime_ms),
            state,
            inherited: Vec::new(),
            done: false,
            _guard: self.shared.live.sse_guard(),
        };
        let body = stream::unfold(pump, |mut pump| async move {
            let chunk = pump.next_chunk().await?;
            Some((chunk, pump))
        });
        convert::render_stream(head, body)
    }

    /// A client request against this stream.
    async fn public(&self, request: &NeutralRequest) -> Result<Response> {
        self.shared.requests.set(self.shared.requests.get() + 1);
        let now = now_ms();
        let id = new_stream_id(now);
        let mut inherited: Vec<Chunk> = Vec::new();
        for _ in 0..MAX_INHERITED_FETCHES {
            let ctx = self.shared.ctx(now_ms(), &id);
            let outcome = service::handle(self.store(), request, &ctx, &inherited)?;
            self.effects(outcome.notify, outcome.alarm).await?;
            match outcome.action {
                Action::Respond(r) => return convert::render(r),
                Action::LongPoll(wait) => return self.long_poll(wait).await,
                Action::Sse { head, state } => return self.sse(head, state),
                Action::NeedInherited { source, from, to } => {
                    match self.shared.inherited(&source, from, to).await {
                        Ok(c) => inherited = c,
                        Err(r) => return convert::render(r),
                    }
                }
                Action::Fork { source, acquire } => {
                    return self.create_fork(request, &source, acquire).await
                }
            }
        }
        convert::render_error(&ProtocolError::Unavailable)
    }

    /// Creates a fork of `source` (the protocol in [`forks`]).
    async fn create_fork(
        &self,
        request: &NeutralRequest,
        source: &str,
        acquire: Acquire,
    ) -> Result<Response> {
        let grace = self.shared.config.fork_grace_ms;
        let due = now_ms().saturating_add(grace);
        self.store()
            .commit(service::fork_intent(source, &acquire.fork_id, due))?;
        self.store().take_outbox_dirty();
        self.arm(due).await?;
        let acquired = match forks::acquire(&self.shared.env, source, &acquire).await {
            Ok(a) => a,
            Err(Ok(Refused(r))) => {
                self.store().commit(Commit::Settle {
                    fork_id: acquire.fork_id,
                })?;
                return convert::render(r);
            }
            Err(Err(e)) => {
                worker::console_error!("fork acquire at {source}: {e}");
                service::abandon_fork(self.store(), source, &acquire.fork_id, now_ms())?;
                self.deliver_outbox().await?;
                return convert::render_error(&ProtocolError::Unavailable);
            }
        };
        if self.shared.fault.get() == Some(Fault::AfterAcquire) {
            self.shared.fault.set(None);
            return convert::render(Neutral::new(500).finish());
        }
        let ctx = self.shared.ctx(now_ms(), &acquire.fork_id);
        let (outcome, committed) = service::finish_fork(self.store(), request, &ctx, &acquired)?;
        if !committed {
            service::abandon_fork(self.store(), source, &acquire.fork_id, now_ms())?;
        }
        self.effects(outcome.notify || committed, outcome.alarm)
            .await?;
        match outcome.action {
            Action::Respond(r) => convert::render(r),
            _ => convert::render_error(&ProtocolError::Unavailable),
        }
    }

    /// The source's side of the fork protocol.
    async fn internal(&self, req: &Request, request: &NeutralRequest) -> Result<Response> {
        let path = req.path();
        let mut inherited: Vec<Chunk> = Vec::new();
        for _ in 0..MAX_INHERITED_FETCHES {
            let ctx = self.shared.ctx(now_ms(), "");
            let action = match path.as_str() {
                forks::ACQUIRE => match wire::decode_acquire(&request.body) {
                    Some(a) => service::acquire(self.store(), &a, &ctx, &inherited)?,
                    None => Action::Respond(Neutral::error(&Invalid::Body.into())),
                },
                forks::CHUNKS => {
                    let url = req.url()?;
                    let get = |k: &str| {
                        url.query_pairs()
                            .find(|(n, _)| n == k)
                            .and_then(|(_, v)| v.parse::<u64>().ok())
                    };
                    match (get("from"), get("to")) {
                        (Some(from), Some(to)) => {
                            service::chunks(self.store(), from, to, &ctx, &inherited)?
                        }
                        _ => Action::Respond(Neutral::error(&Invalid::Offset.into())),
                    }
                }
                forks::RELEASE => match wire::decode_release(&request.body) {
                    Some(fork_id) => {
                        let r = service::release(self.store(), &fork_id, &ctx)?;
                        self.effects(true, None).await?;
                        Action::Respond(r)
                    }
                    None => Action::Respond(Neutral::error(&Invalid::Body.into())),
                },
                _ => Action::Respond(Neutral::error(&ProtocolError::NotFound)),
            };
            match action {
                Action::NeedInherited { source, from, to } => {
                    match self.shared.inherited(&source, from, to).await {
                        Ok(c) => inherited = c,
                        Err(r) => return convert::render(r),
                    }
                }
                Action::Respond(r) => return convert::render(r),
                _ => break,
            }
        }
        convert::render_error(&ProtocolError::Unavailable)
    }
}

impl DurableObject for StreamObject {
    fn new(state: State, env: Env) -> Self {
        let config = Config::from_lookup(|name| env.var(name).ok().map(|v| v.to_string()));
        let shared = Rc::new(Shared {
            config,
            env,
            store: SqlStore::new(state.storage()),
            live: Rc::new(Live::default()),
            schema_ready: Cell::new(false),
            fault: Cell::new(None),
            requests: Cell::new(0),
        });
        StreamObject { state, shared }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let path = req.path();
        if path.starts_with(super::TEST_PREFIX) && super::test_routes_enabled(&self.shared.env) {
            return self.test_route(&req).await;
        }
        let body = match convert::read_body(&mut req, self.shared.config.max_append_bytes).await {
            Ok(b) => b,
            Err(e) => return convert::render_error(&e.protocol()),
        };
        let request = convert::to_neutral(&req, body)?;
        self.shared.ready()?;
        if path.starts_with(forks::PREFIX) {
            return self.internal(&req, &request).await;
        }
        self.public(&request).await
    }

    async fn alarm(&self) -> Result<Response> {
        self.shared.ready()?;
        self.deliver_outbox().await?;
        let next = service::on_alarm(self.store(), now_ms())?;
        // An expired stream is gone (or soft-deleted): its readers re-check.
        self.effects(true, next).await?;
        Response::empty()
    }
}
