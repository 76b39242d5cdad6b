//! Retention trimming (engine::retention) as a stream does it: trim after
//! every append, in bounded steps. For random appends and policies, what is
//! retained is exactly a suffix of what was appended, cut on unit
//! boundaries, within every bound, and no shorter than the bounds require.

use durable_streams_edge::engine::retention::{next_expiry, plan, Retained, Unit};
use durable_streams_edge::protocol::retention::Retention;
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Append {
    len: u64,
    messages: u64,
    gap_ms: u64,
}

fn appends() -> impl Strategy<Value = Vec<Append>> {
    proptest::collection::vec(
        (1u64..200, 1u64..5, 0u64..3_000).prop_map(|(len, messages, gap_ms)| Append {
            len,
            messages,
            gap_ms,
        }),
        1..80,
    )
}

fn policy() -> impl Strategy<Value = Retention> {
    (
        proptest::option::of(1u64..20),
        proptest::option::of(1u64..2_000),
        proptest::option::of(1u64..30),
    )
        .prop_map(|(max_age_s, max_bytes, max_messages)| Retention {
            max_age_s,
            max_bytes,
            max_messages,
        })
}

fn totals(units: &[Unit]) -> Retained {
    Retained {
        bytes: units.iter().map(|u| u.end - u.start).sum(),
        messages: units.iter().map(|u| u.messages).sum(),
    }
}

fn within(p: &Retention, now: u64, units: &[Unit]) -> bool {
    let t = totals(units);
    p.max_bytes.is_none_or(|m| t.bytes <= m)
        && p.max_messages.is_none_or(|m| t.messages <= m)
        && p.max_age_s
            .is_none_or(|s| units.iter().all(|u| u.at_ms + s * 1000 > now))
}

proptest! {
    #[test]
    fn retained_is_the_shortest_suffix_within_bounds(
        appends in appends(),
        policy in policy(),
        step in 1usize..5,
    ) {
        let mut all: Vec<Unit> = Vec::new();
        let mut earliest = 0u64;
        let mut now = 1_000_000u64;
        let mut tail = 0u64;
        for a in appends {
            now += a.gap_ms;
            all.push(Unit { start: tail, end: tail + a.len, messages: a.messages, at_ms: now });
            tail += a.len;
            // Trim in bounded steps until the plan says nothing more.
            for _ in 0..10_000 {
                let kept: Vec<Unit> = all.iter().copied().filter(|u| u.start >= earliest).collect();
                let p = plan(&policy, now, totals(&kept), kept.iter().copied(), step);
                prop_assert!(p.units as usize <= step);
                if let Some(e) = p.earliest {
                    prop_assert!(e > earliest);
                    earliest = e;
                }
                if !p.more {
                    break;
                }
            }
            let kept: Vec<Unit> = all.iter().copied().filter(|u| u.start >= earliest).collect();
            // A suffix, cut on a unit boundary, and the offsets never move.
            prop_assert!(earliest == 0 || all.iter().any(|u| u.end == earliest));
            prop_assert_eq!(kept.last().map_or(earliest, |u| u.end), if kept.is_empty() { earliest } else { tail });
            prop_assert!(within(&policy, now, &kept), "a bound is broken");
            // No shorter than needed: the last unit dropped could not stay.
            if let Some(prev) = all.iter().rev().find(|u| u.end == earliest) {
                let mut with = vec![*prev];
                with.extend(kept.iter().copied());
                prop_assert!(!within(&policy, now, &with), "dropped more than the bounds require");
            }
        }
    }
}

#[test]
fn the_alarm_comes_when_the_oldest_unit_ages_out() {
    let p = Retention {
        max_age_s: Some(2),
        ..Retention::default()
    };
    let u = Unit {
        start: 0,
        end: 5,
        messages: 1,
        at_ms: 10_000,
    };
    assert_eq!(next_expiry(&p, Some(&u)), Some(12_000));
    assert_eq!(next_expiry(&Retention::default(), Some(&u)), None);
    assert_eq!(next_expiry(&p, None), None);
    // 1,000 appends of one message with max 100: the last 100 stay.
    let units: Vec<Unit> = (0..1_000)
        .map(|i| Unit {
            start: i * 10,
            end: i * 10 + 10,
            messages: 1,
            at_ms: 0,
        })
        .collect();
    let keep = Retention {
        max_messages: Some(100),
        ..Retention::default()
    };
    let plan = plan(&keep, 0, totals(&units), units.iter().copied(), 10_000);
    assert_eq!(
        (plan.units, plan.earliest, plan.more),
        (900, Some(9_000), false)
    );
}
