//! A stream's lifetime as every request sees it (PROTOCOL.md §5.1, §4.2):
//! loading its metadata with the expiry check, retiring an expired stream,
//! renewing a sliding TTL on access, and the alarm's look at the deadline.

use super::config::Config;
use super::failure::{Failure, StoreResult};
use super::fork::{self, Need};
use super::state::{Chunk, StreamMeta};
use super::store::{Commit, Store};
use super::trim;
use crate::protocol::error::ProtocolError;
use crate::protocol::expiry::Expiry;
use crate::protocol::offset::Offset;

/// The stream's metadata, or `None` when absent or expired. An expired
/// stream is retired on the spot (soft-deleted while forks reference it,
/// else dropped), so a re-create starts clean.
pub fn current_meta<S: Store>(store: &S, now_ms: u64) -> Result<Option<StreamMeta>, S::Error> {
    match store.meta()? {
        Some(m) if !m.soft_deleted && m.is_expired(now_ms) => {
            let commit = fork::retire(&m, store.refs()?, now_ms);
            let kept = match &commit {
                Commit::SoftDelete { meta } => Some(meta.clone()),
                _ => None,
            };
            store.commit(commit)?;
            Ok(kept)
        }
        other => Ok(other),
    }
}

/// The stream a client may use: 404 when absent, 410 when soft-deleted.
pub fn public_meta<S: Store>(store: &S, now_ms: u64) -> Result<StreamMeta, Failure<S::Error>> {
    let meta = current_meta(store, now_ms)
        .store()?
        .ok_or(ProtocolError::NotFound)?;
    if meta.soft_deleted {
        return Err(ProtocolError::Gone.into());
    }
    Ok(meta)
}

/// Renews a sliding TTL on a read (§5.1: reads and writes reset it; for live
/// reads, when the server begins processing and again after waits).
pub fn touch<S: Store>(store: &S, meta: &StreamMeta, now_ms: u64) -> Result<(), Failure<S::Error>> {
    if meta.slides() && meta.last_access_ms != now_ms {
        let mut next = meta.clone();
        next.last_access_ms = now_ms;
        store
            .commit(Commit::Append {
                meta: next,
                chunks: Vec::new(),
                producer: None,
            })
            .store()?;
    }
    Ok(())
}

/// The inherited chunks a read of `meta` from `from` needs and `inherited`
/// does not hold, if any.
pub fn need(meta: &StreamMeta, from: Offset, inherited: &[Chunk]) -> Option<Need> {
    let (from, to) = fork::missing(meta, from, inherited)?;
    let link = meta.fork.as_ref()?;
    Some(Need {
        source: link.source.clone(),
        source_id: link.source_id.clone(),
        from,
        to,
    })
}

/// How long, in seconds, a cached copy of this stream's data may live
/// (§10.1 `max-age` plus `stale-while-revalidate`), or `None` when the
/// stream has no end. An absolute expiry bounds it by the time left; a
/// sliding TTL by half the TTL, so readers served from caches come back to
/// the origin, and renew the TTL, well before it runs out.
pub fn cache_budget_s(meta: &StreamMeta, now_ms: u64) -> Option<u64> {
    match meta.expiry {
        Expiry::Never => None,
        Expiry::Ttl { secs } => Some(secs / 2),
        Expiry::At { .. } => Some(meta.deadline()?.saturating_sub(now_ms) / 1000),
    }
}

/// The object's alarm: retires an expired stream, runs one retention trim
/// step (`engine::trim`), and says when to look again: the expiry, the next
/// unit to age out (at most once a second), or at once if the step stopped
/// at its budget.
pub fn on_alarm<S: Store>(
    store: &S,
    now_ms: u64,
    config: &Config,
) -> Result<Option<u64>, S::Error> {
    let Some(meta) = current_meta(store, now_ms)?.filter(|m| !m.soft_deleted) else {
        return Ok(None);
    };
    let step = trim::step(
        store,
        &meta,
        now_ms,
        trim::ALARM_STEP_UNITS,
        trim::unit_rows(config),
    )?;
    if let Some(commit) = step.commit {
        store.commit(commit)?;
    }
    let trim_at = if step.more {
        Some(now_ms)
    } else {
        step.next_expiry.map(|t| t.max(now_ms.saturating_add(1000)))
    };
    Ok([meta.deadline(), trim_at].into_iter().flatten().min())
}
