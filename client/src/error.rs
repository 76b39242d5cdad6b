//! Typed errors: each protocol status a caller may act on (PROTOCOL.md §5),
//! and the transport's own failures.

use std::time::Duration;

/// What went wrong.
#[derive(Debug)]
pub enum Error {
    /// 400: the request was malformed (the server's reason).
    BadRequest(String),
    /// 401: no usable token.
    Unauthorized(String),
    /// 403: the token lacks the scope, or (producers) a stale epoch.
    Forbidden(String),
    /// 404: no stream at this URL.
    NotFound,
    /// 409: a conflict: another configuration, a closed stream, a
    /// `Stream-Seq` regression, a content-type mismatch.
    Conflict { code: String, message: String },
    /// 409 for an idempotent producer: the server expected `expected_seq`.
    SeqGap {
        expected_seq: u64,
        received_seq: u64,
    },
    /// 403 for an idempotent producer: the server's epoch is newer.
    StaleEpoch { current_epoch: Option<u64> },
    /// 410: the stream was deleted, or the offset was trimmed by a retention
    /// policy; resume from `earliest` when the server says where.
    Gone { earliest: Option<String> },
    /// 413: the body is larger than the server allows.
    TooLarge(String),
    /// 429: slow down; retry after this long when the server says.
    RateLimited { retry_after: Option<Duration> },
    /// 5xx: the server (or its platform) failed; retrying is safe for reads
    /// and idempotent appends.
    Server {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// The answer broke the protocol (a missing header, a bad body).
    Protocol(String),
    /// The connection failed.
    Transport(reqwest::Error),
}

impl Error {
    /// Whether retrying the same request may succeed (network errors, 5xx,
    /// 429).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            Error::Transport(_) | Error::Server { .. } | Error::RateLimited { .. }
        )
    }

    /// How long the server asked to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after } | Error::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::BadRequest(m) => write!(f, "bad request: {m}"),
            Error::Unauthorized(m) => write!(f, "unauthorized: {m}"),
            Error::Forbidden(m) => write!(f, "forbidden: {m}"),
            Error::NotFound => write!(f, "no such stream"),
            Error::Conflict { code, message } => write!(f, "conflict ({code}): {message}"),
            Error::SeqGap {
                expected_seq,
                received_seq,
            } => write!(
                f,
                "producer sequence gap: expected {expected_seq}, sent {received_seq}"
            ),
            Error::StaleEpoch { current_epoch } => match current_epoch {
                Some(e) => write!(f, "stale producer epoch (the server's is {e})"),
                None => write!(f, "stale producer epoch"),
            },
            Error::Gone { earliest: Some(e) } => write!(f, "gone: the earliest offset is {e}"),
            Error::Gone { earliest: None } => write!(f, "gone: the stream was deleted"),
            Error::TooLarge(m) => write!(f, "too large: {m}"),
            Error::RateLimited { .. } => write!(f, "rate limited"),
            Error::Server { status, .. } => write!(f, "server error {status}"),
            Error::Protocol(m) => write!(f, "protocol: {m}"),
            Error::Transport(e) => write!(f, "transport: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Error {
        Error::Transport(e)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// The `Retry-After` header in seconds.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The error an unsuccessful answer means.
pub(crate) async fn from_response(r: reqwest::Response) -> Error {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let text = r.text().await.unwrap_or_default();
    let (code, message) = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| {
            let e = v.get("error")?;
            Some((
                e.get("code")?.as_str()?.to_string(),
                e.get("message")
                    .and_then(|m| m.as_str())
                    .unwrap_or("")
                    .to_string(),
            ))
        })
        .unwrap_or_else(|| (String::new(), text.chars().take(200).collect()));
    let num = |n: &str| header(n).and_then(|v| v.parse::<u64>().ok());
    match status {
        400 => Error::BadRequest(message),
        401 => Error::Unauthorized(message),
        403 if header("producer-epoch").is_some() => Error::StaleEpoch {
            current_epoch: num("producer-epoch"),
        },
        403 => Error::Forbidden(message),
        404 => Error::NotFound,
        409 if num("producer-expected-seq").is_some() => Error::SeqGap {
            expected_seq: num("producer-expected-seq").unwrap_or(0),
            received_seq: num("producer-received-seq").unwrap_or(0),
        },
        409 => Error::Conflict { code, message },
        410 => Error::Gone {
            earliest: header("stream-earliest-offset"),
        },
        413 => Error::TooLarge(message),
        429 => Error::RateLimited {
            retry_after: retry_after(&headers),
        },
        s if s >= 500 => Error::Server {
            status: s,
            retry_after: retry_after(&headers),
        },
        s => Error::Protocol(format!("unexpected status {s}: {message}")),
    }
}
