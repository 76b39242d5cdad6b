//! A subscription's Durable Object (PROTOCOL.md §6, §7), one per id: the
//! rhythm of the stream object (load, engine, persist, answer) around
//! [`crate::engine::subscription::Sub`], plus the work its alarm does:
//! webhook deliveries (signed, with the persisted retry schedule), wake
//! events on a pull-wake `wake_stream`, lease expiry, index registration
//! and pattern backfill. Everything the alarm owes is in storage, so an
//! eviction or a restart resumes the schedule where it was (§7.1).
//!
//! The Worker has checked access before a request gets here; callbacks,
//! acks and releases carry the wake token, checked here (§7.3, §12.9).

use super::signing::{self, random_hex};
use super::sub_calls::{self, INDEX_ADD, INDEX_MATCH, INDEX_REMOVE, LINK, NOTIFY};
use crate::engine::subscription::{Delivery, Due, Head, Link, Sub};
use crate::protocol::subscription::{self as wire, route, Action, Route, SubError, PREFIX};
use futures_util::future::{select, Either};
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::time::Duration;
use worker::{
    durable_object, DurableObject, Env, Fetch, Method, Request, RequestInit, Response, Result,
    SqlStorageValue as V, State,
};

#[path = "sub_alarm.rs"]
mod alarm;
#[path = "sub_requests.rs"]
mod requests;
#[path = "sub_store.rs"]
mod store;

/// The header carrying the origin clients use (set by the Worker).
pub const BASE_HEADER: &str = "x-ds-base";
/// How long a webhook receiver may take to answer.
const WEBHOOK_TIMEOUT_MS: u64 = 10_000;
/// The most of a webhook's answer read (for `{"done": true}`).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Work items one alarm does at most before re-arming.
const ALARM_STEPS: usize = 8;

#[durable_object]
pub struct SubscriptionObject {
    state: State,
    env: Env,
    /// `Some(None)`: loaded, no subscription.
    sub: RefCell<Option<Option<Sub>>>,
    /// The alarm is running: it arms the next one itself when done.
    in_alarm: Cell<bool>,
    /// Requests and alarms in this object's life (the test route reads them).
    requests: Cell<u64>,
    alarms: Cell<u64>,
}

/// The test-only counters path (served when `TEST_ROUTES` is `1`).
pub const TEST_COUNTS: &str = "/__test/counts";

fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

fn jitter() -> f64 {
    js_sys::Math::random() * 2.0 - 1.0
}

fn new_id() -> String {
    format!("w_{}", random_hex(12))
}

fn answer(status: u16, body: &Value) -> Result<Response> {
    Ok(Response::from_json(body)?.with_status(status))
}

/// Renders a refusal of a subscription route (the Worker's and the
/// object's).
pub(super) fn refuse(e: &SubError) -> Result<Response> {
    let headers = worker::Headers::new();
    headers.set("content-type", "application/json")?;
    if let Some(allow) = e.allow {
        headers.set(crate::protocol::headers::ALLOW, allow)?;
    }
    Ok(Response::ok(e.body())?
        .with_status(e.status)
        .with_headers(headers))
}

fn unavailable(why: &str) -> SubError {
    SubError::new(503, "UNAVAILABLE", why)
}

impl SubscriptionObject {
    /// `SUBSCRIPTION_MAX_STREAMS` (1 – 10,000; default 1,000).
    fn max_streams(&self) -> usize {
        self.env
            .var("SUBSCRIPTION_MAX_STREAMS")
            .ok()
            .and_then(|v| v.to_string().trim().parse::<usize>().ok())
            .map_or(crate::engine::subscription::DEFAULT_MAX_STREAMS, |n| {
                n.clamp(1, 10_000)
            })
    }

    fn allow_loopback(&self) -> bool {
        self.env
            .var("SUBSCRIPTION_DEV_LOOPBACK")
            .is_ok_and(|v| v.to_string() == "1")
    }

    async fn signing_metadata(&self, sub: &Sub) -> Option<Value> {
        let signer = signing::signer(&self.env).await?;
        Some(signer.metadata(&sub.jwks_url()))
    }

    async fn describe(&self, sub: &Sub, status: u16) -> Result<Response> {
        let created: String =
            js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(sub.head.created_ms as f64))
                .to_iso_string()
                .into();
        let signing = if sub.head.config.webhook_url.is_some() {
            self.signing_metadata(sub).await
        } else {
            None
        };
        answer(status, &sub.describe(signing, &created))
    }

    /// Links each explicit stream at its tail (§6.4).
    async fn link_explicit(
        &self,
        id: &str,
        streams: &[String],
    ) -> std::result::Result<Vec<(String, String)>, SubError> {
        let calls = streams.iter().map(|s| sub_calls::link(&self.env, s, id));
        let tails = futures_util::future::join_all(calls).await;
        let full = |s: &str| {
            SubError::new(
                409,
                "STREAM_SUBSCRIPTIONS_FULL",
                format!(
                    "stream {s} has {} subscriptions already",
                    sub_calls::MAX_SUBS_PER_STREAM
                ),
            )
        };
        streams
            .iter()
            .zip(tails)
            .map(|(s, t)| match t {
                Ok(Some(t)) => Ok((s.clone(), t)),
                Ok(None) => Err(full(s)),
                Err(_) => Err(unavailable("a stream could not be linked; retry")),
            })
            .collect()
    }

    async fn put(&self, id: &str, body: &[u8], base: &str) -> Result<Response> {
        let config = match wire::parse_config(body, self.allow_loopback()) {
            Ok(c) => c,
            Err(e) => return refuse(&e),
        };
        if config.kind == wire::Kind::Webhook && signing::signer(&self.env).await.is_none() {
            return refuse(&unavailable(
                "webhook signing is not configured (SUBSCRIPTION_SIGNING_KEY)",
            ));
        }
        if let Some(existing) = self.load()? {
            if existing.head.config.canonical() == config.canonical() {
                return self.describe(&existing, 200).await;
            }
            return refuse(&SubError::new(
                409,
                "SUBSCRIPTION_ALREADY_EXISTS",
                "the subscription exists with another configuration",
            ));
        }
        let tails = match self.link_explicit(id, &config.streams).await {
            Ok(t) => t,
            Err(e) => return refuse(&e),
        };
        // A concurrent PUT may have won while the links were made.
        if let Some(existing) = self.load()? {
            let same = existing.head.config.canonical() == config.canonical();
            return if same {
                self.describe(&existing, 200).await
            } else {
                refuse(&SubError::new(
                    409,
                    "SUBSCRIPTION_ALREADY_EXISTS",
                    "the subscription exists with another configuration",
                ))
            };
        }
        let mut sub = Sub::new(id, config, base, now_ms());
        sub.head.generation = self.generation_floor()?;
        sub.head.max_streams = self.max_streams();
        for (s, t) in &tails {
            sub.link(s, true, t);
        }
        sub.head.backfill = sub.head.config.pattern.as_ref().map(|_| String::new());
        self.save(sub).await?;
        // Registered before the answer when the index is reachable, so a
        // stream created after this 201 is matched (else the alarm retries).
        self.setup().await?;
        match self.load()? {
            Some(sub) => self.describe(&sub, 201).await,
            None => refuse(&unavailable("the subscription was deleted meanwhile")),
        }
    }
}

/// The URL path of stream `name` (each segment percent-encoded).
fn stream_url(name: &str) -> String {
    let segs: Vec<String> = name
        .split('/')
        .map(|s| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        })
        .collect();
    format!("https://internal/v1/stream/{}", segs.join("/"))
}

/// A string member of a JSON body.
fn member(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

impl DurableObject for SubscriptionObject {
    fn new(state: State, env: Env) -> Self {
        SubscriptionObject {
            state,
            env,
            sub: RefCell::new(None),
            in_alarm: Cell::new(false),
            requests: Cell::new(0),
            alarms: Cell::new(0),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let path = req.path();
        if path == TEST_COUNTS {
            let counts = json!({ "requests": self.requests.get(), "alarms": self.alarms.get() });
            return answer(200, &counts);
        }
        self.requests.set(self.requests.get() + 1);
        let result = if path == NOTIFY {
            let body: Value = serde_json::from_str(&req.text().await?).unwrap_or(Value::Null);
            self.notify(&body).await
        } else if path == LINK {
            refuse(&SubError::new(404, "NOT_FOUND", "not here"))
        } else {
            self.client(req).await
        };
        result.or_else(|e| {
            worker::console_error!("subscription object: {e}");
            *self.sub.borrow_mut() = None;
            refuse(&unavailable("the subscription is unavailable; retry"))
        })
    }

    async fn alarm(&self) -> Result<Response> {
        self.alarms.set(self.alarms.get() + 1);
        if let Err(e) = self.work().await {
            worker::console_error!("subscription alarm: {e}");
            *self.sub.borrow_mut() = None;
            let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(
                (now_ms() + alarm::setup_retry()) as f64,
            ));
            self.state
                .storage()
                .set_alarm(worker::ScheduledTime::new(date))
                .await?;
        }
        Response::empty()
    }
}
