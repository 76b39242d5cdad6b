//! Stream offsets (PROTOCOL.md §8).
//!
//! Wire form: `%016d_%016d`, the reference servers' shape: a read sequence
//! (always 0 here: a stream is one log) and the byte position in the stream's
//! stored representation. Fixed width makes lexicographic order equal numeric
//! order, as §8 requires. Parsing is strict: exactly 16 digits, `_`, 16 digits,
//! a zero read sequence and a position at most 2^53−1 (positions cross into
//! JavaScript and SQLite as doubles). The sentinels `-1` and `now` are request
//! values only ([`OffsetParam`]); they are never printed as an [`Offset`].

use std::fmt;
use std::str::FromStr;

/// Largest integer that survives a round trip through a JavaScript number.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

const DIGITS: usize = 16;
const WIRE_LEN: usize = DIGITS * 2 + 1;

/// A position in a stream, as minted by this server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset(u64);

/// Why an offset string was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetError {
    /// Not `16 digits _ 16 digits`.
    Malformed,
    /// Well-formed but not one this server mints (non-zero read sequence or
    /// a position beyond 2^53−1).
    OutOfRange,
}

impl Offset {
    pub const ZERO: Offset = Offset(0);

    /// Builds an offset from a byte position; `None` past 2^53−1.
    pub fn new(position: u64) -> Option<Offset> {
        (position <= MAX_SAFE_INTEGER).then_some(Offset(position))
    }

    pub fn position(self) -> u64 {
        self.0
    }

    /// The offset `len` bytes further on, if still representable.
    pub fn advance(self, len: u64) -> Option<Offset> {
        self.0.checked_add(len).and_then(Offset::new)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016}_{:016}", 0, self.0)
    }
}

fn all_digits(s: &[u8]) -> bool {
    s.iter().all(u8::is_ascii_digit)
}

fn parse_digits(s: &[u8]) -> u64 {
    // Callers pass at most 16 ASCII digits, so this cannot overflow u64.
    s.iter()
        .fold(0u64, |acc, d| acc * 10 + u64::from(d.wrapping_sub(b'0')))
}

impl FromStr for Offset {
    type Err = OffsetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() != WIRE_LEN {
            return Err(OffsetError::Malformed);
        }
        let (seq, rest) = bytes.split_at(DIGITS);
        let (sep, pos) = rest.split_at(1);
        if sep != b"_" || !all_digits(seq) || !all_digits(pos) {
            return Err(OffsetError::Malformed);
        }
        if parse_digits(seq) != 0 {
            return Err(OffsetError::OutOfRange);
        }
        Offset::new(parse_digits(pos)).ok_or(OffsetError::OutOfRange)
    }
}

/// The `offset` query parameter of a read (PROTOCOL.md §5.6, §8 sentinels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetParam {
    /// Absent or `-1`: the start of the stream.
    Start,
    /// `now`: the current tail.
    Now,
    /// A server-minted offset.
    At(Offset),
}

impl FromStr for OffsetParam {
    type Err = OffsetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "-1" => Ok(OffsetParam::Start),
            "now" => Ok(OffsetParam::Now),
            other => other.parse().map(OffsetParam::At),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_prints_as_the_reference_literal() {
        assert_eq!(
            Offset::ZERO.to_string(),
            "0000000000000000_0000000000000000"
        );
    }

    #[test]
    fn round_trips() {
        for p in [0, 1, 42, 123_456_789, MAX_SAFE_INTEGER] {
            let o = Offset::new(p).unwrap();
            assert_eq!(o.to_string().parse::<Offset>(), Ok(o));
        }
    }

    #[test]
    fn lexicographic_order_is_numeric_order() {
        let a = Offset::new(9).unwrap().to_string();
        let b = Offset::new(10).unwrap().to_string();
        assert!(a < b);
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "0",
            "0,1",
            "0 1",
            "0000000000000000-0000000000000000",
            "000000000000000_00000000000000000",
            "0000000000000000_000000000000000a",
            "+000000000000000_0000000000000000",
            "0000000000000000_0000000000000000 ",
            "0000000000000000__000000000000000",
            "０000000000000000_000000000000000",
        ] {
            assert_eq!(s.parse::<Offset>(), Err(OffsetError::Malformed), "{s:?}");
        }
    }

    #[test]
    fn rejects_offsets_this_server_never_mints() {
        assert_eq!(
            "0000000000000001_0000000000000000".parse::<Offset>(),
            Err(OffsetError::OutOfRange)
        );
        assert_eq!(
            "0000000000000000_9999999999999999".parse::<Offset>(),
            Err(OffsetError::OutOfRange)
        );
    }

    #[test]
    fn sentinels() {
        assert_eq!("-1".parse(), Ok(OffsetParam::Start));
        assert_eq!("now".parse(), Ok(OffsetParam::Now));
        assert_eq!("NOW".parse::<OffsetParam>(), Err(OffsetError::Malformed));
        assert_eq!("-2".parse::<OffsetParam>(), Err(OffsetError::Malformed));
    }

    #[test]
    fn advance_stops_at_the_safe_integer_bound() {
        assert_eq!(Offset::ZERO.advance(5), Offset::new(5));
        assert_eq!(Offset::new(MAX_SAFE_INTEGER).unwrap().advance(1), None);
        assert_eq!(Offset::ZERO.advance(u64::MAX), None);
    }
}
