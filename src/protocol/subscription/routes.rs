//! Where a request under [`PREFIX`](super::PREFIX) goes: the key set, or a subscription
//! and the action on it (the route table is in the parent module's doc),
//! with the methods each route answers.

use super::{SubError, MAX_ID};
use percent_encoding::percent_decode_str;

/// What a request under [`PREFIX`](super::PREFIX) asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Jwks,
    Sub { id: String, action: Action },
}

/// The methods the key set's route answers.
pub const JWKS_METHODS: &str = "GET, HEAD, OPTIONS";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `PUT`, `GET`, `DELETE` on the subscription itself.
    Itself,
    /// `POST .../streams`.
    Streams,
    /// `DELETE .../streams/:path` (decoded).
    Stream(String),
    Callback,
    Claim,
    Ack,
    Release,
}

impl Action {
    /// Authorized by the wake's own token, not a deployment token (§7.3).
    pub fn wake_token(&self) -> bool {
        matches!(self, Action::Callback | Action::Ack | Action::Release)
    }

    /// The methods the action's route answers (the router answers every
    /// `OPTIONS`).
    pub fn methods(&self) -> &'static str {
        match self {
            Action::Itself => "GET, PUT, DELETE, OPTIONS",
            Action::Stream(_) => "DELETE, OPTIONS",
            Action::Streams | Action::Callback | Action::Claim | Action::Ack | Action::Release => {
                "POST, OPTIONS"
            }
        }
    }
}

/// Parses the part of a URL path after [`PREFIX`](super::PREFIX). `Err`: a 404 or 400.
pub fn route(rest: &str) -> Result<Route, SubError> {
    if rest == "jwks.json" {
        return Ok(Route::Jwks);
    }
    let not_found = || SubError::new(404, "NOT_FOUND", "no such control route");
    let rest = rest.strip_prefix("subscriptions/").ok_or_else(not_found)?;
    let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let id = sub_id(id)?;
    let action = match tail {
        "" => Action::Itself,
        "streams" => Action::Streams,
        "callback" => Action::Callback,
        "claim" => Action::Claim,
        "ack" => Action::Ack,
        "release" => Action::Release,
        t => match t.strip_prefix("streams/") {
            Some(raw) => {
                let decoded = percent_decode_str(raw)
                    .decode_utf8()
                    .map_err(|_| SubError::invalid("the stream path is not UTF-8"))?;
                Action::Stream(stream_path(&decoded)?)
            }
            None => return Err(not_found()),
        },
    };
    Ok(Route::Sub { id, action })
}

/// A subscription id: 1 to 128 of `A-Z a-z 0-9 . _ ~ -`.
pub fn sub_id(raw: &str) -> Result<String, SubError> {
    let ok = !raw.is_empty()
        && raw.len() <= MAX_ID
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'));
    if ok {
        Ok(raw.to_string())
    } else {
        Err(SubError::invalid(
            "subscription ids are 1 to 128 characters of A-Z a-z 0-9 . _ ~ -",
        ))
    }
}

/// A stream-root-relative path as bodies carry it (§6): leading and
/// trailing slashes dropped, then the stream path rules (no empty, `.` or
/// `..` segment, no control character, not under `__ds`, ≤ 1,024 bytes).
pub fn stream_path(raw: &str) -> Result<String, SubError> {
    let p = raw.trim_matches('/');
    let bad = p.is_empty()
        || p.len() > crate::protocol::path::MAX_LEN
        || p.split('/').any(|s| {
            s.is_empty() || s == "." || s == ".." || s.chars().any(|c| c == '\\' || c.is_control())
        })
        || p == "__ds"
        || p.starts_with("__ds/");
    if bad {
        return Err(SubError::invalid(format!("not a stream path: {raw:?}")));
    }
    Ok(p.to_string())
}
