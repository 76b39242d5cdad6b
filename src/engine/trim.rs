//! Trimming a stream to its retention policy (`protocol::retention`) in
//! bounded steps: on append, when the stream is over a size bound, and on
//! the alarm, for age as well. A step reads the oldest rows' places and
//! counts through [`Store::oldest`] (never their bytes), groups them into
//! units, lets [`super::retention::Planner`] choose, and commits a
//! [`Commit::Trim`]: the new `earliest` and the rows below it, together.
//!
//! Units: in JSON mode a run of rows ending on a message boundary (one
//! message per row when the stream bounds its message count, so the count
//! is exact); for other types one append. Only the stream's own rows are
//! trimmed: a fork's inherited range is its source's to trim.

use super::retention::{next_expiry, Planner, Retained, Unit};
use super::state::StreamMeta;
use super::store::{Commit, RowInfo, Store};
use crate::protocol::offset::Offset;
use std::ops::ControlFlow;

/// Units one append may trim (more waits for the alarm, at once).
pub const APPEND_STEP_UNITS: usize = 64;
/// Units one alarm step may trim.
pub const ALARM_STEP_UNITS: usize = 1024;
/// Rows one step may read at most, whatever their units.
const MAX_ROWS: usize = 16_384;

/// One step's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The trim to commit, if anything goes.
    pub commit: Option<Commit>,
    /// The step stopped at its budget with more to trim.
    pub more: bool,
    /// When the oldest kept unit ages out (max-age policies).
    pub next_expiry: Option<u64>,
}

/// Where trimming may start: the stream's own data, from `earliest`.
fn own_from(meta: &StreamMeta) -> Offset {
    meta.earliest.max(meta.own_start())
}

/// What `meta` retains of its own data.
pub fn retained(meta: &StreamMeta) -> Retained {
    Retained {
        bytes: meta
            .tail
            .position()
            .saturating_sub(own_from(meta).position()),
        messages: meta.tail_count.saturating_sub(meta.earliest_count),
    }
}

/// Whether `meta` is over a size or count bound: an append trims only
/// then, so an append within its policy costs no extra storage read.
pub fn over_size(meta: &StreamMeta) -> bool {
    let r = retained(meta);
    let p = &meta.retention;
    p.max_bytes.is_some_and(|m| r.bytes > m) || p.max_messages.is_some_and(|m| r.messages > m)
}

/// One trim step of at most `max_units` units, each at most `unit_rows`
/// rows (the rows of the largest append).
pub fn step<S: Store>(
    store: &S,
    meta: &StreamMeta,
    now_ms: u64,
    max_units: usize,
    unit_rows: usize,
) -> Result<Step, S::Error> {
    let policy = meta.retention;
    if policy.is_none() || meta.soft_deleted {
        return Ok(Step {
            commit: None,
            more: false,
            next_expiry: None,
        });
    }
    let json = meta.content_type.is_json();
    let mut planner = Planner::new(&policy, now_ms, retained(meta), max_units);
    let mut open: Option<Unit> = None;
    let mut prev_count = meta.earliest_count;
    let limit = max_units
        .saturating_add(1)
        .saturating_mul(unit_rows.max(1))
        .min(MAX_ROWS);
    store.oldest(own_from(meta).position(), limit, &mut |r: RowInfo| {
        let u = open.get_or_insert(Unit {
            start: r.start,
            end: r.start,
            messages: 0,
            at_ms: r.at_ms,
        });
        u.end = r.end;
        let unit_end = if json { r.tail_boundary } else { r.append_end };
        if !unit_end {
            return ControlFlow::Continue(());
        }
        let mut unit = *u;
        open = None;
        unit.messages = r.count.saturating_sub(prev_count);
        prev_count = r.count;
        planner.offer(unit)
    })?;
    let kept = planner.kept;
    let plan = planner.finish();
    let commit = plan.earliest.and_then(Offset::new).map(|earliest| {
        let mut next = meta.clone();
        next.earliest = earliest;
        next.earliest_count = meta.earliest_count.saturating_add(plan.messages);
        Commit::Trim { meta: next }
    });
    Ok(Step {
        commit,
        more: plan.more,
        next_expiry: next_expiry(&policy, kept.as_ref()),
    })
}

/// The rows of the largest append under `config`.
pub fn unit_rows(config: &super::config::Config) -> usize {
    let rows = config.max_append_bytes.div_ceil(config.row_bytes.max(1));
    usize::try_from(rows.saturating_add(1)).unwrap_or(usize::MAX)
}
