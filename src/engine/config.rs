//! Limits and timeouts, read from the platform's variables and passed down
//! as a value (no globals). Every variable has a documented default and a
//! range (README.md, Configuration): a missing or malformed value keeps its
//! default, and a value outside the range is clamped into it, so no setting
//! can turn a timer into a hot loop (timers above 2^31 ms fire at once) or a
//! limit into an isolate-sized allocation.

use crate::protocol::retention::{Limits, Retention};

/// The engine's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// How long a long-poll waits at the tail (PROTOCOL.md §5.7).
    pub long_poll_timeout_ms: u64,
    /// How long an SSE connection lives before the server closes it (§5.8).
    pub sse_max_lifetime_ms: u64,
    /// How often an idle SSE connection gets a keep-alive control event, so
    /// a dead client is noticed and intermediaries do not time out.
    pub sse_keepalive_ms: u64,
    /// Largest accepted append or initial body, in bytes (413 above).
    pub max_append_bytes: u64,
    /// Most JSON messages one append or initial body may hold (413 above).
    pub max_append_messages: u64,
    /// Target size of one catch-up response body (§5.6 chunking).
    pub max_read_chunk_bytes: u64,
    /// Cursor interval (§10.1).
    pub cursor_interval_s: u64,
    /// Largest stored row (the SQLite row limit is 2 MB).
    pub row_bytes: u64,
    /// How long a fork creation may take before its object gives up on it
    /// and releases the source's reference (`cloudflare/forks.rs`).
    pub fork_grace_ms: u64,
    /// How soon an undelivered message between objects is retried.
    pub fork_retry_ms: u64,
    /// How long an idle producer's state is kept (§5.2.1 "Producer State
    /// Cleanup"); after that the producer is treated as new.
    pub producer_ttl_s: u64,
    /// `max-age` of a cacheable catch-up chunk (§10.1), before the stream's
    /// expiry caps it.
    pub cache_max_age_s: u64,
    /// `stale-while-revalidate` of a cacheable catch-up chunk (§10.1).
    pub cache_swr_s: u64,
    /// Live readers (long-poll and SSE) one stream may hold at once; beyond
    /// it a new reader gets 503 with `Retry-After`.
    pub max_readers_per_stream: u64,
    /// Append bytes an isolate may hold in flight at once; beyond it an
    /// append gets 503 with `Retry-After` (the isolate has 128 MB).
    pub max_inflight_append_bytes: u64,
    /// 1: SSE readers and long-polls wait in the Worker on a hibernatable
    /// socket to the stream's object (the bridge); 0: they wait as requests
    /// held in the object (the earlier design, kept for comparison).
    pub live_bridge: u64,
    /// Retention defaults and ceilings (`protocol::retention`); 0: none.
    pub retention_default_max_age_s: u64,
    pub retention_default_max_bytes: u64,
    pub retention_default_max_messages: u64,
    pub retention_max_age_s: u64,
    pub retention_max_bytes: u64,
    pub retention_max_messages: u64,
}

impl Default for Config {
    fn default() -> Self {
        let mut c = Config {
            long_poll_timeout_ms: 0,
            sse_max_lifetime_ms: 0,
            sse_keepalive_ms: 0,
            max_append_bytes: 0,
            max_append_messages: 0,
            max_read_chunk_bytes: 0,
            cursor_interval_s: 0,
            row_bytes: 0,
            fork_grace_ms: 0,
            fork_retry_ms: 0,
            producer_ttl_s: 0,
            cache_max_age_s: 0,
            cache_swr_s: 0,
            max_readers_per_stream: 0,
            max_inflight_append_bytes: 0,
            live_bridge: 0,
            retention_default_max_age_s: 0,
            retention_default_max_bytes: 0,
            retention_default_max_messages: 0,
            retention_max_age_s: 0,
            retention_max_bytes: 0,
            retention_max_messages: 0,
        };
        for v in VARS {
            *(v.field)(&mut c) = v.default;
        }
        c
    }
}

/// One variable: its name, default, allowed range and field.
pub struct Var {
    pub name: &'static str,
    pub default: u64,
    pub min: u64,
    pub max: u64,
    field: fn(&mut Config) -> &mut u64,
}

const MIB: u64 = 1024 * 1024;
const DAY_S: u64 = 86_400;

/// Every variable, as set in wrangler.toml `[vars]` or the environment.
#[rustfmt::skip]
pub const VARS: [Var; 22] = [
    Var { name: "LONG_POLL_TIMEOUT_MS", default: 20_000, min: 1, max: 300_000, field: |c| &mut c.long_poll_timeout_ms },
    Var { name: "SSE_MAX_LIFETIME_MS", default: 60_000, min: 1, max: 3_600_000, field: |c| &mut c.sse_max_lifetime_ms },
    Var { name: "SSE_KEEPALIVE_MS", default: 15_000, min: 100, max: 600_000, field: |c| &mut c.sse_keepalive_ms },
    Var { name: "MAX_APPEND_BYTES", default: 16 * MIB, min: 1, max: 32 * MIB, field: |c| &mut c.max_append_bytes },
    Var { name: "MAX_APPEND_MESSAGES", default: 1_000_000, min: 1, max: 16 * MIB, field: |c| &mut c.max_append_messages },
    Var { name: "MAX_READ_CHUNK_BYTES", default: 4 * MIB, min: 1, max: 16 * MIB, field: |c| &mut c.max_read_chunk_bytes },
    Var { name: "CURSOR_INTERVAL_S", default: 20, min: 1, max: 3600, field: |c| &mut c.cursor_interval_s },
    // Under the 2 MB SQLite row limit.
    Var { name: "ROW_BYTES", default: MIB, min: 1, max: 1_900_000, field: |c| &mut c.row_bytes },
    Var { name: "FORK_GRACE_MS", default: 30_000, min: 1, max: 600_000, field: |c| &mut c.fork_grace_ms },
    Var { name: "FORK_RETRY_MS", default: 5_000, min: 1, max: 600_000, field: |c| &mut c.fork_retry_ms },
    Var { name: "PRODUCER_TTL_S", default: 7 * DAY_S, min: 1, max: 3650 * DAY_S, field: |c| &mut c.producer_ttl_s },
    Var { name: "CACHE_MAX_AGE_S", default: 60, min: 0, max: 365 * DAY_S, field: |c| &mut c.cache_max_age_s },
    Var { name: "CACHE_SWR_S", default: 300, min: 0, max: 365 * DAY_S, field: |c| &mut c.cache_swr_s },
    Var { name: "MAX_READERS_PER_STREAM", default: 2_000, min: 1, max: 32_768, field: |c| &mut c.max_readers_per_stream },
    Var { name: "MAX_INFLIGHT_APPEND_BYTES", default: 24 * MIB, min: MIB, max: 96 * MIB, field: |c| &mut c.max_inflight_append_bytes },
    Var { name: "LIVE_BRIDGE", default: 1, min: 0, max: 1, field: |c| &mut c.live_bridge },
    // Retention: 0 is "none". The byte ceiling keeps every stream below a
    // Durable Object's 10 GB of storage, trimmed rather than failing.
    Var { name: "RETENTION_DEFAULT_MAX_AGE_S", default: 0, min: 0, max: MAX_SAFE, field: |c| &mut c.retention_default_max_age_s },
    Var { name: "RETENTION_DEFAULT_MAX_BYTES", default: 0, min: 0, max: MAX_SAFE, field: |c| &mut c.retention_default_max_bytes },
    Var { name: "RETENTION_DEFAULT_MAX_MESSAGES", default: 0, min: 0, max: MAX_SAFE, field: |c| &mut c.retention_default_max_messages },
    Var { name: "RETENTION_MAX_AGE_S", default: 0, min: 0, max: MAX_SAFE, field: |c| &mut c.retention_max_age_s },
    Var { name: "RETENTION_MAX_BYTES", default: 8 * 1024 * MIB, min: 0, max: MAX_SAFE, field: |c| &mut c.retention_max_bytes },
    Var { name: "RETENTION_MAX_MESSAGES", default: 0, min: 0, max: MAX_SAFE, field: |c| &mut c.retention_max_messages },
];

const MAX_SAFE: u64 = crate::protocol::offset::MAX_SAFE_INTEGER;

impl Config {
    /// The deployment's retention defaults and ceilings.
    pub fn retention_limits(&self) -> Limits {
        let some = |v: u64| (v > 0).then_some(v);
        Limits {
            default: Retention {
                max_age_s: some(self.retention_default_max_age_s),
                max_bytes: some(self.retention_default_max_bytes),
                max_messages: some(self.retention_default_max_messages),
            },
            ceiling: Retention {
                max_age_s: some(self.retention_max_age_s),
                max_bytes: some(self.retention_max_bytes),
                max_messages: some(self.retention_max_messages),
            },
        }
    }

    /// Builds the configuration from a variable lookup: a missing or
    /// malformed value keeps its default, anything else is clamped into
    /// the variable's range.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Config {
        let mut c = Config::default();
        for v in VARS {
            if let Some(n) = lookup(v.name).and_then(|s| s.trim().parse::<u64>().ok()) {
                *(v.field)(&mut c) = n.clamp(v.min, v.max);
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_bad_values_keep_defaults() {
        let c = Config::from_lookup(|n| match n {
            "LONG_POLL_TIMEOUT_MS" => Some("500".into()),
            "MAX_APPEND_BYTES" => Some("lots".into()),
            "CURSOR_INTERVAL_S" => Some("-3".into()),
            _ => None,
        });
        assert_eq!(c.long_poll_timeout_ms, 500);
        assert_eq!(c.max_append_bytes, Config::default().max_append_bytes);
        assert_eq!(c.cursor_interval_s, 20);
    }

    #[test]
    fn values_are_clamped_into_their_range() {
        let c = Config::from_lookup(|n| match n {
            // Above 2^31 ms a timer fires at once: a hot loop.
            "LONG_POLL_TIMEOUT_MS" => Some("4294967296".into()),
            "SSE_KEEPALIVE_MS" => Some("0".into()),
            "ROW_BYTES" => Some("99999999".into()),
            "CURSOR_INTERVAL_S" => Some("0".into()),
            "MAX_APPEND_BYTES" => Some("18446744073709551615".into()),
            _ => None,
        });
        assert_eq!(c.long_poll_timeout_ms, 300_000);
        assert_eq!(c.sse_keepalive_ms, 100);
        assert_eq!(c.row_bytes, 1_900_000);
        assert_eq!(c.cursor_interval_s, 1);
        assert_eq!(c.max_append_bytes, 32 * MIB);
        for v in VARS {
            assert!(v.min <= v.default && v.default <= v.max, "{}", v.name);
            assert!(v.max < 1 << 31 || !v.name.ends_with("_MS"), "{}", v.name);
        }
    }
}
