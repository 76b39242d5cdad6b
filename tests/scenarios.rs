//! Engine scenarios on the host: whole request sequences through the service
//! with the in-memory store and a hand-advanced clock.

mod common;

use common::*;
use durable_streams_edge::engine::config::Config;
use durable_streams_edge::engine::request::Method;
use durable_streams_edge::engine::store::Store;

const ZERO: &str = "0000000000000000_0000000000000000";

/// §5.1: 201 with an absolute Location, then 200 for the same config, 409 otherwise.
#[test]
fn create_is_idempotent_and_detects_conflicts() {
    let mut h = Harness::new();
    let r = h.send(put("text/plain"));
    assert_eq!(r.status, 201);
    assert_eq!(r.get("location"), Some(URL));
    assert_eq!(r.get("content-type"), Some("text/plain"));
    let tail = r.get("stream-next-offset").unwrap();
    assert!(
        tail.ends_with("_0000000000000000") && tail != ZERO,
        "{tail}"
    );

    let again = h.send(put("TEXT/PLAIN; charset=utf-8"));
    assert_eq!(again.status, 200);
    assert_eq!(again.get("location"), None);

    assert_eq!(h.send(put("application/json")).status, 409);
    assert_eq!(
        h.send(put("text/plain").with_header("stream-ttl", "60"))
            .status,
        409
    );
    assert_eq!(
        h.send(put("text/plain").with_header("stream-closed", "true"))
            .status,
        409
    );
}

/// §5.1: a PUT without Content-Type defaults to application/octet-stream.
#[test]
fn create_defaults_the_content_type() {
    let mut h = Harness::new();
    let r = h.send(req(Method::Put, ""));
    assert_eq!(r.status, 201);
    assert_eq!(r.get("content-type"), Some("application/octet-stream"));
}

/// §5.1: TTL and Expires-At are validated and mutually exclusive.
#[test]
fn create_validates_expiry_headers() {
    let mut h = Harness::new();
    for ttl in ["-1", "1.5", "01", "+1", "1e3", ""] {
        assert_eq!(
            h.send(put("text/plain").with_header("stream-ttl", ttl))
                .status,
            400,
            "{ttl:?}"
        );
    }
    assert_eq!(
        h.send(put("text/plain").with_header("stream-expires-at", "soon"))
            .status,
        400
    );
    let both = put("text/plain")
        .with_header("stream-ttl", "60")
        .with_header("stream-expires-at", "2099-01-01T00:00:00Z");
    assert_eq!(h.send(both).status, 400);
}

/// §5.2, §5.6: appends are read back byte for byte, resumably from any returned offset.
#[test]
fn appends_read_back_exactly_and_resume() {
    let mut h = Harness::new();
    h.send(put("application/octet-stream"));
    let all: Vec<u8> = (0..=255u8).collect();
    let r1 = h.send(post("application/octet-stream", &all[..100]));
    assert_eq!(r1.status, 204);
    let mid = next_offset(&r1);
    let r2 = h.send(post("application/octet-stream", &all[100..]));
    assert!(next_offset(&r2) > mid, "offsets strictly increase");

    let r = h.send(get(""));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, all);
    assert_eq!(r.get("stream-up-to-date"), Some("true"));
    assert_eq!(r.get("stream-closed"), None);

    let rest = h.send(get(&format!("offset={mid}")));
    assert_eq!(rest.body, &all[100..]);
    let tail = h.send(get(&format!("offset={}", next_offset(&rest))));
    assert!(tail.body.is_empty());
    assert_eq!(tail.get("stream-up-to-date"), Some("true"));
}

/// §5.2: content type, empty body and Stream-Seq rules, in the spec's precedence.
#[test]
fn append_validation() {
    let mut h = Harness::new();
    assert_eq!(h.send(post("text/plain", b"x")).status, 404);
    h.send(put("text/plain"));
    assert_eq!(h.send(post("text/html", b"x")).status, 409);
    assert_eq!(
        h.send(req(Method::Post, "").with_body(b"x".to_vec()))
            .status,
        400
    );
    assert_eq!(h.send(post("text/plain", b"")).status, 400);
    let seq = |s: &str| post("text/plain", b"x").with_header("stream-seq", s);
    assert_eq!(h.send(seq("2")).status, 204);
    assert_eq!(h.send(seq("10")).status, 409, "byte-wise: \"10\" < \"2\"");
    assert_eq!(h.send(seq("2")).status, 409);
    assert_eq!(h.send(seq("3")).status, 204);
}

/// §9.1: one-level flattening, [] refused on POST, allowed on PUT, one array on read.
#[test]
fn json_mode() {
    let mut h = Harness::new();
    assert_eq!(
        h.send(put("application/json").with_body(b"[]".to_vec()))
            .status,
        201
    );
    assert_eq!(h.send(get("")).body, b"[]");
    assert_eq!(h.send(post("application/json", b"[]")).status, 400);
    assert_eq!(h.send(post("application/json", b"{bad")).status, 400);
    h.send(post("application/json", br#"{"a":1}"#));
    h.send(post("application/json", br#"[{"b":2}, [3,4]]"#));
    h.send(post("application/json", b"[[[5]]]"));
    let r = h.send(get(""));
    assert_eq!(r.get("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v, serde_json::json!([{"a":1}, {"b":2}, [3,4], [[5]]]));
    let now = h.send(get("offset=now"));
    assert_eq!(now.body, b"[]");
}

/// §5.2, §5.3, §4.1: close-only, append-and-close, and everything after a close.
#[test]
fn closing() {
    let mut h = Harness::new();
    h.send(put("text/plain"));
    let r = h.send(post("text/plain", b"last").with_header("stream-closed", "true"));
    assert_eq!(r.status, 204);
    assert_eq!(r.get("stream-closed"), Some("true"));
    let tail = next_offset(&r);

    let refused = h.send(post("text/plain", b"more"));
    assert_eq!(refused.status, 409);
    assert_eq!(refused.get("stream-closed"), Some("true"));
    assert_eq!(refused.get("stream-next-offset"), Some(tail.as_str()));
    // Closed beats content-type mismatch (§5.2 precedence).
    assert_eq!(h.send(post("text/html", b"x")).status, 409);

    let again = h.send(req(Method::Post, "").with_header("stream-closed", "true"));
    assert_eq!(again.status, 204);
    assert_eq!(again.get("stream-closed"), Some("true"));

    let read = h.send(get(""));
    assert_eq!(read.body, b"last");
    assert_eq!(read.get("stream-closed"), Some("true"));
    let eof = h.send(get(&format!("offset={tail}")));
    assert!(eof.body.is_empty());
    assert_eq!(eof.get("stream-closed"), Some("true"));
    assert_eq!(
        h.send(req(Method::Head, "")).get("stream-closed"),
        Some("true")
    );
}

fn produce(epoch: u64, seq: u64, body: &[u8]) -> durable_streams_edge::engine::request::Request {
    post("text/plain", body)
        .with_header("producer-id", "p1")
        .with_header("producer-epoch", &epoch.to_string())
        .with_header("producer-seq", &seq.to_string())
}

/// §5.2.1: accept, duplicate, stale epoch, gap, and epoch bumps.
#[test]
fn idempotent_producer() {
    let mut h = Harness::new();
    h.send(put("text/plain"));
    let r = h.send(produce(0, 0, b"a"));
    assert_eq!(r.status, 200);
    assert_eq!(r.get("producer-epoch"), Some("0"));
    assert_eq!(r.get("producer-seq"), Some("0"));
    assert_eq!(h.send(produce(0, 1, b"b")).status, 200);
    let dup = h.send(produce(0, 0, b"a"));
    assert_eq!(dup.status, 204);
    assert_eq!(dup.get("producer-seq"), Some("1"));
    let gap = h.send(produce(0, 3, b"d"));
    assert_eq!(gap.status, 409);
    assert_eq!(gap.get("producer-expected-seq"), Some("2"));
    assert_eq!(gap.get("producer-received-seq"), Some("3"));
    assert_eq!(h.send(produce(1, 1, b"x")).status, 400);
    assert_eq!(h.send(produce(1, 0, b"c")).status, 200);
    let stale = h.send(produce(0, 2, b"z"));
    assert_eq!(stale.status, 403);
    assert_eq!(stale.get("producer-epoch"), Some("1"));
    assert_eq!(h.send(get("")).body, b"abc");
    let partial = post("text/plain", b"x").with_header("producer-id", "p1");
    assert_eq!(h.send(partial).status, 400);
}

/// §5.2.1: the tuple that closed the stream is a duplicate, any other is a 409.
#[test]
fn producer_close_is_idempotent() {
    let mut h = Harness::new();
    h.send(put("text/plain"));
    let close = produce(0, 0, b"fin").with_header("stream-closed", "true");
    assert_eq!(h.send(close.clone()).status, 200);
    let retry = h.send(close);
    assert_eq!(retry.status, 204);
    assert_eq!(retry.get("stream-closed"), Some("true"));
    assert_eq!(h.send(produce(0, 1, b"more")).status, 409);
    assert_eq!(h.send(get("")).body, b"fin");
}

/// §5.1: a sliding TTL is renewed by reads and writes but not by HEAD; expiry frees storage.
#[test]
fn sliding_ttl() {
    let mut h = Harness::new();
    h.send(
        put("text/plain")
            .with_header("stream-ttl", "2")
            .with_body(b"x".to_vec()),
    );
    assert_eq!(h.alarms, vec![T0 + 2000]);
    h.advance(1500);
    assert_eq!(h.send(get("")).status, 200);
    h.advance(1500);
    assert_eq!(
        h.send(req(Method::Head, "")).status,
        200,
        "the GET renewed it"
    );
    h.advance(600);
    assert_eq!(
        h.send(req(Method::Head, "")).status,
        404,
        "HEAD did not renew it"
    );
    assert_eq!(h.store.chunk_count(), 0, "expired data is freed");
    let fresh = h.send(put("application/json"));
    assert_eq!(fresh.status, 201, "a new stream after expiry");
}

/// §5.1: an absolute expiry is not moved by reads; the alarm frees an idle stream.
#[test]
fn absolute_expiry_and_alarm() {
    let mut h = Harness::new();
    let at = "2025-10-09T08:53:22Z"; // T0 + 2 s
    let r = h.send(
        put("text/plain")
            .with_header("stream-expires-at", at)
            .with_body(b"x".to_vec()),
    );
    assert_eq!(r.status, 201);
    assert_eq!(
        h.send(req(Method::Head, "")).get("stream-expires-at"),
        Some(at)
    );
    h.advance(1000);
    assert_eq!(h.fire_alarm(), Some(T0 + 2000), "an early alarm re-arms");
    h.send(get(""));
    h.advance(1000);
    assert_eq!(h.fire_alarm(), None);
    assert_eq!(h.store.chunk_count(), 0);
    assert_eq!(h.send(get("")).status, 404);
}

/// §8: offsets name positions in one incarnation: after a re-create, old ones are refused.
#[test]
fn offsets_do_not_survive_a_re_create() {
    let mut h = Harness::new();
    h.send(put("text/plain").with_body(b"old data".to_vec()));
    let mid = next_offset(&h.send(post("text/plain", b"!")));
    h.send(req(Method::Delete, ""));
    h.send(put("text/plain").with_body(b"new data, longer".to_vec()));
    assert_eq!(h.send(get(&format!("offset={mid}"))).status, 400);
    let fresh = next_offset(&h.send(req(Method::Head, "")));
    assert_ne!(fresh[..16], mid[..16], "a new generation");
    assert_eq!(
        h.send(get(&format!("offset={ZERO}"))).body,
        b"new data, longer"
    );
}

/// §5.4: delete, then a fresh stream at the same path whose ETags never collide.
#[test]
fn delete_then_recreate() {
    let mut h = Harness::new();
    h.send(put("text/plain").with_body(b"old".to_vec()));
    let old_tag = h.send(get("")).get("etag").unwrap().to_string();
    assert_eq!(h.send(req(Method::Delete, "")).status, 204);
    assert_eq!(h.send(req(Method::Delete, "")).status, 404);
    assert_eq!(h.send(get("")).status, 404);
    h.send(put("text/plain").with_body(b"new".to_vec()));
    let r = h.send(get("").with_header("if-none-match", &old_tag));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"new");
}

/// §10.1: If-None-Match gives 304, and a close changes the ETag.
#[test]
fn etags() {
    let mut h = Harness::new();
    h.send(put("text/plain").with_body(b"abc".to_vec()));
    let r = h.send(get(""));
    let tag = r.get("etag").unwrap().to_string();
    assert_eq!(r.get("cache-control"), Some("no-cache"), "reaches the tail");
    let nm = h.send(get("").with_header("if-none-match", &tag));
    assert_eq!(nm.status, 304);
    assert!(nm.body.is_empty());
    h.send(req(Method::Post, "").with_header("stream-closed", "true"));
    let closed = h.send(get("").with_header("if-none-match", &tag));
    assert_eq!(closed.status, 200);
    assert_ne!(closed.get("etag").unwrap(), tag);
    let now = h.send(get("offset=now"));
    assert_eq!(now.get("etag"), None);
    assert_eq!(now.get("cache-control"), Some("no-store"));
}

/// §10.1 cache policy: a short shared lifetime only for chunks of this incarnation that
/// end before the tail, never longer than the stream's life.
#[test]
fn cache_policy() {
    let config = Config {
        max_read_chunk_bytes: 4,
        ..Config::default()
    };
    let mut h = Harness::with_config(config);
    h.send(put("text/plain").with_body(b"abcd".to_vec()));
    let start = next_offset(&h.send(req(Method::Head, "")))
        .replace("_0000000000000004", "_0000000000000000");
    h.send(post("text/plain", b"efgh"));
    let cc = |r: &durable_streams_edge::engine::response::Response| {
        r.get("cache-control").unwrap().to_string()
    };
    let pinned = h.send(get(&format!("offset={start}")));
    assert_eq!(pinned.body, b"abcd");
    assert_eq!(
        cc(&pinned),
        "public, max-age=60, stale-while-revalidate=300"
    );
    let at_tail = h.send(get(&format!("offset={}", next_offset(&pinned))));
    assert_eq!(cc(&at_tail), "no-cache", "reaches the tail");
    assert_eq!(
        cc(&h.send(get("offset=-1"))),
        "no-cache",
        "-1 names no incarnation"
    );
    assert_eq!(
        cc(&h.send(get("offset=0000000000000000_0000000000000000"))),
        "no-cache"
    );
    assert_eq!(cc(&h.send(get("offset=now"))), "no-store");
    assert_eq!(cc(&h.send(req(Method::Head, ""))), "no-store");

    // The first chunk's policy on a stream created with one expiry header.
    let first_chunk_policy = |header: &str, value: &str| {
        let mut h = Harness::with_config(config);
        h.send(
            put("text/plain")
                .with_header(header, value)
                .with_body(b"abcd".to_vec()),
        );
        h.send(post("text/plain", b"efgh"));
        let start = next_offset(&h.send(req(Method::Head, "")))
            .replace("_0000000000000008", "_0000000000000000");
        cc(&h.send(get(&format!("offset={start}"))))
    };
    // A stream that ends in 100 s (T0 + 100 s): a cached copy may live 100 s at most.
    assert_eq!(
        first_chunk_policy("stream-expires-at", "2025-10-09T08:55:00Z"),
        "public, max-age=60, stale-while-revalidate=40"
    );
    // A sliding TTL of 30 s: half of it, so cached readers come back and renew it.
    assert_eq!(first_chunk_policy("stream-ttl", "30"), "public, max-age=15");
}

/// §5.6: reads are capped; only the last page is up to date and closed.
#[test]
fn reads_paginate_at_the_cap() {
    let config = Config {
        max_read_chunk_bytes: 10,
        ..Config::default()
    };
    let mut h = Harness::with_config(config);
    h.send(put("text/plain"));
    for i in 0..10u8 {
        h.send(post("text/plain", &[b'a' + i; 4]));
    }
    h.send(req(Method::Post, "").with_header("stream-closed", "true"));
    let first = h.send(get(""));
    assert_eq!(first.body.len(), 8);
    assert_eq!(first.get("stream-up-to-date"), None);
    assert_eq!(first.get("stream-closed"), None);
    let (pages, _) = read_all(&mut h, ZERO);
    assert_eq!(pages.len(), 5);
    assert_eq!(pages.concat().len(), 40);
}

/// §5.2 limits: an append over the row size spans rows and reads back exactly.
#[test]
fn large_appends_span_rows() {
    let config = Config {
        row_bytes: 1000,
        max_read_chunk_bytes: 4096,
        ..Config::default()
    };
    let mut h = Harness::with_config(config);
    h.send(put("application/octet-stream"));
    let big: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(h.send(post("application/octet-stream", &big)).status, 204);
    assert_eq!(h.store.chunk_count(), 10);
    let (pages, _) = read_all(&mut h, ZERO);
    assert_eq!(pages.concat(), big);
}

/// §9.1: a JSON message larger than a row is never cut by a read.
#[test]
fn json_reads_never_cut_a_message() {
    let config = Config {
        row_bytes: 16,
        max_read_chunk_bytes: 20,
        ..Config::default()
    };
    let mut h = Harness::with_config(config);
    h.send(put("application/json"));
    let long = format!("\"{}\"", "x".repeat(100));
    h.send(post(
        "application/json",
        format!("[1, {long}, 2]").as_bytes(),
    ));
    let (pages, _) = read_all(&mut h, ZERO);
    let mut all = Vec::new();
    for p in pages {
        let v: Vec<serde_json::Value> =
            serde_json::from_slice(&p).expect("every page is a JSON array");
        all.extend(v);
    }
    assert_eq!(
        all,
        vec![
            serde_json::json!(1),
            serde_json::json!("x".repeat(100)),
            serde_json::json!(2)
        ]
    );
}

/// §8: offsets past the tail or inside a JSON message were never issued: 400.
#[test]
fn offsets_not_issued_are_refused() {
    let mut h = Harness::new();
    h.send(put("application/json").with_body(br#"[{"a":"b,c"}]"#.to_vec()));
    assert_eq!(
        h.send(get("offset=0000000000000000_0000000000000099"))
            .status,
        400
    );
    assert_eq!(
        h.send(get("offset=0000000000000000_0000000000000003"))
            .status,
        400
    );
    assert_eq!(h.send(get("offset=garbage")).status, 400);
    assert_eq!(h.send(get("offset=-1&offset=-1")).status, 400);
    assert_eq!(h.send(get("offset=-1")).status, 200);
}

/// Limits: a body over MAX_APPEND_BYTES is a 413 with a reason.
#[test]
fn oversized_appends_are_refused() {
    let config = Config {
        max_append_bytes: 8,
        ..Config::default()
    };
    let mut h = Harness::with_config(config);
    assert_eq!(
        h.send(put("text/plain").with_body(b"123456789".to_vec()))
            .status,
        413
    );
    h.send(put("text/plain"));
    let r = h.send(post("text/plain", b"123456789"));
    assert_eq!(r.status, 413);
    assert!(String::from_utf8_lossy(&r.body).contains("8 bytes"));
}

/// Unknown methods: 405 with Allow; every response carries the browser headers.
#[test]
fn unknown_methods_and_common_headers() {
    let mut h = Harness::new();
    let r = h.send(req(Method::Other, ""));
    assert_eq!(r.status, 405);
    assert!(r.get("allow").unwrap().contains("POST"));
    assert_eq!(r.get("x-content-type-options"), Some("nosniff"));
    let pre = h.send(req(Method::Options, ""));
    assert_eq!(pre.status, 204);
    let origins = pre
        .headers
        .iter()
        .filter(|(n, _)| *n == "access-control-allow-origin")
        .count();
    assert_eq!(
        origins, 1,
        "a preflight through the engine has one CORS origin"
    );
}

/// §5.1 sliding TTL: 1,000 reads renew the TTL in memory and write the metadata row
/// at most once per max(1 s, TTL/100), not once per read.
#[test]
fn sliding_ttl_renewals_are_written_at_most_once_per_interval() {
    let mut h = Harness::new();
    h.send(
        put("text/plain")
            .with_header("stream-ttl", "3600")
            .with_body(b"x".to_vec()),
    );
    let created = h.store.meta_writes();
    for _ in 0..1000 {
        h.advance(10);
        assert_eq!(h.send(get("offset=-1")).status, 200);
    }
    // 10 s of reads, renewal interval 36 s: no write at all.
    assert_eq!(h.store.meta_writes(), created);
    // Still renewed: the stream lives 3600 s after the last read.
    h.advance(3_599_000);
    assert_eq!(h.send(req(Method::Head, "")).status, 200);
    // Past the interval, the next read writes the renewal once.
    assert_eq!(h.send(get("offset=-1")).status, 200);
    assert_eq!(h.store.meta_writes(), created + 1);
}

/// Storage: a plain append writes only its chunk; a reload derives the tail from the
/// last chunk, and closure or Stream-Seq changes are written at once.
#[test]
fn plain_appends_write_one_row_and_reload_exactly() {
    let mut h = Harness::new();
    h.send(put("text/plain"));
    let created = h.store.meta_writes();
    for i in 0..50u8 {
        h.advance(1);
        assert_eq!(h.send(post("text/plain", &[b'a' + i % 26; 3])).status, 204);
    }
    assert_eq!(h.store.meta_writes(), created, "no metadata row per append");
    let live = h.store.meta().unwrap().unwrap();
    let reloaded = h.store.reloaded_meta().unwrap();
    assert_eq!(reloaded.tail, live.tail);
    assert_eq!(reloaded.tail.position(), 150);
    h.send(post("text/plain", b"z").with_header("stream-seq", "a"));
    assert_eq!(h.store.meta_writes(), created + 1, "Stream-Seq is stored");
    assert_eq!(
        h.store.reloaded_meta().unwrap().last_stream_seq,
        h.store.meta().unwrap().unwrap().last_stream_seq
    );
}

/// §5.2.1 producer state cleanup: a producer idle for longer than PRODUCER_TTL_S is
/// treated as new, and a prune forgets its row.
#[test]
fn idle_producer_state_expires() {
    let config = Config {
        producer_ttl_s: 60,
        ..Config::default()
    };
    let mut h = Harness::with_config(config);
    h.send(put("text/plain"));
    assert_eq!(h.send(produce(3, 0, b"a")).status, 200);
    assert_eq!(h.send(produce(3, 1, b"b")).status, 200);
    h.advance(59_000);
    assert_eq!(
        h.send(produce(3, 1, b"b")).status,
        204,
        "still known: duplicate"
    );
    h.advance(60_000);
    let gap = h.send(produce(3, 2, b"c"));
    assert_eq!(gap.status, 409, "forgotten: a new producer must start at 0");
    assert_eq!(gap.get("producer-expected-seq"), Some("0"));
    assert_eq!(
        h.send(produce(0, 0, b"c")).status,
        200,
        "a lower epoch is new again"
    );
    h.store
        .commit(durable_streams_edge::engine::producer::prune(
            h.now + 61_000,
            &config,
        ))
        .unwrap();
    assert_eq!(h.store.producer_count(), 0);
}
