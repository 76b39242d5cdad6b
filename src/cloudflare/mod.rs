//! The Cloudflare adapter (wasm32 only): the Worker entry routes every
//! `/v1/stream/<path>` request to the Durable Object named by the stream's
//! canonical path, through the edge cache for cacheable reads; everything
//! else is answered here. This module tree is the only code that imports
//! `worker`.

mod convert;
mod edge_cache;
mod forks;
mod live;
mod object;
mod sql_store;

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

/// The cursor interval (§10.1), from the same variable the objects read.
fn cursor_interval_ms(env: &Env) -> u64 {
    crate::engine::config::Config::from_lookup(|n| env.var(n).ok().map(|v| v.to_string()))
        .cursor_interval_s
        * 1000
}

fn test_routes_enabled(env: &Env) -> bool {
    env.var("TEST_ROUTES").is_ok_and(|v| v.to_string() == "1")
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    let (response, x_cache) = route(req, &env, &ctx).await?;
    match x_cache {
        Some(x) => edge_cache::mark(response, x),
        None => Ok(response),
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
                let stub = env.durable_object(BINDING)?.get_by_name(path.as_str())?;
                return Ok((stub.fetch_with_request(req).await?, BYPASS));
            }
        }
    }
    match StreamPath::from_url_path(url.path()) {
        Ok(Some(path)) => {
            if req.method() == worker::Method::Get {
                if let Some(key) = cache::key(url.path(), url.query().unwrap_or_default()) {
                    // Long-poll answers are reused in-isolate for one cursor interval.
                    let long_poll_ms = key
                        .contains("live=long-poll")
                        .then(|| cursor_interval_ms(env));
                    let r =
                        edge_cache::read(req, env, ctx, path.as_str(), key, long_poll_ms).await?;
                    return Ok((r, None));
                }
            }
            let stub = env.durable_object(BINDING)?.get_by_name(path.as_str())?;
            Ok((stub.fetch_with_request(req).await?, BYPASS))
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
