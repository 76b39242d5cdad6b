//! Every header and query-parameter name the protocol uses, as lowercase
//! constants (PROTOCOL.md §13.2 lists the registered ones). No other module
//! spells a header name: they import it from here.

pub const CONTENT_TYPE: &str = "content-type";
pub const CONTENT_LENGTH: &str = "content-length";
pub const CACHE_CONTROL: &str = "cache-control";
pub const ETAG: &str = "etag";
pub const IF_NONE_MATCH: &str = "if-none-match";
pub const LOCATION: &str = "location";
pub const ALLOW: &str = "allow";
pub const VARY: &str = "vary";
pub const RETRY_AFTER: &str = "retry-after";
/// Sent by a reconnecting `EventSource`: the `id:` of the last event it saw.
pub const LAST_EVENT_ID: &str = "last-event-id";
pub const AUTHORIZATION: &str = "authorization";
pub const WWW_AUTHENTICATE: &str = "www-authenticate";
pub const ORIGIN: &str = "origin";
pub const UPGRADE: &str = "upgrade";
pub const CONTENT_SECURITY_POLICY: &str = "content-security-policy";
pub const CONTENT_DISPOSITION: &str = "content-disposition";
/// What the Worker's edge cache did: `HIT`, `MISS` or `BYPASS`.
pub const X_CACHE: &str = "x-cache";

pub const STREAM_TTL: &str = "stream-ttl";
pub const STREAM_EXPIRES_AT: &str = "stream-expires-at";
pub const STREAM_SEQ: &str = "stream-seq";
pub const STREAM_CURSOR: &str = "stream-cursor";
pub const STREAM_NEXT_OFFSET: &str = "stream-next-offset";
pub const STREAM_UP_TO_DATE: &str = "stream-up-to-date";
pub const STREAM_CLOSED: &str = "stream-closed";
pub const STREAM_FORKED_FROM: &str = "stream-forked-from";
pub const STREAM_FORK_OFFSET: &str = "stream-fork-offset";
pub const STREAM_FORK_SUB_OFFSET: &str = "stream-fork-sub-offset";
pub const STREAM_SSE_DATA_ENCODING: &str = "stream-sse-data-encoding";
// Retention (an extension; `protocol::retention`).
pub const STREAM_RETENTION_MAX_AGE: &str = "stream-retention-max-age";
pub const STREAM_RETENTION_MAX_BYTES: &str = "stream-retention-max-bytes";
pub const STREAM_RETENTION_MAX_MESSAGES: &str = "stream-retention-max-messages";
/// The first retained offset, on `HEAD` and on a `410` for a trimmed offset.
pub const STREAM_EARLIEST_OFFSET: &str = "stream-earliest-offset";

pub const PRODUCER_ID: &str = "producer-id";
pub const PRODUCER_EPOCH: &str = "producer-epoch";
pub const PRODUCER_SEQ: &str = "producer-seq";
pub const PRODUCER_EXPECTED_SEQ: &str = "producer-expected-seq";
pub const PRODUCER_RECEIVED_SEQ: &str = "producer-received-seq";

// PROTOCOL.md §12.7 browser security headers.
pub const X_CONTENT_TYPE_OPTIONS: &str = "x-content-type-options";
pub const REFERRER_POLICY: &str = "referrer-policy";
pub const CROSS_ORIGIN_RESOURCE_POLICY: &str = "cross-origin-resource-policy";

// CORS.
pub const ACCESS_CONTROL_ALLOW_ORIGIN: &str = "access-control-allow-origin";
pub const ACCESS_CONTROL_ALLOW_METHODS: &str = "access-control-allow-methods";
pub const ACCESS_CONTROL_ALLOW_HEADERS: &str = "access-control-allow-headers";
pub const ACCESS_CONTROL_EXPOSE_HEADERS: &str = "access-control-expose-headers";
pub const ACCESS_CONTROL_MAX_AGE: &str = "access-control-max-age";

/// Query parameter names (PROTOCOL.md §5.6–§5.8).
pub mod query {
    pub const OFFSET: &str = "offset";
    pub const LIVE: &str = "live";
    pub const CURSOR: &str = "cursor";
    /// A bearer token for `GET`/`HEAD` (browser `EventSource`, links); never
    /// part of a cache key, never forwarded to the object.
    pub const TOKEN: &str = "token";
}
