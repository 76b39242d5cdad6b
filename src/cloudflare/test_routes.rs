//! Test-only routes (`/__test/stream/<path>`, served only when the
//! `TEST_ROUTES` variable is `1`, which the Miniflare harness sets and
//! wrangler.toml never does): a stream object's internals for the tests to
//! observe, and faults to arm so the tests can exercise failure paths.
//!
//! `GET` answers the object's stats as JSON; `POST ?fault=NAME[&count=N][&ms=N]`
//! arms one fault (see [`Fault`]); `POST ?schema-version=N` makes the stored
//! schema look like version `N` (see `sql_store::schema::pretend_version`);
//! `POST ?drop-sockets` closes every socket reader's socket with 1012, as a
//! restart of the object would (bridged readers reconnect); `POST
//! ?alarm-ahead=MS` runs the alarm's work (a retention trim step) as if `MS`
//! later and answers the chunk rows before and after.

use super::faults::Fault;
use super::shared::Shared;
use crate::engine::store::Store;
use worker::{Request, Response, Result};

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
    let ahead = url
        .query_pairs()
        .find(|(k, _)| k == "alarm-ahead")
        .and_then(|(_, v)| v.parse::<u64>().ok());
    if let (true, Some(ms)) = (post, ahead) {
        // The alarm's work (one retention trim step) as if `ms` later.
        let before = shared.store.chunk_rows()?;
        let now = super::shared::now_ms().saturating_add(ms);
        let next = crate::engine::lifecycle::on_alarm(&shared.store, now, &shared.config)?;
        let body = serde_json::json!({
            "rowsBefore": before,
            "rowsAfter": shared.store.chunk_rows()?,
            "next": next,
        });
        return Response::from_json(&body);
    }
    if post && url.query_pairs().any(|(k, _)| k == "drop-sockets") {
        for ws in shared.state.as_raw().get_websockets()? {
            let _ = ws.close_with_code_and_reason(1012, "test: dropped");
        }
        return Response::empty();
    }
    if post {
        shared.faults.arm(Fault::parse(&url));
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
        "sockets": shared.state.as_raw().get_websockets().map(|w| w.len()).unwrap_or(0),
        // Objects constructed in this isolate so far: an evicted object that
        // wakes is constructed again.
        "constructed": super::object::constructed(),
        "appendBytesReserved": super::budget::reserved(),
    });
    Response::from_json(&body)
}
