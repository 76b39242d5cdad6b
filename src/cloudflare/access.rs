//! Access control in the Worker (PROTOCOL.md §12.1, §12.5): the first step
//! after routing, before the edge cache and before any body is read, so a
//! 401/403/429 costs the stream's object nothing and a cache HIT is served
//! only to a request allowed to read it. The decisions are the engine's
//! (`engine::access`); this module finds the token, checks its signature
//! with WebCrypto, applies the rate limit and strips the credentials from
//! what goes on to the cache and the object.

use super::crypto;
use crate::engine::access::{self, Allowed, Gate, Settings};
use crate::protocol::auth::{self, Denied};
use crate::protocol::error::ProtocolError;
use crate::protocol::headers as h;
use crate::protocol::path::StreamPath;
use worker::{Env, Headers, Method, Request, RequestInit, Url};

/// The rate-limit binding (wrangler.toml `[[ratelimits]]`); without it
/// there is no limit.
pub const RATE_LIMITER: &str = "RATE_LIMITER";
/// What a limited client is told to wait, in seconds (the binding's period).
const RATE_PERIOD_S: u64 = 60;

thread_local! {
    /// Read once per isolate: variables and secrets change only with a
    /// redeploy, which starts new isolates.
    static SETTINGS: std::cell::OnceCell<std::rc::Rc<Settings>> = const { std::cell::OnceCell::new() };
}

pub fn settings(env: &Env) -> std::rc::Rc<Settings> {
    SETTINGS.with(|s| {
        s.get_or_init(|| {
            let lookup = |n: &str| {
                env.secret(n)
                    .ok()
                    .map(|v| v.to_string())
                    .or_else(|| env.var(n).ok().map(|v| v.to_string()))
            };
            let settings = Settings::from_lookup(lookup);
            if let Some(p) = &settings.problem {
                worker::console_error!("access control: {p}");
            }
            std::rc::Rc::new(settings)
        })
        .clone()
    })
}

/// The bearer token of a request: `Authorization`, or for reads `?token=`.
fn token(req: &Request, url: &Url) -> Option<String> {
    if let Some(t) = req
        .headers()
        .get(h::AUTHORIZATION)
        .ok()
        .flatten()
        .and_then(|v| auth::bearer(&v).map(str::to_string))
    {
        return Some(t);
    }
    matches!(req.method(), Method::Get | Method::Head)
        .then(|| {
            url.query_pairs()
                .find(|(k, _)| k == h::query::TOKEN)
                .map(|(_, v)| v.into_owned())
        })
        .flatten()
}

/// Checks a request against the deployment's access settings. `Ok(Err(e))`:
/// answer `e` (401, 403 or 429).
pub async fn check(
    env: &Env,
    req: &Request,
    url: &Url,
    path: &StreamPath,
    now_ms: u64,
) -> worker::Result<Result<Allowed, ProtocolError>> {
    let forked_from = req
        .headers()
        .get(h::STREAM_FORKED_FROM)?
        .and_then(|v| StreamPath::from_url_path(v.trim()).ok().flatten())
        .map(|p| p.as_str().to_string());
    let needs = auth::needs(req.method().as_ref(), path.as_str(), forked_from.as_deref());
    check_needs(env, req, url, &needs, now_ms).await
}

/// [`check`] for what a request needs, given directly (the subscription
/// routes: `subscribe` on the id, `read` on the streams it covers).
pub async fn check_needs(
    env: &Env,
    req: &Request,
    url: &Url,
    needs: &[(auth::Op, String)],
    now_ms: u64,
) -> worker::Result<Result<Allowed, ProtocolError>> {
    let settings = settings(env);
    let needs = needs.to_vec();
    let allowed = match access::gate(&settings, &needs, token(req, url).as_deref()) {
        Gate::Allow(a) => a,
        Gate::Deny(d) => return Ok(Err(d.into())),
        Gate::Verify { token, candidates } => {
            let mut verified = false;
            for c in candidates {
                if crypto::verifies(&settings, c, &token.signing_input, &token.signature).await {
                    verified = true;
                    break;
                }
            }
            if !verified {
                return Ok(Err(Denied::Unauthenticated(
                    "the token's signature does not verify",
                )
                .into()));
            }
            match access::admit(&settings, &token, &needs, now_ms) {
                Ok(a) => a,
                Err(d) => return Ok(Err(d.into())),
            }
        }
    };
    if !within_rate(env, req, &allowed).await {
        return Ok(Err(ProtocolError::RateLimited {
            retry_after_s: RATE_PERIOD_S,
        }));
    }
    Ok(Ok(allowed))
}

/// The rate limit (§12.5), per token subject, else per client address.
async fn within_rate(env: &Env, req: &Request, allowed: &Allowed) -> bool {
    let Ok(limiter) = env.rate_limiter(RATE_LIMITER) else {
        return true;
    };
    let key = match &allowed.subject {
        Some(sub) => format!("sub:{sub}"),
        None => format!(
            "ip:{}",
            req.headers()
                .get("cf-connecting-ip")
                .ok()
                .flatten()
                .unwrap_or_else(|| "unknown".into())
        ),
    };
    match limiter.limit(key).await {
        Ok(outcome) => outcome.success,
        Err(e) => {
            // A limiter that fails lets the request through: availability
            // first, and the failure is logged.
            worker::console_error!("rate limiter: {e}");
            true
        }
    }
}

/// The request as the cache and the object see it: without `?token=`,
/// `Authorization` (credentials stop at the Worker) or the Worker's own
/// internal headers, which only it may set.
pub fn strip(req: Request, url: &Url) -> worker::Result<Request> {
    let has_token = url.query_pairs().any(|(k, _)| k == h::query::TOKEN);
    let internal = |k: &str| k == h::AUTHORIZATION || k == super::bridge::HEADER;
    let has_internal = req.headers().keys().any(|k| internal(&k));
    if !has_token && !has_internal {
        return Ok(req);
    }
    let mut clean = url.clone();
    if has_token {
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != h::query::TOKEN)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        clean.set_query(None);
        if !kept.is_empty() {
            clean.query_pairs_mut().extend_pairs(kept);
        }
    }
    let headers = Headers::new();
    for (k, v) in req.headers().entries() {
        if !internal(&k) {
            headers.append(&k, &v)?;
        }
    }
    let mut init = RequestInit::new();
    init.with_method(req.method()).with_headers(headers);
    if let Some(body) = req.inner().body() {
        init.with_body(Some(body.into()));
    }
    Request::new_with_init(clean.as_str(), &init)
}
