//! The Worker's side of the LLM proxy (`protocol::proxy`; README.md,
//! Resumable AI responses): access control (`proxy` on `proxy/<id>`), the
//! request's bounds and shape, then the job's object. Also the demo model's
//! route, and its answer as a paced byte stream the job reads in-process
//! when no upstream is configured.

use super::{access, convert};
use crate::engine::proxy::Settings;
use crate::protocol::auth::Op;
use crate::protocol::error::ProtocolError;
use crate::protocol::proxy::{self as wire, Route};
use futures_util::stream::{self, Stream};
use std::pin::Pin;
use std::time::Duration;
use worker::{Env, Headers, Method, Request, RequestInit, Response, Result};

/// The Durable Object namespace of proxy jobs (wrangler.toml).
pub const JOBS: &str = "PROXY_JOBS";

/// The proxy's variables.
pub fn settings(env: &Env) -> Settings {
    Settings::from_lookup(|n| {
        env.var(n)
            .ok()
            .map(|v| v.to_string())
            .or_else(|| env.secret(n).ok().map(|v| v.to_string()))
    })
}

/// A JSON error answer.
fn refuse(status: u16, code: &str, message: &str) -> Result<Response> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    Ok(Response::from_json(&body)?.with_status(status))
}

async fn allowed(env: &Env, req: &Request, path: &str) -> Result<Option<Response>> {
    let url = req.url()?;
    let now = worker::Date::now().as_millis();
    let needs = [(Op::Proxy, path.to_string())];
    Ok(
        match access::check_needs(env, req, &url, &needs, now).await? {
            Ok(_) => None,
            Err(e) => Some(convert::render_error(&e)?),
        },
    )
}

/// Routes `/v1/proxy` and `/v1/proxy/<id>`.
pub async fn route(env: &Env, mut req: Request, route: Route) -> Result<Response> {
    let random = || super::shared::random_u64();
    let (id, fresh) = match &route {
        Route::Start => (wire::new_id([random(), random()]), true),
        Route::Job(id) => (id.clone(), false),
    };
    if let Some(denied) = allowed(env, &req, &wire::stream_path(&id)).await? {
        return Ok(denied);
    }
    let method = req.method();
    let stub = env.durable_object(JOBS)?.get_by_name(&id)?;
    let origin = req.url()?.origin().ascii_serialization();
    let headers = Headers::new();
    headers.set("x-ds-origin", &origin)?;
    headers.set("x-ds-job", &id)?;
    let mut init = RequestInit::new();
    match (fresh, method) {
        (true, Method::Post) => {
            let limit = wire::MAX_REQUEST_BYTES as u64;
            let body = match convert::read_body(&mut req, limit, 64 * 1024 * 1024).await {
                Ok((b, _)) => b,
                Err(e) => return convert::render_error(&e.protocol()),
            };
            let settings = settings(env);
            if let Err(why) = settings.endpoint() {
                worker::console_error!("proxy: {why}");
                return refuse(
                    503,
                    "PROXY_MISCONFIGURED",
                    "the proxy's upstream is not allowed: see the server's log",
                );
            }
            let upstream = match wire::upstream_body(&body, &settings.model) {
                Ok(b) => b,
                Err(why) => return refuse(400, "INVALID_REQUEST", why),
            };
            init.with_method(Method::Post)
                .with_body(Some(js_sys::Uint8Array::from(upstream.as_slice()).into()));
        }
        (false, m @ (Method::Get | Method::Delete)) => {
            init.with_method(m);
        }
        _ => {
            return convert::render_error(&ProtocolError::MethodNotAllowed {
                allow: route.methods(),
            })
        }
    }
    init.with_headers(headers);
    let forwarded = Request::new_with_init("https://internal/job", &init)?;
    stub.fetch_with_request(forwarded).await
}

/// `POST /v1/demo/chat/completions`: the demo model, only when no upstream
/// is configured; it needs `proxy` on `proxy/demo`.
pub async fn demo(env: &Env, mut req: Request) -> Result<Response> {
    let settings = settings(env);
    if settings.upstream.is_some() {
        return refuse(
            404,
            "NOT_FOUND",
            "the demo model is off: an upstream is configured",
        );
    }
    if let Some(denied) = allowed(env, &req, &wire::stream_path("demo")).await? {
        return Ok(denied);
    }
    if req.method() != Method::Post {
        return convert::render_error(&ProtocolError::MethodNotAllowed {
            allow: wire::DEMO_METHODS,
        });
    }
    let body = match convert::read_body(&mut req, wire::MAX_REQUEST_BYTES as u64, 64 * 1024 * 1024)
        .await
    {
        Ok((b, _)) => b,
        Err(e) => return convert::render_error(&e.protocol()),
    };
    if let Err(why) = wire::upstream_body(&body, &settings.model) {
        return refuse(400, "INVALID_REQUEST", why);
    }
    let headers = Headers::new();
    headers.set("content-type", "text/event-stream")?;
    headers.set("cache-control", "no-store")?;
    Ok(Response::from_stream(demo_stream(&body, settings.token_ms))?.with_headers(headers))
}

/// A paced byte stream, as an upstream's body.
pub type Bytes = Pin<Box<dyn Stream<Item = Result<Vec<u8>>>>>;

/// The demo model's answer to `body`, one event every `token_ms`.
pub fn demo_stream(body: &[u8], token_ms: u64) -> Bytes {
    let prompt = wire::last_user_text(body);
    let events = crate::protocol::demo_model::events(&prompt, crate::engine::proxy::DEMO_MODEL);
    let paced = stream::unfold(events.into_iter(), move |mut rest| async move {
        let next = rest.next()?;
        worker::Delay::from(Duration::from_millis(token_ms)).await;
        Some((Ok(next.into_bytes()), rest))
    });
    Box::pin(paced)
}
