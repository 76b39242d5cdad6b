//! What a stream object's concurrent requests (and the SSE bodies that
//! outlive them) share: the environment, the configuration, the store, the
//! live readers, and the one loop that fetches a fork's inherited chunks
//! and calls the engine again with them.

use super::faults::Faults;
use super::forks::{self, Refused};
use super::live::Live;
use super::sql_store::SqlStore;
use crate::engine::config::Config;
use crate::engine::ctx::Ctx;
use crate::engine::fork::Need;
use crate::engine::response::Response as Neutral;
use crate::engine::state::Chunk;
use crate::protocol::error::ProtocolError;
use std::cell::Cell;
use std::rc::Rc;
use worker::{Env, Result, State};

pub struct Shared {
    pub env: Env,
    /// The object's state: its storage and its hibernatable sockets.
    pub state: State,
    /// Read once: variables cannot change without a redeploy, which
    /// restarts the object.
    pub config: Config,
    pub store: SqlStore,
    pub live: Rc<Live>,
    pub schema_ready: Cell<bool>,
    /// An alarm deadline an effect could not set (see `outbox.rs`).
    pub pending_alarm: Cell<Option<u64>>,
    pub faults: Faults,
    /// Client requests served (the edge-cache tests observe it).
    pub requests: Cell<u64>,
    /// When idle producer state was last pruned.
    pub last_prune_ms: Cell<u64>,
    /// A fan-out to the WebSocket readers is running; another change came
    /// in meanwhile (it runs again, never two at once).
    pub fanning: Cell<bool>,
    /// This object's own handle, for work that outlives a request (the
    /// fan-out after an append's answer).
    pub me: std::rc::Weak<Shared>,
    /// Open reader sockets, counted as they open and close (`None` until
    /// first needed after a wake: then counted once from the runtime).
    pub socket_count: Cell<Option<u64>>,
    pub fan_again: Cell<bool>,
    /// The subscription tables exist (created once per object life, not on
    /// every append).
    pub sub_tables_ready: Cell<bool>,
}

pub fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

pub fn random_u64() -> u64 {
    (js_sys::Math::random() * 9_007_199_254_740_992.0) as u64
}

/// How many times one step may ask for inherited chunks before giving up
/// (each answer normally satisfies it at once).
const MAX_INHERITED_FETCHES: usize = 4;

/// One engine step: done, or it needs inherited chunks first.
pub enum Step<T> {
    Done(T),
    Need(Need),
}

impl Shared {
    pub fn ready(&self) -> Result<()> {
        if !self.schema_ready.get() {
            self.store.ensure_schema()?;
            self.schema_ready.set(true);
        }
        Ok(())
    }

    /// Forgets idle producers, at most once per hour (or per producer TTL,
    /// if shorter) in this object's lifetime; bounded work each time.
    pub fn prune_producers(&self) {
        let now = now_ms();
        let every = self
            .config
            .producer_ttl_s
            .saturating_mul(1000)
            .min(3_600_000);
        if now.saturating_sub(self.last_prune_ms.get()) < every {
            return;
        }
        self.last_prune_ms.set(now);
        let commit = crate::engine::producer::prune(now, &self.config);
        if let Err(e) = crate::engine::store::Store::commit(&self.store, commit) {
            worker::console_error!("producer prune: {e}");
        }
    }

    pub fn ctx<'a>(&'a self, now: u64, id: &'a str) -> Ctx<'a> {
        Ctx {
            now_ms: now,
            new_stream_id: id,
            config: &self.config,
            random: random_u64(),
        }
    }

    /// Inherited chunks from a fork's source, or the response to give instead.
    async fn fetch_inherited(&self, need: &Need) -> std::result::Result<Vec<Chunk>, Neutral> {
        match forks::chunks(&self.env, need).await {
            Ok(c)
                if c.first()
                    .is_some_and(|c| c.start <= need.from && c.end() > need.from) =>
            {
                Ok(c)
            }
            Ok(_) => Err(Neutral::error(&ProtocolError::Unavailable)),
            Err(Refused(r)) => Err(r),
        }
    }

    /// Runs the engine step `step` with `inherited`, fetching the chunks it
    /// asks for and running it again, a bounded number of times. `Ok(Err(r))`:
    /// answer `r` instead (the source refused, or the chunks never came).
    pub async fn with_inherited<T>(
        &self,
        inherited: &mut Vec<Chunk>,
        mut step: impl FnMut(&[Chunk]) -> Result<Step<T>>,
    ) -> Result<std::result::Result<T, Neutral>> {
        for _ in 0..=MAX_INHERITED_FETCHES {
            match step(inherited)? {
                Step::Done(t) => return Ok(Ok(t)),
                Step::Need(need) => match self.fetch_inherited(&need).await {
                    Ok(c) => *inherited = c,
                    Err(r) => return Ok(Err(r)),
                },
            }
        }
        Ok(Err(Neutral::error(&ProtocolError::Unavailable)))
    }
}
