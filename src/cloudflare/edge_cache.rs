//! Edge caching in the Worker (PROTOCOL.md §10): after routing, before the
//! object. Reads whose response may be stored (see the policy table in
//! `protocol::cache`) are looked up in `caches.default` by their canonical
//! key; on a miss the object is asked and a storable answer is put in the
//! cache. Every response says what happened in `X-Cache`: `HIT`, `MISS` or
//! `BYPASS`.
//!
//! Concurrent identical reads in this isolate share one lookup and at most
//! one request to the object: the first registers, before any `await`, a JS
//! promise of `[tag, Response, ArrayBuffer]` ("look in the cache, else ask
//! the object"), and every waiter awaits that promise from its own request
//! context.
//!
//! Long-polls go through the bridge (`bridge_poll.rs`), which renders each
//! client's `Stream-Cursor` itself, so they collapse by stream and offset
//! alone ([`cache::collapse_key`]): readers with distinct cursors waiting
//! at one offset share one socket to the object, and each gets the shared
//! answer (data, or the timeout's `204`) with a cursor computed from its
//! own. The shared read is kept alive with `waitUntil`, so joiners are
//! served even if the first reader's client leaves.
//!
//! Long-poll answers are not put in `caches.default`: they live one cursor
//! interval and a crowd arrives within milliseconds, so a round trip to a
//! shared cache per burst costs more than it saves (measured: p50 delivery
//! to 100 long-poll readers 84 ms without it, 163 ms with it, under local
//! workerd). Instead the shared entry stays in this isolate for the cursor
//! interval, so late arrivals with the same offset and cursor get it as a
//! HIT; a CDN in front caches them from `Cache-Control`. (Sharing a Rust future instead makes workerd cancel the waiters:
//! they would be woken from the first request's context.) Each waiter builds
//! its own response in JS from the shared bytes, so nothing is copied
//! through wasm memory.
//!
//! The Cache API does nothing on `*.workers.dev` (it needs a custom
//! domain); there every read is a MISS and still collapses in-isolate.

use super::BINDING;
use crate::engine::config::Config;
use crate::protocol::cache;
use crate::protocol::headers as h;
use futures_util::future::{select, Either};
use js_sys::{Array, Function, Promise, Reflect};
use std::cell::RefCell;
use std::collections::HashMap;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::future_to_promise;
use worker::wasm_bindgen_futures::JsFuture;
use worker::worker_sys::web_sys;
use worker::{Context, Env, Request, Response, Result, Url};

/// A shared read: its promise, when it started, and until when a finished
/// one may be reused (`None` while in flight).
#[derive(Clone)]
struct Entry {
    promise: Promise,
    started_ms: u64,
    reusable_until: Option<u64>,
}

thread_local! {
    /// Reads on their way, and finished long-poll answers still fresh, by
    /// cache key (this isolate only).
    static IN_FLIGHT: RefCell<HashMap<String, Entry>> = RefCell::new(HashMap::new());
}

/// Entries kept at most (finished long-poll answers are dropped first).
const MAX_ENTRIES: usize = 256;
/// Largest long-poll answer kept for reuse: with [`MAX_ENTRIES`], at most
/// 8 MiB of the isolate's 128 MB (a live answer is usually a few appends).
const MAX_REUSED_BYTES: u32 = 32 * 1024;

fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

/// How this request takes part in a shared read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// It started the read.
    Leader,
    /// It joined a read in flight, and waits for it until `deadline_ms`.
    Joined { deadline_ms: u64 },
    /// It reuses a finished long-poll answer.
    Reused,
}

/// Joins a shared read, or registers `start()` as a new one. An in-flight
/// read older than `max_inflight_ms` is not joined but replaced: its leader
/// may be gone (a cancelled request never settles its entry), and its
/// promise may never settle.
fn join_or_lead(
    key: &str,
    max_inflight_ms: u64,
    start: impl FnOnce() -> Result<Promise>,
) -> Result<(Promise, Role)> {
    let now = now_ms();
    let found = IN_FLIGHT.with(|m| {
        let mut m = m.borrow_mut();
        let fresh = |e: &Entry| match e.reusable_until {
            Some(t) => now < t,
            None => now < e.started_ms.saturating_add(max_inflight_ms),
        };
        match m.get(key) {
            Some(e) if fresh(e) => Some(e.clone()),
            Some(_) => {
                m.remove(key);
                None
            }
            None => None,
        }
    });
    if let Some(e) = found {
        let role = match e.reusable_until {
            Some(_) => Role::Reused,
            None => Role::Joined {
                deadline_ms: e.started_ms.saturating_add(max_inflight_ms),
            },
        };
        return Ok((e.promise, role));
    }
    let promise = start()?;
    IN_FLIGHT.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() >= MAX_ENTRIES {
            m.retain(|_, e| match e.reusable_until {
                Some(t) => now < t,
                None => now < e.started_ms.saturating_add(max_inflight_ms),
            });
            if m.len() >= MAX_ENTRIES {
                m.retain(|_, e| e.reusable_until.is_none());
            }
        }
        m.insert(
            key.to_string(),
            Entry {
                promise: promise.clone(),
                started_ms: now,
                reusable_until: None,
            },
        );
    });
    Ok((promise, Role::Leader))
}

/// The leader's verdict once its read finished: keep it for `keep_ms`, or drop it.
fn settle(key: &str, keep_ms: Option<u64>) {
    IN_FLIGHT.with(|m| {
        let mut m = m.borrow_mut();
        match keep_ms {
            Some(ms) => {
                if let Some(e) = m.get_mut(key) {
                    e.reusable_until = Some(now_ms().saturating_add(ms));
                }
            }
            None => {
                m.remove(key);
            }
        }
    });
}

const HIT: &str = "HIT";
const MISS: &str = "MISS";

fn js_err(e: JsValue) -> worker::Error {
    worker::Error::from(e)
}

fn method(target: &JsValue, name: &str) -> std::result::Result<Function, JsValue> {
    Reflect::get(target, &JsValue::from_str(name))?.dyn_into::<Function>()
}

/// `target.name(arg)`.
fn call1(target: &JsValue, name: &str, arg: &JsValue) -> std::result::Result<JsValue, JsValue> {
    method(target, name)?.call1(target, arg)
}

/// `promise.then(f)`, where `f` may return a value or a promise.
fn then(
    promise: &JsValue,
    f: impl FnOnce(JsValue) -> std::result::Result<JsValue, JsValue> + 'static,
) -> std::result::Result<Promise, JsValue> {
    call1(promise, "then", &Closure::once_into_js(f))?.dyn_into::<Promise>()
}

/// `[tag, response, response.arrayBuffer()]`, all resolved.
fn with_body(tag: &str, response: JsValue) -> std::result::Result<JsValue, JsValue> {
    let body = method(&response, "arrayBuffer")?.call0(&response)?;
    Ok(Promise::all(&Array::of3(&JsValue::from_str(tag), &response, &body)).into())
}

fn default_cache() -> std::result::Result<JsValue, JsValue> {
    Reflect::get(
        &Reflect::get(&js_sys::global(), &JsValue::from_str("caches"))?,
        &JsValue::from_str("default"),
    )
}

/// "Look in the cache, else ask the object", as one shareable promise; a
/// long-poll (`bridge`) skips the cache and asks through the bridge.
fn lookup(
    env: &Env,
    ctx: &Context,
    stream: &str,
    url: &str,
    key: &str,
    bridge: Option<Config>,
) -> Result<Promise> {
    if let Some(config) = bridge {
        let (env, stream, url) = (env.clone(), stream.to_string(), Url::parse(url)?);
        // Serves every joiner until its deadline, whether or not the
        // first reader is still there.
        let asked = future_to_promise(async move {
            let r = super::bridge_poll::long_poll(&env, &stream, url, &config, None)
                .await
                .map_err(|e| JsValue::from_str(&e.to_string()))?;
            Ok(web_sys::Response::from(r).into())
        });
        let shared = then(&asked, |r| with_body(MISS, r)).map_err(js_err)?;
        let kept = JsFuture::from(shared.clone());
        ctx.wait_until(async move {
            let _ = kept.await;
        });
        return Ok(shared);
    }
    let ns = env.durable_object(BINDING)?;
    let ns: JsValue = ns.as_ref().clone();
    let (stream, url) = (stream.to_string(), url.to_string());
    let matched: JsValue = call1(
        &default_cache().map_err(js_err)?,
        "match",
        &JsValue::from_str(key),
    )
    .map_err(js_err)?;
    let found = then(&matched, move |hit| {
        if !hit.is_undefined() {
            return with_body(HIT, hit);
        }
        let stub = call1(&ns, "getByName", &JsValue::from_str(&stream))?;
        let fetched = call1(&stub, "fetch", &JsValue::from_str(&url))?;
        Ok(then(&fetched, |r| with_body(MISS, r))?.into())
    });
    found.map_err(js_err)
}

/// A response built in JS from shared parts: the status and headers of
/// `from` (plus `X-Cache` when given), and `body` bytes (`None`: empty).
fn rebuild(
    from: &web_sys::Response,
    status: u16,
    body: Option<&JsValue>,
    x_cache: Option<&str>,
    cursor: Option<&str>,
) -> Result<Response> {
    let headers = web_sys::Headers::new_with_headers(&from.headers()).map_err(js_err)?;
    if let Some(x) = x_cache {
        headers.set(h::X_CACHE, x).map_err(js_err)?;
    }
    if let Some(c) = cursor {
        if headers.has(h::STREAM_CURSOR).unwrap_or(false) {
            headers.set(h::STREAM_CURSOR, c).map_err(js_err)?;
        }
    }
    let init = web_sys::ResponseInit::new();
    init.set_status(status);
    init.set_headers(&headers);
    let r = match body {
        Some(b) => {
            web_sys::Response::new_with_opt_buffer_source_and_init(Some(b.unchecked_ref()), &init)
        }
        None => web_sys::Response::new_with_opt_buffer_source_and_init(None, &init),
    };
    Ok(Response::from(r.map_err(js_err)?))
}

/// Sets `X-Cache` on a response (headers of forwarded responses are
/// immutable, so they are copied).
pub fn mark(r: Response, x_cache: &str) -> Result<Response> {
    let headers = r.headers().clone();
    headers.set(h::X_CACHE, x_cache)?;
    Ok(r.with_headers(headers))
}

/// How one cacheable read is served.
pub struct ReadPlan {
    /// The canonical cache key ([`cache::key`]).
    pub key: String,
    /// Long-polls: the cursor interval, for which a finished answer is
    /// reused in this isolate. `None` for catch-up reads (Cache API).
    pub long_poll_ms: Option<u64>,
    /// How long a read may stay in flight and still be joined.
    pub max_inflight_ms: u64,
    /// Long-polls: the configuration for the bridge that serves them
    /// (`bridge_poll.rs`).
    pub bridge: Option<Config>,
}

/// Asks the stream's object: a long-poll through the bridge, any other
/// read directly.
async fn ask(env: &Env, stream: &str, req: Request, bridge: Option<Config>) -> Result<Response> {
    match bridge {
        Some(config) => {
            let signal = Some(req.inner().signal());
            super::bridge_poll::long_poll(env, stream, req.url()?, &config, signal).await
        }
        None => super::forward(env, stream, req).await,
    }
}

/// Waits for a shared read; a joiner gives up at its deadline.
async fn wait(shared: Promise, role: Role) -> std::result::Result<JsValue, JsValue> {
    let Role::Joined { deadline_ms } = role else {
        return JsFuture::from(shared).await;
    };
    let left = deadline_ms.saturating_sub(now_ms());
    let timer = worker::Delay::from(std::time::Duration::from_millis(left));
    match select(JsFuture::from(shared), timer).await {
        Either::Left((result, _)) => result,
        Either::Right(_) => Err(JsValue::from_str("the shared read did not finish in time")),
    }
}

/// Serves a cacheable read of `stream` (see [`ReadPlan`]).
///
/// Concurrent identical reads share one request to the object, with two
/// rules that keep every answer correct for every reader: any reader whose
/// shared read fails (or outlives its deadline) asks the object alone; and
/// only an answer that may be cached (a chunk ending before the tail, a
/// long-poll answer, §10.1) is given to readers that did not start it. A
/// read reaching the tail is never shared with a later reader, whose own
/// acknowledged append it might predate (read-your-writes).
pub async fn read(
    req: Request,
    env: &Env,
    ctx: &Context,
    stream: &str,
    plan: ReadPlan,
) -> Result<Response> {
    let ReadPlan {
        key,
        long_poll_ms,
        max_inflight_ms,
        bridge,
    } = plan;
    let if_none_match = req.headers().get(h::IF_NONE_MATCH)?;
    let url = req.url()?;
    let use_cache = long_poll_ms.is_none();
    let (shared, role) = join_or_lead(&key, max_inflight_ms, || {
        lookup(env, ctx, stream, url.as_ref(), &key, bridge)
    })?;
    let leader = role == Role::Leader;
    let parts: Array = match wait(shared, role).await.and_then(|v| v.dyn_into::<Array>()) {
        Ok(a) => a,
        Err(e) => {
            if leader {
                settle(&key, None);
            }
            // The shared read failed or hangs (its first request may have
            // gone away): this request asks the object itself.
            worker::console_log!("collapsed read failed ({e:?}); retrying alone");
            return mark(ask(env, stream, req, bridge).await?, MISS);
        }
    };
    let tag = if role == Role::Reused {
        HIT.to_string()
    } else {
        parts.get(0).as_string().unwrap_or_else(|| MISS.to_string())
    };
    let original: web_sys::Response = parts.get(1).dyn_into().map_err(js_err)?;
    let body = parts.get(2);
    let status = original.status();
    let headers = original.headers();
    let etag = headers.get(h::ETAG).ok().flatten();
    let cache_control = headers
        .get(h::CACHE_CONTROL)
        .ok()
        .flatten()
        .unwrap_or_default();
    let storable = cache::storable(status, &cache_control);
    // A bridged long-poll's timeout answer is every joiner's too.
    let shareable = storable || (bridge.is_some() && status == 204);
    // Bridged long-polls: this client's own cursor (§8.1).
    let cursor = bridge.map(|c| {
        let client = url
            .query_pairs()
            .find(|(k, _)| k == h::query::CURSOR)
            .map(|(_, v)| v.into_owned());
        super::bridge_poll::fresh_cursor(client.as_deref(), c.cursor_interval_s)
    });
    let cursor = cursor.as_deref();
    if !leader && !shareable {
        // Not an answer to share with a reader that came later.
        return mark(ask(env, stream, req, bridge).await?, MISS);
    }
    if leader {
        let small = body
            .dyn_ref::<js_sys::ArrayBuffer>()
            .is_some_and(|b| b.byte_length() <= MAX_REUSED_BYTES);
        settle(&key, long_poll_ms.filter(|_| storable && small));
    }
    if leader && use_cache && tag == MISS && storable {
        let copy = rebuild(&original, status, Some(&body), None, None)?;
        let key = key.clone();
        ctx.wait_until(async move {
            if let Err(e) = worker::Cache::default().put(&key, copy).await {
                worker::console_error!("cache put: {e}");
            }
        });
    }
    if let (200, Some(inm), Some(tag_value)) = (status, if_none_match.as_deref(), etag.as_deref()) {
        if cache::if_none_match(inm, tag_value) {
            return rebuild(&original, 304, None, Some(&tag), cursor);
        }
    }
    rebuild(&original, status, Some(&body), Some(&tag), cursor)
}
