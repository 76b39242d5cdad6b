//! The client against real servers: this worker under Miniflare and the
//! official Node reference server, both started by `scripts/client-tests.mjs`
//! (`make test`), which passes their URLs in `DS_TEST_SERVERS`
//! (`name=url,name=url`). Catch-up, both live modes, resume from a saved
//! offset, JSON round trips, producer exactly-once through a proxy that
//! drops answers after the server committed, epoch fencing and auto-claim,
//! close and EOF, 410 after retention, and `ds` piping 10,000 lines.

use durable_streams_client::{
    Client, Consumer, CreateOptions, Error, IdempotentProducer, Live, ProducerOptions, Stream,
    START,
};
use futures_util::StreamExt;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn servers() -> Vec<(String, String)> {
    let raw = std::env::var("DS_TEST_SERVERS").expect(
        "DS_TEST_SERVERS is unset: run these tests through `make test` (scripts/client-tests.mjs)",
    );
    raw.split(',')
        .filter_map(|p| p.split_once('='))
        .map(|(n, u)| (n.to_string(), u.trim_end_matches('/').to_string()))
        .collect()
}

fn name(prefix: &str) -> String {
    format!("{prefix}-{:016x}", fastrand::u64(..))
}

async fn fresh(base: &str, prefix: &str, ct: &str) -> Stream {
    let s = Client::new().stream(&format!("{base}/v1/stream/{}", name(prefix)));
    s.create(&CreateOptions {
        content_type: Some(ct.into()),
        ..CreateOptions::default()
    })
    .await
    .unwrap();
    s
}

/// Every batch until the consumer ends (or `n` batches with data).
async fn collect(c: Consumer, until_bytes: Option<usize>) -> (Vec<u8>, String) {
    let mut batches = Box::pin(c.batches());
    let mut data = Vec::new();
    let mut offset = String::new();
    while let Some(b) = tokio::time::timeout(Duration::from_secs(30), batches.next())
        .await
        .expect("the consumer stalled")
    {
        let b = b.unwrap();
        data.extend_from_slice(&b.data);
        offset = b.next_offset;
        if until_bytes.is_some_and(|n| data.len() >= n) {
            break;
        }
    }
    (data, offset)
}

/// Catch-up, JSON round trips and resuming from a saved offset (§5.6, §9).
#[tokio::test]
async fn catch_up_json_and_resume() {
    for (server, base) in servers() {
        let s = fresh(&base, "json", "application/json").await;
        for i in 0..5 {
            s.append_json(&serde_json::json!({ "n": i })).await.unwrap();
        }
        let b = s.read(START).await.unwrap();
        let all: Vec<serde_json::Value> = serde_json::from_slice(&b.data).unwrap();
        assert_eq!(all.len(), 5, "{server}");
        assert_eq!(all[4]["n"], 4, "{server}");
        // Resume: read to a saved offset, then continue from it.
        let saved = b.next_offset.clone();
        s.append_json(&serde_json::json!({ "n": 5 })).await.unwrap();
        let (rest, _) = collect(Consumer::new(s.clone(), &saved).live(Live::No), None).await;
        let rest: Vec<serde_json::Value> = serde_json::from_slice(&rest).unwrap();
        assert_eq!(rest, vec![serde_json::json!({ "n": 5 })], "{server}");
    }
}

/// Long-poll and SSE live reads deliver every byte once and end at close
/// (§5.7, §5.8).
#[tokio::test]
async fn live_reads_end_at_close() {
    for (server, base) in servers() {
        for live in [Live::LongPoll, Live::Sse] {
            let s = fresh(&base, "live", "text/plain").await;
            s.append("a", "text/plain").await.unwrap();
            let reader = tokio::spawn(collect(Consumer::new(s.clone(), START).live(live), None));
            for part in ["b", "c", "d"] {
                tokio::time::sleep(Duration::from_millis(50)).await;
                s.append(part, "text/plain").await.unwrap();
            }
            let end = s.close().await.unwrap();
            let (data, offset) = reader.await.unwrap();
            assert_eq!(data, b"abcd", "{server} {live:?}");
            assert_eq!(
                offset, end,
                "{server} {live:?}: the last batch is at the end"
            );
        }
    }
}

/// A TCP proxy to `upstream` that closes every `nth` connection as soon as
/// the server's answer starts: the server committed, the client never hears.
async fn lossy_proxy(upstream: String, nth: u64) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut count = 0u64;
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            count += 1;
            let drop_answer = count % nth == 0;
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut cr, mut cw) = client.split();
                let (mut sr, mut sw) = server.split();
                let up = tokio::io::copy(&mut cr, &mut sw);
                let down = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = sr.read(&mut buf).await.unwrap_or(0);
                        if n == 0 || drop_answer {
                            return;
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                };
                tokio::select! { _ = up => {}, _ = down => {} }
            });
        }
    });
    format!("http://{addr}")
}

/// The producer appends every item exactly once and in order, even when
/// answers are lost after the server committed (§5.2.1).
#[tokio::test]
async fn producer_exactly_once_through_lost_answers() {
    for (server, base) in servers() {
        let direct = fresh(&base, "prod", "text/plain").await;
        let authority = base.trim_start_matches("http://").to_string();
        let proxied = lossy_proxy(authority, 3).await;
        let path = direct.url().split_once("/v1/").unwrap().1.to_string();
        let via = Client::new().stream(&format!("{proxied}/v1/{path}"));
        let mut o = ProducerOptions::new("p1", "text/plain");
        o.max_batch_count = 7;
        o.max_in_flight = 3;
        let p = IdempotentProducer::new(via, o);
        let mut expected = Vec::new();
        for i in 0..300 {
            let line = format!("{i}\n");
            expected.extend_from_slice(line.as_bytes());
            p.send(line).await.unwrap();
        }
        p.close().await.unwrap();
        let (data, _) = collect(Consumer::new(direct, START).live(Live::No), None).await;
        assert_eq!(
            String::from_utf8(data).unwrap(),
            String::from_utf8(expected).unwrap(),
            "{server}"
        );
    }
}

/// Epoch fencing: a newer epoch fences the older producer; with auto-claim
/// it takes the id back with a newer epoch (§5.2.1).
#[tokio::test]
async fn epoch_fencing_and_auto_claim() {
    for (server, base) in servers() {
        let s = fresh(&base, "fence", "text/plain").await;
        let send_one = |epoch: u64, auto: bool, item: &'static str| {
            let s = s.clone();
            async move {
                let mut o = ProducerOptions::new("shared", "text/plain");
                o.epoch = epoch;
                o.auto_claim = auto;
                let p = IdempotentProducer::new(s, o);
                p.send(item).await.unwrap();
                p.close().await
            }
        };
        send_one(0, false, "a").await.unwrap();
        send_one(1, false, "b").await.unwrap();
        let fenced = send_one(0, false, "x").await;
        assert!(fenced.is_err(), "{server}: epoch 0 is fenced by epoch 1");
        send_one(0, true, "c").await.unwrap();
        let (data, _) = collect(Consumer::new(s, START).live(Live::No), None).await;
        assert_eq!(data, b"abc", "{server}");
    }
}

/// Typed errors: 404, 409 on a closed stream, 410 for a trimmed offset
/// (this worker's retention), and a fresh stream's head.
#[tokio::test]
async fn typed_errors() {
    for (server, base) in servers() {
        let missing = Client::new().stream(&format!("{base}/v1/stream/{}", name("missing")));
        assert!(
            matches!(missing.head().await, Err(Error::NotFound)),
            "{server}"
        );
        let s = fresh(&base, "closed", "text/plain").await;
        s.close().await.unwrap();
        assert!(
            matches!(
                s.append("x", "text/plain").await,
                Err(Error::Conflict { .. })
            ),
            "{server}"
        );
        assert!(s.head().await.unwrap().closed, "{server}");
        if server == "worker" {
            let url = format!("{base}/v1/stream/{}", name("trimmed"));
            let r = reqwest::Client::new()
                .put(&url)
                .header("content-type", "text/plain")
                .header("stream-retention-max-messages", "1")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            let t = Client::new().stream(&url);
            t.append("old", "text/plain").await.unwrap();
            t.append("new", "text/plain").await.unwrap();
            match t.read("0000000000000000_0000000000000000").await {
                Err(Error::Gone { earliest: Some(e) }) => {
                    assert_eq!(t.read(&e).await.unwrap().data.as_ref(), b"new");
                }
                other => panic!("expected 410 with the earliest offset, got {other:?}"),
            }
        }
    }
}

/// `ds append URL -` then `ds cat URL`: 10,000 lines, byte for byte.
#[tokio::test]
async fn ds_pipes_ten_thousand_lines() {
    let (_, base) = servers().into_iter().next().unwrap();
    let url = format!("{base}/v1/stream/{}", name("ds"));
    let ds = env!("CARGO_BIN_EXE_ds");
    let created = std::process::Command::new(ds)
        .args(["create", &url, "--content-type", "text/plain"])
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let input: String = (0..10_000)
        .map(|i| format!("line {i} {}\n", "x".repeat(i % 37)))
        .collect();
    let mut append = tokio::process::Command::new(ds)
        .args(["append", &url, "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = append.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    assert!(append.wait().await.unwrap().success());
    let cat = std::process::Command::new(ds)
        .args(["cat", &url])
        .output()
        .unwrap();
    assert!(cat.status.success());
    assert_eq!(cat.stdout.len(), input.len());
    assert!(
        cat.stdout == input.as_bytes(),
        "ds cat prints exactly what went in"
    );
    assert!(String::from_utf8_lossy(&cat.stderr).contains("next offset"));
}

/// A one-shot HTTP stub: answers each connection's first request with the
/// next of `answers` (raw HTTP/1.1 responses), then closes it.
async fn stub(answers: Vec<String>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for answer in answers {
            let Ok((mut c, _)) = listener.accept().await else {
                return;
            };
            let mut buf = vec![0u8; 16 * 1024];
            let mut seen = Vec::new();
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                match c.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
            let _ = c.write_all(answer.as_bytes()).await;
            let _ = c.shutdown().await;
        }
    });
    format!("http://{addr}")
}

/// 429 and 503 are retried after `Retry-After` (or the backoff), then the
/// read goes on; a 4xx is yielded once and ends the consumer.
#[tokio::test]
async fn rate_limits_and_server_errors_are_retried() {
    let ok = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nstream-next-offset: 0000000000000001_0000000000000002\r\n\
              stream-up-to-date: true\r\nstream-closed: true\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi";
    let base = stub(vec![
        "HTTP/1.1 429 Too Many Requests\r\nretry-after: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into(),
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into(),
        ok.into(),
    ])
    .await;
    let s = Client::new().stream(&format!("{base}/v1/stream/x"));
    let started = std::time::Instant::now();
    let (data, offset) = collect(Consumer::new(s, START).live(Live::No), None).await;
    assert_eq!(data, b"hi");
    assert_eq!(offset, "0000000000000001_0000000000000002");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
    let gone = stub(vec![
        "HTTP/1.1 410 Gone\r\nstream-earliest-offset: 0000000000000001_0000000000000009\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into(),
    ])
    .await;
    let g = Client::new().stream(&format!("{gone}/v1/stream/x"));
    let mut batches = Box::pin(Consumer::new(g, START).live(Live::LongPoll).batches());
    match batches.next().await {
        Some(Err(Error::Gone { earliest })) => {
            assert_eq!(
                earliest.as_deref(),
                Some("0000000000000001_0000000000000009")
            )
        }
        other => panic!("expected 410, got {other:?}"),
    }
    assert!(
        batches.next().await.is_none(),
        "the consumer ends after the error"
    );
}

/// A consumer reading live while the server is SIGKILLed and restarted on
/// the same storage delivers every message exactly once, in order; the
/// writer is an idempotent producer, so its retries across the outage
/// append nothing twice.
#[tokio::test]
async fn consumer_survives_a_server_restart() {
    let base =
        std::env::var("DS_TEST_RESTARTABLE").expect("DS_TEST_RESTARTABLE: run through make test");
    let control = std::env::var("DS_TEST_CONTROL").expect("DS_TEST_CONTROL: run through make test");
    let s = fresh(&base, "restart", "text/plain").await;
    let expected: String = (0..150).map(|i| format!("m{i};")).collect();
    let mut o = ProducerOptions::new("writer", "text/plain");
    o.max_in_flight = 1;
    o.max_retries = 60;
    let p = IdempotentProducer::new(s.clone(), o);
    for i in 0..50 {
        p.send(format!("m{i};")).await.unwrap();
    }
    p.flush().await.unwrap();
    let consumer = Consumer::new(s.clone(), START).live(Live::LongPoll);
    let reader = tokio::spawn(collect(consumer, Some(expected.len())));
    let restart = reqwest::Client::new()
        .post(format!("{control}/restart"))
        .send();
    for i in 50..100 {
        p.send(format!("m{i};")).await.unwrap();
    }
    assert_eq!(restart.await.unwrap().status(), 200);
    for i in 100..150 {
        p.send(format!("m{i};")).await.unwrap();
    }
    p.close().await.unwrap();
    let (data, _) = reader.await.unwrap();
    assert_eq!(String::from_utf8(data).unwrap(), expected);
}
