//! The storage contract the engine is driven through, and an in-memory
//! implementation for host tests.
//!
//! Every method is synchronous: the Durable Object's SQLite API is, so a
//! validate-then-write runs with no `await` in between and the object's input
//! and output gates make it atomic and durable before the response leaves.
//! A [`Commit`] is applied as one unit (one transaction).

use super::state::{Chunk, ProducerState, StreamMeta};
#[cfg(not(target_arch = "wasm32"))]
use std::cell::RefCell;
#[cfg(not(target_arch = "wasm32"))]
use std::collections::BTreeMap;
use std::ops::ControlFlow;

/// A message this object owes another (the fork protocol of
/// `cloudflare/forks.rs`): written in the same transaction as the change it
/// belongs to, delivered right away or by the alarm, dropped once delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The fork's id at the source (its `stream_id`); one entry per id.
    pub fork_id: String,
    /// The source stream's canonical path.
    pub source: String,
    pub kind: OutgoingKind,
    /// Not to be acted on before this time.
    pub due_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutgoingKind {
    /// A fork creation in progress: if it has not committed by `due_ms`,
    /// release its reference at the source.
    Intent,
    /// Release this fork's reference at the source.
    Release,
}

/// A chunk row as a retention trim sees it: its place, its flags, when it
/// was appended and the running count at its end (see [`Chunk`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowInfo {
    pub start: u64,
    pub end: u64,
    pub tail_boundary: bool,
    pub append_end: bool,
    pub at_ms: u64,
    pub count: u64,
}

impl RowInfo {
    pub fn of(c: &Chunk) -> RowInfo {
        RowInfo {
            start: c.start,
            end: c.end(),
            tail_boundary: c.tail_boundary,
            append_end: c.append_end,
            at_ms: c.at_ms,
            count: c.count,
        }
    }
}

/// One atomic change to a stream's storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Commit {
    /// A new stream: drop whatever was stored before (an expired or deleted
    /// predecessor), then write the metadata and initial chunks. A fork's
    /// creation settles its intent in the same step.
    Create {
        meta: StreamMeta,
        chunks: Vec<Chunk>,
        settle: Option<String>,
    },
    /// New metadata, new chunks and the producer's new state, together.
    /// The store writes the metadata only when
    /// [`StreamMeta::must_store`] says so (the tail and a recent access time
    /// stay in memory; a load derives the tail from the last chunk).
    Append {
        meta: StreamMeta,
        chunks: Vec<Chunk>,
        producer: Option<(String, ProducerState)>,
    },
    /// Drop the stream and its data; a fork queues the release of its
    /// reference at its source in the same step.
    Delete { release: Option<Outgoing> },
    /// Keep the data for the forks that read it; clients see 410 (§4.2).
    SoftDelete { meta: StreamMeta },
    /// A fork now references this stream (idempotent).
    AddRef { fork_path: String, fork_id: String },
    /// A fork no longer does (idempotent).
    RemoveRef { fork_id: String },
    /// Queue (or replace) an outgoing message.
    Send(Outgoing),
    /// Drop an outgoing message (idempotent).
    Settle { fork_id: String },
    /// A retention trim (`engine::trim`): write `meta`, whose `earliest`
    /// moved forward, and drop every chunk that starts before it (whole
    /// units: none of them reaches past it).
    Trim { meta: StreamMeta },
    /// Forget producers that have not appended since `idle_before_ms`
    /// (§5.2.1 producer state cleanup), at most `limit` of them.
    PruneProducers { idle_before_ms: u64, limit: u32 },
}

pub trait Store {
    type Error: std::fmt::Debug;

    fn meta(&self) -> Result<Option<StreamMeta>, Self::Error>;
    /// A producer's state and when it last appended (ms).
    fn producer(&self, id: &str) -> Result<Option<(ProducerState, u64)>, Self::Error>;
    /// Visits, in order, the chunk containing `from` (if any) and every chunk
    /// after it, until `visit` breaks.
    fn scan(
        &self,
        from: u64,
        visit: &mut dyn FnMut(Chunk) -> ControlFlow<()>,
    ) -> Result<(), Self::Error>;
    /// Visits, oldest first, at most `limit` chunk rows starting at or
    /// after `from`, without their bytes (what a retention trim looks at),
    /// until `visit` breaks.
    fn oldest(
        &self,
        from: u64,
        limit: usize,
        visit: &mut dyn FnMut(RowInfo) -> ControlFlow<()>,
    ) -> Result<(), Self::Error>;
    /// How many forks reference this stream.
    fn refs(&self) -> Result<u64, Self::Error>;
    /// Every queued outgoing message.
    fn outbox(&self) -> Result<Vec<Outgoing>, Self::Error>;
    /// The generation of the last stream created here (0 if none); kept
    /// across deletes, so every creation gets a new one.
    fn last_generation(&self) -> Result<u64, Self::Error>;
    fn commit(&self, commit: Commit) -> Result<(), Self::Error>;
}

/// In-memory store for host tests and the reference model (not part of the
/// wasm build). It keeps metadata "stored" by the same rule as the SQLite
/// store, and counts those writes, so tests can observe write amplification.
#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, Default)]
pub struct MemStore {
    inner: RefCell<MemInner>,
}

#[cfg(not(target_arch = "wasm32"))]
#[derive(Debug, Default, Clone)]
struct MemInner {
    meta: Option<StreamMeta>,
    /// What a durable store would hold, and how often it was written.
    stored: Option<StreamMeta>,
    meta_writes: u64,
    producers: BTreeMap<String, (ProducerState, u64)>,
    chunks: BTreeMap<u64, Chunk>,
    /// fork id → fork path.
    refs: BTreeMap<String, String>,
    outbox: BTreeMap<String, Outgoing>,
    last_generation: u64,
}

#[cfg(not(target_arch = "wasm32"))]
impl MemInner {
    /// Drops the stream; queued messages survive (they are about others).
    fn clear(&mut self) {
        self.meta = None;
        self.stored = None;
        self.producers.clear();
        self.chunks.clear();
        self.refs.clear();
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// Producers with stored state.
    pub fn producer_count(&self) -> usize {
        self.inner.borrow().producers.len()
    }

    /// How many times the metadata row was written.
    pub fn meta_writes(&self) -> u64 {
        self.inner.borrow().meta_writes
    }

    /// The metadata a restart would load: the stored row, with the tail
    /// derived from the last chunk (as the SQLite store does).
    pub fn reloaded_meta(&self) -> Option<StreamMeta> {
        let inner = self.inner.borrow();
        let mut m = inner.stored.clone()?;
        if let Some(last) = inner.chunks.values().next_back() {
            if let Some(t) =
                crate::protocol::offset::Offset::new(last.end()).filter(|t| *t > m.tail)
            {
                m.tail = t;
                m.tail_count = last.count;
            }
        }
        Some(m)
    }

    /// Number of stored chunk rows (tests check that deletes free them).
    pub fn chunk_count(&self) -> usize {
        self.inner.borrow().chunks.len()
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl MemInner {
    /// Writes the metadata row.
    fn store_meta(&mut self, meta: Option<StreamMeta>) {
        self.stored.clone_from(&meta);
        self.meta = meta;
        self.meta_writes += 1;
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Store for MemStore {
    type Error = std::convert::Infallible;

    fn meta(&self) -> Result<Option<StreamMeta>, Self::Error> {
        Ok(self.inner.borrow().meta.clone())
    }

    fn producer(&self, id: &str) -> Result<Option<(ProducerState, u64)>, Self::Error> {
        Ok(self.inner.borrow().producers.get(id).copied())
    }

    fn scan(
        &self,
        from: u64,
        visit: &mut dyn FnMut(Chunk) -> ControlFlow<()>,
    ) -> Result<(), Self::Error> {
        let chunks: Vec<Chunk> = {
            let inner = self.inner.borrow();
            let first = inner
                .chunks
                .range(..=from)
                .next_back()
                .map(|(k, _)| *k)
                .unwrap_or(0);
            inner
                .chunks
                .range(first..)
                .map(|(_, c)| c.clone())
                .collect()
        };
        for c in chunks {
            if visit(c).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn oldest(
        &self,
        from: u64,
        limit: usize,
        visit: &mut dyn FnMut(RowInfo) -> ControlFlow<()>,
    ) -> Result<(), Self::Error> {
        let rows: Vec<RowInfo> = {
            let inner = self.inner.borrow();
            inner
                .chunks
                .range(from..)
                .take(limit)
                .map(|(_, c)| RowInfo::of(c))
                .collect()
        };
        for r in rows {
            if visit(r).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn refs(&self) -> Result<u64, Self::Error> {
        Ok(self.inner.borrow().refs.len() as u64)
    }

    fn outbox(&self) -> Result<Vec<Outgoing>, Self::Error> {
        Ok(self.inner.borrow().outbox.values().cloned().collect())
    }

    fn last_generation(&self) -> Result<u64, Self::Error> {
        Ok(self.inner.borrow().last_generation)
    }

    fn commit(&self, commit: Commit) -> Result<(), Self::Error> {
        let mut inner = self.inner.borrow_mut();
        match commit {
            Commit::Create {
                meta,
                chunks,
                settle,
            } => {
                inner.clear();
                inner.last_generation = meta.generation;
                inner.store_meta(Some(meta));
                inner
                    .chunks
                    .extend(chunks.into_iter().map(|c| (c.start, c)));
                if let Some(id) = settle {
                    inner.outbox.remove(&id);
                }
            }
            Commit::Append {
                meta,
                chunks,
                producer,
            } => {
                let used = meta.last_access_ms;
                let write = inner.stored.as_ref().is_none_or(|s| meta.must_store(s));
                if write {
                    inner.store_meta(Some(meta));
                } else {
                    inner.meta = Some(meta);
                }
                inner
                    .chunks
                    .extend(chunks.into_iter().map(|c| (c.start, c)));
                if let Some((id, state)) = producer {
                    inner.producers.insert(id, (state, used));
                }
            }
            Commit::Delete { release } => {
                inner.clear();
                if let Some(out) = release {
                    inner.outbox.insert(out.fork_id.clone(), out);
                }
            }
            Commit::SoftDelete { meta } => inner.store_meta(Some(meta)),
            Commit::Trim { meta } => {
                let below = meta.earliest.position();
                inner.chunks.retain(|start, _| *start >= below);
                inner.store_meta(Some(meta));
            }
            Commit::AddRef { fork_path, fork_id } => {
                inner.refs.insert(fork_id, fork_path);
            }
            Commit::RemoveRef { fork_id } => {
                inner.refs.remove(&fork_id);
            }
            Commit::Send(out) => {
                inner.outbox.insert(out.fork_id.clone(), out);
            }
            Commit::Settle { fork_id } => {
                inner.outbox.remove(&fork_id);
            }
            Commit::PruneProducers {
                idle_before_ms,
                limit,
            } => {
                let idle: Vec<String> = inner
                    .producers
                    .iter()
                    .filter(|(_, (_, used))| *used < idle_before_ms)
                    .map(|(id, _)| id.clone())
                    .take(limit as usize)
                    .collect();
                for id in idle {
                    inner.producers.remove(&id);
                }
            }
        }
        Ok(())
    }
}
