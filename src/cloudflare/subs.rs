//! The Worker's side of the reserved subscription APIs (PROTOCOL.md §6,
//! §7), routed before stream paths: the JWK Set is answered here; every
//! other route goes, after access control, to the subscription's object.
//!
//! Access (README.md, Subscriptions): managing subscription `<id>` (create,
//! read, delete, change its streams, claim) needs `subscribe:<id>`;
//! creating or adding streams also needs `read` on its pattern (a grant
//! whose glob covers it) and on each explicit stream, and a pull-wake
//! subscription `append` on its wake stream, since the server writes there
//! for it. Callbacks, acks and releases carry the wake token instead
//! (§7.3); the JWK Set is public.

use super::access;
use super::convert;
use super::signing;
use super::sub_calls::SUBSCRIPTIONS;
use super::sub_object::{refuse, BASE_HEADER};
use crate::protocol::auth::Op;
use crate::protocol::subscription::{self as wire, Action, Route, SubError, PREFIX};
use worker::{Env, Headers, Method, Request, RequestInit, Response, Result};

/// What a management request needs (see the module doc). A body that does
/// not parse needs only `subscribe`: the object answers its 400.
fn needs(id: &str, action: &Action, method: &Method, body: &[u8]) -> Vec<(Op, String)> {
    let mut out = vec![(Op::Subscribe, id.to_string())];
    match (action, method) {
        (Action::Itself, Method::Put) => {
            if let Ok(c) = wire::parse_config(body, true) {
                out.extend(c.pattern.map(|p| (Op::Read, p)));
                out.extend(c.streams.into_iter().map(|s| (Op::Read, s)));
                out.extend(c.wake_stream.map(|w| (Op::Append, w)));
            }
        }
        (Action::Streams, Method::Post) => {
            if let Ok(streams) = wire::parse_streams(body) {
                out.extend(streams.into_iter().map(|s| (Op::Read, s)));
            }
        }
        _ => {}
    }
    out
}

/// A request under `/v1/stream/__ds/`.
pub async fn route(env: &Env, mut req: Request) -> Result<Response> {
    let url = req.url()?;
    let rest = url
        .path()
        .strip_prefix(PREFIX)
        .unwrap_or_default()
        .to_string();
    if !super::sub_links::enabled(env) {
        return refuse(&SubError::new(
            404,
            "NOT_FOUND",
            "subscriptions are off on this server",
        ));
    }
    let (id, action) = match wire::route(&rest) {
        Err(e) => return refuse(&e),
        Ok(Route::Jwks) => {
            if !matches!(req.method(), Method::Get | Method::Head) {
                return refuse(&SubError::method_not_allowed(wire::JWKS_METHODS));
            }
            let Some(signer) = signing::signer(env).await else {
                return refuse(&SubError::new(
                    503,
                    "UNAVAILABLE",
                    "SUBSCRIPTION_SIGNING_KEY is not configured",
                ));
            };
            let headers = Headers::new();
            headers.set("content-type", "application/jwk-set+json")?;
            headers.set("cache-control", "public, max-age=300")?;
            return Ok(Response::ok(signer.jwks())?.with_headers(headers));
        }
        Ok(Route::Sub { id, action }) => (id, action),
    };
    let method = req.method();
    // Bodies are small JSON: read whole, bounded.
    let body =
        match convert::read_body(&mut req, wire::MAX_BODY_BYTES as u64, 64 * 1024 * 1024).await {
            Ok((b, _)) => b,
            Err(_) => {
                return refuse(&SubError::new(
                    413,
                    "PAYLOAD_TOO_LARGE",
                    "the body is too large",
                ))
            }
        };
    let auth = req.headers().get("authorization")?;
    if !action.wake_token() {
        let now = worker::Date::now().as_millis();
        let needs = needs(&id, &action, &method, &body);
        if let Err(e) = access::check_needs(env, &req, &url, &needs, now).await? {
            return convert::render_error(&e);
        }
    }
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    headers.set(BASE_HEADER, &url.origin().ascii_serialization())?;
    if let (true, Some(a)) = (action.wake_token(), auth) {
        headers.set("authorization", &a)?;
    }
    let mut init = RequestInit::new();
    init.with_method(method.clone()).with_headers(headers);
    if matches!(method, Method::Put | Method::Post) {
        init.with_body(Some(js_sys::Uint8Array::from(body.as_slice()).into()));
    }
    let forwarded = Request::new_with_init(&format!("https://internal{}", url.path()), &init)?;
    let stub = env.durable_object(SUBSCRIPTIONS)?.get_by_name(&id)?;
    stub.fetch_with_request(forwarded).await
}
