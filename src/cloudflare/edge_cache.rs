//! Edge caching in the Worker (PROTOCOL.md §10): after routing, before the
//! object. Reads whose response may be stored (see the policy table in
//! `protocol::cache`) are looked up in `caches.default` by their canonical
//! key; on a miss, concurrent identical reads in this isolate share one
//! request to the object (an in-flight map keyed like the cache), and a
//! storable answer is put in the cache. Every response says what happened
//! in `X-Cache`: `HIT`, `MISS` or `BYPASS`.
//!
//! The Cache API does nothing on `*.workers.dev` (it needs a custom
//! domain); there every read is a MISS and still collapses in-isolate.

use super::BINDING;
use crate::engine::response::Response as Neutral;
use crate::protocol::cache;
use crate::protocol::headers as h;
use js_sys::{Array, Function, Promise, Reflect, Uint8Array};
use std::cell::RefCell;
use std::collections::HashMap;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{Cache, Context, Env, Headers, Request, Response, ResponseBuilder, Result};

/// A buffered answer of the object, shareable between requests.
#[derive(Clone, Debug)]
struct Captured {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

thread_local! {
    /// Reads on their way to an object, by cache key (this isolate only):
    /// a JS promise of `[Response, ArrayBuffer]`. Sharing a JS promise, not a
    /// Rust future, lets every waiter await it from its own request context
    /// (workerd cancels continuations woken from another request's context).
    static IN_FLIGHT: RefCell<HashMap<String, Promise>> = RefCell::new(HashMap::new());
}

impl Captured {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    async fn from_response(mut r: Response) -> Result<Captured> {
        Ok(Captured {
            status: r.status_code(),
            headers: r.headers().entries().collect(),
            body: r.bytes().await?,
        })
    }

    fn to_response(&self, x_cache: Option<&str>) -> Result<Response> {
        let headers = Headers::new();
        for (n, v) in &self.headers {
            headers.append(n, v)?;
        }
        if let Some(x) = x_cache {
            headers.set(h::X_CACHE, x)?;
        }
        let b = ResponseBuilder::new()
            .with_status(self.status)
            .with_headers(headers);
        Ok(if self.body.is_empty() {
            b.empty()
        } else {
            b.fixed(self.body.clone())
        })
    }
}

/// Sets `X-Cache` on a response (headers of forwarded responses are
/// immutable, so they are copied).
pub fn mark(r: Response, x_cache: &str) -> Result<Response> {
    let headers = r.headers().clone();
    headers.set(h::X_CACHE, x_cache)?;
    Ok(r.with_headers(headers))
}

/// A 200 answered as `304` when the client's `If-None-Match` matches it.
fn answer(c: &Captured, if_none_match: Option<&str>, x_cache: &str) -> Result<Response> {
    let etag = c.header(h::ETAG);
    if let (200, Some(inm), Some(tag)) = (c.status, if_none_match, etag) {
        if cache::if_none_match(inm, tag) {
            let mut r = Neutral::new(304).header(h::ETAG, tag);
            if let Some(cc) = c.header(h::CACHE_CONTROL) {
                r = r.header(h::CACHE_CONTROL, cc);
            }
            return mark(super::convert::render(r.finish())?, x_cache);
        }
    }
    c.to_response(Some(x_cache))
}

fn method(target: &JsValue, name: &str) -> Result<Function> {
    Ok(Reflect::get(target, &JsValue::from_str(name))?.dyn_into::<Function>()?)
}

/// The object's answer to a plain GET of `url` (no conditional headers:
/// each waiter applies its own), as a promise of `[Response, ArrayBuffer]`.
fn fetch_from_object(env: &Env, stream: &str, url: &str) -> Result<Promise> {
    let ns = env.durable_object(BINDING)?;
    let ns: &JsValue = ns.as_ref();
    let stub = method(ns, "getByName")?.call1(ns, &JsValue::from_str(stream))?;
    let fetched = method(&stub, "fetch")?.call1(&stub, &JsValue::from_str(url))?;
    let with_body = Closure::once_into_js(
        move |resp: JsValue| -> std::result::Result<JsValue, JsValue> {
            let body = method(&resp, "arrayBuffer")
                .map_err(|e| JsValue::from_str(&e.to_string()))?
                .call0(&resp)?;
            Ok(Promise::all(&Array::of2(&resp, &body)).into())
        },
    );
    Ok(method(&fetched, "then")?
        .call1(&fetched, &with_body)?
        .dyn_into::<Promise>()?)
}

/// Waits for a shared fetch from this request's own context.
async fn captured(shared: Promise) -> Result<Captured> {
    let pair: Array = JsFuture::from(shared).await?.dyn_into()?;
    let resp: worker::worker_sys::web_sys::Response = pair.get(0).dyn_into()?;
    Ok(Captured {
        status: resp.status(),
        headers: Headers(resp.headers()).entries().collect(),
        body: Uint8Array::new(&pair.get(1)).to_vec(),
    })
}

/// Serves a cacheable read (`key` from [`cache::key`]) of `stream`.
pub async fn read(
    req: Request,
    env: &Env,
    ctx: &Context,
    stream: &str,
    key: String,
) -> Result<Response> {
    let if_none_match = req.headers().get(h::IF_NONE_MATCH)?;
    let store = Cache::default();
    if let Some(hit) = store.get(&key, false).await? {
        let c = Captured::from_response(hit).await?;
        return answer(&c, if_none_match.as_deref(), "HIT");
    }
    let joined = IN_FLIGHT.with(|m| m.borrow().get(&key).cloned());
    let (shared, leader) = match joined {
        Some(p) => (p, false),
        None => {
            let p = fetch_from_object(env, stream, req.url()?.as_ref())?;
            IN_FLIGHT.with(|m| m.borrow_mut().insert(key.clone(), p.clone()));
            (p, true)
        }
    };
    let result = captured(shared).await;
    if leader {
        IN_FLIGHT.with(|m| m.borrow_mut().remove(&key));
    }
    let captured = match result {
        Ok(c) => c,
        Err(e) => {
            // The shared request failed (its leader's client may have gone):
            // this request asks the object itself.
            worker::console_log!("collapsed read failed ({e}); retrying alone");
            let stub = env.durable_object(BINDING)?.get_by_name(stream)?;
            return mark(stub.fetch_with_request(req).await?, "MISS");
        }
    };
    let storable = captured
        .header(h::CACHE_CONTROL)
        .is_some_and(|cc| cache::storable(captured.status, cc));
    if leader && storable {
        let copy = captured.to_response(None)?;
        ctx.wait_until(async move {
            if let Err(e) = Cache::default().put(&key, copy).await {
                worker::console_error!("cache put: {e}");
            }
        });
    }
    answer(&captured, if_none_match.as_deref(), "MISS")
}
