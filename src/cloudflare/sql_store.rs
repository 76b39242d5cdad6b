//! The engine's [`Store`] on the Durable Object's SQLite storage.
//!
//! Schema (version 1; README.md, Storage schema):
//!
//! ```text
//! schema_version(id = 1, version)
//! meta(id = 1, stream_id, content_type, tail, closed, closed_by_id,
//!      closed_by_epoch, closed_by_seq, ttl_secs, expires_at_ms,
//!      expires_at_text, created_ms, last_access_ms, last_stream_seq,
//!      fork_source, fork_source_id, fork_offset, fork_offset_given,
//!      fork_sub_offset, fork_point, fork_expiry_inherited, soft_deleted,
//!      generation, fork_ancestors)  -- ancestors: JSON [[generation, limit], …]
//! chunks(start INTEGER PRIMARY KEY, data BLOB, flags)
//!        -- flags: 1 head boundary, 2 tail boundary, 4 append end
//! producers(id TEXT PRIMARY KEY, epoch, last_seq)
//! fork_refs(fork_id TEXT PRIMARY KEY, fork_path)      -- forks reading this stream
//! outbox(fork_id TEXT PRIMARY KEY, source, kind, due_ms) -- messages owed to sources
//! generation(id = 1, last)       -- last stream generation minted here; survives deletes
//! ```
//!
//! Every [`Commit`] runs inside `storage.transactionSync`, so it is applied
//! whole or, if any statement throws, not at all; there is no `await` inside,
//! so the object's gates keep other requests out until it is durable.
//! Integers are bounded by 2^53−1 (they cross into JavaScript as doubles).

use crate::engine::state::{Chunk, ForkLink, ProducerState, StreamMeta};
use crate::engine::store::{Commit, Outgoing, OutgoingKind, Store};
use crate::protocol::content_type::ContentType;
use crate::protocol::expiry::Expiry;
use crate::protocol::offset::Offset;
use crate::protocol::producer::{ProducerTuple, StreamSeq};
use std::cell::{Cell, RefCell};
use std::ops::ControlFlow;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use worker::{SqlStorage, SqlStorageValue as V, Storage};

/// Bumped, with a migration step in [`SqlStore::ensure_schema`], whenever
/// the tables change.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: [&str; 7] = [
    "CREATE TABLE IF NOT EXISTS schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (id INTEGER PRIMARY KEY CHECK (id = 1), stream_id TEXT NOT NULL, \
     content_type TEXT NOT NULL, tail INTEGER NOT NULL, closed INTEGER NOT NULL, closed_by_id TEXT, \
     closed_by_epoch INTEGER, closed_by_seq INTEGER, ttl_secs INTEGER, expires_at_ms INTEGER, \
     expires_at_text TEXT, created_ms INTEGER NOT NULL, last_access_ms INTEGER NOT NULL, last_stream_seq TEXT, \
     fork_source TEXT, fork_source_id TEXT, fork_offset INTEGER, fork_offset_given INTEGER, fork_sub_offset INTEGER, \
     fork_point INTEGER, fork_expiry_inherited INTEGER, soft_deleted INTEGER NOT NULL DEFAULT 0, \
     generation INTEGER NOT NULL, fork_ancestors TEXT)",
    "CREATE TABLE IF NOT EXISTS generation (id INTEGER PRIMARY KEY CHECK (id = 1), last INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS chunks (start INTEGER PRIMARY KEY, data BLOB NOT NULL, flags INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS producers (id TEXT PRIMARY KEY, epoch INTEGER NOT NULL, last_seq INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS fork_refs (fork_id TEXT PRIMARY KEY, fork_path TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS outbox (fork_id TEXT PRIMARY KEY, source TEXT NOT NULL, kind TEXT NOT NULL, \
     due_ms INTEGER NOT NULL)",
];

const HEAD_BOUNDARY: i64 = 1;
const TAIL_BOUNDARY: i64 = 2;
const APPEND_END: i64 = 4;

pub struct SqlStore {
    sql: SqlStorage,
    storage: Storage,
    /// The metadata row as last read or committed. The object is its
    /// stream's only writer, so the copy stays exact; a failed commit drops
    /// it and the next read goes back to SQLite.
    meta: RefCell<Cached>,
    /// A commit queued an outgoing message since the last look.
    outbox_dirty: Cell<bool>,
}

#[derive(Clone)]
enum Cached {
    Unknown,
    Known(Option<Box<StreamMeta>>),
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

impl SqlStore {
    pub fn new(storage: Storage) -> SqlStore {
        SqlStore {
            sql: storage.sql(),
            storage,
            meta: RefCell::new(Cached::Unknown),
            outbox_dirty: Cell::new(false),
        }
    }

    /// Creates the tables if they are missing (idempotent).
    pub fn ensure_schema(&self) -> worker::Result<()> {
        for stmt in SCHEMA {
            self.sql.exec(stmt, None)?;
        }
        self.sql.exec(
            "INSERT OR IGNORE INTO schema_version (id, version) VALUES (1, ?)",
            vec![V::Integer(SCHEMA_VERSION)],
        )?;
        Ok(())
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

    fn load_meta(&self) -> worker::Result<Option<StreamMeta>> {
        let rows = self.rows(
            "SELECT stream_id, content_type, tail, closed, closed_by_id, closed_by_epoch, closed_by_seq, \
             ttl_secs, expires_at_ms, expires_at_text, created_ms, last_access_ms, last_stream_seq, \
             fork_source, fork_source_id, fork_offset, fork_offset_given, fork_sub_offset, fork_point, \
             fork_expiry_inherited, soft_deleted, generation, fork_ancestors FROM meta WHERE id = 1",
            Vec::new(),
        )?;
        rows.first().map(|r| SqlStore::meta_from_row(r)).transpose()
    }

    fn meta_from_row(row: &[V]) -> worker::Result<StreamMeta> {
        let col = |i: usize| row.get(i);
        let content_type = opt_text(col(1))
            .and_then(|s| ContentType::parse(&s).ok())
            .ok_or_else(|| corrupt("content type"))?;
        let expiry = match (col(7).and_then(int), col(8).and_then(int), opt_text(col(9))) {
            (Some(secs), _, _) => Expiry::Ttl {
                secs: u64::try_from(secs).map_err(|_| corrupt("ttl"))?,
            },
            (None, Some(ms), Some(text)) => Expiry::At { ms, text },
            _ => Expiry::Never,
        };
        let closed_by = match (opt_text(col(4)), col(5).and_then(int), col(6).and_then(int)) {
            (Some(id), Some(epoch), Some(seq)) => Some(ProducerTuple {
                id,
                epoch: u64::try_from(epoch).map_err(|_| corrupt("closed_by"))?,
                seq: u64::try_from(seq).map_err(|_| corrupt("closed_by"))?,
            }),
            _ => None,
        };
        Ok(StreamMeta {
            stream_id: opt_text(col(0)).ok_or_else(|| corrupt("stream id"))?,
            content_type,
            tail: Offset::new(uint(col(2), "tail")?).ok_or_else(|| corrupt("tail"))?,
            closed: uint(col(3), "closed")? != 0,
            closed_by,
            expiry,
            created_ms: uint(col(10), "created")?,
            last_access_ms: uint(col(11), "last access")?,
            last_stream_seq: opt_text(col(12)).and_then(|s| StreamSeq::parse(&s).ok()),
            fork: match opt_text(col(13)) {
                None => None,
                Some(source) => Some(ForkLink {
                    source,
                    source_id: opt_text(col(14)).ok_or_else(|| corrupt("fork source id"))?,
                    offset: Offset::new(uint(col(15), "fork offset")?)
                        .ok_or_else(|| corrupt("fork offset"))?,
                    offset_given: uint(col(16), "fork offset given")? != 0,
                    sub_offset: uint(col(17), "fork sub-offset")?,
                    point: Offset::new(uint(col(18), "fork point")?)
                        .ok_or_else(|| corrupt("fork point"))?,
                    expiry_inherited: uint(col(19), "fork expiry")? != 0,
                    ancestors: opt_text(col(22))
                        .and_then(|t| serde_json::from_str::<Vec<(u64, u64)>>(&t).ok())
                        .ok_or_else(|| corrupt("fork ancestors"))?,
                }),
            },
            soft_deleted: uint(col(20), "soft deleted")? != 0,
            generation: uint(col(21), "generation")?,
        })
    }
}

fn write_meta(sql: &SqlStorage, m: &StreamMeta) -> worker::Result<()> {
    let (ttl, at_ms, at_text) = match &m.expiry {
        Expiry::Never => (V::Null, V::Null, V::Null),
        Expiry::Ttl { secs } => (sql_int(*secs), V::Null, V::Null),
        Expiry::At { ms, text } => (V::Null, V::Integer(*ms), V::String(text.clone())),
    };
    let (cb_id, cb_epoch, cb_seq) = match &m.closed_by {
        Some(p) => (V::String(p.id.clone()), sql_int(p.epoch), sql_int(p.seq)),
        None => (V::Null, V::Null, V::Null),
    };
    let fork = |f: fn(&ForkLink) -> V| m.fork.as_ref().map_or(V::Null, f);
    sql.exec(
        "INSERT OR REPLACE INTO meta (id, stream_id, content_type, tail, closed, closed_by_id, closed_by_epoch, \
         closed_by_seq, ttl_secs, expires_at_ms, expires_at_text, created_ms, last_access_ms, last_stream_seq, \
         fork_source, fork_source_id, fork_offset, fork_offset_given, fork_sub_offset, fork_point, \
         fork_expiry_inherited, soft_deleted, generation, fork_ancestors) \
         VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        vec![
            V::String(m.stream_id.clone()),
            V::String(m.content_type.as_str().to_string()),
            sql_int(m.tail.position()),
            V::Integer(i64::from(m.closed)),
            cb_id,
            cb_epoch,
            cb_seq,
            ttl,
            at_ms,
            at_text,
            sql_int(m.created_ms),
            sql_int(m.last_access_ms),
            m.last_stream_seq
                .as_ref()
                .map_or(V::Null, |s| V::String(s.as_str().to_string())),
            fork(|f| V::String(f.source.clone())),
            fork(|f| V::String(f.source_id.clone())),
            fork(|f| sql_int(f.offset.position())),
            fork(|f| V::Integer(i64::from(f.offset_given))),
            fork(|f| sql_int(f.sub_offset)),
            fork(|f| sql_int(f.point.position())),
            fork(|f| V::Integer(i64::from(f.expiry_inherited))),
            V::Integer(i64::from(m.soft_deleted)),
            sql_int(m.generation),
            m.fork
                .as_ref()
                .map_or(V::Null, |f| V::String(serde_json::json!(f.ancestors).to_string())),
        ],
    )?;
    Ok(())
}

fn write_chunks(sql: &SqlStorage, chunks: Vec<Chunk>) -> worker::Result<()> {
    for c in chunks {
        let flags = if c.head_boundary { HEAD_BOUNDARY } else { 0 }
            | if c.tail_boundary { TAIL_BOUNDARY } else { 0 }
            | if c.append_end { APPEND_END } else { 0 };
        sql.exec(
            "INSERT INTO chunks (start, data, flags) VALUES (?, ?, ?)",
            vec![sql_int(c.start), V::Blob(c.data), V::Integer(flags)],
        )?;
    }
    Ok(())
}

fn clear(sql: &SqlStorage) -> worker::Result<()> {
    for t in [
        "DELETE FROM chunks",
        "DELETE FROM producers",
        "DELETE FROM meta",
    ] {
        sql.exec(t, None)?;
    }
    Ok(())
}

fn send(sql: &SqlStorage, out: &Outgoing) -> worker::Result<()> {
    let kind = match out.kind {
        OutgoingKind::Intent => "intent",
        OutgoingKind::Release => "release",
    };
    sql.exec(
        "INSERT OR REPLACE INTO outbox (fork_id, source, kind, due_ms) VALUES (?, ?, ?, ?)",
        vec![
            V::String(out.fork_id.clone()),
            V::String(out.source.clone()),
            V::String(kind.into()),
            sql_int(out.due_ms),
        ],
    )?;
    Ok(())
}

fn settle(sql: &SqlStorage, fork_id: String) -> worker::Result<()> {
    sql.exec(
        "DELETE FROM outbox WHERE fork_id = ?",
        vec![V::String(fork_id)],
    )?;
    Ok(())
}

fn apply(sql: &SqlStorage, commit: Commit) -> worker::Result<()> {
    match commit {
        Commit::Create {
            meta,
            chunks,
            settle: done,
        } => {
            clear(sql)?;
            sql.exec(
                "INSERT OR REPLACE INTO generation (id, last) VALUES (1, ?)",
                vec![sql_int(meta.generation)],
            )?;
            write_meta(sql, &meta)?;
            write_chunks(sql, chunks)?;
            match done {
                Some(id) => settle(sql, id),
                None => Ok(()),
            }
        }
        Commit::Append {
            meta,
            chunks,
            producer,
        } => {
            write_chunks(sql, chunks)?;
            if let Some((id, p)) = producer {
                sql.exec(
                    "INSERT OR REPLACE INTO producers (id, epoch, last_seq) VALUES (?, ?, ?)",
                    vec![V::String(id), sql_int(p.epoch), sql_int(p.last_seq)],
                )?;
            }
            write_meta(sql, &meta)
        }
        Commit::Delete { release } => {
            clear(sql)?;
            match release {
                Some(out) => send(sql, &out),
                None => Ok(()),
            }
        }
        Commit::SoftDelete { meta } => write_meta(sql, &meta),
        Commit::AddRef { fork_path, fork_id } => {
            sql.exec(
                "INSERT OR IGNORE INTO fork_refs (fork_id, fork_path) VALUES (?, ?)",
                vec![V::String(fork_id), V::String(fork_path)],
            )?;
            Ok(())
        }
        Commit::RemoveRef { fork_id } => {
            sql.exec(
                "DELETE FROM fork_refs WHERE fork_id = ?",
                vec![V::String(fork_id)],
            )?;
            Ok(())
        }
        Commit::Send(out) => send(sql, &out),
        Commit::Settle { fork_id } => settle(sql, fork_id),
    }
}

/// Runs `work` inside `storage.transactionSync`: all or nothing.
fn transaction_sync(
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

impl Store for SqlStore {
    type Error = worker::Error;

    fn meta(&self) -> worker::Result<Option<StreamMeta>> {
        if let Cached::Known(m) = &*self.meta.borrow() {
            return Ok(m.as_deref().cloned());
        }
        let meta = self.load_meta()?;
        *self.meta.borrow_mut() = Cached::Known(meta.clone().map(Box::new));
        Ok(meta)
    }

    fn producer(&self, id: &str) -> worker::Result<Option<ProducerState>> {
        let rows = self.rows(
            "SELECT epoch, last_seq FROM producers WHERE id = ?",
            vec![V::String(id.to_string())],
        )?;
        rows.first()
            .map(|r| {
                Ok(ProducerState {
                    epoch: uint(r.first(), "producer epoch")?,
                    last_seq: uint(r.get(1), "producer seq")?,
                })
            })
            .transpose()
    }

    fn scan(
        &self,
        from: u64,
        visit: &mut dyn FnMut(Chunk) -> ControlFlow<()>,
    ) -> worker::Result<()> {
        let cursor = self.sql.exec(
            "SELECT start, data, flags FROM chunks WHERE start >= \
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
            };
            if visit(chunk).is_break() {
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
        let rows: Vec<Vec<V>> = self
            .sql
            .exec(
                "SELECT fork_id, source, kind, due_ms FROM outbox ORDER BY due_ms",
                None,
            )?
            .raw()
            .collect::<worker::Result<_>>()?;
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
        // The metadata after the commit, when it changes it.
        let after = match &commit {
            Commit::Create { meta, .. }
            | Commit::Append { meta, .. }
            | Commit::SoftDelete { meta } => Some(Some(meta.clone())),
            Commit::Delete { .. } => Some(None),
            _ => None,
        };
        if matches!(
            &commit,
            Commit::Send(_) | Commit::Delete { release: Some(_) }
        ) {
            self.outbox_dirty.set(true);
        }
        let sql = self.sql.clone();
        let result = transaction_sync(&self.storage, move || apply(&sql, commit));
        match (&result, after) {
            (Ok(()), Some(m)) => *self.meta.borrow_mut() = Cached::Known(m.map(Box::new)),
            (Ok(()), None) => {}
            (Err(_), _) => *self.meta.borrow_mut() = Cached::Unknown,
        }
        result
    }
}
