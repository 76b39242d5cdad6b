//! The durable LLM proxy on the wire (an extension outside the stream
//! namespace; README.md, Resumable AI responses). A client posts a chat
//! request for an OpenAI-compatible chat-completions API and gets a stream
//! at once; the proxy's object runs the upstream call and appends the answer
//! to that stream:
//!
//! ```text
//! POST   /v1/proxy                  chat request → 201, Location: /v1/stream/proxy/<id>
//! GET    /v1/proxy/<id>             the job: {"id", "stream", "state"}
//! DELETE /v1/proxy/<id>             cancel: stop the upstream call, close the stream
//! POST   /v1/demo/chat/completions  the demo model (OpenAI-compatible, streaming)
//! ```
//!
//! The stream is JSON mode. Each message is one of
//!
//! ```text
//! {"type": "delta", "text": "..."}                       tokens, in order, once
//! {"type": "done", "status": "complete" | "interrupted" | "cancelled" | "failed",
//!  "output": "<every delta's text>", "finishReason"?: "...", "usage"?: {...},
//!  "reason"?: "..."}                                      the last message; the stream closes with it
//! ```
//!
//! Pure: request validation, the upstream's server-sent events, and the
//! messages. The job's decisions are in `engine::proxy`.

use serde_json::{json, Map, Value};

pub const ROUTE: &str = "/v1/proxy";
pub const DEMO_ROUTE: &str = "/v1/demo/chat/completions";
/// Where job streams live (`/v1/stream/proxy/<id>`).
pub const STREAM_PREFIX: &str = "proxy/";
/// The largest chat request accepted.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;
/// The longest line the upstream may send (a bound on what one event holds).
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;
/// The most messages one request may carry.
const MAX_MESSAGES: usize = 256;

/// A proxy route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `POST /v1/proxy`.
    Start,
    /// `/v1/proxy/<id>`.
    Job(String),
}

impl Route {
    /// The methods the route answers (a 405 names them in `Allow`).
    pub fn methods(&self) -> &'static str {
        match self {
            Route::Start => "POST, OPTIONS",
            Route::Job(_) => "GET, DELETE, OPTIONS",
        }
    }
}

/// The methods [`DEMO_ROUTE`] answers.
pub const DEMO_METHODS: &str = "POST, OPTIONS";

/// The route `path` names, if it is one of the proxy's.
pub fn route(path: &str) -> Option<Route> {
    let rest = path.strip_prefix(ROUTE)?;
    if rest.is_empty() || rest == "/" {
        return Some(Route::Start);
    }
    let id = rest.strip_prefix('/')?;
    valid_id(id).then(|| Route::Job(id.to_string()))
}

/// Job ids are what [`new_id`] mints: 32 lowercase hex digits.
pub fn valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A job id from 128 random bits.
pub fn new_id(random: [u64; 2]) -> String {
    format!("{:016x}{:016x}", random[0], random[1])
}

/// The stream path (canonical, no `/v1/stream/`) of job `id`.
pub fn stream_path(id: &str) -> String {
    format!("{STREAM_PREFIX}{id}")
}

/// Checks a client's chat request and builds the body sent upstream: the
/// same request with `stream: true` and usage reported, and `model` set to
/// `default_model` when absent. Refusals are short reasons for a 400.
pub fn upstream_body(body: &[u8], default_model: &str) -> Result<Vec<u8>, &'static str> {
    if body.len() > MAX_REQUEST_BYTES {
        return Err("the chat request is larger than 256 KiB");
    }
    let mut v: Map<String, Value> =
        serde_json::from_slice(body).map_err(|_| "the body must be a JSON object")?;
    let messages = v
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("the chat request needs a messages array")?;
    if messages.is_empty() || messages.len() > MAX_MESSAGES {
        return Err("messages must hold 1 to 256 entries");
    }
    let well_formed = messages.iter().all(|m| {
        m.get("role").and_then(Value::as_str).is_some()
            && m.get("content")
                .is_some_and(|c| c.is_string() || c.is_array())
    });
    if !well_formed {
        return Err("every message needs a role and a content");
    }
    match v.get("model") {
        None => {
            v.insert("model".into(), Value::from(default_model));
        }
        Some(Value::String(m)) if !m.is_empty() && m.len() <= 256 => {}
        Some(_) => return Err("model must be a non-empty string"),
    }
    v.insert("stream".into(), Value::Bool(true));
    v.insert("stream_options".into(), json!({ "include_usage": true }));
    serde_json::to_vec(&v).map_err(|_| "the chat request cannot be encoded")
}

/// The last user message's text (the demo model answers it).
pub fn last_user_text(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    v.get("messages")
        .and_then(Value::as_array)
        .and_then(|m| {
            m.iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        })
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Reads server-sent events as bytes arrive, in any cuts: each complete
/// `data:` field is handed back once its event ends (a blank line).
#[derive(Debug, Default)]
pub struct SseReader {
    line: Vec<u8>,
    data: Vec<u8>,
}

/// The upstream broke the event-stream format or its size bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed;

impl SseReader {
    /// Feeds `bytes`; returns the data of every event they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<String>, Malformed> {
        let mut out = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                self.line.push(b);
                if self.line.len() > MAX_EVENT_BYTES {
                    return Err(Malformed);
                }
                continue;
            }
            let line = std::mem::take(&mut self.line);
            let line = line.strip_suffix(b"\r").unwrap_or(&line);
            if line.is_empty() {
                if !self.data.is_empty() {
                    let data = std::mem::take(&mut self.data);
                    out.push(String::from_utf8(data).map_err(|_| Malformed)?);
                }
                continue;
            }
            if let Some(value) = line.strip_prefix(b"data:") {
                if !self.data.is_empty() {
                    self.data.push(b'\n');
                }
                self.data
                    .extend_from_slice(value.strip_prefix(b" ").unwrap_or(value));
                if self.data.len() > MAX_EVENT_BYTES {
                    return Err(Malformed);
                }
            }
            // Other fields (event:, id:, comments) carry nothing here.
        }
        Ok(out)
    }
}

/// What one upstream event says.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Generated text.
    Delta(String),
    /// The answer ended, with this reason (`stop`, `length`, ...).
    Finish(String),
    /// Token counts.
    Usage(Value),
    /// The upstream reported an error mid-stream.
    Error(String),
    /// `[DONE]`: nothing follows.
    Done,
}

/// Reads one event's data (a chat-completion chunk, `[DONE]`, or an error).
pub fn parse_event(data: &str) -> Vec<Event> {
    if data.trim() == "[DONE]" {
        return vec![Event::Done];
    }
    let Ok(v) = serde_json::from_str::<Value>(data) else {
        return vec![Event::Error("the upstream sent an unreadable event".into())];
    };
    let mut out = Vec::new();
    if let Some(e) = v.get("error") {
        let message = e
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("the upstream reported an error");
        out.push(Event::Error(truncate(message, 200)));
        return out;
    }
    let choice = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first());
    if let Some(c) = choice {
        if let Some(text) = c
            .get("delta")
            .and_then(|d| d.get("content"))
            .and_then(Value::as_str)
        {
            if !text.is_empty() {
                out.push(Event::Delta(text.to_string()));
            }
        }
        if let Some(reason) = c.get("finish_reason").and_then(Value::as_str) {
            out.push(Event::Finish(reason.to_string()));
        }
    }
    if let Some(usage) = v.get("usage").filter(|u| u.is_object()) {
        out.push(Event::Usage(usage.clone()));
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// How a job's answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Complete,
    Interrupted,
    Cancelled,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Complete => "complete",
            Status::Interrupted => "interrupted",
            Status::Cancelled => "cancelled",
            Status::Failed => "failed",
        }
    }
}

/// A `delta` message.
pub fn delta_message(text: &str) -> Value {
    json!({ "type": "delta", "text": text })
}

/// The last message of a job's stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Final {
    pub status: Status,
    pub output: String,
    pub finish_reason: Option<String>,
    pub usage: Option<Value>,
    pub reason: Option<String>,
}

impl Final {
    pub fn message(&self) -> Value {
        let mut m = json!({
            "type": "done",
            "status": self.status.as_str(),
            "output": self.output,
        });
        if let Some(obj) = m.as_object_mut() {
            if let Some(f) = &self.finish_reason {
                obj.insert("finishReason".into(), Value::from(f.as_str()));
            }
            if let Some(u) = &self.usage {
                obj.insert("usage".into(), u.clone());
            }
            if let Some(r) = &self.reason {
                obj.insert("reason".into(), Value::from(r.as_str()));
            }
        }
        m
    }
}

/// Removes every occurrence of `secret` from `text` (an upstream's error
/// message must never carry the key into a stream).
pub fn redact(text: &str, secret: &str) -> String {
    if secret.len() < 4 {
        return text.to_string();
    }
    text.replace(secret, "[redacted]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_ids() {
        assert_eq!(route("/v1/proxy"), Some(Route::Start));
        let id = new_id([1, 2]);
        assert!(valid_id(&id));
        assert_eq!(route(&format!("/v1/proxy/{id}")), Some(Route::Job(id)));
        assert_eq!(route("/v1/proxy/../x"), None);
        assert_eq!(route("/v1/proxyz"), None);
        assert_eq!(stream_path("ab"), "proxy/ab");
    }

    #[test]
    fn upstream_bodies_stream_with_usage() {
        let b = upstream_body(br#"{"messages":[{"role":"user","content":"hi"}]}"#, "demo").unwrap();
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["model"], "demo");
        assert_eq!(v["stream"], true);
        assert_eq!(v["stream_options"]["include_usage"], true);
        for bad in [
            &b"[]"[..],
            br#"{"messages":[]}"#,
            br#"{"messages":[{"content":"x"}]}"#,
            br#"{"messages":[{"role":"user","content":"x"}],"model":7}"#,
            b"not json",
        ] {
            assert!(
                upstream_body(bad, "m").is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(upstream_body(&vec![b' '; MAX_REQUEST_BYTES + 1], "m").is_err());
    }

    #[test]
    fn events_arrive_whatever_the_cuts() {
        let wire = b"data: {\"choices\":[{\"delta\":{\"content\":\"He\"}}]}\n\n: comment\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"llo\"},\"finish_reason\":\"stop\"}]}\r\n\r\ndata: [DONE]\n\n";
        for cut in 1..wire.len() {
            let mut r = SseReader::default();
            let mut events: Vec<Event> = Vec::new();
            for part in [&wire[..cut], &wire[cut..]] {
                for d in r.feed(part).unwrap() {
                    events.extend(parse_event(&d));
                }
            }
            assert_eq!(
                events,
                vec![
                    Event::Delta("He".into()),
                    Event::Delta("llo".into()),
                    Event::Finish("stop".into()),
                    Event::Done
                ],
                "cut at {cut}"
            );
        }
        let mut r = SseReader::default();
        assert_eq!(r.feed(&vec![b'x'; MAX_EVENT_BYTES + 1]), Err(Malformed));
    }

    #[test]
    fn usage_errors_and_final_messages() {
        let e = parse_event(r#"{"choices":[],"usage":{"total_tokens":5}}"#);
        assert_eq!(e, vec![Event::Usage(json!({"total_tokens":5}))]);
        let e = parse_event(r#"{"error":{"message":"rate limited"}}"#);
        assert_eq!(e, vec![Event::Error("rate limited".into())]);
        let f = Final {
            status: Status::Interrupted,
            output: "He".into(),
            finish_reason: None,
            usage: None,
            reason: Some("restarted".into()),
        };
        assert_eq!(
            f.message(),
            json!({"type":"done","status":"interrupted","output":"He","reason":"restarted"})
        );
        assert_eq!(
            redact("bad key sk-123456", "sk-123456"),
            "bad key [redacted]"
        );
    }
}
