//! The reserved subscription APIs on the wire (PROTOCOL.md §6, §7, §12.8):
//! routes under `{stream root}/__ds/`, request bodies, webhook URL checks
//! and the JSON error shape `{"error": {"code", "message"}}`. Pure; the
//! state machine is [`crate::engine::subscription`].
//!
//! ```text
//! GET           __ds/jwks.json                        the webhook signing keys (§6.5)
//! PUT|GET|DELETE __ds/subscriptions/:id               create / read / delete (§6.2, §6.3)
//! POST          __ds/subscriptions/:id/streams        add explicit streams (§6.4)
//! DELETE        __ds/subscriptions/:id/streams/:path  remove one (URL-encoded path)
//! POST          __ds/subscriptions/:id/callback       webhook ack (Bearer wake token, §7.1)
//! POST          __ds/subscriptions/:id/claim|ack|release   pull-wake (§7.2)
//! ```

use super::glob::Glob;
use super::offset::WireOffset;
use super::outbound;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

mod routes;
pub use routes::{route, stream_path, sub_id, Action, Route, JWKS_METHODS};

/// The reserved prefix, routed before stream paths (§6).
pub const PREFIX: &str = "/v1/stream/__ds/";
/// The largest subscription request body read.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The most explicit streams one request may name.
pub const MAX_STREAMS_PER_REQUEST: usize = 100;
/// Lease bounds and default (§6.2).
pub const MIN_LEASE_MS: u64 = 1_000;
pub const MAX_LEASE_MS: u64 = 600_000;
pub const DEFAULT_LEASE_MS: u64 = 30_000;
const MAX_ID: usize = 128;
const MAX_DESCRIPTION: usize = 1_024;
const MAX_WORKER: usize = 256;
/// The most acks one request may carry.
const MAX_ACKS: usize = 1_000;

/// A refusal: status, stable code, short message (and, for a busy claim,
/// the holder and generation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub holder: Option<(String, u64)>,
    /// A 405's `Allow`: the methods the route answers (RFC 9110 §15.5.6).
    pub allow: Option<&'static str>,
}

impl SubError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> SubError {
        SubError {
            status,
            code,
            message: message.into(),
            holder: None,
            allow: None,
        }
    }

    /// A 405 naming the methods `allow` of the route.
    pub fn method_not_allowed(allow: &'static str) -> SubError {
        SubError {
            allow: Some(allow),
            ..SubError::new(
                405,
                "METHOD_NOT_ALLOWED",
                format!("this route answers {allow}"),
            )
        }
    }

    pub fn invalid(message: impl Into<String>) -> SubError {
        SubError::new(400, "INVALID_REQUEST", message)
    }

    pub fn body(&self) -> String {
        let mut e = json!({ "code": self.code, "message": self.message });
        if let (Some((holder, generation)), Some(o)) = (&self.holder, e.as_object_mut()) {
            o.insert("current_holder".into(), json!(holder));
            o.insert("generation".into(), json!(generation));
        }
        json!({ "error": e }).to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    #[serde(rename = "webhook")]
    Webhook,
    #[serde(rename = "pull-wake")]
    PullWake,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Webhook => "webhook",
            Kind::PullWake => "pull-wake",
        }
    }
}

/// A subscription's normalized configuration (§6.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubConfig {
    pub kind: Kind,
    pub pattern: Option<String>,
    /// Sorted, without duplicates.
    pub streams: Vec<String>,
    pub webhook_url: Option<String>,
    pub wake_stream: Option<String>,
    pub lease_ttl_ms: u64,
    pub description: Option<String>,
}

impl SubConfig {
    /// The normalized form compared for idempotent re-confirmation (§6.2):
    /// the same fields the reference hashes, in a fixed order. Comparing it
    /// is comparing its hash without the collision caveat.
    pub fn canonical(&self) -> String {
        json!([
            self.kind.as_str(),
            self.pattern,
            self.streams,
            self.webhook_url,
            self.wake_stream,
            self.lease_ttl_ms,
            self.description
        ])
        .to_string()
    }

    pub fn glob(&self) -> Option<Glob> {
        self.pattern.as_deref().and_then(Glob::parse)
    }
}

fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v.get(name).filter(|x| !x.is_null())
}

fn opt_str(v: &Value, name: &str, max: usize) -> Result<Option<String>, SubError> {
    match field(v, name) {
        None => Ok(None),
        Some(Value::String(s)) if s.len() <= max => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(SubError::invalid(format!("{name} is too long"))),
        Some(_) => Err(SubError::invalid(format!("{name} must be a string"))),
    }
}

fn object(body: &[u8]) -> Result<Value, SubError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(SubError::new(
            413,
            "PAYLOAD_TOO_LARGE",
            "the body is too large",
        ));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| SubError::invalid("the body must be a JSON object"))?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(SubError::invalid("the body must be a JSON object"))
    }
}

/// A `streams` array: stream paths, sorted, without duplicates.
fn streams_field(v: &Value) -> Result<Vec<String>, SubError> {
    let Some(list) = field(v, "streams") else {
        return Ok(Vec::new());
    };
    let items = list
        .as_array()
        .ok_or_else(|| SubError::invalid("streams must be an array of stream paths"))?;
    if items.len() > MAX_STREAMS_PER_REQUEST {
        return Err(SubError::invalid(format!(
            "at most {MAX_STREAMS_PER_REQUEST} streams per request"
        )));
    }
    let mut out = items
        .iter()
        .map(|i| {
            i.as_str()
                .ok_or_else(|| SubError::invalid("streams must be an array of stream paths"))
                .and_then(stream_path)
        })
        .collect::<Result<Vec<_>, _>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

/// Parses and validates a `PUT` body. `allow_loopback`: the development
/// exception of [`outbound::check`].
pub fn parse_config(body: &[u8], allow_loopback: bool) -> Result<SubConfig, SubError> {
    let v = object(body)?;
    let kind = match field(&v, "type").and_then(Value::as_str) {
        Some("webhook") => Kind::Webhook,
        Some("pull-wake") => Kind::PullWake,
        _ => return Err(SubError::invalid("type must be webhook or pull-wake")),
    };
    let pattern = opt_str(&v, "pattern", super::path::MAX_LEN)?;
    if let Some(p) = &pattern {
        if Glob::parse(p).is_none() || p.starts_with("__ds") {
            return Err(SubError::invalid("pattern is not a stream path glob"));
        }
    }
    let streams = streams_field(&v)?;
    if pattern.is_none() && field(&v, "streams").is_none() {
        return Err(SubError::invalid("pattern or streams is required"));
    }
    let lease_ttl_ms = match field(&v, "lease_ttl_ms") {
        None => DEFAULT_LEASE_MS,
        Some(n) => n
            .as_u64()
            .filter(|n| (MIN_LEASE_MS..=MAX_LEASE_MS).contains(n))
            .ok_or_else(|| {
                SubError::invalid("lease_ttl_ms must be an integer from 1000 to 600000")
            })?,
    };
    let description = opt_str(&v, "description", MAX_DESCRIPTION)?;
    let mut webhook_url = None;
    let mut wake_stream = None;
    match kind {
        Kind::Webhook => {
            let url = field(&v, "webhook")
                .and_then(|w| field(w, "url"))
                .and_then(Value::as_str)
                .ok_or_else(|| SubError::invalid("webhook subscriptions require webhook.url"))?;
            outbound::check(
                url,
                "webhook.url",
                "SUBSCRIPTION_DEV_LOOPBACK",
                allow_loopback,
            )
            .map_err(|m| SubError::new(400, "WEBHOOK_URL_REJECTED", m))?;
            webhook_url = Some(url.to_string());
        }
        Kind::PullWake => {
            let s = field(&v, "wake_stream")
                .and_then(Value::as_str)
                .ok_or_else(|| SubError::invalid("pull-wake subscriptions require wake_stream"))?;
            wake_stream = Some(stream_path(s)?);
        }
    }
    Ok(SubConfig {
        kind,
        pattern,
        streams,
        webhook_url,
        wake_stream,
        lease_ttl_ms,
        description,
    })
}

/// `POST .../streams`: `{"streams": [...]}`, at least one.
pub fn parse_streams(body: &[u8]) -> Result<Vec<String>, SubError> {
    let streams = streams_field(&object(body)?)?;
    if streams.is_empty() {
        return Err(SubError::invalid("streams must name at least one stream"));
    }
    Ok(streams)
}

/// `POST .../claim`: `{"worker": name}`.
pub fn parse_claim(body: &[u8]) -> Result<String, SubError> {
    match opt_str(&object(body)?, "worker", MAX_WORKER)? {
        Some(w) if !w.is_empty() => Ok(w),
        _ => Err(SubError::invalid("worker must be a non-empty string")),
    }
}

/// A callback, ack or release body (§7.1, §7.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WakeRequest {
    pub wake_id: Option<String>,
    pub generation: Option<u64>,
    /// (stream path, offset), offsets checked for form.
    pub acks: Vec<(String, String)>,
    pub done: bool,
}

pub fn parse_wake_request(body: &[u8]) -> Result<WakeRequest, SubError> {
    let v = object(body)?;
    let wake_id = opt_str(&v, "wake_id", MAX_ID)?;
    let generation = field(&v, "generation").and_then(Value::as_u64);
    let mut acks = Vec::new();
    if let Some(list) = field(&v, "acks") {
        let items = list
            .as_array()
            .filter(|a| a.len() <= MAX_ACKS)
            .ok_or_else(|| SubError::invalid("acks must be an array"))?;
        for a in items {
            let stream = a
                .get("stream")
                .or_else(|| a.get("path"))
                .and_then(Value::as_str)
                .ok_or_else(|| SubError::invalid("each ack needs stream and offset"))?;
            let offset = a
                .get("offset")
                .and_then(Value::as_str)
                .ok_or_else(|| SubError::invalid("each ack needs stream and offset"))?;
            if offset.parse::<WireOffset>().is_err() {
                return Err(SubError::new(
                    409,
                    "INVALID_OFFSET",
                    "ack offsets must be offsets this server printed",
                ));
            }
            acks.push((stream_path(stream)?, offset.to_string()));
        }
    }
    let done = field(&v, "done").and_then(Value::as_bool).unwrap_or(false);
    Ok(WakeRequest {
        wake_id,
        generation,
        acks,
        done,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("jwks.json"), Ok(Route::Jwks));
        let sub = |id: &str, action| {
            Ok(Route::Sub {
                id: id.into(),
                action,
            })
        };
        assert_eq!(route("subscriptions/s-1"), sub("s-1", Action::Itself));
        assert_eq!(route("subscriptions/s-1/claim"), sub("s-1", Action::Claim));
        assert_eq!(
            route("subscriptions/s-1/streams/manual%2Fb"),
            sub("s-1", Action::Stream("manual/b".into()))
        );
        assert_eq!(route("other").unwrap_err().status, 404);
        assert_eq!(route("subscriptions/s-1/nope").unwrap_err().status, 404);
        assert_eq!(route("subscriptions/a%20b").unwrap_err().status, 400);
        assert_eq!(route("subscriptions/").unwrap_err().status, 400);
        assert!(Action::Callback.wake_token() && !Action::Claim.wake_token());
        let e = SubError::method_not_allowed(Action::Stream("a".into()).methods());
        assert_eq!((e.status, e.allow), (405, Some("DELETE, OPTIONS")));
        assert_eq!(SubError::invalid("x").allow, None);
    }

    #[test]
    fn configs_are_validated_and_normalized() {
        let c = parse_config(
            br#"{"type":"webhook","pattern":"events/*","streams":["b","/a/","b"],
                "webhook":{"url":"https://hooks.example.com/x"},"description":"d"}"#,
            false,
        )
        .unwrap();
        assert_eq!(c.streams, vec!["a", "b"]);
        assert_eq!(c.lease_ttl_ms, DEFAULT_LEASE_MS);
        let again = parse_config(
            br#"{"type":"webhook","pattern":"events/*","streams":["a","b"],
                "webhook":{"url":"https://hooks.example.com/x"},"description":"d"}"#,
            false,
        )
        .unwrap();
        assert_eq!(c.canonical(), again.canonical());
        let bad = |b: &str| parse_config(b.as_bytes(), true).unwrap_err();
        assert_eq!(bad(r#"{"type":"x","pattern":"a"}"#).code, "INVALID_REQUEST");
        assert_eq!(bad(r#"{"type":"pull-wake"}"#).code, "INVALID_REQUEST");
        assert_eq!(
            bad(r#"{"type":"pull-wake","pattern":"a"}"#).code,
            "INVALID_REQUEST"
        );
        assert_eq!(
            bad(r#"{"type":"webhook","pattern":"a"}"#).code,
            "INVALID_REQUEST"
        );
        let lease = r#"{"type":"pull-wake","pattern":"a","wake_stream":"w","lease_ttl_ms":999}"#;
        assert_eq!(bad(lease).code, "INVALID_REQUEST");
        assert_eq!(
            bad(r#"{"type":"pull-wake","pattern":"a//b","wake_stream":"w"}"#).status,
            400
        );
        assert_eq!(
            bad(r#"{"type":"pull-wake","streams":["__ds/x"],"wake_stream":"w"}"#).status,
            400
        );
        assert_eq!(bad("[]").status, 400);
        assert_eq!(
            parse_config(&vec![b' '; MAX_BODY_BYTES + 1], true)
                .unwrap_err()
                .status,
            413
        );
        let unsafe_url =
            r#"{"type":"webhook","pattern":"a","webhook":{"url":"http://10.0.0.1/h"}}"#;
        assert_eq!(bad(unsafe_url).code, "WEBHOOK_URL_REJECTED");
    }

    #[test]
    fn wake_requests() {
        let r = parse_wake_request(
            br#"{"wake_id":"w1","generation":3,"acks":[{"stream":"a/b","offset":"0000000000000001_0000000000000002"},{"path":"c","offset":"0000000000000001_0000000000000000"}],"done":true}"#,
        )
        .unwrap();
        assert_eq!(r.generation, Some(3));
        assert_eq!(r.acks.len(), 2);
        assert!(r.done);
        let bad = parse_wake_request(br#"{"acks":[{"stream":"a","offset":"-1"}]}"#).unwrap_err();
        assert_eq!(bad.code, "INVALID_OFFSET");
        assert_eq!(parse_claim(br#"{"worker":"w-1"}"#).unwrap(), "w-1");
        assert!(parse_claim(br#"{"worker":""}"#).is_err());
        assert!(parse_streams(br#"{"streams":[]}"#).is_err());
        let e = SubError {
            holder: Some(("w".into(), 7)),
            ..SubError::new(409, "ALREADY_CLAIMED", "held")
        };
        let v: Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(v["error"]["current_holder"], "w");
        assert_eq!(v["error"]["generation"], 7);
    }
}
