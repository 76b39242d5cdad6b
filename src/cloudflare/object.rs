//! The stream's Durable Object: one per stream path. `fetch` follows the
//! fixed rhythm (convert, load, engine, persist, render); live reads park in
//! [`Live`] and resume through the engine; the alarm frees an expired
//! stream's storage (PROTOCOL.md §5.1) and wakes its readers.

use super::convert;
use super::live::{Live, Woke};
use super::sql_store::SqlStore;
use crate::engine::config::Config;
use crate::engine::live::{SseState, SseStep};
use crate::engine::response::Response as Neutral;
use crate::engine::service::{self, Action, Ctx};
use futures_util::stream;
use std::cell::Cell;
use std::rc::Rc;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

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

impl Shared {
    fn ready(&self) -> Result<()> {
        if !self.schema_ready.get() {
            self.store.ensure_schema()?;
            self.schema_ready.set(true);
        }
        Ok(())
    }
}

/// An SSE connection's body: events from the engine, parked between them,
/// with keep-alive control events and a bounded lifetime (§5.8).
struct SsePump {
    shared: Rc<Shared>,
    config: Config,
    state: SseState,
    closes_at: u64,
    done: bool,
    _guard: super::live::SseGuard,
}

impl SsePump {
    async fn next_chunk(&mut self) -> Option<Result<Vec<u8>>> {
        let mut keepalive = false;
        loop {
            let now = now_ms();
            if self.done || now >= self.closes_at {
                return None;
            }
            let ctx = Ctx {
                now_ms: now,
                new_stream_id: "",
                config: &self.config,
                random: random_u64(),
            };
            match service::sse_next(&self.shared.store, &mut self.state, &ctx, keepalive) {
                Err(e) => {
                    worker::console_error!("sse: {e}");
                    return None;
                }
                Ok(SseStep::End) => return None,
                Ok(SseStep::Emit { bytes, last }) => {
                    self.done = last;
                    return Some(Ok(bytes));
                }
                Ok(SseStep::Wait) => {
                    let parked = self.shared.live.park();
                    let until = now
                        .saturating_add(self.config.sse_keepalive_ms)
                        .min(self.closes_at);
                    keepalive = parked.until(now, until).await == Woke::Timeout;
                }
            }
        }
    }
}

impl StreamObject {
    /// `GET /__test/stream/<path>`: stored rows, pending alarm, live readers.
    async fn test_stats(&self) -> Result<Response> {
        self.shared.ready()?;
        let alarm = self.state.storage().get_alarm().await?;
        let live = &self.shared.live;
        let body = serde_json::json!({
            "chunkRows": self.shared.store.chunk_rows()?,
            "alarm": alarm,
            "parked": live.parked(),
            "sseConnections": live.sse_connections(),
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

    /// Parks a long-poll until the stream changes or its deadline passes.
    /// workerd does not tell the object when a long-poll's client goes
    /// away, so an abandoned one stays parked until its deadline (bounded
    /// by `LONG_POLL_TIMEOUT_MS`).
    async fn long_poll(
        &self,
        config: &Config,
        mut wait: crate::engine::live::LongPoll,
    ) -> Result<Response> {
        loop {
            let parked = self.shared.live.park();
            parked.until(now_ms(), wait.deadline).await;
            let now = now_ms();
            let ctx = Ctx {
                now_ms: now,
                new_stream_id: "",
                config,
                random: random_u64(),
            };
            match service::resume_long_poll(&self.shared.store, wait, &ctx)? {
                Action::LongPoll(w) => wait = w,
                Action::Respond(r) => return convert::render(r),
                Action::Sse { .. } => return convert::render(Neutral::new(500).finish()),
            }
        }
    }

    fn sse(&self, config: Config, head: Neutral, state: SseState) -> Result<Response> {
        let pump = SsePump {
            shared: Rc::clone(&self.shared),
            closes_at: now_ms().saturating_add(config.sse_max_lifetime_ms),
            config,
            state,
            done: false,
            _guard: self.shared.live.sse_guard(),
        };
        let body = stream::unfold(pump, |mut pump| async move {
            let chunk = pump.next_chunk().await?;
            Some((chunk, pump))
        });
        convert::render_stream(head, body)
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
        });
        StreamObject { state, shared }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        if req.path().starts_with(super::TEST_PREFIX)
            && super::test_routes_enabled(&self.shared.env)
        {
            return self.test_stats().await;
        }
        let config = self.shared.config;
        let body = match convert::read_body(&mut req, config.max_append_bytes).await {
            Ok(b) => b,
            Err(e) => return convert::render_error(&e.protocol()),
        };
        let request = convert::to_neutral(&req, body)?;
        self.shared.ready()?;
        let now = now_ms();
        let id = new_stream_id(now);
        let ctx = Ctx {
            now_ms: now,
            new_stream_id: &id,
            config: &config,
            random: random_u64(),
        };
        let outcome = service::handle(&self.shared.store, &request, &ctx)?;
        if outcome.notify {
            self.shared.live.wake_all();
        }
        if let Some(deadline) = outcome.alarm {
            self.arm(deadline).await?;
        }
        match outcome.action {
            Action::Respond(r) => convert::render(r),
            Action::LongPoll(wait) => self.long_poll(&config, wait).await,
            Action::Sse { head, state } => self.sse(config, head, state),
        }
    }

    async fn alarm(&self) -> Result<Response> {
        self.shared.ready()?;
        let next = service::on_alarm(&self.shared.store, now_ms())?;
        // An expired stream is gone: its readers answer 404 or end.
        self.shared.live.wake_all();
        if let Some(next) = next {
            self.arm(next).await?;
        }
        Response::empty()
    }
}
