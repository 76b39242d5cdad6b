//! Writer coordination headers: idempotent producers (PROTOCOL.md §5.2.1) and
//! `Stream-Seq` (§5.2).
//!
//! `Producer-Id`, `Producer-Epoch` and `Producer-Seq` come all together or not
//! at all; epoch and seq are strict decimals (no sign, no leading zeros) up to
//! 2^53−1. `Stream-Seq` is an opaque string compared byte-wise.

use super::error::Invalid;
use super::offset::MAX_SAFE_INTEGER;

const MAX_TOKEN_LEN: usize = 1024;

/// The producer tuple of one append request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerTuple {
    pub id: String,
    pub epoch: u64,
    pub seq: u64,
}

/// Printable ASCII only: header bytes reach us as Latin-1, so anything
/// else may be invalid UTF-8 we cannot tell apart from text.
fn visible(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_TOKEN_LEN && s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// A strict non-negative decimal up to 2^53−1.
pub fn parse_safe_uint(value: &str) -> Option<u64> {
    let b = value.as_bytes();
    let canonical = match b {
        [] => false,
        [b'0'] => true,
        [first, ..] => *first != b'0' && b.len() <= 16 && b.iter().all(u8::is_ascii_digit),
    };
    if !canonical {
        return None;
    }
    value.parse::<u64>().ok().filter(|v| *v <= MAX_SAFE_INTEGER)
}

impl ProducerTuple {
    /// From the three optional headers; `Ok(None)` when none is present.
    pub fn from_headers(
        id: Option<&str>,
        epoch: Option<&str>,
        seq: Option<&str>,
    ) -> Result<Option<ProducerTuple>, Invalid> {
        match (id, epoch, seq) {
            (None, None, None) => Ok(None),
            (Some(id), Some(epoch), Some(seq)) => {
                if !visible(id) {
                    return Err(Invalid::ProducerId);
                }
                let epoch = parse_safe_uint(epoch.trim()).ok_or(Invalid::ProducerEpoch)?;
                let seq = parse_safe_uint(seq.trim()).ok_or(Invalid::ProducerSeq)?;
                Ok(Some(ProducerTuple {
                    id: id.to_string(),
                    epoch,
                    seq,
                }))
            }
            _ => Err(Invalid::ProducerHeadersPartial),
        }
    }
}

/// A `Stream-Seq` value (§5.2): opaque, compared byte-wise.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamSeq(String);

impl StreamSeq {
    pub fn parse(value: &str) -> Result<StreamSeq, Invalid> {
        if visible(value) {
            Ok(StreamSeq(value.to_string()))
        } else {
            Err(Invalid::StreamSeq)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_or_none() {
        assert_eq!(ProducerTuple::from_headers(None, None, None), Ok(None));
        assert_eq!(
            ProducerTuple::from_headers(Some("p"), Some("0"), None),
            Err(Invalid::ProducerHeadersPartial)
        );
        assert_eq!(
            ProducerTuple::from_headers(None, Some("0"), Some("0")),
            Err(Invalid::ProducerHeadersPartial)
        );
    }

    #[test]
    fn parses_a_full_tuple() {
        assert_eq!(
            ProducerTuple::from_headers(Some("p-1"), Some("2"), Some("9007199254740991")),
            Ok(Some(ProducerTuple {
                id: "p-1".into(),
                epoch: 2,
                seq: MAX_SAFE_INTEGER
            }))
        );
    }

    #[test]
    fn rejects_junk_numbers() {
        for bad in [
            "",
            "-1",
            "+1",
            "01",
            "1.0",
            "1e3",
            "abc",
            "9007199254740992",
            "18446744073709551616",
        ] {
            assert_eq!(
                ProducerTuple::from_headers(Some("p"), Some(bad), Some("0")),
                Err(Invalid::ProducerEpoch),
                "{bad:?}"
            );
            assert_eq!(
                ProducerTuple::from_headers(Some("p"), Some("0"), Some(bad)),
                Err(Invalid::ProducerSeq),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rejects_non_ascii_ids_and_seqs() {
        assert_eq!(
            ProducerTuple::from_headers(Some("\u{ff}\u{fe}"), Some("0"), Some("0")),
            Err(Invalid::ProducerId)
        );
        assert_eq!(StreamSeq::parse("caf\u{e9}"), Err(Invalid::StreamSeq));
        assert!(StreamSeq::parse("a b~").is_ok());
    }

    #[test]
    fn rejects_empty_or_control_ids() {
        assert_eq!(
            ProducerTuple::from_headers(Some(""), Some("0"), Some("0")),
            Err(Invalid::ProducerId)
        );
        assert_eq!(
            ProducerTuple::from_headers(Some("a\u{0}b"), Some("0"), Some("0")),
            Err(Invalid::ProducerId)
        );
    }

    #[test]
    fn stream_seq_orders_bytewise() {
        let a = StreamSeq::parse("10").unwrap();
        let b = StreamSeq::parse("9").unwrap();
        assert!(a < b, "byte-wise, \"10\" < \"9\"");
        assert_eq!(StreamSeq::parse(""), Err(Invalid::StreamSeq));
    }
}
