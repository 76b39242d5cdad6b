//! Forks on the host (PROTOCOL.md §4.2): several in-memory objects driven
//! through the same service calls the Durable Object adapter makes
//! (`src/cloudflare/object.rs`), with a hand-advanced clock.

mod common;

use common::T0;
use durable_streams_edge::engine::config::Config;
use durable_streams_edge::engine::ctx::Ctx;
use durable_streams_edge::engine::fork::Need;
use durable_streams_edge::engine::outcome::Action;
use durable_streams_edge::engine::request::{Method, Request};
use durable_streams_edge::engine::response::Response;
use durable_streams_edge::engine::state::Chunk;
use durable_streams_edge::engine::store::{Commit, MemStore, OutgoingKind, Store};
use durable_streams_edge::engine::wire;
use durable_streams_edge::engine::{fork_create, service, source};
use std::collections::BTreeMap;

#[derive(Default)]
struct Cluster {
    now: u64,
    config: Config,
    objects: BTreeMap<String, MemStore>,
    ids: u64,
}

impl Cluster {
    fn new(config: Config) -> Cluster {
        Cluster {
            now: T0,
            config,
            ..Default::default()
        }
    }

    fn store(&mut self, path: &str) -> &MemStore {
        self.objects.entry(path.to_string()).or_default()
    }

    /// Runs `f` on `path`'s object with a fresh context; `id` overrides the
    /// new stream id (a fork keeps its id across its steps).
    fn on<R>(&mut self, path: &str, id: Option<&str>, f: impl FnOnce(&MemStore, &Ctx) -> R) -> R {
        self.ids += 1;
        let fresh = format!("id{}", self.ids);
        let ctx = Ctx {
            now_ms: self.now,
            new_stream_id: id.unwrap_or(&fresh),
            config: &self.config,
            random: self.ids,
        };
        f(self.objects.entry(path.to_string()).or_default(), &ctx)
    }

    fn req(path: &str, method: Method, query: &str) -> Request {
        let q = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        Request::new(method, &format!("http://h/v1/stream/{path}{q}"))
    }

    /// A source's chunks, recursing up its chain like the adapter; `Err`
    /// carries the source's refusal, which the reader gets as its answer.
    fn chunks(&mut self, need: &Need) -> Result<Vec<Chunk>, Response> {
        let mut inherited = Vec::new();
        loop {
            let action = self.on(&need.source, None, |store, ctx| {
                source::chunks(store, need, ctx, &inherited).unwrap()
            });
            match action {
                Action::NeedInherited(n) => inherited = self.chunks(&n)?,
                Action::Respond(r) if r.status == 200 => {
                    return Ok(wire::decode_chunks(&r.body).unwrap())
                }
                Action::Respond(r) => return Err(r),
                other => panic!("{other:?}"),
            }
        }
    }

    /// Delivers every due message of `path` as the adapter's outbox does
    /// (releases cascade onward).
    fn deliver(&mut self, path: &str) {
        let now = self.now;
        let due = fork_create::due_messages(self.store(path), now).unwrap();
        for o in due {
            let r = self.on(&o.source, None, |src, ctx| {
                source::release(src, &o.fork_id, ctx).unwrap()
            });
            assert_eq!(r.status, 204);
            let next = o.source.clone();
            fork_create::after_delivery(self.store(path), o, true, now).unwrap();
            self.deliver(&next);
        }
    }

    fn send(&mut self, path: &str, req: Request) -> Response {
        let mut inherited = Vec::new();
        loop {
            let outcome = self.on(path, None, |store, ctx| {
                service::handle(store, &req, ctx, &inherited).unwrap()
            });
            match outcome.action {
                Action::Respond(r) => {
                    self.deliver(path);
                    return r;
                }
                Action::NeedInherited(n) => match self.chunks(&n) {
                    Ok(c) => inherited = c,
                    Err(r) => return r,
                },
                Action::Fork { source, acquire } => return self.fork(path, &req, &source, acquire),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// The adapter's fork creation (src/cloudflare/object.rs), step by step.
    fn fork(
        &mut self,
        path: &str,
        req: &Request,
        source: &str,
        acquire: durable_streams_edge::engine::fork::Acquire,
    ) -> Response {
        let id = acquire.fork_id.clone();
        let due = self.now + self.config.fork_grace_ms;
        self.store(path)
            .commit(fork_create::fork_intent(source, &id, due))
            .unwrap();
        let answer = match self.on(source, Some(&id), |src, ctx| {
            source::acquire(src, &acquire, ctx, &[]).unwrap()
        }) {
            Action::Respond(r) => r,
            other => panic!("{other:?}"),
        };
        if answer.status != 200 {
            self.store(path)
                .commit(Commit::Settle { fork_id: id })
                .unwrap();
            return answer;
        }
        let acquired = wire::decode_acquired(&answer.body).unwrap();
        let now = self.now;
        let (outcome, committed) = self.on(path, Some(&id), |store, ctx| {
            let done = fork_create::finish_fork(store, req, ctx, &acquired).unwrap();
            if !done.1 {
                fork_create::abandon_fork(store, source, &id, now).unwrap();
            }
            done
        });
        if !committed {
            self.deliver(path);
        }
        match outcome.action {
            Action::Respond(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn refs(&mut self, path: &str) -> u64 {
        self.store(path).refs().unwrap()
    }
}

fn put(path: &str, ct: &str, body: &[u8]) -> Request {
    Cluster::req(path, Method::Put, "")
        .with_header("content-type", ct)
        .with_body(body.to_vec())
}

fn fork_of(path: &str, source: &str) -> Request {
    Cluster::req(path, Method::Put, "")
        .with_header("stream-forked-from", &format!("/v1/stream/{source}"))
}

fn json(r: &Response) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap()
}

/// §4.2, §9.1: a fork reads the source up to its point, then its own data, as one array.
#[test]
fn fork_reads_stitch_source_and_own_data() {
    let mut c = Cluster::new(Config::default());
    c.send("a", put("a", "application/json", b"[1,2]"));
    let f = c.send("b", fork_of("b", "a").with_body(b"[3]".to_vec()));
    assert_eq!(f.status, 201);
    assert_eq!(f.get("content-type"), Some("application/json"));
    c.send(
        "a",
        Cluster::req("a", Method::Post, "")
            .with_header("content-type", "application/json")
            .with_body(b"[9]".to_vec()),
    );
    assert_eq!(
        json(&c.send("b", Cluster::req("b", Method::Get, ""))),
        serde_json::json!([1, 2, 3])
    );
    assert_eq!(
        json(&c.send("a", Cluster::req("a", Method::Get, ""))),
        serde_json::json!([1, 2, 9])
    );
    assert_eq!(c.refs("a"), 1);
}

/// §5.6 on forks: paginated reads cross the fork point and never repeat or skip a byte.
#[test]
fn paginated_fork_reads_are_exact() {
    let mut c = Cluster::new(Config {
        max_read_chunk_bytes: 3,
        row_bytes: 2,
        ..Config::default()
    });
    c.send("a", put("a", "text/plain", b"abcdefg"));
    c.send("b", fork_of("b", "a").with_body(b"hijk".to_vec()));
    c.send("c", fork_of("c", "b").with_body(b"lmn".to_vec()));
    let mut offset = "-1".to_string();
    let mut got = Vec::new();
    for _ in 0..100 {
        let r = c.send(
            "c",
            Cluster::req("c", Method::Get, &format!("offset={offset}")),
        );
        assert_eq!(r.status, 200);
        got.extend_from_slice(&r.body);
        offset = r.get("stream-next-offset").unwrap().to_string();
        if r.get("stream-up-to-date").is_some() {
            break;
        }
    }
    assert_eq!(String::from_utf8(got).unwrap(), "abcdefghijklmn");
}

/// §4.2: sub-offsets count bytes (or JSON messages) within the next append.
#[test]
fn sub_offsets() {
    let mut c = Cluster::new(Config::default());
    c.send("a", put("a", "text/plain", b"abcdef"));
    let zero = "0000000000000000_0000000000000000";
    let sub = |n: &str| {
        fork_of("b", "a")
            .with_header("stream-fork-offset", zero)
            .with_header("stream-fork-sub-offset", n)
    };
    assert_eq!(c.send("b", sub("7")).status, 400);
    assert_eq!(c.refs("a"), 0, "a refused fork takes no reference");
    assert_eq!(c.send("b", sub("4")).status, 201);
    assert_eq!(
        c.send("b", Cluster::req("b", Method::Get, "")).body,
        b"abcd"
    );
    assert_eq!(c.send("b", sub("4")).status, 200, "the same fork again");
    assert_eq!(c.send("b", sub("3")).status, 409, "a different sub-offset");
}

/// §4.2: deleting a referenced source soft-deletes it; deleting the last fork cascades.
#[test]
fn soft_delete_and_cascade() {
    let mut c = Cluster::new(Config::default());
    c.send("a", put("a", "text/plain", b"x"));
    c.send("b", fork_of("b", "a"));
    c.send("c", fork_of("c", "b"));
    assert_eq!(
        c.send("a", Cluster::req("a", Method::Delete, "")).status,
        204
    );
    assert_eq!(
        c.send("b", Cluster::req("b", Method::Delete, "")).status,
        204
    );
    for (p, m) in [
        ("a", Method::Get),
        ("a", Method::Head),
        ("a", Method::Delete),
        ("b", Method::Get),
    ] {
        assert_eq!(c.send(p, Cluster::req(p, m, "")).status, 410);
    }
    assert_eq!(c.send("a", put("a", "text/plain", b"")).status, 409);
    assert_eq!(
        c.send("c", Cluster::req("c", Method::Get, "")).body,
        b"x",
        "the fork still reads its chain"
    );
    assert_eq!(
        c.send("c", Cluster::req("c", Method::Delete, "")).status,
        204
    );
    for p in ["a", "b", "c"] {
        assert_eq!(
            c.send(p, Cluster::req(p, Method::Head, "")).status,
            404,
            "{p} is gone"
        );
        assert_eq!(c.store(p).chunk_count(), 0);
    }
}

/// §4.2 table: a fork without its own lifetime inherits the source's TTL.
#[test]
fn ttl_is_inherited_and_the_fork_outlives_its_source() {
    let mut c = Cluster::new(Config::default());
    c.send(
        "a",
        put("a", "text/plain", b"x").with_header("stream-ttl", "10"),
    );
    c.send("b", fork_of("b", "a"));
    assert_eq!(
        c.send("b", Cluster::req("b", Method::Head, ""))
            .get("stream-ttl"),
        Some("10")
    );
    c.send("own", fork_of("own", "a").with_header("stream-ttl", "100"));
    c.now += 11_000;
    assert_eq!(
        c.send("a", Cluster::req("a", Method::Head, "")).status,
        410,
        "expired while referenced: soft-deleted"
    );
    assert_eq!(
        c.send("own", Cluster::req("own", Method::Get, "")).body,
        b"x"
    );
}

/// forks.rs: an intent the alarm already released is never committed (503).
#[test]
fn a_released_intent_blocks_the_commit() {
    let mut c = Cluster::new(Config::default());
    c.send("a", put("a", "text/plain", b"x"));
    let req = fork_of("b", "a");
    let acquire = durable_streams_edge::engine::fork::Acquire {
        fork_path: "b".into(),
        fork_id: "late".into(),
        offset: None,
        sub_offset: 0,
        content_type: None,
    };
    let answer = match c.on("a", Some("late"), |src, ctx| {
        source::acquire(src, &acquire, ctx, &[]).unwrap()
    }) {
        Action::Respond(r) => r,
        other => panic!("{other:?}"),
    };
    let acquired = wire::decode_acquired(&answer.body).unwrap();
    // No intent in b's outbox (the alarm settled it): the commit must not happen.
    let (outcome, committed) = c.on("b", Some("late"), |store, ctx| {
        fork_create::finish_fork(store, &req, ctx, &acquired).unwrap()
    });
    assert!(!committed);
    match outcome.action {
        Action::Respond(r) => assert_eq!(r.status, 503),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.store("b").meta().unwrap(), None);
    let now = c.now;
    fork_create::abandon_fork(c.store("b"), "a", "late", now).unwrap();
    assert_eq!(
        c.store("b").outbox().unwrap()[0].kind,
        OutgoingKind::Release
    );
    c.deliver("b");
    assert_eq!(c.refs("a"), 0);
}

/// forks.rs: the alarm turns a due intent into a release before sending it, so a
/// creation that finishes while the release is in flight is refused (503), never
/// committed without its reference.
#[test]
fn a_due_intent_is_settled_before_its_release_goes_out() {
    let mut c = Cluster::new(Config::default());
    c.send("a", put("a", "text/plain", b"x"));
    let req = fork_of("b", "a");
    let due = c.now + c.config.fork_grace_ms;
    c.store("b")
        .commit(fork_create::fork_intent("a", "slow", due))
        .unwrap();
    let acquire = durable_streams_edge::engine::fork::Acquire {
        fork_path: "b".into(),
        fork_id: "slow".into(),
        offset: None,
        sub_offset: 0,
        content_type: None,
    };
    let answer = match c.on("a", Some("slow"), |src, ctx| {
        source::acquire(src, &acquire, ctx, &[]).unwrap()
    }) {
        Action::Respond(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(c.refs("a"), 1);
    // The acquire took longer than the grace: the alarm fires and takes the
    // due messages; its release is now on its way to `a`.
    c.now = due + 1;
    let now = c.now;
    let in_flight = fork_create::due_messages(c.store("b"), now).unwrap();
    assert_eq!(in_flight.len(), 1);
    assert_eq!(in_flight[0].kind, OutgoingKind::Release);
    // The slow creation finishes meanwhile.
    let acquired = wire::decode_acquired(&answer.body).unwrap();
    let (outcome, committed) = c.on("b", Some("slow"), |store, ctx| {
        fork_create::finish_fork(store, &req, ctx, &acquired).unwrap()
    });
    assert!(
        !committed,
        "a fork must not commit while its reference is being released"
    );
    match outcome.action {
        Action::Respond(r) => assert_eq!(r.status, 503),
        other => panic!("{other:?}"),
    }
    // The release lands.
    for o in in_flight {
        let r = c.on("a", None, |src, ctx| {
            source::release(src, &o.fork_id, ctx).unwrap()
        });
        assert_eq!(r.status, 204);
        fork_create::after_delivery(c.store("b"), o, true, now).unwrap();
    }
    assert_eq!(c.refs("a"), 0);
    assert_eq!(
        c.store("b").meta().unwrap(),
        None,
        "no fork without a reference"
    );
    assert!(c.store("b").outbox().unwrap().is_empty());
}

/// forks.rs: a fork's inherited reads name the source incarnation they were made
/// from; a source dropped and re-created at the same path answers 410, never its
/// new bytes.
#[test]
fn inherited_reads_never_serve_another_incarnation() {
    let mut c = Cluster::new(Config::default());
    c.send("a", put("a", "text/plain", b"old bytes"));
    assert_eq!(c.send("b", fork_of("b", "a")).status, 201);
    // Lose b's reference (what the race above used to do), then drop and
    // re-create a with other bytes.
    let fork_id = c.store("b").meta().unwrap().unwrap().stream_id;
    c.store("a").commit(Commit::RemoveRef { fork_id }).unwrap();
    assert_eq!(
        c.send("a", Cluster::req("a", Method::Delete, "")).status,
        204
    );
    c.now += 5;
    assert_eq!(
        c.send("a", put("a", "text/plain", b"NEW BYTES")).status,
        201
    );
    let r = c.send("b", Cluster::req("b", Method::Get, "offset=-1"));
    assert_eq!(r.status, 410, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(json(&r)["error"]["code"], "INHERITED_DATA_GONE");
}

/// forks.rs: a fork chain is at most 16 deep; the 17th fork is a 400 with a reason
/// and takes no reference.
#[test]
fn fork_chains_are_bounded() {
    let mut c = Cluster::new(Config::default());
    c.send("f0", put("f0", "text/plain", b"x"));
    for i in 1..=16 {
        let (path, src) = (format!("f{i}"), format!("f{}", i - 1));
        assert_eq!(c.send(&path, fork_of(&path, &src)).status, 201, "depth {i}");
    }
    let r = c.send("f17", fork_of("f17", "f16"));
    assert_eq!(r.status, 400);
    assert_eq!(json(&r)["error"]["code"], "FORK_TOO_DEEP");
    assert_eq!(c.refs("f16"), 0);
    assert_eq!(
        c.send("f16", Cluster::req("f16", Method::Get, "")).body,
        b"x"
    );
}
