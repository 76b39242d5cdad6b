//! The engine's [`Store`] on the Durable Object's SQLite storage (tables
//! and versions in [`schema`], row codecs in [`rows`]; README.md, Storage
//! schema).
//!
//! Every [`Commit`] runs inside `storage.transactionSync`, so it is applied
//! whole or, if any statement throws, not at all; there is no `await` inside,
//! so the object's gates keep other requests out until it is durable.
//!
//! The metadata row is written lazily (`StreamMeta::must_store`): a plain
//! append writes only its chunk, because a load derives the tail from the
//! last chunk; a sliding TTL's access time is written once per renewal
//! interval. The object is its stream's only writer, so the in-memory copy
//! stays exact; a failed commit drops it and the next read reloads.

mod rows;
pub mod schema;

use crate::engine::state::{Chunk, ProducerState, StreamMeta};
use crate::engine::store::{Commit, Outgoing, OutgoingKind, RowInfo, Store};
use crate::protocol::offset::Offset;
use rows::{APPEND_END, HEAD_BOUNDARY, META_COLUMNS, TAIL_BOUNDARY};
use std::cell::{Cell, RefCell};
use std::ops::ControlFlow;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use worker::{SqlStorage, SqlStorageValue as V, Storage};

pub struct SqlStore {
    sql: SqlStorage,
    storage: Storage,
    meta: RefCell<Cached>,
    /// A commit queued an outgoing message since the last look.
    outbox_dirty: Cell<bool>,
}

/// The metadata as it is now, and as storage holds it.
#[derive(Clone)]
enum Cached {
    Unknown,
    Known {
        current: Option<Box<StreamMeta>>,
        stored: Option<Box<StreamMeta>>,
    },
}

fn corrupt(what: &str) -> worker::Error {
    worker::Error::RustError(format!("corrupt stored {what}"))
}

fn int(v: &V) -> Option<i64> {
    match v {
        V::Integer(i) => Some(*i),
        V::Float(f) if f.fract() == 0.0 => Some(*f as i64),
        _ => None,
    }
}

fn uint(v: Option<&V>, what: &str) -> worker::Result<u64> {
    v.and_then(int)
        .and_then(|i| u64::try_from(i).ok())
        .ok_or_else(|| corrupt(what))
}

fn opt_text(v: Option<&V>) -> Option<String> {
    match v {
        Some(V::String(s)) => Some(s.clone()),
        _ => None,
    }
}

fn sql_int(v: u64) -> V {
    V::Integer(i64::try_from(v).unwrap_or(i64::MAX))
}

/// Runs `work` inside `storage.transactionSync`: all or nothing.
pub(crate) fn transaction_sync(
    storage: &Storage,
    work: impl FnOnce() -> worker::Result<()> + 'static,
) -> worker::Result<()> {
    let raw: &JsValue = storage.as_raw().as_ref();
    let f: js_sys::Function =
        js_sys::Reflect::get(raw, &JsValue::from_str("transactionSync"))?.dyn_into()?;
    let cb = Closure::once(move || -> Result<JsValue, JsValue> {
        work()
            .map(|()| JsValue::UNDEFINED)
            .map_err(|e| js_sys::Error::new(&e.to_string()).into())
    });
    f.call1(raw, cb.as_ref().unchecked_ref())?;
    Ok(())
}

impl SqlStore {
    pub fn new(storage: Storage) -> SqlStore {
        SqlStore {
            sql: storage.sql(),
            storage,
            meta: RefCell::new(Cached::Unknown),
            outbox_dirty: Cell::new(false),
        }
    }

    /// Creates or migrates the tables (idempotent, in one transaction), or
    /// refuses a schema version this build does not know.
    pub fn ensure_schema(&self) -> worker::Result<()> {
        let sql = self.sql.clone();
        transaction_sync(&self.storage, move || schema::ensure(&sql))
    }

    /// Test-only: see [`schema::pretend_version`]. Also forgets the cached
    /// metadata, as a restart would.
    pub fn pretend_version(&self, v: i64) -> worker::Result<()> {
        *self.meta.borrow_mut() = Cached::Unknown;
        schema::pretend_version(&self.sql, v)
    }

    /// The object's storage (its alarm).
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Whether commits queued outgoing messages since the last call.
    pub fn take_outbox_dirty(&self) -> bool {
        self.outbox_dirty.replace(false)
    }

    /// Every row a query returns, as raw values.
    fn rows(&self, query: &str, params: Vec<V>) -> worker::Result<Vec<Vec<V>>> {
        self.sql.exec(query, params)?.raw().collect()
    }

    fn count(&self, table: &str) -> worker::Result<u64> {
        let rows = self.rows(&format!("SELECT COUNT(*) FROM {table}"), Vec::new())?;
        uint(rows.first().and_then(|r| r.first()), "count")
    }

    /// Stored chunk rows (tests observe that deletes and expiry free them).
    pub fn chunk_rows(&self) -> worker::Result<u64> {
        self.count("chunks")
    }

    /// Stored producer rows (tests observe that idle ones are pruned).
    pub fn producer_rows(&self) -> worker::Result<u64> {
        self.count("producers")
    }

    /// The stored metadata, with the tail the last chunk proves.
    fn load_meta(&self) -> worker::Result<Option<StreamMeta>> {
        let rows = self.rows(
            &format!("SELECT {META_COLUMNS} FROM meta WHERE id = 1"),
            Vec::new(),
        )?;
        let Some(mut meta) = rows.first().map(|r| rows::meta_from_row(r)).transpose()? else {
            return Ok(None);
        };
        let last = self.rows(
            "SELECT start + length(data), msg_count FROM chunks ORDER BY start DESC LIMIT 1",
            Vec::new(),
        )?;
        if let Some(row) = last.first() {
            let end =
                Offset::new(uint(row.first(), "chunk end")?).ok_or_else(|| corrupt("tail"))?;
            meta.tail = meta.tail.max(end);
            meta.tail_count = uint(row.get(1), "chunk count")?;
        }
        Ok(Some(meta))
    }

    /// The metadata now and as stored, loading it if needed.
    fn known(&self) -> worker::Result<(Option<StreamMeta>, Option<StreamMeta>)> {
        if let Cached::Known { current, stored } = &*self.meta.borrow() {
            return Ok((current.as_deref().cloned(), stored.as_deref().cloned()));
        }
        let meta = self.load_meta()?;
        *self.meta.borrow_mut() = Cached::Known {
            current: meta.clone().map(Box::new),
            stored: meta.clone().map(Box::new),
        };
        Ok((meta.clone(), meta))
    }
}

impl Store for SqlStore {
    type Error = worker::Error;

    fn meta(&self) -> worker::Result<Option<StreamMeta>> {
        Ok(self.known()?.0)
    }

    fn producer(&self, id: &str) -> worker::Result<Option<(ProducerState, u64)>> {
        let rows = self.rows(
            "SELECT epoch, last_seq, last_used_ms FROM producers WHERE id = ?",
            vec![V::String(id.to_string())],
        )?;
        rows.first()
            .map(|r| {
                let state = ProducerState {
                    epoch: uint(r.first(), "producer epoch")?,
                    last_seq: uint(r.get(1), "producer seq")?,
                };
                Ok((state, uint(r.get(2), "producer last use")?))
            })
            .transpose()
    }

    fn scan(
        &self,
        from: u64,
        visit: &mut dyn FnMut(Chunk) -> ControlFlow<()>,
    ) -> worker::Result<()> {
        let cursor = self.sql.exec(
            "SELECT start, data, flags, at_ms, msg_count FROM chunks WHERE start >= \
             (SELECT COALESCE(MAX(start), 0) FROM chunks WHERE start <= ?) ORDER BY start",
            vec![sql_int(from)],
        )?;
        for row in cursor.raw() {
            let mut row = row?;
            let flags = row
                .get(2)
                .and_then(int)
                .ok_or_else(|| corrupt("chunk flags"))?;
            let start = uint(row.first(), "chunk start")?;
            let data = match row.get_mut(1).map(|v| std::mem::replace(v, V::Null)) {
                Some(V::Blob(b)) => b,
                _ => return Err(corrupt("chunk data")),
            };
            let chunk = Chunk {
                start,
                data,
                head_boundary: flags & HEAD_BOUNDARY != 0,
                tail_boundary: flags & TAIL_BOUNDARY != 0,
                append_end: flags & APPEND_END != 0,
                at_ms: uint(row.get(3), "chunk time")?,
                count: uint(row.get(4), "chunk count")?,
            };
            if visit(chunk).is_break() {
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
    ) -> worker::Result<()> {
        let cursor = self.sql.exec(
            "SELECT start, length(data), flags, at_ms, msg_count FROM chunks WHERE start >= ? \
             ORDER BY start LIMIT ?",
            vec![sql_int(from), sql_int(limit as u64)],
        )?;
        for row in cursor.raw() {
            let row = row?;
            let start = uint(row.first(), "chunk start")?;
            let flags = row
                .get(2)
                .and_then(int)
                .ok_or_else(|| corrupt("chunk flags"))?;
            let info = RowInfo {
                start,
                end: start + uint(row.get(1), "chunk length")?,
                tail_boundary: flags & TAIL_BOUNDARY != 0,
                append_end: flags & APPEND_END != 0,
                at_ms: uint(row.get(3), "chunk time")?,
                count: uint(row.get(4), "chunk count")?,
            };
            if visit(info).is_break() {
                break;
            }
        }
        Ok(())
    }

    fn refs(&self) -> worker::Result<u64> {
        self.count("fork_refs")
    }

    fn last_generation(&self) -> worker::Result<u64> {
        let rows = self.rows("SELECT last FROM generation WHERE id = 1", Vec::new())?;
        match rows.first() {
            Some(r) => uint(r.first(), "generation"),
            None => Ok(0),
        }
    }

    fn outbox(&self) -> worker::Result<Vec<Outgoing>> {
        let rows = self.rows(
            "SELECT fork_id, source, kind, due_ms FROM outbox ORDER BY due_ms",
            Vec::new(),
        )?;
        rows.iter()
            .map(|r| {
                Ok(Outgoing {
                    fork_id: opt_text(r.first()).ok_or_else(|| corrupt("outbox id"))?,
                    source: opt_text(r.get(1)).ok_or_else(|| corrupt("outbox source"))?,
                    kind: match opt_text(r.get(2)).as_deref() {
                        Some("intent") => OutgoingKind::Intent,
                        _ => OutgoingKind::Release,
                    },
                    due_ms: uint(r.get(3), "outbox due")?,
                })
            })
            .collect()
    }

    fn commit(&self, commit: Commit) -> worker::Result<()> {
        let (_, stored) = self.known()?;
        // The metadata after the commit, and whether the row is written.
        let (after, store_meta) = match &commit {
            Commit::Append { meta, .. } => {
                let write = stored.as_ref().is_none_or(|s| meta.must_store(s));
                (Some(Some(meta.clone())), write)
            }
            Commit::Create { meta, .. } | Commit::SoftDelete { meta } | Commit::Trim { meta } => {
                (Some(Some(meta.clone())), true)
            }
            Commit::Delete { .. } => (Some(None), true),
            _ => (None, false),
        };
        if matches!(
            &commit,
            Commit::Send(_) | Commit::Delete { release: Some(_) }
        ) {
            self.outbox_dirty.set(true);
        }
        let nothing_to_write = matches!(
            &commit,
            Commit::Append { chunks, producer: None, .. } if chunks.is_empty() && !store_meta
        );
        let result = if nothing_to_write {
            Ok(())
        } else {
            let sql = self.sql.clone();
            transaction_sync(&self.storage, move || rows::apply(&sql, commit, store_meta))
        };
        let mut cached = self.meta.borrow_mut();
        match (&result, after, &mut *cached) {
            (Ok(()), Some(m), Cached::Known { current, stored }) => {
                let m = m.map(Box::new);
                if store_meta {
                    stored.clone_from(&m);
                }
                *current = m;
            }
            (Ok(()), _, _) => {}
            (Err(_), _, c) => *c = Cached::Unknown,
        }
        result
    }
}
