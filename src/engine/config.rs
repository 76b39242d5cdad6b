//! Limits and timeouts, read once per request from the platform's variables
//! and passed down as a value (no globals). Every variable has a documented
//! default (README.md, Configuration).

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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            long_poll_timeout_ms: 20_000,
            sse_max_lifetime_ms: 60_000,
            sse_keepalive_ms: 15_000,
            max_append_bytes: 16 * 1024 * 1024,
            max_read_chunk_bytes: 4 * 1024 * 1024,
            cursor_interval_s: 20,
            row_bytes: 1024 * 1024,
            fork_grace_ms: 30_000,
            fork_retry_ms: 5_000,
        }
    }
}

/// Variable names, as set in wrangler.toml `[vars]` or the environment.
pub const VARS: [&str; 9] = [
    "LONG_POLL_TIMEOUT_MS",
    "SSE_MAX_LIFETIME_MS",
    "SSE_KEEPALIVE_MS",
    "MAX_APPEND_BYTES",
    "MAX_READ_CHUNK_BYTES",
    "CURSOR_INTERVAL_S",
    "ROW_BYTES",
    "FORK_GRACE_MS",
    "FORK_RETRY_MS",
];

/// Largest row we ever write: under the 2 MB SQLite row limit.
const MAX_ROW_BYTES: u64 = 1_900_000;

impl Config {
    /// Builds the configuration from a variable lookup. A missing or
    /// malformed variable keeps its default; values are clamped to sane
    /// ranges (rows stay under the SQLite limit, nothing is zero).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Config {
        let d = Config::default();
        let get = |name: &str, default: u64| -> u64 {
            lookup(name)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|v| *v > 0)
                .unwrap_or(default)
        };
        Config {
            long_poll_timeout_ms: get(VARS[0], d.long_poll_timeout_ms),
            sse_max_lifetime_ms: get(VARS[1], d.sse_max_lifetime_ms),
            sse_keepalive_ms: get(VARS[2], d.sse_keepalive_ms),
            max_append_bytes: get(VARS[3], d.max_append_bytes),
            max_read_chunk_bytes: get(VARS[4], d.max_read_chunk_bytes),
            cursor_interval_s: get(VARS[5], d.cursor_interval_s),
            row_bytes: get(VARS[6], d.row_bytes).min(MAX_ROW_BYTES),
            fork_grace_ms: get(VARS[7], d.fork_grace_ms),
            fork_retry_ms: get(VARS[8], d.fork_retry_ms),
        }
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
            "CURSOR_INTERVAL_S" => Some("0".into()),
            "ROW_BYTES" => Some("99999999".into()),
            _ => None,
        });
        assert_eq!(c.long_poll_timeout_ms, 500);
        assert_eq!(c.max_append_bytes, Config::default().max_append_bytes);
        assert_eq!(c.cursor_interval_s, 20);
        assert_eq!(c.row_bytes, MAX_ROW_BYTES);
    }
}
