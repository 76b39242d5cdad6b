//! The Cloudflare adapter (wasm32 only): the Worker entry routes every
//! `/v1/stream/<path>` request to the Durable Object named by the stream's
//! canonical path; everything else is answered here. This module tree is the
//! only code that imports `worker`.

mod convert;
mod forks;
mod live;
mod object;
mod sql_store;

use crate::engine::response::Response as Neutral;
use crate::protocol::error::ProtocolError;
use crate::protocol::path::StreamPath;
use worker::{event, Context, Env, Request, Response, Result};

/// The Durable Object namespace binding (wrangler.toml).
pub const BINDING: &str = "STREAMS";

/// Test-only routes (`/__test/stream/<path>`): the object's internals for
/// Miniflare tests. Served only when the `TEST_ROUTES` variable is `1`, which
/// the test harness sets and wrangler.toml never does.
pub const TEST_PREFIX: &str = "/__test/stream/";

fn test_routes_enabled(env: &Env) -> bool {
    env.var("TEST_ROUTES").is_ok_and(|v| v.to_string() == "1")
}

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, _ctx: Context) -> Result<Response> {
    if req.method() == worker::Method::Options {
        return convert::render(Neutral::preflight());
    }
    let url = req.url()?;
    if let Some(raw) = url.path().strip_prefix(TEST_PREFIX) {
        if test_routes_enabled(&env) {
            if let Ok(path) = StreamPath::parse(raw) {
                let stub = env.durable_object(BINDING)?.get_by_name(path.as_str())?;
                return stub.fetch_with_request(req).await;
            }
        }
    }
    match StreamPath::from_url_path(url.path()) {
        Ok(Some(path)) => {
            let stub = env.durable_object(BINDING)?.get_by_name(path.as_str())?;
            stub.fetch_with_request(req).await
        }
        Ok(None) => {
            convert::drain(&mut req).await;
            convert::render_error(&ProtocolError::NotFound)
        }
        Err(e) => {
            convert::drain(&mut req).await;
            convert::render_error(&e)
        }
    }
}
