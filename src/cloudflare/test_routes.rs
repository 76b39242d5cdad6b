//! Test-only routes (`/__test/stream/<path>`, served only when the
//! `TEST_ROUTES` variable is `1`, which the Miniflare harness sets and
//! wrangler.toml never does): a stream object's internals for the tests to
//! observe, and faults to arm so the tests can exercise failure paths.
//!
//! `GET` answers the object's stats as JSON; `POST ?fault=NAME[&count=N][&ms=N]`
//! arms one fault (see [`Fault`]); `POST ?schema-version=N` makes the stored
//! schema look like version `N` (see `sql_store::schema::pretend_version`).

use super::shared::Shared;
use crate::engine::store::Store;
use worker::{Request, Response, Result};

/// A fault armed on one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The next fork creation stops right after the source recorded its
    /// reference, as if the object had crashed.
    AfterAcquire,
    /// The next `n` release deliveries fail.
    ReleaseFails(u32),
    /// The next fork creation waits `ms` after the source's answer before
    /// committing, and every release waits `ms` before it goes out: a slow
    /// creation racing the alarm that gives up on it.
    SlowFork(u64),
    /// The next `n` attempts to set the alarm fail.
    ArmFails(u32),
    /// The next `n` requests to the object throw, as a platform failure
    /// (reset, overload) does: the caller's stub fetch rejects.
    Throws(u32),
    /// The next catch-up read's answer, computed at once, is sent only
    /// after `ms`: a read in flight while other requests come and go.
    SlowRead(u64),
}

impl Fault {
    fn parse(url: &worker::Url) -> Option<Fault> {
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        let num = |k: &str| q.get(k).and_then(|c| c.parse::<u64>().ok());
        let count = num("count")
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(1);
        match q.get("fault").map(String::as_str) {
            Some("after-acquire") => Some(Fault::AfterAcquire),
            Some("release-fails") => Some(Fault::ReleaseFails(count)),
            Some("slow-fork") => Some(Fault::SlowFork(num("ms").unwrap_or(1000))),
            Some("arm-fails") => Some(Fault::ArmFails(count)),
            Some("throws") => Some(Fault::Throws(count)),
            Some("slow-read") => Some(Fault::SlowRead(num("ms").unwrap_or(1000))),
            _ => None,
        }
    }
}

impl Shared {
    /// Consumes one use of a counted fault of kind `kind`, if one is armed.
    fn take(&self, kind: fn(u32) -> Fault) -> bool {
        let Some(armed) = self.fault.get() else {
            return false;
        };
        let n = match armed {
            Fault::ReleaseFails(n) | Fault::ArmFails(n) | Fault::Throws(n) => n,
            _ => return false,
        };
        if n == 0 || kind(n) != armed {
            return false;
        }
        self.fault.set((n > 1).then(|| kind(n - 1)));
        true
    }

    /// Consumes one failed release delivery, if that fault is armed.
    pub fn release_fault(&self) -> bool {
        self.take(Fault::ReleaseFails)
    }

    /// Consumes one failed attempt to set the alarm, if that fault is armed.
    pub fn arm_fault(&self) -> bool {
        self.take(Fault::ArmFails)
    }

    /// Consumes one thrown request, if that fault is armed.
    pub fn throw_fault(&self) -> bool {
        self.take(Fault::Throws)
    }

    /// Consumes an armed [`Fault::SlowRead`]: its delay.
    pub fn slow_read_ms(&self) -> Option<u64> {
        match self.fault.get() {
            Some(Fault::SlowRead(ms)) => {
                self.fault.set(None);
                Some(ms)
            }
            _ => None,
        }
    }

    /// The delay of an armed [`Fault::SlowFork`], if any.
    pub fn slow_fork_ms(&self) -> Option<u64> {
        match self.fault.get() {
            Some(Fault::SlowFork(ms)) => Some(ms),
            _ => None,
        }
    }
}

pub async fn handle(shared: &Shared, req: &Request) -> Result<Response> {
    let url = req.url()?;
    let post = req.method() == worker::Method::Post;
    let version = url
        .query_pairs()
        .find(|(k, _)| k == "schema-version")
        .and_then(|(_, v)| v.parse::<i64>().ok());
    if let (true, Some(v)) = (post, version) {
        // As if this storage had been written by a build of schema `v`: the
        // next request checks (and migrates or refuses) it again.
        shared.store.pretend_version(v)?;
        shared.schema_ready.set(false);
        return Response::empty();
    }
    shared.ready()?;
    if post {
        shared.fault.set(Fault::parse(&url));
        return Response::empty();
    }
    let store = &shared.store;
    let alarm = store.storage().get_alarm().await?;
    let live = &shared.live;
    let meta = crate::engine::store::Store::meta(store)?;
    let body = serde_json::json!({
        "chunkRows": store.chunk_rows()?,
        "producerRows": store.producer_rows()?,
        "alarm": alarm,
        "parked": live.parked(),
        "sseConnections": live.sse_connections(),
        "refs": store.refs()?,
        "outbox": store.outbox()?.len(),
        "exists": meta.is_some(),
        "softDeleted": meta.is_some_and(|m| m.soft_deleted),
        // The isolate's wasm heap: linear memory never shrinks, so this is its peak.
        "wasmMemoryBytes": core::arch::wasm32::memory_size::<0>() * 65536,
        "requests": shared.requests.get(),
        "readers": live.readers(),
        "appendBytesReserved": super::budget::reserved(),
    });
    Response::from_json(&body)
}
