//! Stream lifetime: `Stream-TTL` (sliding) and `Stream-Expires-At` (absolute),
//! PROTOCOL.md §5.1. TTL is a strict decimal (no sign, no leading zeros, no
//! fraction or exponent); Expires-At is RFC 3339. Both at once is a 400 (we
//! take the spec's SHOULD). Times are milliseconds since the Unix epoch, passed
//! in by the caller: nothing here reads a clock.

use super::error::Invalid;
use super::offset::MAX_SAFE_INTEGER;
use super::producer::parse_safe_uint;

/// Largest TTL whose millisecond value stays a safe JavaScript integer.
pub const MAX_TTL_SECS: u64 = MAX_SAFE_INTEGER / 1000;

/// A stream's lifetime policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expiry {
    Never,
    /// Expires `secs` after the last read or write.
    Ttl {
        secs: u64,
    },
    /// Expires at `ms`; `text` is the value as the client sent it.
    At {
        ms: i64,
        text: String,
    },
}

/// Strict `Stream-TTL` parse.
pub fn parse_ttl(value: &str) -> Result<u64, Invalid> {
    parse_safe_uint(value)
        .filter(|secs| *secs <= MAX_TTL_SECS)
        .ok_or(Invalid::Ttl)
}

/// `Stream-Expires-At` parse (RFC 3339 with a mandatory offset or `Z`).
pub fn parse_expires_at(value: &str) -> Result<i64, Invalid> {
    let t = value.trim();
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| d.timestamp_millis())
        .map_err(|_| Invalid::ExpiresAt)
}

impl Expiry {
    /// From the two optional request headers.
    pub fn from_headers(ttl: Option<&str>, expires_at: Option<&str>) -> Result<Expiry, Invalid> {
        match (ttl, expires_at) {
            (Some(_), Some(_)) => Err(Invalid::TtlWithExpiresAt),
            (Some(t), None) => Ok(Expiry::Ttl {
                secs: parse_ttl(t)?,
            }),
            (None, Some(a)) => Ok(Expiry::At {
                ms: parse_expires_at(a)?,
                text: a.trim().to_string(),
            }),
            (None, None) => Ok(Expiry::Never),
        }
    }

    /// When a stream last touched at `last_access_ms` expires, if ever.
    pub fn deadline(&self, last_access_ms: u64) -> Option<u64> {
        match self {
            Expiry::Never => None,
            Expiry::Ttl { secs } => Some(last_access_ms.saturating_add(secs.saturating_mul(1000))),
            Expiry::At { ms, .. } => Some(u64::try_from(*ms).unwrap_or(0)),
        }
    }

    /// Same policy for the idempotent-create comparison (§5.1): the same TTL,
    /// or the same instant however it was written.
    pub fn same_policy(&self, other: &Expiry) -> bool {
        match (self, other) {
            (Expiry::Never, Expiry::Never) => true,
            (Expiry::Ttl { secs: a }, Expiry::Ttl { secs: b }) => a == b,
            (Expiry::At { ms: a, .. }, Expiry::At { ms: b, .. }) => a == b,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_accepts_plain_decimals() {
        assert_eq!(parse_ttl("0"), Ok(0));
        assert_eq!(parse_ttl("3600"), Ok(3600));
    }

    #[test]
    fn ttl_rejects_each_non_canonical_form() {
        for s in [
            "",
            "+3600",
            "-1",
            "03600",
            "00",
            "3600.0",
            "3.6e3",
            " 3600",
            "3600 ",
            "1_000",
            "abc",
            "99999999999999999",
        ] {
            assert_eq!(parse_ttl(s), Err(Invalid::Ttl), "{s:?}");
        }
    }

    #[test]
    fn ttl_bound_keeps_milliseconds_safe() {
        assert!(parse_ttl(&MAX_TTL_SECS.to_string()).is_ok());
        assert_eq!(
            parse_ttl(&(MAX_TTL_SECS + 1).to_string()),
            Err(Invalid::Ttl)
        );
    }

    #[test]
    fn expires_at_parses_rfc3339() {
        assert_eq!(parse_expires_at("1970-01-01T00:00:01Z"), Ok(1000));
        assert_eq!(parse_expires_at("1970-01-01T01:00:01+01:00"), Ok(1000));
        assert_eq!(
            parse_expires_at("2024-10-09T00:00:00.250Z"),
            Ok(1_728_432_000_250)
        );
    }

    #[test]
    fn expires_at_rejects_garbage() {
        for s in [
            "",
            "tomorrow",
            "2024-10-09",
            "2024-10-09T00:00:00",
            "1728432000",
        ] {
            assert_eq!(parse_expires_at(s), Err(Invalid::ExpiresAt), "{s:?}");
        }
    }

    #[test]
    fn both_headers_conflict() {
        assert_eq!(
            Expiry::from_headers(Some("1"), Some("2030-01-01T00:00:00Z")),
            Err(Invalid::TtlWithExpiresAt)
        );
    }

    #[test]
    fn deadlines() {
        assert_eq!(Expiry::Never.deadline(5), None);
        assert_eq!(Expiry::Ttl { secs: 2 }.deadline(5), Some(2005));
        let at = Expiry::from_headers(None, Some("1970-01-01T00:00:03Z")).unwrap();
        assert_eq!(at.deadline(99_999), Some(3000));
    }
}
