//! Panic-freedom: arbitrary requests (method, path, query, headers, body as
//! arbitrary bytes) through the core's request handling, in sequences
//! against one stream so later requests meet earlier state. No panic, and
//! every answer has a status the protocol uses (never a 5xx: the in-memory
//! store cannot fail). `FUZZ_CASES` sets the number of sequences (default
//! 100,000; `make fuzz` runs more).

mod common;

use common::{Harness, T0};
use durable_streams_edge::engine::live::SseStep;
use durable_streams_edge::engine::outcome::Action;
use durable_streams_edge::engine::request::{Method, Request};
use durable_streams_edge::engine::ws::WsStep;
use durable_streams_edge::protocol::path::StreamPath;
use proptest::prelude::*;

const STATUSES: [u16; 14] = [
    200, 201, 204, 304, 400, 403, 404, 405, 409, 410, 413, 414, 503, 500,
];

fn cases() -> u32 {
    std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

const NAMES: [&str; 20] = [
    "content-type",
    "stream-ttl",
    "stream-expires-at",
    "stream-seq",
    "stream-closed",
    "producer-id",
    "producer-epoch",
    "producer-seq",
    "if-none-match",
    "stream-forked-from",
    "stream-fork-offset",
    "stream-fork-sub-offset",
    "content-type",
    "producer-epoch",
    "producer-seq",
    "stream-closed",
    "x-junk",
    "content-length",
    "upgrade",
    "last-event-id",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,24}",
        "[0-9]{1,24}",
        "-?[0-9]{1,3}(\\.[0-9])?(e[0-9])?",
        Just("true".to_string()),
        Just("TRUE".to_string()),
        Just("application/json".to_string()),
        Just("text/plain; charset=utf-8".to_string()),
        Just("9007199254740991".to_string()),
        Just("9007199254740992".to_string()),
        Just("0000000000000000_0000000000000003".to_string()),
        Just("2030-01-01T00:00:00Z".to_string()),
        Just("/v1/stream/other".to_string()),
        Just("websocket".to_string()),
        "x{200,2000}",
        "[\\x00-\\x1f\\x7f]{1,4}",
    ]
}

fn query() -> impl Strategy<Value = String> {
    let offset = prop_oneof![
        Just("-1".to_string()),
        Just("now".to_string()),
        Just("0000000000000000_0000000000000000".to_string()),
        "0000000000000000_00000000000000[0-9]{2}",
        "\\PC{0,20}",
    ];
    let live = prop_oneof![
        Just(""),
        Just("&live=long-poll"),
        Just("&live=sse"),
        Just("&live=ws"),
        Just("&live=x")
    ];
    let cursor = prop_oneof![
        Just(String::new()),
        "&cursor=[0-9]{1,18}",
        "&cursor=\\PC{0,8}"
    ];
    prop_oneof![
        (offset, live, cursor).prop_map(|(o, l, c)| format!("offset={o}{l}{c}")),
        "\\PC{0,40}",
        Just(String::new()),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..48),
        Just(Vec::new()),
        "\\[?(\\{\"a\":[0-9]\\},?|[0-9],?|\"[a-z,]*\",?|\\[\\],?){0,4}\\]?"
            .prop_map(String::into_bytes),
    ]
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Get),
        Just(Method::Head),
        Just(Method::Put),
        Just(Method::Post),
        Just(Method::Delete),
        Just(Method::Options),
        Just(Method::Other),
    ]
}

fn request() -> impl Strategy<Value = (Method, String, Vec<(usize, String)>, Vec<u8>, u16)> {
    (
        method(),
        query(),
        prop::collection::vec((0..NAMES.len(), value()), 0..6),
        body(),
        0u16..3000,
    )
}

fn check(h: &mut Harness, action: Action) -> Result<(), TestCaseError> {
    match action {
        Action::Respond(r) => prop_assert!(
            STATUSES.contains(&r.status) && r.status < 500,
            "status {}",
            r.status
        ),
        Action::LongPoll(w) => {
            h.advance(30_000);
            let next = h.resume(w);
            check(h, next)?;
        }
        Action::Sse { mut state, .. } => {
            for keepalive in [false, true, false] {
                match h.sse(&mut state, keepalive) {
                    SseStep::Emit { bytes, .. } => prop_assert!(!bytes.is_empty()),
                    SseStep::Wait | SseStep::End => {}
                    SseStep::NeedInherited { .. } => prop_assert!(false, "no forks here"),
                }
            }
        }
        Action::Ws(mut state) => {
            for _ in 0..3 {
                match h.ws(&mut state) {
                    WsStep::Frame { text, .. } => {
                        prop_assert!(
                            serde_json::from_str::<serde_json::Value>(&text).is_ok(),
                            "frame {text}"
                        )
                    }
                    WsStep::Wait | WsStep::End => {}
                    WsStep::NeedInherited(_) => prop_assert!(false, "no forks here"),
                }
            }
        }
        Action::NeedInherited { .. } => prop_assert!(false, "no forks here"),
        // A fork needs another object; the host harness stops there.
        Action::Fork { .. } => {}
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    /// Arbitrary request sequences never panic and always answer a protocol status.
    #[test]
    fn requests_never_panic(reqs in prop::collection::vec(request(), 1..5), path in "\\PC{0,40}") {
        let _ = StreamPath::from_url_path(&format!("/v1/stream/{path}"));
        let _ = StreamPath::from_url_path(&path);
        let mut h = Harness::new();
        h.now = T0;
        for (m, q, headers, body, advance) in reqs {
            let mut r = Request::new(m, &format!("http://h/v1/stream/s?{q}"));
            for (i, v) in headers {
                r = r.with_header(NAMES[i], &v);
            }
            let r = r.with_body(body);
            let action = h.act(r);
            check(&mut h, action)?;
            h.advance(u64::from(advance));
        }
    }
}
