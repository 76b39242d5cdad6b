//! Rows of the stream object's tables: decoding the metadata row, and the
//! SQL each [`Commit`] runs (inside one `transactionSync`, see the parent
//! module). Integers are bounded by 2^53−1 (they cross into JavaScript as
//! doubles).

use super::{corrupt, int, opt_text, sql_int, uint};
use crate::engine::state::{Chunk, ForkLink, StreamMeta};
use crate::engine::store::{Commit, Outgoing, OutgoingKind};
use crate::protocol::content_type::ContentType;
use crate::protocol::expiry::Expiry;
use crate::protocol::offset::Offset;
use crate::protocol::producer::{ProducerTuple, StreamSeq};
use crate::protocol::retention::Retention;
use worker::{SqlStorage, SqlStorageValue as V};

pub const HEAD_BOUNDARY: i64 = 1;
pub const TAIL_BOUNDARY: i64 = 2;
pub const APPEND_END: i64 = 4;

/// The columns [`meta_from_row`] decodes, in order.
pub const META_COLUMNS: &str = "stream_id, content_type, tail, closed, closed_by_id, closed_by_epoch, \
     closed_by_seq, ttl_secs, expires_at_ms, expires_at_text, created_ms, last_access_ms, last_stream_seq, \
     fork_source, fork_source_id, fork_offset, fork_offset_given, fork_sub_offset, fork_point, \
     fork_expiry_inherited, soft_deleted, generation, fork_ancestors, ret_max_age_s, ret_max_bytes, \
     ret_max_messages, earliest, earliest_count";

fn opt_uint(v: Option<&V>) -> Option<u64> {
    v.and_then(int).and_then(|i| u64::try_from(i).ok())
}

pub fn meta_from_row(row: &[V]) -> worker::Result<StreamMeta> {
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
        retention: Retention {
            max_age_s: opt_uint(col(23)),
            max_bytes: opt_uint(col(24)),
            max_messages: opt_uint(col(25)),
        },
        earliest: Offset::new(uint(col(26), "earliest")?).ok_or_else(|| corrupt("earliest"))?,
        earliest_count: uint(col(27), "earliest count")?,
        // Derived from the last chunk by the load.
        tail_count: 0,
    })
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
         fork_expiry_inherited, soft_deleted, generation, fork_ancestors, ret_max_age_s, ret_max_bytes, \
         ret_max_messages, earliest, earliest_count) \
         VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            m.retention.max_age_s.map_or(V::Null, sql_int),
            m.retention.max_bytes.map_or(V::Null, sql_int),
            m.retention.max_messages.map_or(V::Null, sql_int),
            sql_int(m.earliest.position()),
            sql_int(m.earliest_count),
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
            "INSERT INTO chunks (start, data, flags, at_ms, msg_count) VALUES (?, ?, ?, ?, ?)",
            vec![
                sql_int(c.start),
                V::Blob(c.data),
                V::Integer(flags),
                sql_int(c.at_ms),
                sql_int(c.count),
            ],
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

/// Runs a commit's SQL. `store_meta`: whether an `Append` writes its
/// metadata row (see `StreamMeta::must_store`).
pub fn apply(sql: &SqlStorage, commit: Commit, store_meta: bool) -> worker::Result<()> {
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
                    "INSERT OR REPLACE INTO producers (id, epoch, last_seq, last_used_ms) VALUES (?, ?, ?, ?)",
                    vec![
                        V::String(id),
                        sql_int(p.epoch),
                        sql_int(p.last_seq),
                        sql_int(meta.last_access_ms),
                    ],
                )?;
            }
            if store_meta {
                write_meta(sql, &meta)?;
            }
            Ok(())
        }
        Commit::Delete { release } => {
            clear(sql)?;
            match release {
                Some(out) => send(sql, &out),
                None => Ok(()),
            }
        }
        Commit::SoftDelete { meta } => write_meta(sql, &meta),
        Commit::Trim { meta } => {
            sql.exec(
                "DELETE FROM chunks WHERE start < ?",
                vec![sql_int(meta.earliest.position())],
            )?;
            write_meta(sql, &meta)
        }
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
        Commit::PruneProducers {
            idle_before_ms,
            limit,
        } => {
            sql.exec(
                "DELETE FROM producers WHERE id IN \
                 (SELECT id FROM producers WHERE last_used_ms < ? LIMIT ?)",
                vec![sql_int(idle_before_ms), V::Integer(i64::from(limit))],
            )?;
            Ok(())
        }
    }
}
