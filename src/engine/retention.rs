//! Trimming a stream to its retention policy
//! ([`crate::protocol::retention`]): which whole units to drop from the
//! front. Pure: the store hands the oldest units in order, the clock is an
//! argument, and a step looks at no more than `max_units` units, so a large
//! backlog is trimmed in bounded steps (on append and on the alarm) and
//! never blocks a request for long.
//!
//! A unit is the smallest run of rows that may be dropped: one append of a
//! byte stream, or in JSON mode one or more whole messages of one append
//! (a message is never cut in two). Dropping stops at the first unit that
//! breaks no bound, so what remains is exactly a suffix of what was
//! appended, cut on unit boundaries, within every bound, and no longer
//! than it must be.

use crate::protocol::retention::Retention;
use std::ops::ControlFlow;

/// One droppable run of rows, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit {
    /// Positions `[start, end)` in the stream's stored form.
    pub start: u64,
    pub end: u64,
    /// Messages (JSON mode) or appends (1) it holds.
    pub messages: u64,
    /// When it was appended.
    pub at_ms: u64,
}

/// What is retained now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retained {
    /// Stored bytes from the earliest position to the tail.
    pub bytes: u64,
    pub messages: u64,
}

/// One trim step's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Plan {
    /// The new earliest position (`None`: nothing to drop).
    pub earliest: Option<u64>,
    pub units: u64,
    pub bytes: u64,
    pub messages: u64,
    /// The step stopped at `max_units` with more to drop.
    pub more: bool,
}

/// Whether the oldest unit `u` must go, given what is retained with it.
fn must_drop(policy: &Retention, now_ms: u64, held: Retained, u: &Unit) -> bool {
    policy.max_bytes.is_some_and(|m| held.bytes > m)
        || policy.max_messages.is_some_and(|m| held.messages > m)
        || policy
            .max_age_s
            .is_some_and(|s| u.at_ms.saturating_add(s.saturating_mul(1000)) <= now_ms)
}

/// A step planned one unit at a time, as the store hands them over (oldest
/// first): [`Planner::offer`] says whether to hand over the next one.
#[derive(Debug, Clone)]
pub struct Planner<'p> {
    policy: &'p Retention,
    now_ms: u64,
    held: Retained,
    max_units: usize,
    plan: Plan,
    /// The oldest unit that stays (when the step saw it).
    pub kept: Option<Unit>,
}

impl<'p> Planner<'p> {
    pub fn new(policy: &'p Retention, now_ms: u64, retained: Retained, max_units: usize) -> Self {
        Planner {
            policy,
            now_ms,
            held: retained,
            max_units,
            plan: Plan::default(),
            kept: None,
        }
    }

    /// Drops `u` if it must go; `Break` once the step is done.
    pub fn offer(&mut self, u: Unit) -> ControlFlow<()> {
        if !must_drop(self.policy, self.now_ms, self.held, &u) {
            self.kept = Some(u);
            return ControlFlow::Break(());
        }
        if self.plan.units as usize >= self.max_units {
            self.plan.more = true;
            return ControlFlow::Break(());
        }
        let len = u.end.saturating_sub(u.start);
        self.held.bytes = self.held.bytes.saturating_sub(len);
        self.held.messages = self.held.messages.saturating_sub(u.messages);
        let p = &mut self.plan;
        p.earliest = Some(u.end);
        p.units += 1;
        p.bytes += len;
        p.messages += u.messages;
        ControlFlow::Continue(())
    }

    pub fn finish(self) -> Plan {
        self.plan
    }
}

/// Plans one step over `units` (oldest first).
pub fn plan(
    policy: &Retention,
    now_ms: u64,
    retained: Retained,
    units: impl IntoIterator<Item = Unit>,
    max_units: usize,
) -> Plan {
    let mut planner = Planner::new(policy, now_ms, retained, max_units);
    for u in units {
        if planner.offer(u).is_break() {
            break;
        }
    }
    planner.finish()
}

/// When the oldest retained unit ages out (the alarm's next deadline).
pub fn next_expiry(policy: &Retention, oldest: Option<&Unit>) -> Option<u64> {
    let s = policy.max_age_s?;
    oldest.map(|u| u.at_ms.saturating_add(s.saturating_mul(1000)))
}
