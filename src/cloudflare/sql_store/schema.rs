//! The stream object's SQLite schema and its versions. A new object creates
//! the current tables; an older stored version is migrated step by step; a
//! version newer than this build knows (a rollback to an older deploy) is
//! refused, so old code never writes a schema it does not understand.
//!
//! ```text
//! schema_version(id = 1, version)
//! meta(id = 1, stream_id, content_type, tail, closed, closed_by_id,
//!      closed_by_epoch, closed_by_seq, ttl_secs, expires_at_ms,
//!      expires_at_text, created_ms, last_access_ms, last_stream_seq,
//!      fork_source, fork_source_id, fork_offset, fork_offset_given,
//!      fork_sub_offset, fork_point, fork_expiry_inherited, soft_deleted,
//!      generation, fork_ancestors,  -- ancestors: JSON [[generation, limit], …]
//!      ret_max_age_s, ret_max_bytes, ret_max_messages,  -- retention (NULL: none)
//!      earliest, earliest_count)   -- trimmed below `earliest`
//! chunks(start INTEGER PRIMARY KEY, data BLOB, flags, at_ms, msg_count)
//!        -- flags: 1 head boundary, 2 tail boundary, 4 append end;
//!        -- at_ms: append time; msg_count: own messages (appends) through the row
//! producers(id TEXT PRIMARY KEY, epoch, last_seq, last_used_ms)
//! fork_refs(fork_id TEXT PRIMARY KEY, fork_path)      -- forks reading this stream
//! outbox(fork_id TEXT PRIMARY KEY, source, kind, due_ms) -- messages owed to sources
//! generation(id = 1, last)       -- last stream generation minted here; survives deletes
//! ```
//!
//! Versions: 1, the first; 2 adds `producers.last_used_ms` (idle producer
//! state expires); 3 adds retention (`meta.ret_*`, `meta.earliest*`,
//! `chunks.at_ms`, `chunks.msg_count`).

use worker::{SqlStorage, SqlStorageValue as V};

/// The version this build writes.
pub const SCHEMA_VERSION: i64 = 3;

const TABLES: [&str; 7] = [
    "CREATE TABLE IF NOT EXISTS schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (id INTEGER PRIMARY KEY CHECK (id = 1), stream_id TEXT NOT NULL, \
     content_type TEXT NOT NULL, tail INTEGER NOT NULL, closed INTEGER NOT NULL, closed_by_id TEXT, \
     closed_by_epoch INTEGER, closed_by_seq INTEGER, ttl_secs INTEGER, expires_at_ms INTEGER, \
     expires_at_text TEXT, created_ms INTEGER NOT NULL, last_access_ms INTEGER NOT NULL, last_stream_seq TEXT, \
     fork_source TEXT, fork_source_id TEXT, fork_offset INTEGER, fork_offset_given INTEGER, fork_sub_offset INTEGER, \
     fork_point INTEGER, fork_expiry_inherited INTEGER, soft_deleted INTEGER NOT NULL DEFAULT 0, \
     generation INTEGER NOT NULL, fork_ancestors TEXT, ret_max_age_s INTEGER, ret_max_bytes INTEGER, \
     ret_max_messages INTEGER, earliest INTEGER NOT NULL DEFAULT 0, earliest_count INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS generation (id INTEGER PRIMARY KEY CHECK (id = 1), last INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS chunks (start INTEGER PRIMARY KEY, data BLOB NOT NULL, flags INTEGER NOT NULL, \
     at_ms INTEGER NOT NULL DEFAULT 0, msg_count INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS producers (id TEXT PRIMARY KEY, epoch INTEGER NOT NULL, last_seq INTEGER NOT NULL, \
     last_used_ms INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS fork_refs (fork_id TEXT PRIMARY KEY, fork_path TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS outbox (fork_id TEXT PRIMARY KEY, source TEXT NOT NULL, kind TEXT NOT NULL, \
     due_ms INTEGER NOT NULL)",
];

/// The columns version 3 adds (retention).
const V3_COLUMNS: [&str; 7] = [
    "ALTER TABLE meta ADD COLUMN ret_max_age_s INTEGER",
    "ALTER TABLE meta ADD COLUMN ret_max_bytes INTEGER",
    "ALTER TABLE meta ADD COLUMN ret_max_messages INTEGER",
    "ALTER TABLE meta ADD COLUMN earliest INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE meta ADD COLUMN earliest_count INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE chunks ADD COLUMN at_ms INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE chunks ADD COLUMN msg_count INTEGER NOT NULL DEFAULT 0",
];

/// What turns a stored version `v` into `v + 1`.
fn migration(from: i64) -> Option<&'static [&'static str]> {
    match from {
        1 => Some(&["ALTER TABLE producers ADD COLUMN last_used_ms INTEGER NOT NULL DEFAULT 0"]),
        2 => Some(&V3_COLUMNS),
        _ => None,
    }
}

fn stored_version(sql: &SqlStorage) -> worker::Result<Option<i64>> {
    let exists = sql
        .exec(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'",
            None,
        )?
        .raw()
        .next()
        .transpose()?
        .and_then(|r| r.first().and_then(super::int))
        .unwrap_or(0);
    if exists == 0 {
        return Ok(None);
    }
    let row = sql
        .exec("SELECT version FROM schema_version WHERE id = 1", None)?
        .raw()
        .next()
        .transpose()?;
    Ok(row.and_then(|r| r.first().and_then(super::int)))
}

/// The table and column an `ALTER TABLE t ADD COLUMN c ...` adds.
fn added_column(stmt: &str) -> Option<(&str, &str)> {
    let rest = stmt.strip_prefix("ALTER TABLE ")?;
    let (table, rest) = rest.split_once(" ADD COLUMN ")?;
    Some((table, rest.split_whitespace().next()?))
}

/// Brings the object's tables to [`SCHEMA_VERSION`] (idempotent), or
/// refuses a version this build does not know.
pub fn ensure(sql: &SqlStorage) -> worker::Result<()> {
    let mut version = match stored_version(sql)? {
        None => {
            for stmt in TABLES {
                sql.exec(stmt, None)?;
            }
            sql.exec(
                "INSERT OR REPLACE INTO schema_version (id, version) VALUES (1, ?)",
                vec![V::Integer(SCHEMA_VERSION)],
            )?;
            return Ok(());
        }
        Some(v) => v,
    };
    if version > SCHEMA_VERSION {
        return Err(worker::Error::RustError(format!(
            "stored schema version {version} is newer than this build's {SCHEMA_VERSION}: refusing to touch it"
        )));
    }
    while version < SCHEMA_VERSION {
        let steps = migration(version).ok_or_else(|| {
            worker::Error::RustError(format!("no migration from schema version {version}"))
        })?;
        for stmt in steps {
            sql.exec(stmt, None)?;
        }
        version += 1;
        sql.exec(
            "UPDATE schema_version SET version = ? WHERE id = 1",
            vec![V::Integer(version)],
        )?;
    }
    // Tables added since the stored version was written (all idempotent).
    for stmt in TABLES {
        sql.exec(stmt, None)?;
    }
    Ok(())
}

/// Test-only: makes the stored schema look like version `v` (drops the
/// columns later versions added), so a test can watch the next request
/// migrate or refuse it.
pub fn pretend_version(sql: &SqlStorage, v: i64) -> worker::Result<()> {
    if v <= 2 {
        for stmt in V3_COLUMNS {
            if let Some((table, column)) = added_column(stmt) {
                sql.exec(&format!("ALTER TABLE {table} DROP COLUMN {column}"), None)?;
            }
        }
    }
    if v == 1 {
        sql.exec("ALTER TABLE producers DROP COLUMN last_used_ms", None)?;
    }
    sql.exec(
        "UPDATE schema_version SET version = ? WHERE id = 1",
        vec![V::Integer(v)],
    )?;
    Ok(())
}
