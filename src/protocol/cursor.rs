//! Long-poll and SSE cursors (PROTOCOL.md §10.1).
//!
//! The cursor is the number of `interval_s`-second intervals since
//! 2024-10-09T00:00:00Z, in decimal. When the client echoes a cursor that is
//! not behind the current interval, the answer jumps ahead by 1–3600 s of
//! jitter (at least one interval), so CDN-collapsed long-polls always get a
//! new cache key and can never loop on a cached response. The jitter's
//! randomness comes in as an argument.

/// 2024-10-09T00:00:00Z in ms since the Unix epoch.
pub const EPOCH_MS: u64 = 1_728_432_000_000;
const MAX_JITTER_S: u64 = 3600;
const MAX_CLIENT_DIGITS: usize = 15;

/// The interval `now_ms` falls in.
pub fn interval(now_ms: u64, interval_s: u64) -> u64 {
    now_ms.saturating_sub(EPOCH_MS) / interval_s.max(1).saturating_mul(1000)
}

/// The cursor to answer with, given the client's echoed one and a random
/// value (any `u64`; only its distribution matters).
pub fn next(now_ms: u64, interval_s: u64, client: Option<&str>, random: u64) -> String {
    let current = interval(now_ms, interval_s);
    let echoed = client
        .filter(|c| {
            !c.is_empty() && c.len() <= MAX_CLIENT_DIGITS && c.bytes().all(|b| b.is_ascii_digit())
        })
        .and_then(|c| c.parse::<u64>().ok());
    match echoed {
        Some(c) if c >= current => {
            let jitter_s = 1 + random % MAX_JITTER_S;
            let step = jitter_s.div_ceil(interval_s.max(1)).max(1);
            (c + step).to_string()
        }
        _ => current.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_intervals_from_the_epoch() {
        assert_eq!(interval(EPOCH_MS, 20), 0);
        assert_eq!(interval(EPOCH_MS + 19_999, 20), 0);
        assert_eq!(interval(EPOCH_MS + 20_000, 20), 1);
        assert_eq!(interval(0, 20), 0);
    }

    #[test]
    fn behind_or_missing_cursors_get_the_current_interval() {
        let now = EPOCH_MS + 1_000_000;
        assert_eq!(next(now, 20, None, 7), "50");
        assert_eq!(next(now, 20, Some("49"), 7), "50");
        assert_eq!(next(now, 20, Some("junk"), 7), "50");
        assert_eq!(next(now, 20, Some("1234567890123456"), 7), "50");
    }

    #[test]
    fn a_current_or_future_cursor_always_moves_forward() {
        let now = EPOCH_MS + 1_000_000;
        for r in [0, 1, 19, 20, 3599, u64::MAX] {
            for c in [50u64, 51, 9_999] {
                let got: u64 = next(now, 20, Some(&c.to_string()), r).parse().unwrap();
                assert!(got > c && got <= c + 180, "{c} -> {got}");
            }
        }
    }
}
