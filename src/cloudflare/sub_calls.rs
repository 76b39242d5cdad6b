//! Subscriptions across Durable Objects (PROTOCOL.md §6, §7): the messages
//! between a stream's object, a subscription's object (one per id, binding
//! `SUBSCRIPTIONS`) and the pattern index (one object, binding `SUB_INDEX`),
//! over stub fetches to `/__internal/*` paths the Worker never forwards.
//!
//! ```text
//! stream S changes (create, append, close, delete), after its commit, before its answer:
//!   S not yet registered → S → index  register {path}      → index adds S, answers the
//!                                                            subscriptions whose pattern matches
//!   for each linked subscription X: S → X  notify {path, tail | null, since} → {linked}
//! subscription X created with a pattern: X commits itself, then
//!   X → index  add {id, pattern}; then, page by page on X's alarm:
//!   X → index  match {pattern, after} → paths; X → S  link {sub} → {tail}: linked at its tail
//! explicit streams (PUT, POST .../streams): X → S  link {sub} → {tail}, before the answer
//! X deleted: X drops its rows; X → index  remove {id}
//! ```
//!
//! How streams learn which subscriptions match them, without a global scan:
//! the index holds every stream path and every pattern. A stream registers
//! once (on its first change after this feature) and gets the matching
//! subscriptions; a subscription registers once and links the matching
//! streams it lists. The index handles each registration in one
//! synchronous step, so whichever of the two comes second sees the other:
//! no stream and pattern created concurrently can miss each other. Appends
//! never touch the index: a stream notifies only the subscriptions linked
//! to it (its `sub_links` rows).
//!
//! Failure modes and reconciliation:
//! - A notify that fails (the subscription's object unreachable): the
//!   stream's alarm retries it after `FORK_RETRY_MS`; notifies carry the
//!   current tail, so a retry or a duplicate changes nothing.
//! - A stream's registration fails: retried by its alarm the same way;
//!   until then appends to it wake no pattern subscription.
//! - A subscription's index registration or a backfill page fails: its
//!   alarm retries it (with the webhook backoff).
//! - A subscription or link that no longer exists: the subscription
//!   answers `linked: false` and the stream drops the row (lazy clean-up, so
//!   deleting a subscription never has to reach its streams).
//! - The index keeps a path whose stream was deleted (its removal was not
//!   delivered): a backfill links that path at the start offset, which is
//!   what a re-created stream would report; nothing is woken.

use serde_json::{json, Value};
use worker::{Env, Method, Request, RequestInit};

/// Bindings (wrangler.toml).
pub const SUBSCRIPTIONS: &str = "SUBSCRIPTIONS";
pub const SUB_INDEX: &str = "SUB_INDEX";
/// The index object's name.
const INDEX_NAME: &str = "index";

/// Paths, as the receiving object sees them.
pub const NOTIFY: &str = "/__internal/sub/notify";
pub const LINK: &str = "/__internal/sub/link";
pub const INDEX_REGISTER: &str = "/__internal/index/register";
pub const INDEX_UNREGISTER: &str = "/__internal/index/unregister";
pub const INDEX_ADD: &str = "/__internal/index/add";
pub const INDEX_REMOVE: &str = "/__internal/index/remove";
pub const INDEX_MATCH: &str = "/__internal/index/match";

/// POSTs `body` to `path` on object `name` of `binding`; the JSON answer of
/// a 200, or an error.
pub async fn call(
    env: &Env,
    binding: &str,
    name: &str,
    path: &str,
    body: Value,
) -> worker::Result<Value> {
    let stub = env.durable_object(binding)?.get_by_name(name)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_body(Some(wasm_bindgen::JsValue::from_str(&body.to_string())));
    let req = Request::new_with_init(&format!("https://internal{path}"), &init)?;
    let mut r = stub.fetch_with_request(req).await?;
    if r.status_code() != 200 {
        return Err(worker::Error::RustError(format!(
            "{path}: status {}",
            r.status_code()
        )));
    }
    let text = r.text().await?;
    serde_json::from_str(&text).map_err(|e| worker::Error::RustError(format!("{path}: {e}")))
}

pub async fn index(env: &Env, path: &str, body: Value) -> worker::Result<Value> {
    call(env, SUB_INDEX, INDEX_NAME, path, body).await
}

/// Tells subscription `sub` that `stream` is at `tail` (`None`: deleted).
/// `Ok(false)`: the subscription does not link it (any more).
pub async fn notify(
    env: &Env,
    sub: &str,
    stream: &str,
    tail: Option<&str>,
    since: &str,
) -> worker::Result<bool> {
    let v = call(
        env,
        SUBSCRIPTIONS,
        sub,
        NOTIFY,
        json!({ "path": stream, "tail": tail, "since": since }),
    )
    .await?;
    Ok(v.get("linked").and_then(Value::as_bool).unwrap_or(false))
}

/// The most subscriptions one stream notifies (each append's answer waits
/// for its notifications): further links are refused.
pub const MAX_SUBS_PER_STREAM: usize = 100;

/// Asks `stream`'s object to notify `sub` from now on: its tail, or `None`
/// when the stream has [`MAX_SUBS_PER_STREAM`] subscriptions already.
pub async fn link(env: &Env, stream: &str, sub: &str) -> worker::Result<Option<String>> {
    let body = json!({ "sub": sub, "path": stream });
    let v = call(env, super::BINDING, stream, LINK, body).await?;
    if v.get("full").and_then(Value::as_bool) == Some(true) {
        return Ok(None);
    }
    v.get("tail")
        .and_then(Value::as_str)
        .map(|t| Some(t.to_string()))
        .ok_or_else(|| worker::Error::RustError("link: no tail".into()))
}
