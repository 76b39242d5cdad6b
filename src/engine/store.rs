//! The storage contract the engine is driven through, and an in-memory
//! implementation for host tests.
//!
//! Every method is synchronous: the Durable Object's SQLite API is, so a
//! validate-then-write runs with no `await` in between and the object's input
//! and output gates make it atomic and durable before the response leaves.
//! A [`Commit`] is applied as one unit (one implicit transaction).

use super::state::{Chunk, ProducerState, StreamMeta};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::ControlFlow;

/// One atomic change to a stream's storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Commit {
    /// A new stream: drop whatever was stored before (an expired or deleted
    /// predecessor), then write the metadata and initial chunks.
    Create {
        meta: StreamMeta,
        chunks: Vec<Chunk>,
    },
    /// New metadata, new chunks and the producer's new state, together.
    Append {
        meta: StreamMeta,
        chunks: Vec<Chunk>,
        producer: Option<(String, ProducerState)>,
    },
    /// Drop everything.
    Delete,
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

    fn commit(&self, commit: Commit) -> Result<(), Self::Error> {
        let mut inner = self.inner.borrow_mut();
        match commit {
            Commit::Create { meta, chunks } => {
                *inner = MemInner::default();
                inner.meta = Some(meta);
                inner
                    .chunks
                    .extend(chunks.into_iter().map(|c| (c.start, c)));
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
            Commit::Delete => *inner = MemInner::default(),
        }
        Ok(())
    }
}
