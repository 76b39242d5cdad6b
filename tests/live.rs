//! Live reads in the engine (PROTOCOL.md §5.7, §5.8, §8): long-poll and SSE
//! steps driven by hand, with a hand-advanced clock and no sockets.

mod common;

use common::*;
use durable_streams_edge::engine::live::{LongPoll, SseState, SseStep};
use durable_streams_edge::engine::outcome::Action;
use durable_streams_edge::engine::request::Method;

fn parked(a: Action) -> LongPoll {
    match a {
        Action::LongPoll(w) => w,
        other => panic!("expected a parked long-poll, got {other:?}"),
    }
}

fn answered(a: Action) -> durable_streams_edge::engine::response::Response {
    match a {
        Action::Respond(r) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

fn sse_open(
    h: &mut Harness,
    query: &str,
) -> (durable_streams_edge::engine::response::Response, SseState) {
    match h.act(get(query)) {
        Action::Sse { head, state } => (head, state),
        other => panic!("expected SSE, got {other:?}"),
    }
}

fn emitted(step: SseStep) -> (String, bool) {
    match step {
        SseStep::Emit { bytes, last } => (String::from_utf8(bytes).unwrap(), last),
        other => panic!("expected events, got {other:?}"),
    }
}

/// §5.7: a long-poll at the tail waits, then answers the append with data and a cursor.
#[test]
fn long_poll_waits_then_delivers() {
    let mut h = Harness::new();
    h.send(put("text/plain"));
    let wait = parked(h.act(get("offset=now&live=long-poll")));
    assert_eq!(wait.deadline, h.now + 20_000);
    assert!(
        matches!(h.resume(wait.clone()), Action::LongPoll(_)),
        "a spurious wake waits again"
    );
    h.send(post("text/plain", b"hello"));
    let r = answered(h.resume(wait));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello");
    assert!(r.get("stream-cursor").is_some());
    assert_eq!(r.get("stream-up-to-date"), Some("true"));
}

/// §5.7: the deadline answers 204 with the tail, Up-To-Date and a cursor.
#[test]
fn long_poll_times_out_with_204() {
    let mut h = Harness::new();
    h.send(put("text/plain").with_body(b"x".to_vec()));
    let tail = next_offset(&h.send(req(Method::Head, "")));
    let wait = parked(h.act(get(&format!("offset={tail}&live=long-poll"))));
    h.advance(20_000);
    let r = answered(h.resume(wait));
    assert_eq!(r.status, 204);
    assert_eq!(r.get("stream-next-offset"), Some(tail.as_str()));
    assert_eq!(r.get("stream-up-to-date"), Some("true"));
    assert!(r.get("stream-cursor").is_some());
    assert_eq!(r.get("stream-closed"), None);
}

/// §5.7: a close wakes a parked long-poll with 204 and Stream-Closed, no cursor.
#[test]
fn long_poll_learns_of_a_close() {
    let mut h = Harness::new();
    h.send(put("text/plain"));
    let wait = parked(h.act(get("offset=now&live=long-poll")));
    h.send(req(Method::Post, "").with_header("stream-closed", "true"));
    let r = answered(h.resume(wait));
    assert_eq!(r.status, 204);
    assert_eq!(r.get("stream-closed"), Some("true"));
    assert_eq!(r.get("stream-cursor"), None);
    let again = answered(h.act(get("offset=now&live=long-poll")));
    assert_eq!(
        again.status, 204,
        "a closed stream at the tail answers at once"
    );
}

/// §5.7, §5.4: a long-poll whose stream is deleted answers 404; -1 never waits; offset is required.
#[test]
fn long_poll_edge_cases() {
    let mut h = Harness::new();
    assert_eq!(
        answered(h.act(get("offset=now&live=long-poll"))).status,
        404
    );
    h.send(put("text/plain"));
    assert_eq!(answered(h.act(get("live=long-poll"))).status, 400);
    assert_eq!(answered(h.act(get("offset=-1&live=long-poll"))).status, 200);
    let wait = parked(h.act(get("offset=now&live=long-poll")));
    h.send(req(Method::Delete, ""));
    assert_eq!(answered(h.resume(wait)).status, 404);
}

/// §10.1: an echoed current cursor comes back strictly greater.
#[test]
fn long_poll_cursor_moves_forward() {
    let mut h = Harness::new();
    h.send(put("text/plain").with_body(b"x".to_vec()));
    let first = answered(h.act(get("offset=-1&live=long-poll")));
    let c1: u64 = first.get("stream-cursor").unwrap().parse().unwrap();
    let second = answered(h.act(get(&format!("offset=-1&live=long-poll&cursor={c1}"))));
    let c2: u64 = second.get("stream-cursor").unwrap().parse().unwrap();
    assert!(c2 > c1);
}

/// §5.8: head, the first control event, data + control per batch, keep-alives, and the close.
#[test]
fn sse_lifecycle() {
    let mut h = Harness::new();
    h.send(put("text/plain"));
    let (head, mut state) = sse_open(&mut h, "offset=now&live=sse");
    assert_eq!(head.get("content-type"), Some("text/event-stream"));
    assert_eq!(head.get("cache-control"), Some("no-cache"));
    assert_eq!(head.get("stream-sse-data-encoding"), None);
    let (first, last) = emitted(h.sse(&mut state, false));
    assert!(
        first.starts_with("event: control\n") && first.contains("\"upToDate\":true"),
        "{first}"
    );
    assert!(!last);
    assert_eq!(h.sse(&mut state, false), SseStep::Wait);
    h.send(post("text/plain", b"line1\nline2"));
    let (events, _) = emitted(h.sse(&mut state, false));
    let tail = next_offset(&h.send(req(Method::Head, "")));
    assert!(
        events.starts_with(&format!(
            "event: data\nid: {tail}\ndata:line1\ndata:line2\n\nevent: control\n"
        )),
        "{events}"
    );
    let (keepalive, _) = emitted(h.sse(&mut state, true));
    assert!(keepalive.starts_with("event: control\n"));
    h.send(post("text/plain", b"bye").with_header("stream-closed", "true"));
    let (fin, last) = emitted(h.sse(&mut state, false));
    assert!(
        fin.contains("data:bye") && fin.contains("\"streamClosed\":true"),
        "{fin}"
    );
    assert!(!fin.contains("streamCursor"));
    assert!(last);
}

/// §5.8: binary streams are base64 with the encoding header; JSON batches are one array.
#[test]
fn sse_encodings() {
    let mut h = Harness::new();
    h.send(put("application/octet-stream").with_body(vec![0, 1, 2, 255]));
    let (head, mut state) = sse_open(&mut h, "offset=-1&live=sse");
    assert_eq!(head.get("stream-sse-data-encoding"), Some("base64"));
    let (events, _) = emitted(h.sse(&mut state, false));
    let tail = next_offset(&h.send(req(Method::Head, "")));
    assert!(
        events.starts_with(&format!("event: data\nid: {tail}\ndata:AAEC/w==\n\n")),
        "{events}"
    );

    let mut j = Harness::new();
    j.send(put("application/json").with_body(b"[1,2]".to_vec()));
    j.send(post("application/json", b"[3]"));
    let (_, mut state) = sse_open(&mut j, "offset=-1&live=sse");
    let (events, _) = emitted(j.sse(&mut state, false));
    let tail = next_offset(&j.send(req(Method::Head, "")));
    assert!(
        events.starts_with(&format!("event: data\nid: {tail}\ndata:[1,2,3]\n\n")),
        "{events}"
    );
}

/// §5.8: a deleted stream ends the connection; a closed one at the tail says so at once.
#[test]
fn sse_end_states() {
    let mut h = Harness::new();
    h.send(put("text/plain"));
    let (_, mut state) = sse_open(&mut h, "offset=now&live=sse");
    emitted(h.sse(&mut state, false));
    h.send(req(Method::Delete, ""));
    assert_eq!(h.sse(&mut state, false), SseStep::End);

    let mut c = Harness::new();
    c.send(put("text/plain").with_header("stream-closed", "true"));
    let (_, mut state) = sse_open(&mut c, "offset=now&live=sse");
    let (ev, last) = emitted(c.sse(&mut state, false));
    assert!(ev.contains("\"streamClosed\":true") && last);
}

/// §5.8: a text batch cut between rows never splits a UTF-8 character.
#[test]
fn sse_text_batches_end_on_character_boundaries() {
    let config = durable_streams_edge::engine::config::Config {
        row_bytes: 4,
        max_read_chunk_bytes: 4,
        ..Default::default()
    };
    let mut h = Harness::with_config(config);
    let text = "aé☃b€";
    h.send(put("text/plain").with_body(text.as_bytes().to_vec()));
    let (_, mut state) = sse_open(&mut h, "offset=-1&live=sse");
    let mut got = String::new();
    for _ in 0..20 {
        let (ev, _) = emitted(h.sse(&mut state, false));
        for line in ev
            .lines()
            .filter(|l| l.starts_with("data:") && !l.contains("streamNextOffset"))
        {
            got.push_str(&line[5..]);
        }
        if got.len() >= text.len() {
            break;
        }
    }
    assert_eq!(got, text);
}

/// §5.8 SSE `id:`: every data event's id is the offset after it, and a reconnect
/// with `Last-Event-ID` resumes there, whatever offset its URL names.
#[test]
fn sse_resumes_from_last_event_id() {
    let mut h = Harness::new();
    h.send(put("text/plain"));
    h.send(post("text/plain", b"one;"));
    let (_, mut state) = sse_open(&mut h, "offset=-1&live=sse");
    let (events, _) = emitted(h.sse(&mut state, false));
    let id = events
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap()
        .to_string();
    h.send(post("text/plain", b"two;"));
    // A bare EventSource reconnects to the same URL, with the id it saw last.
    let reconnect = get("offset=-1&live=sse").with_header("last-event-id", &id);
    let mut state = match h.act(reconnect) {
        Action::Sse { state, .. } => state,
        other => panic!("{other:?}"),
    };
    let (resumed, _) = emitted(h.sse(&mut state, false));
    assert!(resumed.contains("data:two;"), "{resumed}");
    assert!(!resumed.contains("one;"), "{resumed}");
    let bad = get("offset=-1&live=sse").with_header("last-event-id", "junk");
    assert_eq!(answered(h.act(bad)).status, 400);
    // Only SSE reads honour it.
    let catch_up = get("offset=-1").with_header("last-event-id", &id);
    assert_eq!(answered(h.act(catch_up)).body, b"one;two;");
}

/// `live=ws` (an extension): one JSON frame per batch, in each content type's form;
/// an empty up-to-date frame at the tail; the close ends the reader.
#[test]
fn websocket_frames() {
    use durable_streams_edge::engine::ws::WsStep;
    let ws = |h: &mut Harness, query: &str| match h
        .act(get(query).with_header("upgrade", "websocket"))
    {
        Action::Ws(state) => state,
        other => panic!("{other:?}"),
    };
    let frame = |step: WsStep| match step {
        WsStep::Frame { text, last } => (
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            last,
        ),
        other => panic!("{other:?}"),
    };
    let mut h = Harness::new();
    h.send(put("text/plain").with_body(b"hello ".to_vec()));
    let mut state = ws(&mut h, "offset=-1&live=ws");
    let (f, last) = frame(h.ws(&mut state));
    assert_eq!(f["data"], "hello ");
    assert_eq!(f["upToDate"], true);
    assert!(!last);
    assert_eq!(h.ws(&mut state), WsStep::Wait);
    h.send(post("text/plain", b"world").with_header("stream-closed", "true"));
    let (f, last) = frame(h.ws(&mut state));
    assert_eq!(
        (f["data"].as_str(), f["closed"].as_bool()),
        (Some("world"), Some(true))
    );
    assert!(last);

    let mut j = Harness::new();
    j.send(put("application/json").with_body(b"[1,{\"a\":2}]".to_vec()));
    let mut state = ws(&mut j, "offset=-1&live=ws");
    assert_eq!(
        frame(j.ws(&mut state)).0["data"],
        serde_json::json!([1, {"a": 2}])
    );
    let (at_tail, _) = frame({
        let mut s = ws(&mut j, "offset=now&live=ws");
        j.ws(&mut s)
    });
    assert_eq!(at_tail["data"], serde_json::json!([]));
    assert_eq!(at_tail["upToDate"], true);

    let mut b = Harness::new();
    b.send(put("application/octet-stream").with_body(vec![0, 1, 255]));
    let mut state = ws(&mut b, "offset=-1&live=ws");
    let (f, _) = frame(b.ws(&mut state));
    assert_eq!(
        (f["data"].as_str(), f["encoding"].as_str()),
        (Some("AAH/"), Some("base64"))
    );
    // No upgrade: 400 with a reason.
    assert_eq!(b.send(get("offset=-1&live=ws")).status, 400);
}
