//! The one protocol error enum and its single mapping to status, stable code,
//! headers and a short reason. Protocol errors are rendered, never bubbled
//! into a 500: only platform failures (storage, stub fetch) become 5xx, and
//! those live in the adapter, not here.

use super::headers as h;

/// A 400 reason. Each variant is one kind of malformed input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    Offset,
    OffsetRepeated,
    OffsetMissingForLive,
    OffsetNotOnBoundary,
    LiveMode,
    Cursor,
    Ttl,
    ExpiresAt,
    TtlWithExpiresAt,
    ContentType,
    ContentTypeMissing,
    EmptyBody,
    Body,
    Json,
    EmptyJsonArray,
    StreamSeq,
    ProducerHeadersPartial,
    ProducerId,
    ProducerEpoch,
    ProducerSeq,
    NewEpochSeqNotZero,
    Path,
    PathReserved,
    Header,
    ForkOffset,
    ForkSubOffset,
    ForkSource,
    ForkDepth,
    WebSocketUpgrade,
    MultiStreams,
    MultiLive,
    MultiLastEventId,
    Retention,
    RetentionCeiling,
}

impl Invalid {
    /// Stable machine-readable code and a short human reason.
    pub fn describe(self) -> (&'static str, &'static str) {
        use Invalid::*;
        match self {
            Offset => (
                "INVALID_OFFSET",
                "offset is malformed or was not issued by this server",
            ),
            OffsetRepeated => ("INVALID_OFFSET", "offset may be given only once"),
            OffsetMissingForLive => ("INVALID_OFFSET", "live reads require an offset"),
            OffsetNotOnBoundary => ("INVALID_OFFSET", "offset is not on a message boundary"),
            LiveMode => ("INVALID_LIVE_MODE", "live must be long-poll, sse or ws"),
            Cursor => ("INVALID_CURSOR", "cursor is malformed"),
            Ttl => (
                "INVALID_TTL",
                "Stream-TTL must be a non-negative decimal integer without leading zeros",
            ),
            ExpiresAt => (
                "INVALID_EXPIRES_AT",
                "Stream-Expires-At must be an RFC 3339 timestamp",
            ),
            TtlWithExpiresAt => (
                "CONFLICTING_EXPIRY",
                "Stream-TTL and Stream-Expires-At are mutually exclusive",
            ),
            ContentType => (
                "INVALID_CONTENT_TYPE",
                "Content-Type is not a valid media type",
            ),
            ContentTypeMissing => (
                "MISSING_CONTENT_TYPE",
                "Content-Type is required when a body is sent",
            ),
            EmptyBody => (
                "EMPTY_BODY",
                "an append needs a body unless Stream-Closed: true is set",
            ),
            Body => (
                "INVALID_BODY",
                "the request body could not be read completely",
            ),
            Json => ("INVALID_JSON", "body is not valid JSON"),
            EmptyJsonArray => (
                "EMPTY_JSON_ARRAY",
                "an append of an empty JSON array is not allowed",
            ),
            StreamSeq => (
                "INVALID_STREAM_SEQ",
                "Stream-Seq must be 1 to 1024 printable ASCII characters",
            ),
            ProducerHeadersPartial => (
                "INVALID_PRODUCER",
                "Producer-Id, Producer-Epoch and Producer-Seq must be sent together",
            ),
            ProducerId => (
                "INVALID_PRODUCER",
                "Producer-Id must be 1 to 1024 printable ASCII characters",
            ),
            ProducerEpoch => (
                "INVALID_PRODUCER",
                "Producer-Epoch must be an integer from 0 to 2^53-1",
            ),
            ProducerSeq => (
                "INVALID_PRODUCER",
                "Producer-Seq must be an integer from 0 to 2^53-1",
            ),
            NewEpochSeqNotZero => (
                "INVALID_PRODUCER",
                "a new producer epoch must start at Producer-Seq 0",
            ),
            Path => ("INVALID_PATH", "stream path is malformed"),
            PathReserved => ("RESERVED_PATH", "paths starting with __ds are reserved"),
            Header => ("INVALID_HEADER", "a header value is malformed"),
            ForkOffset => (
                "INVALID_FORK_OFFSET",
                "Stream-Fork-Offset is malformed or beyond the source tail",
            ),
            ForkSubOffset => (
                "INVALID_FORK_SUB_OFFSET",
                "Stream-Fork-Sub-Offset is malformed or past the next boundary",
            ),
            ForkSource => (
                "INVALID_FORK_SOURCE",
                "Stream-Forked-From must be a stream path on this server",
            ),
            WebSocketUpgrade => (
                "UPGRADE_REQUIRED",
                "live=ws needs a WebSocket upgrade (Upgrade: websocket)",
            ),
            ForkDepth => ("FORK_TOO_DEEP", "a fork chain may be at most 16 forks deep"),
            MultiStreams => (
                "INVALID_STREAMS",
                "name 1 to 32 distinct streams, each as s=<offset>:<path>",
            ),
            MultiLive => ("INVALID_LIVE_MODE", "a multi-stream read needs live=sse"),
            MultiLastEventId => (
                "INVALID_OFFSET",
                "Last-Event-ID must list one offset per stream, comma-separated",
            ),
            Retention => (
                "INVALID_RETENTION",
                "Stream-Retention-Max-Age, -Max-Bytes and -Max-Messages must be positive decimal integers",
            ),
            RetentionCeiling => (
                "INVALID_RETENTION",
                "a Stream-Retention-* value is above this deployment's ceiling (RETENTION_MAX_*)",
            ),
        }
    }
}

/// Every way a request can be refused by the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// 400 Bad Request.
    Invalid(Invalid),
    /// 401: no usable bearer token (§12.1); the reason says why.
    Unauthorized { reason: &'static str },
    /// 403: a valid token whose scopes do not allow `op` on `path`.
    Forbidden { op: &'static str, path: String },
    /// 403: a producer epoch older than the stored one (§5.2.1 fencing).
    StaleEpoch { current: u64 },
    /// 404: no stream at this path (or not a stream route at all).
    NotFound,
    /// 405, with `Allow: <allow>` (the methods the route answers).
    MethodNotAllowed { allow: &'static str },
    /// 409: PUT on an existing stream with a different configuration (§5.1).
    ConfigMismatch,
    /// 409: the append's content type differs from the stream's (§5.2).
    ContentTypeMismatch,
    /// 409: append to a closed stream (§5.2), with its final offset.
    StreamClosed { tail: String },
    /// 409: `Stream-Seq` not greater than the last one (§5.2).
    SeqRegression,
    /// 409: a producer sequence gap (§5.2.1).
    SeqGap { expected: u64, received: u64 },
    /// 410: the stream is soft-deleted (§4.2).
    Gone,
    /// 410: a fork's inherited range can no longer be read: the source
    /// incarnation it was made from is gone.
    InheritedGone,
    /// 410: the offset is before the earliest retained one (a retention
    /// policy trimmed it; `protocol::retention`), with
    /// `Stream-Earliest-Offset` to resume from.
    OffsetTrimmed { earliest: String },
    /// 413: the body is larger than the configured limit.
    PayloadTooLarge { limit: u64 },
    /// 413: more JSON messages in one body than the configured limit.
    TooManyMessages { limit: u64 },
    /// 414: the stream path is too long.
    UriTooLong,
    /// 429: the client (token subject, or address) passed its rate limit.
    RateLimited { retry_after_s: u64 },
    /// 503: a step between objects did not complete; retrying is safe.
    Unavailable,
    /// 503: the isolate holds as many append bytes as it may; retry later.
    AppendsBusy,
    /// 503: the stream holds as many live readers as it may; retry later.
    TooManyReaders { limit: u64 },
}

impl From<Invalid> for ProtocolError {
    fn from(v: Invalid) -> Self {
        ProtocolError::Invalid(v)
    }
}

/// What an error looks like on the wire, framework-free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorView {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub headers: Vec<(&'static str, String)>,
}

/// Methods a stream URL answers, for `Allow` on 405.
pub const ALLOWED_METHODS: &str = "GET, HEAD, PUT, POST, DELETE, OPTIONS";

impl ProtocolError {
    pub fn view(&self) -> ErrorView {
        use ProtocolError::*;
        let (status, code, message, headers): (
            u16,
            &'static str,
            String,
            Vec<(&'static str, String)>,
        ) = match self {
            Invalid(v) => {
                let (code, msg) = v.describe();
                (400, code, msg.into(), vec![])
            }
            Unauthorized { reason } => (
                401,
                "UNAUTHORIZED",
                (*reason).to_string(),
                vec![(
                    h::WWW_AUTHENTICATE,
                    "Bearer realm=\"durable-streams\"".into(),
                )],
            ),
            Forbidden { op, path } => (
                403,
                "FORBIDDEN",
                format!("the token does not allow {op} on {path}"),
                vec![],
            ),
            RateLimited { retry_after_s } => (
                429,
                "RATE_LIMITED",
                "too many requests; retry later".into(),
                vec![(h::RETRY_AFTER, retry_after_s.to_string())],
            ),
            StaleEpoch { current } => (
                403,
                "STALE_EPOCH",
                "producer epoch is older than the current one".into(),
                vec![(h::PRODUCER_EPOCH, current.to_string())],
            ),
            NotFound => (404, "NOT_FOUND", "stream not found".into(), vec![]),
            MethodNotAllowed { allow } => (
                405,
                "METHOD_NOT_ALLOWED",
                "method not allowed".into(),
                vec![(h::ALLOW, (*allow).into())],
            ),
            ConfigMismatch => (
                409,
                "STREAM_EXISTS",
                "stream exists with a different configuration".into(),
                vec![],
            ),
            ContentTypeMismatch => (
                409,
                "CONTENT_TYPE_MISMATCH",
                "Content-Type does not match the stream's".into(),
                vec![],
            ),
            StreamClosed { tail } => (
                409,
                "STREAM_CLOSED",
                "stream is closed".into(),
                vec![
                    (h::STREAM_CLOSED, "true".into()),
                    (h::STREAM_NEXT_OFFSET, tail.clone()),
                ],
            ),
            SeqRegression => (
                409,
                "SEQUENCE_CONFLICT",
                "Stream-Seq must be greater than the last one".into(),
                vec![],
            ),
            SeqGap { expected, received } => (
                409,
                "PRODUCER_SEQ_GAP",
                "producer sequence gap".into(),
                vec![
                    (h::PRODUCER_EXPECTED_SEQ, expected.to_string()),
                    (h::PRODUCER_RECEIVED_SEQ, received.to_string()),
                ],
            ),
            Gone => (410, "GONE", "stream was deleted".into(), vec![]),
            InheritedGone => (
                410,
                "INHERITED_DATA_GONE",
                "the stream this fork was made from no longer exists".into(),
                vec![],
            ),
            OffsetTrimmed { earliest } => (
                410,
                "OFFSET_TRIMMED",
                "the offset is before the earliest retained offset (Stream-Earliest-Offset)".into(),
                vec![(h::STREAM_EARLIEST_OFFSET, earliest.clone())],
            ),
            PayloadTooLarge { limit } => (
                413,
                "PAYLOAD_TOO_LARGE",
                format!("body exceeds the limit of {limit} bytes"),
                vec![],
            ),
            TooManyMessages { limit } => (
                413,
                "TOO_MANY_MESSAGES",
                format!("a JSON body may hold at most {limit} messages"),
                vec![],
            ),
            UriTooLong => (
                414,
                "URI_TOO_LONG",
                "stream path is too long".into(),
                vec![],
            ),
            Unavailable => (
                503,
                "UNAVAILABLE",
                "the operation could not complete; retry it".into(),
                vec![(h::RETRY_AFTER, "1".into())],
            ),
            AppendsBusy => (
                503,
                "APPENDS_BUSY",
                "too many append bytes in flight; retry shortly".into(),
                vec![(h::RETRY_AFTER, "1".into())],
            ),
            TooManyReaders { limit } => (
                503,
                "TOO_MANY_READERS",
                format!("this stream already has {limit} live readers; retry later"),
                vec![(h::RETRY_AFTER, "5".into())],
            ),
        };
        ErrorView {
            status,
            code,
            message,
            headers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_conflict_carries_the_final_offset() {
        let v = ProtocolError::StreamClosed {
            tail: "0000000000000000_0000000000000007".into(),
        }
        .view();
        assert_eq!(v.status, 409);
        assert!(v.headers.contains(&(h::STREAM_CLOSED, "true".into())));
        assert!(v.headers.contains(&(
            h::STREAM_NEXT_OFFSET,
            "0000000000000000_0000000000000007".into()
        )));
    }

    #[test]
    fn gap_carries_expected_and_received() {
        let v = ProtocolError::SeqGap {
            expected: 3,
            received: 5,
        }
        .view();
        assert_eq!(v.status, 409);
        assert!(v.headers.contains(&(h::PRODUCER_EXPECTED_SEQ, "3".into())));
        assert!(v.headers.contains(&(h::PRODUCER_RECEIVED_SEQ, "5".into())));
    }
}
