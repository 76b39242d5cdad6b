//! Retention policies (an extension, a pure superset of PROTOCOL.md; §4
//! allows servers to "drop data older than a certain age while the stream
//! continues", and §5.6 reserves `410 Gone` for offsets before the earliest
//! retained position). A stream created with any of
//!
//! ```text
//! Stream-Retention-Max-Age: <seconds>       keep messages younger than this
//! Stream-Retention-Max-Bytes: <bytes>       keep at most this many stored bytes
//! Stream-Retention-Max-Messages: <count>    keep at most this many messages (JSON mode)
//!                                           or appends (other content types)
//! ```
//!
//! keeps only its recent history. Values are strict positive decimals (no
//! sign, no leading zeros, at most 2^53−1). A deployment sets a default and
//! a ceiling for each (`RETENTION_DEFAULT_*`, `RETENTION_MAX_*`): an absent
//! header takes the default, a value above the ceiling is a 400, so no
//! stream grows past what the deployment allows without being trimmed.

use super::error::Invalid;
use super::producer::parse_safe_uint;

use super::headers::{
    STREAM_RETENTION_MAX_AGE as MAX_AGE, STREAM_RETENTION_MAX_BYTES as MAX_BYTES,
    STREAM_RETENTION_MAX_MESSAGES as MAX_MESSAGES,
};

/// A retention policy; `None`: no bound of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    pub max_age_s: Option<u64>,
    pub max_bytes: Option<u64>,
    pub max_messages: Option<u64>,
}

/// A deployment's defaults and ceilings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub default: Retention,
    pub ceiling: Retention,
}

fn positive(v: &str) -> Result<u64, Invalid> {
    parse_safe_uint(v.trim())
        .filter(|n| *n > 0)
        .ok_or(Invalid::Retention)
}

/// The tighter of two optional bounds.
fn min(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

impl Retention {
    pub fn is_none(&self) -> bool {
        *self == Retention::default()
    }

    /// From the three optional request headers (as sent).
    pub fn from_headers(
        age: Option<&str>,
        bytes: Option<&str>,
        messages: Option<&str>,
    ) -> Result<Retention, Invalid> {
        Ok(Retention {
            max_age_s: age.map(positive).transpose()?,
            max_bytes: bytes.map(positive).transpose()?,
            max_messages: messages.map(positive).transpose()?,
        })
    }

    /// The policy a stream gets: each absent bound takes the deployment's
    /// default; a requested bound above the ceiling is refused; a default
    /// above the ceiling (a misconfiguration) is lowered to it.
    pub fn within(self, limits: &Limits) -> Result<Retention, Invalid> {
        let one =
            |asked: Option<u64>, default: Option<u64>, ceiling: Option<u64>| match (asked, ceiling)
            {
                (Some(a), Some(c)) if a > c => Err(Invalid::RetentionCeiling),
                (Some(a), _) => Ok(Some(a)),
                (None, c) => Ok(min(default, c)),
            };
        Ok(Retention {
            max_age_s: one(
                self.max_age_s,
                limits.default.max_age_s,
                limits.ceiling.max_age_s,
            )?,
            max_bytes: one(
                self.max_bytes,
                limits.default.max_bytes,
                limits.ceiling.max_bytes,
            )?,
            max_messages: one(
                self.max_messages,
                limits.default.max_messages,
                limits.ceiling.max_messages,
            )?,
        })
    }

    /// Whether a re-`PUT` that sent `self` (as sent) describes a stream
    /// whose stored policy is `stored`: every bound it names is equal. An
    /// absent header matches, because what it defaulted to depends on the
    /// deployment's configuration when the stream was made, which may have
    /// changed since.
    pub fn agrees(&self, stored: &Retention) -> bool {
        let one = |asked: Option<u64>, have: Option<u64>| asked.is_none() || asked == have;
        one(self.max_age_s, stored.max_age_s)
            && one(self.max_bytes, stored.max_bytes)
            && one(self.max_messages, stored.max_messages)
    }

    /// The policy's headers, for `HEAD` and idempotent re-`PUT` comparison.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        [
            (MAX_AGE, self.max_age_s),
            (MAX_BYTES, self.max_bytes),
            (MAX_MESSAGES, self.max_messages),
        ]
        .into_iter()
        .filter_map(|(h, v)| v.map(|v| (h, v.to_string())))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_strict_positive_integers() {
        let r = Retention::from_headers(Some("60"), None, Some("100")).unwrap();
        assert_eq!(r.max_age_s, Some(60));
        assert_eq!(r.max_messages, Some(100));
        assert!(Retention::from_headers(None, None, None).unwrap().is_none());
        for bad in ["0", "-1", "01", "1.5", "1e3", "", "abc", "9007199254740992"] {
            assert_eq!(
                Retention::from_headers(Some(bad), None, None),
                Err(Invalid::Retention),
                "{bad:?}"
            );
        }
        assert_eq!(
            r.headers(),
            vec![
                (MAX_AGE, "60".to_string()),
                (MAX_MESSAGES, "100".to_string())
            ]
        );
    }

    #[test]
    fn defaults_fill_in_and_ceilings_refuse() {
        let limits = Limits {
            default: Retention {
                max_bytes: Some(1_000),
                max_age_s: Some(10_000),
                ..Retention::default()
            },
            ceiling: Retention {
                max_bytes: Some(5_000),
                max_age_s: Some(5_000),
                ..Retention::default()
            },
        };
        let none = Retention::default().within(&limits).unwrap();
        assert_eq!(none.max_bytes, Some(1_000));
        assert_eq!(
            none.max_age_s,
            Some(5_000),
            "a default above the ceiling is lowered"
        );
        assert_eq!(none.max_messages, None);
        let asked = Retention {
            max_bytes: Some(5_000),
            ..Retention::default()
        };
        assert_eq!(asked.within(&limits).unwrap().max_bytes, Some(5_000));
        let over = Retention {
            max_bytes: Some(5_001),
            ..Retention::default()
        };
        assert_eq!(over.within(&limits), Err(Invalid::RetentionCeiling));
    }
}
