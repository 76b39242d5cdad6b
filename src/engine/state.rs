//! A stream's persistent state: its metadata row, its producers and its
//! chunk rows (the storage schema in README.md mirrors these types).
//!
//! Chunks hold the stream's stored bytes (in JSON mode, messages with their
//! `,` terminators, PROTOCOL.md §9.1). A chunk starts at byte position
//! `start`. One append is one chunk unless it is larger than a row may be, in
//! which case it is cut into several; JSON-mode cuts fall between messages
//! where they can, and a single message larger than a row spans rows of its
//! own. `head_boundary`/`tail_boundary` say whether a chunk starts/ends on a
//! message boundary (always true for byte streams), so reads never cut a JSON
//! message in two.

use crate::protocol::content_type::ContentType;
use crate::protocol::error::Invalid;
use crate::protocol::expiry::Expiry;
use crate::protocol::offset::{Offset, WireOffset};
use crate::protocol::producer::{ProducerTuple, StreamSeq};
use crate::protocol::retention::Retention;

/// How a fork refers to its source (PROTOCOL.md §4.2). The fork shares the
/// source's offset space: positions before `point` are read from the source
/// (recursively, if the source is a fork too), positions from `point` on are
/// the fork's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkLink {
    /// The source's canonical path.
    pub source: String,
    /// The source's `stream_id` when the fork was made.
    pub source_id: String,
    /// `Stream-Fork-Offset` as resolved (the source's tail when omitted).
    pub offset: Offset,
    /// Whether the client gave `Stream-Fork-Offset` (for idempotent PUTs).
    pub offset_given: bool,
    /// `Stream-Fork-Sub-Offset` (0 when omitted).
    pub sub_offset: u64,
    /// Where inherited data ends: `offset` refined by the sub-offset.
    pub point: Offset,
    /// The expiry came from the source, not from the request.
    pub expiry_inherited: bool,
    /// Offsets of the source chain this fork also accepts: each ancestor's
    /// generation and the position up to which its data is inherited.
    pub ancestors: Vec<(u64, u64)>,
}

/// The single metadata row of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamMeta {
    /// Minted at creation; part of every ETag, so a re-created stream never
    /// answers 304 to a tag of its predecessor.
    pub stream_id: String,
    /// Minted at creation, different for every creation at this path: the
    /// first component of every offset the stream prints (PROTOCOL.md §8).
    pub generation: u64,
    pub content_type: ContentType,
    pub tail: Offset,
    pub closed: bool,
    /// The producer tuple whose append closed the stream (§5.2.1).
    pub closed_by: Option<ProducerTuple>,
    pub expiry: Expiry,
    pub created_ms: u64,
    /// Last read or write, for the sliding TTL.
    pub last_access_ms: u64,
    pub last_stream_seq: Option<StreamSeq>,
    /// Set when the stream is a fork.
    pub fork: Option<ForkLink>,
    /// Deleted while forks still read its data (§4.2): 410 to clients.
    pub soft_deleted: bool,
    /// The retention policy (`protocol::retention`; none: keep everything).
    pub retention: Retention,
    /// Positions before this one were trimmed: reading them is a 410.
    pub earliest: Offset,
    /// Messages (JSON mode) or appends of this stream's own data before
    /// `earliest`, and before `tail` (kept lazily, like the tail: a load
    /// derives it from the last chunk's [`Chunk::count`]).
    pub earliest_count: u64,
    pub tail_count: u64,
}

impl StreamMeta {
    /// How this stream prints a position.
    pub fn wire(&self, position: Offset) -> String {
        WireOffset::new(self.generation, position).to_string()
    }

    /// The position a client's offset names in this stream: one this stream
    /// printed, the universal start, or (on a fork) one its source chain
    /// printed for the inherited range. Anything else was never issued here.
    pub fn resolve(&self, w: WireOffset) -> Result<Offset, Invalid> {
        let pos = w.position;
        let ok = w == WireOffset::START
            || w.generation == self.generation
            || self.fork.as_ref().is_some_and(|f| {
                f.ancestors
                    .iter()
                    .any(|(g, limit)| *g == w.generation && pos.position() <= *limit)
            });
        if ok && pos <= self.tail {
            Ok(pos)
        } else {
            Err(Invalid::Offset)
        }
    }

    /// Where the stream's own chunks begin: 0, or a fork's point.
    pub fn own_start(&self) -> Offset {
        self.fork.as_ref().map_or(Offset::ZERO, |f| f.point)
    }

    /// When the stream expires, if it can.
    pub fn deadline(&self) -> Option<u64> {
        self.expiry.deadline(self.last_access_ms)
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.deadline().is_some_and(|d| now_ms >= d)
    }

    /// Whether reads and writes move the deadline (sliding TTL).
    pub fn slides(&self) -> bool {
        matches!(self.expiry, Expiry::Ttl { .. })
    }

    /// How often a sliding TTL's access time is written to storage at most
    /// (§5.1): once per max(1 s, TTL/100). In between it moves in memory
    /// only, so a thousand readers cost one write, not one per read step.
    /// After a restart the stored time is at most this much older than the
    /// last access, so the stream can expire at most this much early.
    pub fn renewal_interval_ms(&self) -> u64 {
        match self.expiry {
            Expiry::Ttl { secs } => secs.saturating_mul(10).max(1000),
            _ => u64::MAX,
        }
    }

    /// Whether this metadata must be written over `stored` (what storage
    /// holds). Two fields are kept lazily: the tail, which a load derives
    /// from the last chunk, so a plain append writes only its chunk; and a
    /// sliding TTL's access time, written once per renewal interval.
    pub fn must_store(&self, stored: &StreamMeta) -> bool {
        let renew = self.slides()
            && self.last_access_ms
                >= stored
                    .last_access_ms
                    .saturating_add(self.renewal_interval_ms());
        let lazy_equal = StreamMeta {
            tail: stored.tail,
            tail_count: stored.tail_count,
            last_access_ms: stored.last_access_ms,
            ..self.clone()
        } == *stored;
        renew || !lazy_equal
    }
}

/// Stored state of one idempotent producer (§5.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerState {
    pub epoch: u64,
    pub last_seq: u64,
}

/// One stored row of stream bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub start: u64,
    pub data: Vec<u8>,
    pub head_boundary: bool,
    pub tail_boundary: bool,
    /// The chunk ends an append (one POST or PUT body), the unit a fork
    /// sub-offset may not reach past (§4.2).
    pub append_end: bool,
    /// When its append was committed (ms; retention by age).
    pub at_ms: u64,
    /// The stream's own messages (JSON mode) or appends (other types) that
    /// end at or before this chunk's end, counted from its creation
    /// (retention by count).
    pub count: u64,
}

impl Chunk {
    pub fn end(&self) -> u64 {
        self.start + self.data.len() as u64
    }
}

/// Cuts one append into chunks starting at `start`.
///
/// `messages` are the append's units: one for a byte stream (the whole body),
/// one per message (with its terminator) in JSON mode. Consecutive messages
/// share a chunk up to `row_bytes`; a message longer than `row_bytes` gets
/// chunks of its own, each at most `row_bytes`.
pub fn chunk_append(
    start: u64,
    messages: &[&[u8]],
    row_bytes: usize,
    byte_stream: bool,
) -> Vec<Chunk> {
    let row_bytes = row_bytes.max(1);
    let mut out: Vec<Chunk> = Vec::new();
    let mut pos = start;
    let mut open: Option<Chunk> = None;
    let flush = |open: &mut Option<Chunk>, out: &mut Vec<Chunk>| {
        if let Some(c) = open.take() {
            out.push(c);
        }
    };
    for &m in messages {
        if m.len() > row_bytes {
            flush(&mut open, &mut out);
            let pieces = m.chunks(row_bytes);
            let n = pieces.len();
            for (i, piece) in pieces.enumerate() {
                out.push(Chunk {
                    start: pos,
                    data: piece.to_vec(),
                    head_boundary: byte_stream || i == 0,
                    tail_boundary: byte_stream || i + 1 == n,
                    append_end: false,
                    at_ms: 0,
                    count: 0,
                });
                pos += piece.len() as u64;
            }
            continue;
        }
        let fits = open
            .as_ref()
            .is_some_and(|c| c.data.len() + m.len() <= row_bytes);
        if !fits {
            flush(&mut open, &mut out);
            open = Some(Chunk {
                start: pos,
                data: Vec::with_capacity(m.len()),
                head_boundary: true,
                tail_boundary: true,
                append_end: false,
                at_ms: 0,
                count: 0,
            });
        }
        if let Some(c) = open.as_mut() {
            c.data.extend_from_slice(m);
        }
        pos += m.len() as u64;
    }
    flush(&mut open, &mut out);
    if let Some(last) = out.last_mut() {
        last.append_end = true;
    }
    out
}

#[cfg(test)]
impl StreamMeta {
    /// An empty plain stream with `expiry`, for unit tests.
    pub fn fixture(expiry: Expiry) -> StreamMeta {
        StreamMeta {
            stream_id: "s".into(),
            generation: 1,
            content_type: ContentType::default_type(),
            tail: Offset::ZERO,
            closed: false,
            closed_by: None,
            expiry,
            created_ms: 0,
            last_access_ms: 0,
            last_stream_seq: None,
            fork: None,
            soft_deleted: false,
            retention: Retention::default(),
            earliest: Offset::ZERO,
            earliest_count: 0,
            tail_count: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(expiry: Expiry) -> StreamMeta {
        StreamMeta::fixture(expiry)
    }

    #[test]
    fn tail_and_access_are_stored_lazily() {
        let stored = meta(Expiry::Ttl { secs: 3600 });
        assert_eq!(stored.renewal_interval_ms(), 36_000);
        let mut next = stored.clone();
        next.tail = Offset::new(99).unwrap();
        next.last_access_ms = 35_999;
        assert!(
            !next.must_store(&stored),
            "tail and a recent access stay in memory"
        );
        next.last_access_ms = 36_000;
        assert!(
            next.must_store(&stored),
            "the access is renewed once per interval"
        );
        let mut closed = stored.clone();
        closed.closed = true;
        assert!(
            closed.must_store(&stored),
            "anything else is written at once"
        );
        assert_eq!(meta(Expiry::Ttl { secs: 5 }).renewal_interval_ms(), 1000);
        let fixed = meta(Expiry::Never);
        let mut later = fixed.clone();
        later.last_access_ms = u64::MAX / 2;
        assert!(
            !later.must_store(&fixed),
            "no sliding TTL: the access time is never needed"
        );
    }

    #[test]
    fn small_messages_share_a_chunk() {
        let c = chunk_append(10, &[b"a,", b"bb,"], 8, false);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].start, 10);
        assert_eq!(c[0].data, b"a,bb,");
        assert!(c[0].head_boundary && c[0].tail_boundary);
    }

    #[test]
    fn chunks_fill_up_to_the_row_size() {
        let msgs: Vec<&[u8]> = (0..5).map(|_| &b"abc,"[..]).collect();
        let c = chunk_append(0, &msgs, 8, false);
        assert_eq!(
            c.iter().map(|c| c.data.len()).collect::<Vec<_>>(),
            [8, 8, 4]
        );
        assert_eq!(c.iter().map(|c| c.start).collect::<Vec<_>>(), [0, 8, 16]);
    }

    #[test]
    fn a_large_json_message_spans_rows_of_its_own() {
        let c = chunk_append(0, &[b"x,", b"0123456789,", b"y,"], 4, false);
        let shape: Vec<_> = c
            .iter()
            .map(|c| (c.start, c.data.len(), c.head_boundary, c.tail_boundary))
            .collect();
        assert_eq!(
            shape,
            [
                (0, 2, true, true),
                (2, 4, true, false),
                (6, 4, false, false),
                (10, 3, false, true),
                (13, 2, true, true)
            ]
        );
    }

    #[test]
    fn byte_stream_pieces_are_all_boundaries() {
        let c = chunk_append(0, &[&[7u8; 10]], 4, true);
        assert_eq!(c.len(), 3);
        assert!(c.iter().all(|c| c.head_boundary && c.tail_boundary));
        assert_eq!(c.last().unwrap().end(), 10);
        let ends: Vec<bool> = c.iter().map(|c| c.append_end).collect();
        assert_eq!(
            ends,
            [false, false, true],
            "only the last chunk ends the append"
        );
    }
}
