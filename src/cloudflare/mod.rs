//! The Cloudflare adapter (wasm32 only): the Worker entry routes every
//! `/v1/stream/<path>` request to the Durable Object named by the stream's
//! canonical path, through the edge cache for cacheable reads; everything
//! else is answered here. This module tree is the only code that imports
//! `worker`.

mod access;
mod bridge;
mod bridge_poll;
mod budget;
mod convert;
mod crypto;
mod edge_cache;
mod faults;
mod fork_object;
mod forks;
mod live;
mod multi;
mod object;
mod outbox;
mod proxy;
mod proxy_object;
mod shared;
mod signing;
mod sockets;
mod sql_store;
mod sse_pump;
mod sub_calls;
mod sub_index;
mod sub_links;
mod sub_object;
mod subs;
mod test_routes;

use crate::engine::access as access_engine;
use crate::engine::config::Config;
use crate::engine::demo_page;
use crate::engine::response::Response as Neutral;
use crate::protocol::cache;
use crate::protocol::error::ProtocolError;
use crate::protocol::headers as h;
use crate::protocol::path::StreamPath;
use crate::protocol::query::Live;
use worker::{event, Context, Env, Request, Response, Result};

/// The Durable Object namespace binding (wrangler.toml).
pub const BINDING: &str = "STREAMS";

/// Test-only routes (`/__test/stream/<path>`): the object's internals for
/// Miniflare tests. Served only when the `TEST_ROUTES` variable is `1`, which
/// the test harness sets and wrangler.toml never does.
pub const TEST_PREFIX: &str = "/__test/stream/";

/// The most of a refused body the Worker reads and drops before answering.
const LINGER_BYTES: u64 = 64 * 1024 * 1024;

/// How long past its expected end a shared read may still be joined (a
/// catch-up read is expected to end at once, a long-poll at its timeout).
const INFLIGHT_SLACK_MS: u64 = 5_000;

thread_local! {
    /// The configuration, read once per isolate: variables cannot change
    /// without a redeploy, which starts new isolates.
    static CONFIG: std::cell::OnceCell<Config> = const { std::cell::OnceCell::new() };
}

/// The configuration, from the same variables the objects read.
fn config(env: &Env) -> Config {
    CONFIG.with(|c| {
        *c.get_or_init(|| Config::from_lookup(|n| env.var(n).ok().map(|v| v.to_string())))
    })
}

fn test_routes_enabled(env: &Env) -> bool {
    env.var("TEST_ROUTES").is_ok_and(|v| v.to_string() == "1")
}

/// The Worker entry. A platform failure (a stub fetch that throws, an
/// overloaded or reset object) is answered with one rendered `503` with
/// `Retry-After`, CORS and a JSON reason, never a bare 500 that a browser
/// reports as a CORS failure.
#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    let origin = req.headers().get(h::ORIGIN).ok().flatten();
    let routed = match route(req, &env, &ctx).await {
        Ok(r) => r,
        Err(e) => {
            worker::console_error!("worker: {e}");
            Routed::bypass(convert::render_error(&ProtocolError::Unavailable)?)
        }
    };
    finish(routed, &access::settings(&env), origin.as_deref())
}

/// A response on its way out, and what is still to be done to its headers.
struct Routed {
    response: Response,
    /// The `X-Cache` value to set (`None`: the edge cache set it).
    x_cache: Option<&'static str>,
    /// May caches share it (`public`)? `false` for token-authorized reads.
    shared: bool,
}

impl Routed {
    fn bypass(response: Response) -> Routed {
        Routed {
            response,
            x_cache: Some("BYPASS"),
            shared: true,
        }
    }
}

/// Sets the headers the Worker owns: `X-Cache`; `Cache-Control: private`
/// instead of `public` for a response to a token-authorized request (a CDN
/// in front must not give it to anyone else); the CORS origin from
/// `CORS_ORIGINS`. Headers of forwarded responses are immutable, so they
/// are copied once.
fn finish(r: Routed, settings: &access_engine::Settings, origin: Option<&str>) -> Result<Response> {
    let headers = r.response.headers().clone();
    if let Some(x) = r.x_cache {
        headers.set(h::X_CACHE, x)?;
    }
    if !r.shared {
        if let Some(cc) = headers.get(h::CACHE_CONTROL)? {
            if let Some(rest) = cc.strip_prefix("public") {
                headers.set(h::CACHE_CONTROL, &format!("private{rest}"))?;
            }
        }
    }
    if settings.cors_origins.is_some() {
        match origin.filter(|o| settings.cors_allows(o)) {
            Some(o) => headers.set(h::ACCESS_CONTROL_ALLOW_ORIGIN, o)?,
            None => headers.delete(h::ACCESS_CONTROL_ALLOW_ORIGIN)?,
        }
        headers.append(h::VARY, "Origin")?;
    }
    Ok(r.response.with_headers(headers))
}

/// Answers `e` for a request the Worker refuses. Its body, if any, is read
/// and dropped first (up to [`LINGER_BYTES`]), so a client still uploading
/// reads the answer rather than a reset connection; a larger declared body
/// is answered before a byte of it is read.
async fn refuse(mut req: Request, e: &ProtocolError) -> Result<Routed> {
    if convert::declared_length(&req).is_none_or(|n| n <= LINGER_BYTES) {
        convert::drain_at_most(&mut req, LINGER_BYTES).await;
    }
    Ok(Routed::bypass(convert::render_error(e)?))
}

/// Sends `req` to the stream's object. A read that fails on the platform
/// (the stub throws: the object was reset, moved or overloaded) is tried
/// once more: it is idempotent.
pub async fn forward(env: &Env, stream: &str, req: Request) -> Result<Response> {
    let stub = env.durable_object(BINDING)?.get_by_name(stream)?;
    let again = match req.method() {
        worker::Method::Get | worker::Method::Head => Some(req.clone()?),
        _ => None,
    };
    match (stub.fetch_with_request(req).await, again) {
        (Ok(r), _) => Ok(r),
        (Err(e), Some(again)) => {
            worker::console_log!("read of {stream} failed ({e}); retrying once");
            stub.fetch_with_request(again).await
        }
        (Err(e), None) => Err(e),
    }
}

/// A read's live mode, if it parses.
fn live_mode(url: &worker::Url) -> Option<crate::protocol::query::Live> {
    crate::protocol::query::ReadQuery::parse(url.query().unwrap_or_default())
        .ok()
        .map(|q| q.live)
}

/// Routes a request: test routes, then stream paths through access
/// control, the size check and the edge cache to the stream's object.
async fn route(req: Request, env: &Env, ctx: &Context) -> Result<Routed> {
    if req.method() == worker::Method::Options {
        return Ok(Routed::bypass(convert::render(Neutral::preflight())?));
    }
    let url = req.url()?;
    if let Some(raw) = url.path().strip_prefix(TEST_PREFIX) {
        if test_routes_enabled(env) {
            if let Ok(path) = StreamPath::parse(raw) {
                return Ok(Routed::bypass(forward(env, path.as_str(), req).await?));
            }
        }
    }
    if let Some(id) = url.path().strip_prefix("/__test/subscription/") {
        if test_routes_enabled(env) {
            let stub = env
                .durable_object(sub_calls::SUBSCRIPTIONS)?
                .get_by_name(id)?;
            let url = format!("https://internal{}", sub_object::TEST_COUNTS);
            return Ok(Routed::bypass(stub.fetch_with_str(&url).await?));
        }
    }
    if url.path() == crate::protocol::multi::ROUTE {
        let response = multi::sse(env, req, &config(env)).await?;
        return Ok(Routed {
            response,
            x_cache: Some("BYPASS"),
            // Token-authorized or not, an SSE response is never stored.
            shared: true,
        });
    }
    if url
        .path()
        .starts_with(crate::protocol::subscription::PREFIX)
    {
        return Ok(Routed::bypass(subs::route(env, req).await?));
    }
    if let Some(r) = crate::protocol::proxy::route(url.path()) {
        return Ok(Routed::bypass(proxy::route(env, req, r).await?));
    }
    if url.path() == crate::protocol::proxy::DEMO_ROUTE {
        return Ok(Routed::bypass(proxy::demo(env, req).await?));
    }
    if let Some(file) = demo_page::file(url.path()) {
        let method = crate::engine::request::Method::parse(req.inner().method().as_str());
        let if_none = req.headers().get(h::IF_NONE_MATCH)?;
        let page = demo_page::answer(file, method, if_none.as_deref());
        return Ok(Routed::bypass(convert::render(page)?));
    }
    let path = match StreamPath::from_url_path(url.path()) {
        Ok(Some(path)) => path,
        Ok(None) => return refuse(req, &ProtocolError::NotFound).await,
        Err(e) => return refuse(req, &e).await,
    };
    // Access control first: a refusal costs the object nothing, and a cache
    // HIT is only served to a request allowed to read it.
    let now = worker::Date::now().as_millis();
    let allowed = match access::check(env, &req, &url, &path, now).await? {
        Ok(a) => a,
        Err(e) => return refuse(req, &e).await,
    };
    // A body declared larger than any append may be never reaches the object.
    let limit = config(env).max_append_bytes;
    if convert::declared_length(&req).is_some_and(|n| n > limit) {
        return refuse(req, &ProtocolError::PayloadTooLarge { limit }).await;
    }
    // Credentials stop here: neither the cache key nor the object sees them.
    let req = access::strip(req, &url)?;
    let url = req.url()?;
    let shared = allowed.shared;
    let get = req.method() == worker::Method::Get;
    let bridged = config(env).live_bridge == 1;
    let live = if get && bridged {
        live_mode(&url)
    } else {
        None
    };
    if live == Some(Live::Sse) {
        let response = bridge::sse(env, path.as_str(), req, &config(env)).await?;
        return Ok(Routed {
            response,
            x_cache: Some("BYPASS"),
            shared,
        });
    }
    if req.method() == worker::Method::Get {
        let query = url.query().unwrap_or_default();
        let long_poll = live_mode(&url) == Some(Live::LongPoll);
        let key = if long_poll && bridged {
            cache::collapse_key(url.path(), query)
        } else {
            cache::key(url.path(), query)
        };
        if let Some(key) = key {
            let config = config(env);
            let plan = edge_cache::ReadPlan {
                key,
                // Long-poll answers are reused in-isolate for one cursor interval.
                long_poll_ms: long_poll.then(|| config.cursor_interval_s * 1000),
                // A long-poll waits up to its timeout; a catch-up read is quick.
                max_inflight_ms: if long_poll {
                    config.long_poll_timeout_ms + INFLIGHT_SLACK_MS
                } else {
                    INFLIGHT_SLACK_MS
                },
                bridge: (long_poll && bridged).then_some(config),
            };
            let response = edge_cache::read(req, env, ctx, path.as_str(), plan).await?;
            return Ok(Routed {
                response,
                x_cache: None,
                shared,
            });
        }
    }
    let response = if live == Some(Live::LongPoll) {
        // Not collapsible (`offset=now`): alone through the bridge.
        let signal = Some(req.inner().signal());
        bridge_poll::long_poll(env, path.as_str(), url, &config(env), signal).await?
    } else {
        forward(env, path.as_str(), req).await?
    };
    Ok(Routed {
        response,
        x_cache: Some("BYPASS"),
        shared,
    })
}
