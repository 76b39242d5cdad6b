//! Retention policies through the service (an extension; `protocol::retention`,
//! PROTOCOL.md §4 and §5.6 410): trimming on append and on the alarm, 410
//! with `Stream-Earliest-Offset`, `-1` at the earliest offset, live readers
//! behind the trim point, idempotent re-PUTs, and a property: for random
//! appends, policies and clocks, what a reader gets from `-1` is exactly a
//! suffix of what was appended, cut on unit boundaries, within the policy.

mod common;

use common::*;
use durable_streams_edge::engine::config::Config;
use durable_streams_edge::engine::live::{SseState, SseStep};
use durable_streams_edge::engine::outcome::Action;
use durable_streams_edge::engine::request::{Method, Request};
use proptest::prelude::*;

fn put_with(ct: &str, headers: &[(&str, &str)]) -> Request {
    headers
        .iter()
        .fold(put(ct), |r, (k, v)| r.with_header(k, v))
}

/// Every retained JSON message, read from `-1`.
fn messages(h: &mut Harness) -> Vec<serde_json::Value> {
    let (bodies, _) = read_all(h, "-1");
    bodies
        .iter()
        .flat_map(|b| serde_json::from_slice::<Vec<serde_json::Value>>(b).unwrap())
        .collect()
}

/// Fires the alarm until it has nothing more to do at once.
fn settle(h: &mut Harness) {
    for _ in 0..1_000 {
        match h.fire_alarm() {
            Some(t) if t <= h.now => {}
            _ => return,
        }
    }
    panic!("the alarm never settled");
}

#[test]
fn max_messages_keeps_the_last_n_and_old_offsets_are_gone() {
    let mut h = Harness::new();
    let r = h.send(put_with(
        "application/json",
        &[("stream-retention-max-messages", "100")],
    ));
    assert_eq!(r.status, 201);
    let mut offsets = vec![];
    for i in 0..1_000 {
        let r = h.send(post(
            "application/json",
            format!("{{\"n\":{i}}}").as_bytes(),
        ));
        assert_eq!(r.status, 204);
        offsets.push(next_offset(&r));
    }
    let kept = messages(&mut h);
    assert_eq!(kept.len(), 100);
    assert_eq!(kept[0]["n"], 900);
    assert_eq!(kept[99]["n"], 999);
    let head = h.send(req(Method::Head, ""));
    assert_eq!(head.get("stream-next-offset"), Some(offsets[999].as_str()));
    assert_eq!(
        head.get("stream-earliest-offset"),
        Some(offsets[899].as_str())
    );
    assert_eq!(head.get("stream-retention-max-messages"), Some("100"));
    let old = h.send(get(&format!("offset={}", offsets[10])));
    assert_eq!(old.status, 410);
    assert_eq!(
        old.get("stream-earliest-offset"),
        Some(offsets[899].as_str())
    );
    assert!(String::from_utf8_lossy(&old.body).contains("OFFSET_TRIMMED"));
    let start = h.send(get(&format!(
        "offset={}",
        "0000000000000000_0000000000000000"
    )));
    assert_eq!(start.status, 410, "the literal start is trimmed too");
    let at = h.send(get(&format!("offset={}", offsets[899])));
    assert_eq!(at.status, 200, "the earliest offset itself is readable");
    assert!(
        h.store.chunk_count() <= 100,
        "rows below the trim point are deleted: {}",
        h.store.chunk_count()
    );
}

#[test]
fn a_batch_counts_messages_not_appends_in_json_mode() {
    let mut h = Harness::new();
    h.send(put_with(
        "application/json",
        &[("stream-retention-max-messages", "3")],
    ));
    h.send(post("application/json", b"[1,2,3,4,5]"));
    assert_eq!(messages(&mut h), vec![3, 4, 5]);
    h.send(post("application/json", b"[6]"));
    assert_eq!(messages(&mut h), vec![4, 5, 6]);
}

#[test]
fn max_age_trims_by_the_alarm_with_no_request() {
    let mut h = Harness::new();
    h.send(put_with("text/plain", &[("stream-retention-max-age", "2")]));
    h.send(post("text/plain", b"old"));
    assert_eq!(
        h.alarms.last(),
        Some(&(T0 + 2_000)),
        "the first append arms the alarm"
    );
    h.advance(1_500);
    h.send(post("text/plain", b"new"));
    h.advance(600);
    let next = h.fire_alarm().expect("the newer append still ages out");
    assert_eq!(read_all(&mut h, "-1").0.concat(), b"new");
    assert_eq!(next, T0 + 3_500);
    h.advance(1_500);
    assert_eq!(h.fire_alarm(), None, "nothing left to age out");
    let head = h.send(req(Method::Head, ""));
    assert_eq!(
        head.get("stream-earliest-offset"),
        head.get("stream-next-offset")
    );
    let (bodies, _) = read_all(&mut h, "-1");
    assert!(bodies.concat().is_empty());
}

#[test]
fn max_bytes_drops_whole_appends_spanning_rows() {
    let mut h = Harness::with_config(Config {
        row_bytes: 100,
        ..Config::default()
    });
    h.send(put_with(
        "application/octet-stream",
        &[("stream-retention-max-bytes", "1000")],
    ));
    for i in 0..5u8 {
        h.send(post("application/octet-stream", &[i; 450]));
    }
    let kept = read_all(&mut h, "-1").0.concat();
    assert_eq!(kept.len(), 900, "two whole appends of 450 fit in 1000");
    assert!(kept[..450].iter().all(|b| *b == 3) && kept[450..].iter().all(|b| *b == 4));
    assert_eq!(h.store.chunk_count(), 10, "5 rows per append, 2 appends");
}

#[test]
fn live_readers_behind_the_trim_point_get_410() {
    let mut h = Harness::new();
    h.send(put_with(
        "text/plain",
        &[("stream-retention-max-messages", "1")],
    ));
    let first = next_offset(&h.send(post("text/plain", b"a")));
    let start = "0000000000000000_0000000000000000";
    let state = match h.act(get(&format!("offset={start}&live=sse"))) {
        Action::Respond(r) => panic!("{}", r.status),
        Action::Sse { state, .. } => state,
        other => panic!("{other:?}"),
    };
    assert_eq!(state.offset.position(), 0);
    let mut state: SseState = state;
    h.send(post("text/plain", b"b"));
    match h.sse(&mut state, false) {
        SseStep::Emit { bytes, last } => {
            let text = String::from_utf8(bytes).unwrap();
            assert!(last, "the connection ends");
            assert!(text.starts_with("event: control\n"), "{text}");
            assert!(text.contains("\"error\":\"OFFSET_TRIMMED\""), "{text}");
            assert!(text.contains(&format!("\"streamEarliestOffset\":\"{first}\"")));
        }
        other => panic!("{other:?}"),
    }
    let poll = h.send(get(&format!("offset={start}&live=long-poll")));
    assert_eq!(poll.status, 410);
    assert_eq!(poll.get("stream-earliest-offset"), Some(first.as_str()));
    // A reader that keeps up is never cut.
    let mut keeping_up = match h.act(get(&format!("offset={first}&live=sse"))) {
        Action::Sse { state, .. } => state,
        other => panic!("{other:?}"),
    };
    for body in [b"c", b"d"] {
        let _ = h.sse(&mut keeping_up, false);
        h.send(post("text/plain", body));
    }
    match h.sse(&mut keeping_up, false) {
        SseStep::Emit { bytes, last } => {
            assert!(!last);
            assert!(String::from_utf8(bytes).unwrap().contains("data:d"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn headers_are_validated_and_re_puts_compare_what_was_sent() {
    let mut h = Harness::with_config(Config {
        retention_max_messages: 1_000,
        retention_default_max_age_s: 3_600,
        ..Config::default()
    });
    for (k, v) in [
        ("stream-retention-max-age", "0"),
        ("stream-retention-max-bytes", "-5"),
        ("stream-retention-max-messages", "1e3"),
        ("stream-retention-max-messages", "1001"),
    ] {
        let r = h.send(put_with("text/plain", &[(k, v)]));
        assert_eq!(r.status, 400, "{k}: {v}");
        assert!(String::from_utf8_lossy(&r.body).contains("INVALID_RETENTION"));
    }
    let r = h.send(put_with(
        "text/plain",
        &[("stream-retention-max-messages", "10")],
    ));
    assert_eq!(r.status, 201);
    let head = h.send(req(Method::Head, ""));
    assert_eq!(
        head.get("stream-retention-max-age"),
        Some("3600"),
        "the default"
    );
    assert_eq!(
        head.get("stream-retention-max-bytes"),
        Some("8589934592"),
        "the default ceiling applies to every stream"
    );
    let same = put_with("text/plain", &[("stream-retention-max-messages", "10")]);
    assert_eq!(h.send(same).status, 200);
    assert_eq!(
        h.send(put("text/plain")).status,
        200,
        "absent headers match"
    );
    let other = put_with("text/plain", &[("stream-retention-max-messages", "11")]);
    assert_eq!(h.send(other).status, 409);
}

#[test]
fn producers_and_offsets_survive_trimming() {
    let mut h = Harness::new();
    h.send(put_with(
        "text/plain",
        &[("stream-retention-max-messages", "2")],
    ));
    let produce = |seq: u64| {
        post("text/plain", format!("m{seq}").as_bytes())
            .with_header("producer-id", "p")
            .with_header("producer-epoch", "0")
            .with_header("producer-seq", &seq.to_string())
    };
    let mut tail = String::new();
    for seq in 0..10 {
        let r = h.send(produce(seq));
        assert_eq!(r.status, 200);
        tail = next_offset(&r);
    }
    let dup = h.send(produce(3));
    assert_eq!(dup.status, 204, "an old duplicate is still recognised");
    assert_eq!(read_all(&mut h, "-1").0.concat(), b"m8m9");
    let head = h.send(req(Method::Head, ""));
    assert_eq!(head.get("stream-next-offset"), Some(tail.as_str()));
    assert_eq!(h.send(produce(11)).status, 409, "a gap is still a gap");
}

#[derive(Debug, Clone)]
struct Step {
    body: Vec<u64>,
    gap_ms: u64,
    alarm: bool,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(
        (
            proptest::collection::vec(0u64..1_000_000, 1..4),
            0u64..2_500,
            any::<bool>(),
        )
            .prop_map(|(body, gap_ms, alarm)| Step {
                body,
                gap_ms,
                alarm,
            }),
        1..60,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the appends, policy and clock: what `-1` reads is a suffix
    /// of what was appended, of whole messages, within every bound once the
    /// alarm has run, and no shorter than the bounds require.
    #[test]
    fn json_reads_are_a_suffix_within_the_policy(
        steps in steps(),
        max_age in proptest::option::of(1u64..5),
        max_bytes in proptest::option::of(10u64..200),
        max_messages in proptest::option::of(1u64..20),
        row_bytes in 4u64..64,
    ) {
        let mut h = Harness::with_config(Config { row_bytes, ..Config::default() });
        let mut headers = vec![];
        let (a, b, m) = (
            max_age.map(|v| v.to_string()),
            max_bytes.map(|v| v.to_string()),
            max_messages.map(|v| v.to_string()),
        );
        if let Some(v) = &a { headers.push(("stream-retention-max-age", v.as_str())); }
        if let Some(v) = &b { headers.push(("stream-retention-max-bytes", v.as_str())); }
        if let Some(v) = &m { headers.push(("stream-retention-max-messages", v.as_str())); }
        prop_assert_eq!(h.send(put_with("application/json", &headers)).status, 201);
        // Every message appended, with when.
        let mut all: Vec<(u64, u64)> = vec![];
        for s in &steps {
            h.advance(s.gap_ms);
            let body = serde_json::to_vec(&s.body).unwrap();
            prop_assert_eq!(h.send(post("application/json", &body)).status, 204);
            all.extend(s.body.iter().map(|v| (*v, h.now)));
            if s.alarm { settle(&mut h); }
        }
        settle(&mut h);
        let kept: Vec<u64> = messages(&mut h)
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let cut = all.len() - kept.len();
        let expected: Vec<u64> = all[cut..].iter().map(|(v, _)| *v).collect();
        prop_assert_eq!(&kept, &expected, "a suffix of what was appended");
        let bytes: u64 = kept.iter().map(|v| v.to_string().len() as u64 + 1).sum();
        if let Some(mb) = max_bytes {
            // One message larger than the bound goes too.
            prop_assert!(bytes <= mb, "{} bytes kept over {}", bytes, mb);
        }
        if let Some(mm) = max_messages { prop_assert!(kept.len() as u64 <= mm); }
        if let Some(age) = max_age {
            let young = |at: u64| at + age * 1000 > h.now - 1000;
            prop_assert!(all[cut..].iter().all(|(_, at)| young(*at)));
        }
        // Nothing was dropped that every bound allowed keeping: the last
        // dropped message (with what is kept) broke a bound, when whole
        // messages were units (one message per row, or messages bound).
        if cut > 0 && max_messages.is_some() && max_age.is_none() && max_bytes.is_none() {
            prop_assert_eq!(kept.len() as u64, max_messages.unwrap().min(all.len() as u64));
        }
    }
}
