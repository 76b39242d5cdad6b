//! Stream offsets (PROTOCOL.md §8).
//!
//! Wire form: `%016d_%016d`, the reference servers' shape: a generation and
//! a byte position. The position counts bytes of the stream's stored form;
//! the generation is minted when the stream is created and differs for
//! every creation at the same path, so an offset names a position in one
//! incarnation of a stream only. That is what makes a chunk URL immutable
//! and safe to cache for good: after a delete and re-create, old offsets are
//! refused instead of naming other bytes. `0000000000000000_0000000000000000`
//! is the start of every stream (the conformance suite uses it as a fork
//! offset). Fixed width makes lexicographic order equal numeric order within
//! a stream, as §8 requires. Parsing is strict: exactly 16 digits, `_`, 16
//! digits, each at most 2^53−1 (they cross into JavaScript and SQLite as
//! doubles). The sentinels `-1` and `now` are request values only
//! ([`OffsetParam`]).
//!
//! Inside the engine an [`Offset`] is just a position; [`WireOffset`] is the
//! printed and parsed form, resolved against a stream by the engine.

use std::fmt;
use std::str::FromStr;

/// Largest integer that survives a round trip through a JavaScript number.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

const DIGITS: usize = 16;
const WIRE_LEN: usize = DIGITS * 2 + 1;

/// A byte position in a stream's stored form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset(u64);

/// An offset as clients see it: a stream generation and a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WireOffset {
    pub generation: u64,
    pub position: Offset,
}

/// Why an offset string was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetError {
    /// Not `16 digits _ 16 digits`.
    Malformed,
    /// Well-formed but past 2^53−1.
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

impl WireOffset {
    /// The start of every stream, whatever its generation.
    pub const START: WireOffset = WireOffset {
        generation: 0,
        position: Offset::ZERO,
    };

    pub fn new(generation: u64, position: Offset) -> WireOffset {
        WireOffset {
            generation,
            position,
        }
    }
}

impl fmt::Display for WireOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016}_{:016}", self.generation, self.position.0)
    }
}

fn parse_digits(s: &[u8]) -> Option<u64> {
    if s.len() != DIGITS || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // 16 ASCII digits cannot overflow u64.
    Some(
        s.iter()
            .fold(0u64, |acc, d| acc * 10 + u64::from(d.wrapping_sub(b'0'))),
    )
}

impl FromStr for WireOffset {
    type Err = OffsetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() != WIRE_LEN {
            return Err(OffsetError::Malformed);
        }
        let (gen, rest) = bytes.split_at(DIGITS);
        let (sep, pos) = rest.split_at(1);
        if sep != b"_" {
            return Err(OffsetError::Malformed);
        }
        let generation = parse_digits(gen).ok_or(OffsetError::Malformed)?;
        let position = parse_digits(pos).ok_or(OffsetError::Malformed)?;
        if generation > MAX_SAFE_INTEGER {
            return Err(OffsetError::OutOfRange);
        }
        Ok(WireOffset {
            generation,
            position: Offset::new(position).ok_or(OffsetError::OutOfRange)?,
        })
    }
}

/// The `offset` query parameter of a read (PROTOCOL.md §5.6, §8 sentinels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetParam {
    /// Absent or `-1`: the start of the stream.
    Start,
    /// `now`: the current tail.
    Now,
    /// An offset as printed by a stream.
    At(WireOffset),
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

    fn w(g: u64, p: u64) -> WireOffset {
        WireOffset::new(g, Offset::new(p).unwrap())
    }

    #[test]
    fn start_prints_as_the_reference_literal() {
        assert_eq!(
            WireOffset::START.to_string(),
            "0000000000000000_0000000000000000"
        );
    }

    #[test]
    fn round_trips() {
        for (g, p) in [
            (0, 0),
            (1_764_028_800_123, 42),
            (7, 123_456_789),
            (MAX_SAFE_INTEGER, MAX_SAFE_INTEGER),
        ] {
            let o = w(g, p);
            assert_eq!(o.to_string().parse::<WireOffset>(), Ok(o));
        }
    }

    #[test]
    fn lexicographic_order_is_numeric_order_within_a_generation() {
        assert!(w(5, 9).to_string() < w(5, 10).to_string());
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
            assert_eq!(
                s.parse::<WireOffset>(),
                Err(OffsetError::Malformed),
                "{s:?}"
            );
        }
    }

    #[test]
    fn rejects_values_past_the_safe_integer_bound() {
        assert_eq!(
            "9999999999999999_0000000000000000".parse::<WireOffset>(),
            Err(OffsetError::OutOfRange)
        );
        assert_eq!(
            "0000000000000000_9999999999999999".parse::<WireOffset>(),
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
