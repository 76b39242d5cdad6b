//! The Cloudflare adapter (wasm32 only): the Worker entry routes every
//! `/v1/stream/<path>` request to the Durable Object named by the stream's
//! canonical path, through the edge cache for cacheable reads; everything
//! else is answered here. This module tree is the only code that imports
//! `worker`.

mod budget;
mod convert;
mod edge_cache;
mod faults;
mod fork_object;
mod forks;
mod live;
mod object;
mod outbox;
mod shared;
mod sql_store;
mod sse_pump;
mod test_routes;

use crate::engine::config::Config;
use crate::engine::response::Response as Neutral;
use crate::protocol::cache;
use crate::protocol::error::ProtocolError;
use crate::protocol::path::StreamPath;
use worker::{event, Context, Env, Request, Response, Result};

/// The Durable Object namespace binding (wrangler.toml).
pub const BINDING: &str = "STREAMS";

/// Test-only routes (`/__test/stream/<path>`): the object's internals for
/// Miniflare tests. Served only when the `TEST_ROUTES` variable is `1`, which
/// the test harness sets and wrangler.toml never does.
pub const TEST_PREFIX: &str = "/__test/stream/";

/// The largest refused body the Worker reads and drops before answering.
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
    let routed = match route(req, &env, &ctx).await {
        Ok(r) => Ok(r),
        Err(e) => {
            worker::console_error!("worker: {e}");
            convert::render_error(&ProtocolError::Unavailable).map(|r| (r, Some("BYPASS")))
        }
    };
    let (response, x_cache) = routed?;
    match x_cache {
        Some(x) => edge_cache::mark(response, x),
        None => Ok(response),
    }
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

/// The response, and the `X-Cache` value still to set on it (`None` when
/// the edge cache set it).
async fn route(
    mut req: Request,
    env: &Env,
    ctx: &Context,
) -> Result<(Response, Option<&'static str>)> {
    const BYPASS: Option<&str> = Some("BYPASS");
    if req.method() == worker::Method::Options {
        return Ok((convert::render(Neutral::preflight())?, BYPASS));
    }
    let url = req.url()?;
    if let Some(raw) = url.path().strip_prefix(TEST_PREFIX) {
        if test_routes_enabled(env) {
            if let Ok(path) = StreamPath::parse(raw) {
                return Ok((forward(env, path.as_str(), req).await?, BYPASS));
            }
        }
    }
    match StreamPath::from_url_path(url.path()) {
        Ok(Some(path)) => {
            // A body declared larger than any append may be is refused in the
            // Worker: the object never sees it and nothing is buffered. Up to
            // LINGER_BYTES it is read and dropped first, so a client that is
            // still uploading reads the 413 rather than a reset connection;
            // beyond that, the answer goes out before a byte is read.
            let limit = config(env).max_append_bytes;
            if let Some(n) = convert::declared_length(&req).filter(|n| *n > limit) {
                if n <= LINGER_BYTES {
                    convert::drain(&mut req).await;
                }
                let e = ProtocolError::PayloadTooLarge { limit };
                return Ok((convert::render_error(&e)?, BYPASS));
            }
            if req.method() == worker::Method::Get {
                if let Some(key) = cache::key(url.path(), url.query().unwrap_or_default()) {
                    let config = config(env);
                    let long_poll = key.contains("live=long-poll");
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
                    };
                    let r = edge_cache::read(req, env, ctx, path.as_str(), plan).await?;
                    return Ok((r, None));
                }
            }
            Ok((forward(env, path.as_str(), req).await?, BYPASS))
        }
        Ok(None) => {
            convert::drain(&mut req).await;
            Ok((convert::render_error(&ProtocolError::NotFound)?, BYPASS))
        }
        Err(e) => {
            convert::drain(&mut req).await;
            Ok((convert::render_error(&e)?, BYPASS))
        }
    }
}
