//! Property tests: the parsers on arbitrary input (never a panic, canonical
//! round trips), and the engine against a deliberately simple model of the
//! protocol over random operation sequences (PROTOCOL.md §5, §5.2.1, §9.1).

mod common;

use common::*;
use durable_streams_edge::engine::config::Config;
use durable_streams_edge::engine::request::{Method, Request};
use durable_streams_edge::protocol::expiry::parse_ttl;
use durable_streams_edge::protocol::offset::{Offset, OffsetParam, WireOffset, MAX_SAFE_INTEGER};
use durable_streams_edge::protocol::path::StreamPath;
use durable_streams_edge::protocol::producer::{parse_safe_uint, ProducerTuple};
use durable_streams_edge::protocol::query::ReadQuery;
use proptest::prelude::*;
use std::collections::HashMap;

proptest! {
    /// §8: every offset prints and parses back to itself, in fixed width.
    #[test]
    fn offsets_round_trip(g in 0..=MAX_SAFE_INTEGER, p in 0..=MAX_SAFE_INTEGER) {
        let o = WireOffset::new(g, Offset::new(p).unwrap());
        let s = o.to_string();
        prop_assert_eq!(s.len(), 33);
        prop_assert_eq!(s.parse::<WireOffset>(), Ok(o));
    }

    /// §8: within a stream (one generation), printed order is position order.
    #[test]
    fn offsets_sort_lexicographically(g in 0..=MAX_SAFE_INTEGER, a in 0..=MAX_SAFE_INTEGER, b in 0..=MAX_SAFE_INTEGER) {
        let (oa, ob) = (WireOffset::new(g, Offset::new(a).unwrap()), WireOffset::new(g, Offset::new(b).unwrap()));
        prop_assert_eq!(oa.to_string().cmp(&ob.to_string()), a.cmp(&b));
    }

    /// Any accepted offset string is the canonical print of its value.
    #[test]
    fn accepted_offsets_are_canonical(s in "\\PC{0,40}|[0-9_]{30,36}") {
        if let Ok(o) = s.parse::<WireOffset>() {
            prop_assert_eq!(o.to_string(), s.clone());
        }
        let _ = s.parse::<OffsetParam>();
    }

    /// §5.1, §5.2.1: integer headers accept exactly the canonical decimals.
    #[test]
    fn integer_headers_are_strict(s in "\\PC{0,24}|[0-9]{1,20}") {
        if let Some(v) = parse_safe_uint(&s) {
            prop_assert_eq!(v.to_string(), s.clone());
            prop_assert!(v <= MAX_SAFE_INTEGER);
        }
        if let Ok(v) = parse_ttl(&s) {
            prop_assert_eq!(v.to_string(), s.clone());
        }
        let _ = ProducerTuple::from_headers(Some(&s), Some(&s), Some(&s));
    }

    /// Query strings and paths of any shape never panic; accepted paths are safe.
    #[test]
    fn query_and_path_parsing_is_total(q in "\\PC{0,64}", p in "[a-z%0-9./\\\\_-]{0,40}") {
        let _ = ReadQuery::parse(&q);
        if let Ok(Some(path)) = StreamPath::from_url_path(&format!("/v1/stream/{p}")) {
            let name = path.as_str();
            prop_assert!(!name.is_empty());
            prop_assert!(name.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != ".."));
            prop_assert!(!name.contains('\\') && !name.chars().any(char::is_control));
        }
    }
}

// ---------------------------------------------------------------------------
// The engine against a model.

#[derive(Debug, Clone)]
enum Op {
    Create {
        json: bool,
        closed: bool,
        init: Vec<u8>,
    },
    Append {
        payload: Vec<u8>,
        close: bool,
        wrong_ct: bool,
        seq: Option<u8>,
    },
    Produce {
        id: u8,
        epoch: u8,
        seq: u8,
        payload: Vec<u8>,
        close: bool,
    },
    CloseOnly,
    Read {
        at: usize,
    },
    Head,
    Delete,
}

fn op() -> impl Strategy<Value = Op> {
    let payload = prop::collection::vec(any::<u8>(), 0..12);
    prop_oneof![
        1 => (any::<bool>(), prop::bool::weighted(0.1), payload.clone())
            .prop_map(|(json, closed, init)| Op::Create { json, closed, init }),
        6 => (payload.clone(), prop::bool::weighted(0.05), prop::bool::weighted(0.1), prop::option::weighted(0.3, 0..6u8))
            .prop_map(|(payload, close, wrong_ct, seq)| Op::Append { payload, close, wrong_ct, seq }),
        6 => (0..3u8, 0..3u8, 0..5u8, payload, prop::bool::weighted(0.05))
            .prop_map(|(id, epoch, seq, payload, close)| Op::Produce { id, epoch, seq, payload, close }),
        1 => Just(Op::CloseOnly),
        4 => (0..64usize).prop_map(|at| Op::Read { at }),
        1 => Just(Op::Head),
        1 => Just(Op::Delete),
    ]
}

/// JSON payloads: bytes become small integers; an even first byte sends
/// them as an array (flattened), an odd one as a single value.
fn json_body(payload: &[u8]) -> (Vec<u8>, Vec<String>) {
    match payload.split_first() {
        None => (b"[]".to_vec(), vec![]),
        Some((first, rest)) if first % 2 == 0 => {
            let vals: Vec<String> = rest.iter().map(|b| b.to_string()).collect();
            (format!("[{}]", vals.join(",")).into_bytes(), vals)
        }
        Some((first, _)) => (first.to_string().into_bytes(), vec![first.to_string()]),
    }
}

#[derive(Debug, Default)]
struct MStream {
    json: bool,
    /// Messages (JSON) or appended byte runs, in order.
    units: Vec<Vec<u8>>,
    closed: bool,
    closed_by: Option<(u8, u8, u8)>,
    producers: HashMap<u8, (u8, u8)>,
    last_seq: Option<u8>,
    /// Offsets handed out, with how many units precede each.
    offsets: Vec<(String, usize)>,
}

struct World {
    h: Harness,
    stream: Option<MStream>,
}

fn ct(json: bool) -> &'static str {
    if json {
        "application/json"
    } else {
        "application/octet-stream"
    }
}

impl World {
    fn body_of(&self, payload: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
        if self.stream.as_ref().is_some_and(|s| s.json) {
            let (b, vals) = json_body(payload);
            (b, vals.into_iter().map(String::into_bytes).collect())
        } else {
            (
                payload.to_vec(),
                if payload.is_empty() {
                    vec![]
                } else {
                    vec![payload.to_vec()]
                },
            )
        }
    }

    fn accept(
        &mut self,
        units: Vec<Vec<u8>>,
        r: &durable_streams_edge::engine::response::Response,
    ) {
        let s = self.stream.as_mut().unwrap();
        s.units.extend(units);
        s.offsets.push((next_offset(r), s.units.len()));
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op.clone() {
            Op::Create { json, closed, init } => {
                let mut r = put(ct(json));
                if closed {
                    r = r.with_header("stream-closed", "true");
                }
                let (body, units) = if json {
                    let (b, v) = json_body(&init);
                    (b, v.into_iter().map(String::into_bytes).collect())
                } else {
                    (
                        init.clone(),
                        if init.is_empty() {
                            vec![]
                        } else {
                            vec![init.clone()]
                        },
                    )
                };
                let resp = self.h.send(r.with_body(body));
                match &self.stream {
                    Some(s) => {
                        let expect = if s.json == json && s.closed == closed {
                            200
                        } else {
                            409
                        };
                        prop_assert_eq!(resp.status, expect);
                    }
                    None => {
                        prop_assert_eq!(resp.status, 201);
                        self.stream = Some(MStream {
                            json,
                            closed,
                            ..MStream::default()
                        });
                        self.accept(units, &resp);
                    }
                }
            }
            Op::Append {
                payload,
                close,
                wrong_ct,
                seq,
            } => {
                let json = self.stream.as_ref().is_some_and(|s| s.json);
                let (body, units) = self.body_of(&payload);
                let mut r = post(if wrong_ct { "text/plain" } else { ct(json) }, &body);
                if close {
                    r = r.with_header("stream-closed", "true");
                }
                if let Some(n) = seq {
                    r = r.with_header("stream-seq", &format!("{n:03}"));
                }
                let resp = self.h.send(r);
                let expect = match &self.stream {
                    _ if body.is_empty() && !close => 400,
                    None => 404,
                    Some(s) if s.closed => {
                        if body.is_empty() {
                            204
                        } else {
                            409
                        }
                    }
                    Some(_) if wrong_ct && !body.is_empty() => 409,
                    Some(s) if body.is_empty() => {
                        let _ = s;
                        204
                    }
                    Some(s) if seq.is_some() && s.last_seq.is_some() && seq <= s.last_seq => 409,
                    Some(s) if s.json && units.is_empty() => 400,
                    Some(_) => 204,
                };
                prop_assert_eq!(
                    resp.status,
                    expect,
                    "{:?}",
                    String::from_utf8_lossy(&resp.body)
                );
                if expect == 204 {
                    let was_closed = self.stream.as_ref().unwrap().closed;
                    if !was_closed {
                        if !body.is_empty() && seq.is_some() {
                            self.stream.as_mut().unwrap().last_seq = seq;
                        }
                        self.accept(units, &resp);
                    }
                    if close {
                        self.stream.as_mut().unwrap().closed = true;
                    }
                }
            }
            Op::Produce {
                id,
                epoch,
                seq,
                payload,
                close,
            } => {
                let json = self.stream.as_ref().is_some_and(|s| s.json);
                let (body, units) = self.body_of(&payload);
                let mut r: Request = post(ct(json), &body)
                    .with_header("producer-id", &format!("p{id}"))
                    .with_header("producer-epoch", &epoch.to_string())
                    .with_header("producer-seq", &seq.to_string());
                if close {
                    r = r.with_header("stream-closed", "true");
                }
                let resp = self.h.send(r);
                let expect = match &self.stream {
                    _ if body.is_empty() && !close => 400,
                    None => 404,
                    Some(s) if s.closed => {
                        if s.closed_by == Some((id, epoch, seq)) {
                            204
                        } else {
                            409
                        }
                    }
                    Some(s) => match s.producers.get(&id) {
                        None if seq != 0 => 409,
                        Some(&(e, _)) if epoch < e => 403,
                        Some(&(e, _)) if epoch > e && seq != 0 => 400,
                        Some(&(e, last)) if epoch == e && seq <= last => 204,
                        Some(&(e, last)) if epoch == e && seq != last + 1 => 409,
                        _ if s.json && !body.is_empty() && units.is_empty() => 400,
                        _ if body.is_empty() => 204,
                        _ => 200,
                    },
                };
                prop_assert_eq!(
                    resp.status,
                    expect,
                    "{:?}",
                    String::from_utf8_lossy(&resp.body)
                );
                let s = self.stream.as_mut();
                if let Some(s) = s {
                    let fresh = !s.closed
                        && (expect == 200 || (expect == 204 && body.is_empty()))
                        && !matches!(s.producers.get(&id), Some(&(e, last)) if epoch == e && seq <= last);
                    if fresh {
                        s.producers.insert(id, (epoch, seq));
                        if close {
                            s.closed = true;
                            s.closed_by = Some((id, epoch, seq));
                        }
                        self.accept(units, &resp);
                    }
                }
            }
            Op::CloseOnly => {
                let resp = self
                    .h
                    .send(req(Method::Post, "").with_header("stream-closed", "true"));
                match self.stream.as_mut() {
                    None => prop_assert_eq!(resp.status, 404),
                    Some(s) => {
                        prop_assert_eq!(resp.status, 204);
                        prop_assert_eq!(resp.get("stream-closed"), Some("true"));
                        s.closed = true;
                    }
                }
            }
            Op::Read { at } => match &self.stream {
                None => prop_assert_eq!(self.h.send(get("")).status, 404),
                Some(s) => {
                    let (offset, before) = s.offsets[at % s.offsets.len()].clone();
                    let (pages, end) = read_all(&mut self.h, &offset);
                    let s = self.stream.as_ref().unwrap();
                    prop_assert_eq!(&end, &s.offsets.last().unwrap().0);
                    if s.json {
                        let mut got: Vec<String> = Vec::new();
                        for p in pages {
                            let v: Vec<serde_json::Value> = serde_json::from_slice(&p).unwrap();
                            got.extend(v.into_iter().map(|x| x.to_string()));
                        }
                        let want: Vec<String> = s.units[before..]
                            .iter()
                            .map(|u| String::from_utf8(u.clone()).unwrap())
                            .collect();
                        prop_assert_eq!(got, want);
                    } else {
                        prop_assert_eq!(pages.concat(), s.units[before..].concat());
                    }
                }
            },
            Op::Head => {
                let resp = self.h.send(req(Method::Head, ""));
                match &self.stream {
                    None => prop_assert_eq!(resp.status, 404),
                    Some(s) => {
                        prop_assert_eq!(resp.status, 200);
                        prop_assert_eq!(
                            resp.get("stream-next-offset"),
                            Some(s.offsets.last().unwrap().0.as_str())
                        );
                        prop_assert_eq!(resp.get("stream-closed").is_some(), s.closed);
                    }
                }
            }
            Op::Delete => {
                let resp = self.h.send(req(Method::Delete, ""));
                prop_assert_eq!(resp.status, if self.stream.is_some() { 204 } else { 404 });
                self.stream = None;
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The engine answers every sequence as the model does, and reads from
    /// every offset it handed out return exactly the model's data.
    #[test]
    fn engine_matches_the_model(ops in prop::collection::vec(op(), 1..60), row in 1u64..24, cap in 1u64..48) {
        let config = Config { row_bytes: row, max_read_chunk_bytes: cap, ..Config::default() };
        let mut w = World { h: Harness::with_config(config), stream: None };
        for op in &ops {
            w.step(op)?;
            w.h.advance(1);
        }
    }
}

proptest! {
    /// §9.1: one-pass flattening stores exactly the messages' bytes, each with its
    /// terminator, and cuts rows exactly where cutting the message list would.
    #[test]
    fn flattening_matches_the_message_list(
        values in proptest::collection::vec(
            prop_oneof![
                (0u32..1000).prop_map(|n| n.to_string()),
                "[a-z,\\\\\"]{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap()),
                proptest::collection::vec(0u8..9, 0..5).prop_map(|v| serde_json::to_string(&v).unwrap()),
            ],
            1..40,
        ),
        row in 1usize..24,
        spaces in 0usize..3,
    ) {
        use durable_streams_edge::engine::state::chunk_append;
        use durable_streams_edge::protocol::json::{flatten, JsonBody};
        let sep = format!(",{}", " ".repeat(spaces));
        let body = format!("[{}]", values.join(&sep));
        let flat = flatten(body.as_bytes(), JsonBody::Append, row, u64::MAX).unwrap();
        let stored: Vec<Vec<u8>> = values.iter().map(|v| format!("{v},").into_bytes()).collect();
        prop_assert_eq!(&flat.stored, &stored.concat());
        prop_assert_eq!(flat.messages, values.len() as u64);
        let refs: Vec<&[u8]> = stored.iter().map(Vec::as_slice).collect();
        let expected: Vec<(usize, bool, bool)> = chunk_append(0, &refs, row, false)
            .iter()
            .map(|c| (c.data.len(), c.head_boundary, c.tail_boundary))
            .collect();
        let got: Vec<(usize, bool, bool)> =
            flat.rows.iter().map(|r| (r.len, r.head_boundary, r.tail_boundary)).collect();
        prop_assert_eq!(got, expected);
    }
}
