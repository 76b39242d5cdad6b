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

/// Plans one step over `units` (oldest first).
pub fn plan(
    policy: &Retention,
    now_ms: u64,
    retained: Retained,
    units: impl IntoIterator<Item = Unit>,
    max_units: usize,
) -> Plan {
    let mut p = Plan::default();
    let mut held = retained;
    for (i, u) in units.into_iter().enumerate() {
        if !must_drop(policy, now_ms, held, &u) {
            return p;
        }
        if i >= max_units {
            p.more = true;
            return p;
        }
        let len = u.end.saturating_sub(u.start);
        held.bytes = held.bytes.saturating_sub(len);
        held.messages = held.messages.saturating_sub(u.messages);
        p.earliest = Some(u.end);
        p.units += 1;
        p.bytes += len;
        p.messages += u.messages;
    }
    p
}

/// When the oldest retained unit ages out (the alarm's next deadline).
pub fn next_expiry(policy: &Retention, oldest: Option<&Unit>) -> Option<u64> {
    let s = policy.max_age_s?;
    oldest.map(|u| u.at_ms.saturating_add(s.saturating_mul(1000)))
}
