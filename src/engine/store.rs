//! The storage contract the engine is driven through, and an in-memory
//! implementation for host tests.
//!
//! Every method is synchronous: the Durable Object's SQLite API is, so a
//! validate-then-write runs with no `await` in between and the object's input
//! and output gates make it atomic and durable before the response leaves.
//! A [`Commit`] is applied as one unit (one transaction).

use super::state::{Chunk, ProducerState, StreamMeta};
use std::cell::RefCell;
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
}

pub trait Store {
    type Error: std::fmt::Debug;

    fn meta(&self) -> Result<Option<StreamMeta>, Self::Error>;
    fn producer(&self, id: &str) -> Result<Option<ProducerState>, Self::Error>;
    /// Visits, in order, the chunk containing `from` (if any) and every chunk
    /// after it, until `visit` breaks.
    fn scan(
        &self,
        from: u64,
        visit: &mut dyn FnMut(Chunk) -> ControlFlow<()>,
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

/// In-memory store for host tests and the reference model.
#[derive(Debug, Default)]
pub struct MemStore {
    inner: RefCell<MemInner>,
}

#[derive(Debug, Default, Clone)]
struct MemInner {
    meta: Option<StreamMeta>,
    producers: BTreeMap<String, ProducerState>,
    chunks: BTreeMap<u64, Chunk>,
    /// fork id → fork path.
    refs: BTreeMap<String, String>,
    outbox: BTreeMap<String, Outgoing>,
    last_generation: u64,
}

impl MemInner {
    /// Drops the stream; queued messages survive (they are about others).
    fn clear(&mut self) {
        self.meta = None;
        self.producers.clear();
        self.chunks.clear();
        self.refs.clear();
    }
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// Number of stored chunk rows (tests check that deletes free them).
    pub fn chunk_count(&self) -> usize {
        self.inner.borrow().chunks.len()
    }
}

impl Store for MemStore {
    type Error = std::convert::Infallible;

    fn meta(&self) -> Result<Option<StreamMeta>, Self::Error> {
        Ok(self.inner.borrow().meta.clone())
    }

    fn producer(&self, id: &str) -> Result<Option<ProducerState>, Self::Error> {
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
                inner.meta = Some(meta);
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
                inner.meta = Some(meta);
                inner
                    .chunks
                    .extend(chunks.into_iter().map(|c| (c.start, c)));
                if let Some((id, state)) = producer {
                    inner.producers.insert(id, state);
                }
            }
            Commit::Delete { release } => {
                inner.clear();
                if let Some(out) = release {
                    inner.outbox.insert(out.fork_id.clone(), out);
                }
            }
            Commit::SoftDelete { meta } => inner.meta = Some(meta),
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
        }
        Ok(())
    }
}
