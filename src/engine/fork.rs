//! Forks (PROTOCOL.md §4.2, §8 "Offsets and forked streams"): the pure part.
//!
//! A fork shares its source's offset space: positions before the fork's
//! `point` come from the source (recursively), positions from `point` on are
//! the fork's own. This module decides everything that needs no other
//! object: fork header parsing, expiry inheritance (§4.2 table), the
//! idempotent-PUT comparison, the source's answer to an acquire (validation,
//! sub-offset resolution), slicing chunks for a fork's read, reading through
//! inherited chunks ([`Layered`]), and delete/expiry (soft delete while
//! referenced). The messages between objects are in `cloudflare/forks.rs`.

use super::state::{Chunk, ForkLink, StreamMeta};
use super::store::{Commit, Outgoing, OutgoingKind, Store};
use crate::protocol::content_type::ContentType;
use crate::protocol::error::{Invalid, ProtocolError};
use crate::protocol::expiry::Expiry;
use crate::protocol::json;
use crate::protocol::offset::{Offset, WireOffset};
use crate::protocol::path::StreamPath;
use crate::protocol::producer::parse_safe_uint;
use std::ops::ControlFlow;

/// The fork headers of a PUT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkInput {
    pub source: StreamPath,
    pub offset: Option<WireOffset>,
    pub sub_offset: u64,
}

impl ForkInput {
    /// From `Stream-Forked-From`, `Stream-Fork-Offset`, `Stream-Fork-Sub-Offset`.
    pub fn from_headers(
        from: Option<&str>,
        offset: Option<&str>,
        sub: Option<&str>,
    ) -> Result<Option<ForkInput>, ProtocolError> {
        let offset = offset
            .map(|o| {
                o.trim()
                    .parse::<WireOffset>()
                    .map_err(|_| Invalid::ForkOffset)
            })
            .transpose()?;
        let sub_offset = sub
            .map(|s| parse_safe_uint(s.trim()).ok_or(Invalid::ForkSubOffset))
            .transpose()?;
        let Some(from) = from else {
            if offset.is_some() || sub_offset.is_some() {
                return Err(Invalid::ForkSource.into());
            }
            return Ok(None);
        };
        let path = from.trim();
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let source = StreamPath::from_url_path(path)?.ok_or(Invalid::ForkSource)?;
        Ok(Some(ForkInput {
            source,
            offset,
            sub_offset: sub_offset.unwrap_or(0),
        }))
    }

    /// Whether an existing fork was made with this configuration (§4.2
    /// "Idempotent fork creation"): same source, same sub-offset, and the same
    /// offset when the request names one.
    pub fn matches(&self, link: &ForkLink) -> bool {
        link.source == self.source.as_str()
            && link.sub_offset == self.sub_offset
            && self.offset.is_none_or(|o| o.position == link.offset)
    }
}

/// The fork's lifetime from its request and its source (§4.2 table): its own
/// TTL or Expires-At when it asks for one, else the source's, else none.
/// Returns the expiry and whether it was inherited.
pub fn inherit_expiry(requested: Expiry, source: &Expiry) -> (Expiry, bool) {
    match requested {
        Expiry::Never if *source != Expiry::Never => (source.clone(), true),
        own => (own, false),
    }
}

/// What a fork asks its source for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquire {
    pub fork_path: String,
    pub fork_id: String,
    /// As the client sent it; resolved by the source.
    pub offset: Option<WireOffset>,
    pub sub_offset: u64,
    pub content_type: Option<ContentType>,
}

/// The source's answer: where the fork diverges and what it inherits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquired {
    pub offset: Offset,
    pub point: Offset,
    pub content_type: ContentType,
    pub expiry: Expiry,
    pub source_id: String,
    /// The source's generation, and the ancestors whose offsets it accepts.
    pub generation: u64,
    pub ancestors: Vec<(u64, u64)>,
}

/// Inherited chunks a fork's read needs from its source: `[from, to)` of
/// the source's stored bytes. `source_id` names the incarnation the fork was
/// made from, so a source dropped and re-created at the same path answers
/// with an error, never with other bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub source: String,
    pub source_id: String,
    pub from: u64,
    pub to: u64,
}

/// Where a sub-offset lands (§4.2): `n` bytes (JSON mode: `n` messages) past
/// `offset`, within the append that starts there. `chunks` are the chunks
/// from `offset` on (the first may start before it).
pub fn resolve_sub_offset(
    offset: Offset,
    n: u64,
    chunks: &[Chunk],
    json_mode: bool,
) -> Result<Offset, ProtocolError> {
    if n == 0 {
        return Ok(offset);
    }
    let from = offset.position();
    // The rest of the append that contains `offset`.
    let mut rest: Vec<u8> = Vec::new();
    for c in chunks.iter().filter(|c| c.end() > from) {
        let skip = usize::try_from(from.saturating_sub(c.start)).unwrap_or(usize::MAX);
        rest.extend_from_slice(c.data.get(skip..).unwrap_or_default());
        if c.append_end {
            break;
        }
    }
    let len = if json_mode {
        let ends = json::boundaries(&rest);
        let i = usize::try_from(n - 1).unwrap_or(usize::MAX);
        *ends.get(i).ok_or(Invalid::ForkSubOffset)? as u64
    } else {
        if n > rest.len() as u64 {
            return Err(Invalid::ForkSubOffset.into());
        }
        n
    };
    offset
        .advance(len)
        .ok_or_else(|| Invalid::ForkSubOffset.into())
}

/// The longest fork chain (a fork of a fork of ...): a read below every
/// fork point recurses through each source, so the chain bounds the work
/// (and the stub fetches) of one read. Keep in step with the message of
/// `Invalid::ForkDepth`.
pub const MAX_FORK_DEPTH: usize = 16;

/// The source's decision on an acquire: validate, resolve the point, and the
/// reference to record. `chunks` must hold the append at the fork offset
/// when a sub-offset is asked for (see [`Acquire`]).
pub fn acquire(
    meta: Option<&StreamMeta>,
    req: &Acquire,
    chunks: &[Chunk],
) -> Result<(Acquired, Commit), ProtocolError> {
    let meta = meta.ok_or(ProtocolError::NotFound)?;
    if meta.soft_deleted {
        return Err(ProtocolError::ConfigMismatch);
    }
    if meta
        .fork
        .as_ref()
        .is_some_and(|f| f.ancestors.len() >= MAX_FORK_DEPTH)
    {
        return Err(Invalid::ForkDepth.into());
    }
    if let Some(ct) = &req.content_type {
        if !ct.matches(&meta.content_type) {
            return Err(ProtocolError::ContentTypeMismatch);
        }
    }
    let offset = match req.offset {
        None => meta.tail,
        Some(w) => meta.resolve(w).map_err(|_| Invalid::ForkOffset)?,
    };
    let point = resolve_sub_offset(offset, req.sub_offset, chunks, meta.content_type.is_json())?;
    let acquired = Acquired {
        offset,
        point,
        content_type: meta.content_type.clone(),
        expiry: meta.expiry.clone(),
        source_id: meta.stream_id.clone(),
        generation: meta.generation,
        ancestors: meta
            .fork
            .as_ref()
            .map_or_else(Vec::new, |f| f.ancestors.clone()),
    };
    let commit = Commit::AddRef {
        fork_path: req.fork_path.clone(),
        fork_id: req.fork_id.clone(),
    };
    Ok((acquired, commit))
}

/// Chunks of `[from, to)` for a fork's read, about `cap` bytes, cut where a
/// read may end; pieces cut out of a chunk keep exact boundary flags.
pub fn slice_chunks<S: Store>(
    store: &S,
    meta: &StreamMeta,
    from: u64,
    to: u64,
    cap: u64,
) -> Result<Vec<Chunk>, S::Error> {
    let json_mode = meta.content_type.is_json();
    let to = to.min(meta.tail.position());
    let mut out: Vec<Chunk> = Vec::new();
    let mut total: u64 = 0;
    store.scan(from, &mut |c| {
        if c.start >= to {
            return ControlFlow::Break(());
        }
        if c.end() <= from {
            return ControlFlow::Continue(());
        }
        let at_boundary = out.last().is_none_or(|l| l.tail_boundary);
        if !out.is_empty() && at_boundary && total >= cap {
            return ControlFlow::Break(());
        }
        let lo = from.max(c.start);
        let hi = to.min(c.end());
        let (a, b) = ((lo - c.start) as usize, (hi - c.start) as usize);
        let marks = if json_mode && (a > 0 || b < c.data.len()) {
            json::boundaries(&c.data)
        } else {
            Vec::new()
        };
        let piece = Chunk {
            start: lo,
            data: c.data.get(a..b).unwrap_or_default().to_vec(),
            head_boundary: if a == 0 {
                c.head_boundary
            } else {
                !json_mode || (c.head_boundary && marks.contains(&a))
            },
            tail_boundary: if b == c.data.len() {
                c.tail_boundary
            } else {
                !json_mode || (c.head_boundary && marks.contains(&b))
            },
            // Cut at `to` (the reading fork's point), the data ends there as
            // far as that fork can see: a unit boundary for its sub-offsets.
            append_end: (b == c.data.len() && c.append_end) || hi == to,
            at_ms: c.at_ms,
            count: c.count,
        };
        total += piece.data.len() as u64;
        out.push(piece);
        if hi >= to {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

/// A fork's store as reads see it: inherited chunks (fetched from the
/// source, contiguous from some position) below `point`, own chunks above.
/// A scan stops where the inherited chunks stop short of `point`, so a read
/// never skips a gap; the client continues from the offset it got.
pub struct Layered<'a, S: Store> {
    pub own: &'a S,
    pub inherited: &'a [Chunk],
    pub point: u64,
}

impl<S: Store> Store for Layered<'_, S> {
    type Error = S::Error;

    fn meta(&self) -> Result<Option<StreamMeta>, S::Error> {
        self.own.meta()
    }
    fn producer(&self, id: &str) -> Result<Option<(super::state::ProducerState, u64)>, S::Error> {
        self.own.producer(id)
    }
    fn refs(&self) -> Result<u64, S::Error> {
        self.own.refs()
    }
    fn outbox(&self) -> Result<Vec<Outgoing>, S::Error> {
        self.own.outbox()
    }
    fn last_generation(&self) -> Result<u64, S::Error> {
        self.own.last_generation()
    }
    fn commit(&self, commit: Commit) -> Result<(), S::Error> {
        self.own.commit(commit)
    }
    /// Only the fork's own rows are trimmed (`engine::trim`).
    fn oldest(
        &self,
        from: u64,
        limit: usize,
        visit: &mut dyn FnMut(super::store::RowInfo) -> ControlFlow<()>,
    ) -> Result<(), S::Error> {
        self.own.oldest(from, limit, visit)
    }

    fn scan(
        &self,
        from: u64,
        visit: &mut dyn FnMut(Chunk) -> ControlFlow<()>,
    ) -> Result<(), S::Error> {
        if from < self.point {
            let mut covered = from;
            for c in self
                .inherited
                .iter()
                .filter(|c| c.end() > from && c.start < self.point)
            {
                if c.start > covered {
                    return Ok(());
                }
                covered = c.end();
                if visit(c.clone()).is_break() {
                    return Ok(());
                }
            }
            if covered < self.point {
                return Ok(());
            }
        }
        let point = self.point;
        self.own.scan(from.max(point), &mut |c| {
            if c.start < point {
                ControlFlow::Continue(())
            } else {
                visit(c)
            }
        })
    }
}

/// How reads see `meta`'s stream: through its inherited chunks when it is a
/// fork, else its own store.
pub fn reading<'a, S: Store>(
    store: &'a S,
    meta: &StreamMeta,
    inherited: &'a [Chunk],
) -> Layered<'a, S> {
    Layered {
        own: store,
        inherited,
        point: meta.own_start().position(),
    }
}

/// The inherited range a read starting at `from` needs and does not have:
/// `Some((from, point))` when `from` lies below the fork point and
/// `inherited` does not start there.
pub fn missing(meta: &StreamMeta, from: Offset, inherited: &[Chunk]) -> Option<(u64, u64)> {
    let point = meta.fork.as_ref()?.point.position();
    let from = from.position();
    if from >= point {
        return None;
    }
    let covered = inherited
        .first()
        .is_some_and(|c| c.start <= from && c.end() > from);
    (!covered).then_some((from, point))
}

/// What a delete (or expiry) does to a stream (§4.2 soft-delete): keep the
/// data while forks reference it, else drop it, releasing this stream's own
/// reference at its source.
pub fn retire(meta: &StreamMeta, refs: u64, now_ms: u64) -> Commit {
    if refs > 0 {
        let mut m = meta.clone();
        m.soft_deleted = true;
        return Commit::SoftDelete { meta: m };
    }
    Commit::Delete {
        release: meta.fork.as_ref().map(|f| Outgoing {
            fork_id: meta.stream_id.clone(),
            source: f.source.clone(),
            kind: OutgoingKind::Release,
            due_ms: now_ms,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::state::chunk_append;

    fn chunks(json_mode: bool, appends: &[&[&[u8]]]) -> Vec<Chunk> {
        let mut out = Vec::new();
        let mut pos = 0;
        for a in appends {
            let c = chunk_append(pos, a, 4, !json_mode);
            pos = c.last().map_or(pos, |c| c.end());
            out.extend(c);
        }
        out
    }

    #[test]
    fn parses_fork_headers() {
        let f = ForkInput::from_headers(
            Some("/v1/stream/src"),
            Some("0000000000000000_0000000000000004"),
            Some("2"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(f.source.as_str(), "src");
        assert_eq!(f.offset.map(|o| o.position), Offset::new(4));
        assert_eq!(f.sub_offset, 2);
        assert_eq!(ForkInput::from_headers(None, None, None), Ok(None));
        assert_eq!(
            ForkInput::from_headers(None, None, Some("1")),
            Err(Invalid::ForkSource.into())
        );
        assert_eq!(
            ForkInput::from_headers(Some("/v1/stream/s"), Some("4"), None),
            Err(Invalid::ForkOffset.into())
        );
        for bad in ["-1", "01", "1.5", "x", ""] {
            assert_eq!(
                ForkInput::from_headers(Some("/v1/stream/s"), None, Some(bad)),
                Err(Invalid::ForkSubOffset.into()),
                "{bad}"
            );
        }
        assert_eq!(
            ForkInput::from_headers(Some("/elsewhere/s"), None, None),
            Err(Invalid::ForkSource.into())
        );
    }

    #[test]
    fn expiry_inheritance_follows_the_table() {
        let ttl = |s| Expiry::Ttl { secs: s };
        let at = Expiry::At {
            ms: 5,
            text: "t".into(),
        };
        assert_eq!(
            inherit_expiry(Expiry::Never, &Expiry::Never),
            (Expiry::Never, false)
        );
        assert_eq!(inherit_expiry(ttl(9), &Expiry::Never), (ttl(9), false));
        assert_eq!(inherit_expiry(Expiry::Never, &ttl(3)), (ttl(3), true));
        assert_eq!(inherit_expiry(ttl(9), &ttl(3)), (ttl(9), false));
        assert_eq!(inherit_expiry(Expiry::Never, &at), (at.clone(), true));
        assert_eq!(inherit_expiry(ttl(9), &at), (ttl(9), false));
    }

    #[test]
    fn binary_sub_offsets_count_bytes_within_one_append() {
        let c = chunks(false, &[&[b"abcdef"], &[b"gh"]]);
        let o = Offset::ZERO;
        assert_eq!(
            resolve_sub_offset(o, 3, &c, false),
            Ok(Offset::new(3).unwrap())
        );
        assert_eq!(
            resolve_sub_offset(o, 6, &c, false),
            Ok(Offset::new(6).unwrap())
        );
        assert_eq!(
            resolve_sub_offset(o, 7, &c, false),
            Err(Invalid::ForkSubOffset.into())
        );
        assert_eq!(
            resolve_sub_offset(Offset::new(6).unwrap(), 2, &c, false),
            Ok(Offset::new(8).unwrap())
        );
    }

    #[test]
    fn json_sub_offsets_count_messages_within_one_append() {
        let c = chunks(true, &[&[b"1,", b"\"x,y\",", b"[3],"], &[b"4,"]]);
        let o = Offset::ZERO;
        assert_eq!(
            resolve_sub_offset(o, 1, &c, true),
            Ok(Offset::new(2).unwrap())
        );
        assert_eq!(
            resolve_sub_offset(o, 2, &c, true),
            Ok(Offset::new(8).unwrap())
        );
        assert_eq!(
            resolve_sub_offset(o, 3, &c, true),
            Ok(Offset::new(12).unwrap())
        );
        assert_eq!(
            resolve_sub_offset(o, 4, &c, true),
            Err(Invalid::ForkSubOffset.into())
        );
    }

    #[test]
    fn retiring_a_referenced_stream_soft_deletes_it() {
        let meta = StreamMeta::fixture(Expiry::Never);
        assert!(matches!(retire(&meta, 1, 0), Commit::SoftDelete { meta } if meta.soft_deleted));
        assert_eq!(retire(&meta, 0, 0), Commit::Delete { release: None });
    }
}
