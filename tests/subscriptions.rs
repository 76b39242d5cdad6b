//! Subscription scenarios (PROTOCOL.md §6, §7) against the pure state
//! machine, and a property: whatever the order of notifications, failures,
//! acks and lease expiries, a pending stream is never left without a wake
//! and an acked offset never moves back.

use durable_streams_edge::engine::subscription::{backoff_ms, Delivery, Due, Sub};
use durable_streams_edge::protocol::subscription::{parse_config, parse_wake_request};
use proptest::prelude::*;

fn off(n: u64) -> String {
    format!("0000000000000001_{n:016}")
}

fn ids() -> impl FnMut() -> String {
    let mut n = 0;
    move || {
        n += 1;
        format!("w{n}")
    }
}

fn webhook() -> Sub {
    let c = parse_config(
        br#"{"type":"webhook","pattern":"events/*","webhook":{"url":"https://h.example.com/"},"lease_ttl_ms":1000}"#,
        false,
    )
    .unwrap();
    Sub::new("s1", c, "http://127.0.0.1:8787/", 0)
}

fn pull() -> Sub {
    let c = parse_config(
        br#"{"type":"pull-wake","pattern":"events/*","wake_stream":"wake/pool","lease_ttl_ms":1000}"#,
        false,
    )
    .unwrap();
    Sub::new("p1", c, "http://x", 0)
}

fn wake_req(sub: &Sub, acks: &[(&str, String)], done: bool) -> String {
    let acks: Vec<_> = acks
        .iter()
        .map(|(s, o)| serde_json::json!({"stream": s, "offset": o}))
        .collect();
    serde_json::json!({
        "wake_id": sub.head.wake.as_ref().map(|w| w.id.clone()),
        "generation": sub.head.generation,
        "acks": acks,
        "done": done,
    })
    .to_string()
}

#[test]
fn a_matching_append_wakes_once_and_done_acks_the_snapshot() {
    let mut s = webhook();
    let mut id = ids();
    assert!(
        !s.notify("other/x", Some(&off(5)), &off(0)),
        "not matched: unlinked"
    );
    assert!(s.notify("events/a", Some(&off(5)), &off(0)));
    assert!(s.maybe_wake(10, &mut id));
    assert_eq!(
        s.due(10),
        Some(Due::Webhook {
            generation: 1,
            wake_id: "w1".into()
        })
    );
    // A second append while the wake is in flight: no second wake.
    s.notify("events/a", Some(&off(9)), &off(5));
    assert!(!s.maybe_wake(11, &mut id));
    let body: serde_json::Value = serde_json::from_str(&s.webhook_body("tok")).unwrap();
    assert_eq!(
        body["callback_url"],
        "http://127.0.0.1:8787/v1/stream/__ds/subscriptions/s1/callback"
    );
    assert_eq!(body["streams"][0]["tail_offset"], off(9));
    // {done:true} acks the snapshot (taken at off(5)) and wakes again for off(9).
    s.after_webhook(1, "w1", Delivery::Ok { done: true }, 12, 0.0, &mut id);
    assert_eq!(s.links["events/a"].acked, off(5));
    assert_eq!(s.head.generation, 2);
    assert!(s.due(12).is_some());
}

#[test]
fn callbacks_are_fenced_by_generation_and_wake() {
    let mut s = webhook();
    let mut id = ids();
    s.notify("events/a", Some(&off(5)), &off(0));
    s.maybe_wake(0, &mut id);
    s.after_webhook(1, "w1", Delivery::Ok { done: false }, 1, 0.0, &mut id);
    let req = parse_wake_request(wake_req(&s, &[("events/a", off(5))], true).as_bytes()).unwrap();
    assert_eq!(
        s.ack(0, &req, 2, &mut id).unwrap_err().code,
        "FENCED",
        "token of another generation"
    );
    assert_eq!(s.ack(1, &req, 2, &mut id), Ok(false));
    assert_eq!(s.links["events/a"].acked, off(5));
    assert_eq!(
        s.ack(1, &req, 3, &mut id).unwrap_err().code,
        "FENCED",
        "replayed"
    );
    // Acks beyond the tail or backwards are refused whole.
    s.notify("events/a", Some(&off(8)), &off(5));
    s.maybe_wake(4, &mut id);
    let bad = parse_wake_request(wake_req(&s, &[("events/a", off(9))], true).as_bytes()).unwrap();
    assert_eq!(
        s.ack(2, &bad, 5, &mut id).unwrap_err().code,
        "INVALID_OFFSET"
    );
    let back = parse_wake_request(wake_req(&s, &[("events/a", off(4))], false).as_bytes()).unwrap();
    assert_eq!(
        s.ack(2, &back, 5, &mut id).unwrap_err().code,
        "INVALID_OFFSET"
    );
}

#[test]
fn failed_deliveries_back_off_and_survive_lease_expiry() {
    let mut s = webhook();
    let mut id = ids();
    s.notify("events/a", Some(&off(5)), &off(0));
    s.maybe_wake(0, &mut id);
    s.after_webhook(1, "w1", Delivery::Failed, 0, 0.0, &mut id);
    assert_eq!(s.head.wake.as_ref().unwrap().due, Some(1_000));
    s.after_webhook(1, "w1", Delivery::Failed, 1_000, 0.0, &mut id);
    assert_eq!(s.head.wake.as_ref().unwrap().due, Some(3_000));
    assert!(s.due(2_999).is_none());
    // The lease (1 s) runs out: a new generation, same retry schedule.
    s.tick(2_000, &mut id);
    assert_eq!(s.head.generation, 2);
    assert_eq!(s.head.wake.as_ref().unwrap().due, Some(3_000));
    s.after_webhook(2, "w2", Delivery::Ok { done: false }, 3_000, 0.0, &mut id);
    assert!(!s.head.failed);
    assert_eq!(s.head.retry_count, 0);
    assert_eq!(backoff_ms(1, 1.0), 1_200);
    assert_eq!(backoff_ms(1, -1.0), 800);
    assert_eq!(backoff_ms(30, 0.0), 60_000);
}

#[test]
fn pull_wake_claims_are_exclusive_and_release_rewakes() {
    let mut s = pull();
    let mut id = ids();
    assert_eq!(
        s.claim("w-1", 0, &mut id).unwrap_err().code,
        "NO_PENDING_WORK"
    );
    s.notify("events/a", Some(&off(5)), &off(0));
    s.maybe_wake(0, &mut id);
    assert!(matches!(s.due(0), Some(Due::WakeEvent { .. })));
    s.after_wake_event("w1", true, 0, 0.0);
    assert!(s.due(0).is_none());
    s.claim("w-1", 1, &mut id).unwrap();
    let busy = s.claim("w-2", 2, &mut id).unwrap_err();
    assert_eq!(
        (busy.code, busy.holder),
        ("ALREADY_CLAIMED", Some(("w-1".into(), 1)))
    );
    let release = parse_wake_request(wake_req(&s, &[], false).as_bytes()).unwrap();
    s.release(1, &release, 3, &mut id).unwrap();
    assert_eq!(s.head.generation, 2, "still pending: a new wake");
    assert!(s.due(3).is_some());
    // Heartbeats extend the lease; expiry frees the claim.
    s.claim("w-2", 4, &mut id).unwrap();
    let beat = parse_wake_request(wake_req(&s, &[], false).as_bytes()).unwrap();
    s.ack(2, &beat, 900, &mut id).unwrap();
    s.tick(1_500, &mut id);
    assert_eq!(s.head.generation, 2, "lease extended to 1,900");
    s.tick(1_900, &mut id);
    assert_eq!(s.head.generation, 3);
    assert!(s.head.wake.as_ref().unwrap().holder.is_none());
}

#[test]
fn explicit_links_and_globs_combine() {
    let mut s = webhook();
    s.link("events/a", true, &off(3));
    s.link("manual/b", true, &off(1));
    s.link("events/a", false, &off(4));
    assert!(s.links["events/a"].explicit && s.links["events/a"].glob);
    assert_eq!(s.links["events/a"].acked, off(3));
    s.unlink_explicit("events/a");
    assert!(s.links.contains_key("events/a"), "the glob link stays");
    s.unlink_explicit("manual/b");
    assert!(!s.links.contains_key("manual/b"));
    assert!(
        !s.notify("manual/b", Some(&off(2)), &off(1)),
        "unlinked stream is told so"
    );
    assert!(
        !s.notify("events/a", None, &off(0)),
        "a deleted stream is unlinked"
    );
    assert!(!s.links.contains_key("events/a"));
}

#[test]
fn links_are_bounded() {
    let mut s = webhook();
    s.head.max_streams = 2;
    assert!(s.link("events/a", true, &off(1)));
    assert!(s.notify("events/b", Some(&off(1)), &off(0)));
    assert!(!s.notify("events/c", Some(&off(1)), &off(0)));
    assert!(!s.link("manual/d", true, &off(1)));
    assert!(
        s.link("events/a", false, &off(2)),
        "an existing link is not new"
    );
    assert_eq!((s.links.len(), s.head.refused), (2, 2));
    assert_eq!(s.describe(None, "")["streams_refused"], 2);
}

#[derive(Debug, Clone)]
enum Step {
    Append(u8, u8),
    Deliver(bool, bool),
    Callback(bool),
    Time(u16),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..3, 1u8..5).prop_map(|(s, n)| Step::Append(s, n)),
        (any::<bool>(), any::<bool>()).prop_map(|(ok, done)| Step::Deliver(ok, done)),
        any::<bool>().prop_map(Step::Callback),
        (0u16..3_000).prop_map(Step::Time),
    ]
}

proptest! {
    #[test]
    fn pending_work_always_has_a_wake(steps in proptest::collection::vec(step(), 1..60)) {
        let mut s = webhook();
        let mut id = ids();
        let mut now = 0u64;
        let mut tails = [0u64; 3];
        for st in steps {
            let acked_before: Vec<(String, String)> =
                s.links.iter().map(|(p, l)| (p.clone(), l.acked.clone())).collect();
            match st {
                Step::Append(i, n) => {
                    let i = usize::from(i);
                    let since = off(tails[i]);
                    tails[i] += u64::from(n);
                    s.notify(&format!("events/{i}"), Some(&off(tails[i])), &since);
                    s.maybe_wake(now, &mut id);
                }
                Step::Deliver(ok, done) => {
                    if let Some(Due::Webhook { generation, wake_id }) = s.due(now) {
                        let r = if ok { Delivery::Ok { done } } else { Delivery::Failed };
                        s.after_webhook(generation, &wake_id, r, now, 0.5, &mut id);
                    }
                }
                Step::Callback(done) => {
                    if s.head.wake.is_some() {
                        let acks: Vec<(String, String)> =
                            s.links.iter().map(|(p, l)| (p.clone(), l.tail.clone())).collect();
                        let acks: Vec<(&str, String)> = acks.iter().map(|(p, o)| (p.as_str(), o.clone())).collect();
                        let req = parse_wake_request(wake_req(&s, &acks, done).as_bytes()).unwrap();
                        let generation = s.head.generation;
                        prop_assert!(s.ack(generation, &req, now, &mut id).is_ok());
                    }
                }
                Step::Time(ms) => {
                    now += u64::from(ms);
                    s.tick(now, &mut id);
                }
            }
            for (p, a) in &acked_before {
                if let Some(l) = s.links.get(p) {
                    prop_assert!(a <= &l.acked, "acked offsets never move back");
                }
            }
            for l in s.links.values() {
                prop_assert!(l.acked <= l.tail);
            }
            if s.has_pending() {
                prop_assert!(s.head.wake.is_some(), "pending work without a wake");
                prop_assert!(s.next_alarm().is_some() || s.head.wake.as_ref().unwrap().due.is_none());
            }
        }
    }
}
