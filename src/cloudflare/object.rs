//! The stream's Durable Object: one per stream path. Its `fetch` follows
//! the fixed rhythm (convert, load, engine, persist, render) and its alarm
//! frees an expired stream's storage (PROTOCOL.md §5.1 TTL/expiry).

use super::convert;
use super::sql_store::SqlStore;
use crate::engine::config::Config;
use crate::engine::service::{self, Ctx};
use std::cell::Cell;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

#[durable_object]
pub struct StreamObject {
    state: State,
    env: Env,
    store: SqlStore,
    schema_ready: Cell<bool>,
}

fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

/// A fresh stream id: creation time and 32 random bits, hex.
fn new_stream_id(now: u64) -> String {
    let rand = (js_sys::Math::random() * 4_294_967_296.0) as u32;
    format!("{now:x}{rand:08x}")
}

impl StreamObject {
    fn config(&self) -> Config {
        Config::from_lookup(|name| self.env.var(name).ok().map(|v| v.to_string()))
    }

    fn ready(&self) -> Result<()> {
        if !self.schema_ready.get() {
            self.store.ensure_schema()?;
            self.schema_ready.set(true);
        }
        Ok(())
    }

    /// `GET /__test/stream/<path>`: stored row count and pending alarm.
    async fn test_stats(&self) -> Result<Response> {
        self.ready()?;
        let alarm = self.state.storage().get_alarm().await?;
        let body = serde_json::json!({ "chunkRows": self.store.chunk_rows()?, "alarm": alarm });
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
}

impl DurableObject for StreamObject {
    fn new(state: State, env: Env) -> Self {
        let store = SqlStore::new(state.storage());
        StreamObject {
            state,
            env,
            store,
            schema_ready: Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        if req.path().starts_with(super::TEST_PREFIX) && super::test_routes_enabled(&self.env) {
            return self.test_stats().await;
        }
        let config = self.config();
        let body = match convert::read_body(&mut req, config.max_append_bytes).await {
            Ok(b) => b,
            Err(e) => return convert::render_error(&e.protocol()),
        };
        let request = convert::to_neutral(&req, body)?;
        self.ready()?;
        let now = now_ms();
        let id = new_stream_id(now);
        let ctx = Ctx {
            now_ms: now,
            new_stream_id: &id,
            config: &config,
        };
        let outcome = service::handle(&self.store, &request, &ctx)?;
        if let Some(deadline) = outcome.alarm {
            self.arm(deadline).await?;
        }
        convert::render(outcome.response)
    }

    async fn alarm(&self) -> Result<Response> {
        self.ready()?;
        if let Some(next) = service::on_alarm(&self.store, now_ms())? {
            self.arm(next).await?;
        }
        Response::empty()
    }
}
