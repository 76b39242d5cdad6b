//! Forks across Durable Objects (PROTOCOL.md §4.2): the messages between a
//! fork's object F and its source's object S, over stub fetches to
//! `/__internal/*` paths that the Worker's router never forwards.
//!
//! ```text
//! create   F: commit intent(fork_id, S, due = now + FORK_GRACE_MS); arm alarm
//!          F → S  POST /__internal/acquire {forkPath, forkId, offset?, subOffset, contentType?}
//!          S: validate (404 / 409 soft-deleted / 409 content type / 400 offsets),
//!             resolve the point, INSERT OR IGNORE fork_refs(forkId)  → 200 {point, …}
//!          F: in one commit: create the fork AND settle the intent → 201
//! read     F → S  GET /__internal/chunks?from&to&id   (id: the source incarnation
//!          F was made from, else 410; S recurses to its own source below its
//!          point; soft-deleted S still serves)  → framed chunks
//! delete   F: in one commit: drop the fork AND queue release(forkId) → 204,
//!          after delivering it: F → S POST /__internal/release {forkId};
//!          S: DELETE fork_refs(forkId); if S is soft-deleted with no refs left,
//!          drop S and queue S's own release at its source (the cascade)
//! ```
//!
//! Failure modes and how each is reconciled:
//! - F stops after S recorded the reference but before F committed: the
//!   intent is still in F's outbox; F's alarm fires at its due time and sends
//!   the release (S drops the reference, or finds none: idempotent).
//! - The alarm releases an intent while the creation is still waiting for
//!   S: F's commit first checks the intent is still there; if not, the PUT
//!   answers 503 and creates nothing (no fork without a reference).
//! - S answers 4xx: nothing was recorded; F drops the intent.
//! - The answer from S is lost (5xx, network): F turns the intent into a
//!   release due now, answers 503, and the outbox delivers it (with retries).
//! - A release cannot be delivered: it stays in the outbox and the alarm
//!   retries it (every FORK_RETRY_MS); S keeps the data meanwhile, so no fork
//!   ever loses its source data, and no reference leaks for good.
//!
//! Every step is idempotent (INSERT OR IGNORE, DELETE WHERE, replace-by-id),
//! so a retry or a duplicate delivery changes nothing.

use super::BINDING;
use crate::engine::fork::{Acquire, Acquired, Need};
use crate::engine::response::Response as Neutral;
use crate::engine::state::Chunk;
use crate::engine::wire;
use crate::protocol::error::ProtocolError;
use worker::wasm_bindgen_futures::JsFuture;
use worker::worker_sys::web_sys;
use worker::{Env, Method, Request, RequestInit};

/// Internal paths, as the source object sees them.
pub const PREFIX: &str = "/__internal/";
pub const ACQUIRE: &str = "/__internal/acquire";
pub const CHUNKS: &str = "/__internal/chunks";
pub const RELEASE: &str = "/__internal/release";

fn url(path: &str) -> String {
    format!("https://internal{path}")
}

async fn call(
    env: &Env,
    target: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> worker::Result<worker::Response> {
    let stub = env.durable_object(BINDING)?.get_by_name(target)?;
    let mut init = RequestInit::new();
    if let Some(b) = body {
        init.with_method(Method::Post)
            .with_body(Some(js_sys::Uint8Array::from(b.as_slice()).into()));
    }
    let req = Request::new_with_init(&url(path), &init)?;
    stub.fetch_with_request(req).await
}

/// An error answer from the other object, kept as its status and body so
/// the client sees the source's verdict (404, 409, 400, ...).
pub struct Refused(pub Neutral);

async fn refused(mut r: worker::Response) -> Refused {
    use crate::protocol::headers as h;
    let body = r.bytes().await.unwrap_or_default();
    let mut n = Neutral::new(r.status_code()).body(body);
    // The content type, and where a trimmed source's data now begins.
    for name in [h::CONTENT_TYPE, h::STREAM_EARLIEST_OFFSET] {
        if let Ok(Some(v)) = r.headers().get(name) {
            n = n.header(name, v);
        }
    }
    Refused(n.finish())
}

/// Asks `source` to record a reference for a new fork.
/// `Err(Ok(refused))`: the source said no (nothing recorded);
/// `Err(Err(_))`: the outcome is unknown.
pub async fn acquire(
    env: &Env,
    source: &str,
    a: &Acquire,
) -> Result<Acquired, Result<Refused, worker::Error>> {
    let mut r = call(env, source, ACQUIRE, Some(wire::encode_acquire(a)))
        .await
        .map_err(Err)?;
    match r.status_code() {
        200 => {
            let body = r.bytes().await.map_err(Err)?;
            wire::decode_acquired(&body)
                .ok_or_else(|| Err(worker::Error::RustError("bad acquire reply".into())))
        }
        400..=499 => Err(Ok(refused(r).await)),
        s => Err(Err(worker::Error::RustError(format!(
            "acquire: status {s}"
        )))),
    }
}

/// A response body read whole by JavaScript and copied into wasm memory
/// once, at its exact size (`Response::bytes` would grow a buffer chunk by
/// chunk, and concurrent readers would each hold a growing copy).
async fn whole_body(r: worker::Response) -> worker::Result<Vec<u8>> {
    let web = web_sys::Response::from(r);
    let buffer = JsFuture::from(web.array_buffer()?).await?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

/// The source's chunks of `[need.from, need.to)`, from the incarnation
/// `need.source_id` only. At most a few such fetches run per isolate at once
/// (see [`super::budget::fetch_slot`]).
pub async fn chunks(env: &Env, need: &Need) -> Result<Vec<Chunk>, Refused> {
    let _slot = super::budget::fetch_slot(&need.source).await;
    let id: String = form_urlencoded::byte_serialize(need.source_id.as_bytes()).collect();
    let path = format!("{CHUNKS}?from={}&to={}&id={id}", need.from, need.to);
    let source = need.source.as_str();
    let unavailable = || Refused(Neutral::error(&ProtocolError::Unavailable));
    let r = call(env, source, &path, None)
        .await
        .map_err(|_| unavailable())?;
    if r.status_code() != 200 {
        return Err(refused(r).await);
    }
    let body = whole_body(r).await.map_err(|_| unavailable())?;
    wire::decode_chunks(&body).ok_or_else(unavailable)
}

/// Releases a fork's reference at `source`; `true` once delivered.
pub async fn release(env: &Env, source: &str, fork_id: &str) -> bool {
    match call(env, source, RELEASE, Some(wire::encode_release(fork_id))).await {
        Ok(r) => (200..300).contains(&r.status_code()),
        Err(_) => false,
    }
}
