//! An idempotent producer (PROTOCOL.md §5.2.1): `Producer-Id`, an epoch and
//! a sequence number per request, so a retried request is never appended
//! twice. Items are batched by bytes, count and linger time (in JSON mode a
//! batch is a JSON array, which the server flattens; otherwise the bytes
//! are concatenated); up to `max_in_flight` requests are in flight, and
//! they are acknowledged in order. A request is retried with the same
//! tuple on network errors, 5xx and 429, and after a sequence gap (an
//! earlier request has not landed yet). With `auto_claim`, a stale epoch
//! (another producer took the id) bumps the epoch and resends what was not
//! acknowledged, from sequence 0.

use crate::consumer::Backoff;
use crate::error::{Error, Result};
use crate::stream::Stream;
use bytes::Bytes;
use futures_util::stream::FuturesOrdered;
use futures_util::StreamExt;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How a producer batches and sends.
#[derive(Clone, Debug)]
pub struct ProducerOptions {
    pub id: String,
    pub epoch: u64,
    pub content_type: String,
    pub max_batch_bytes: usize,
    pub max_batch_count: usize,
    /// How long the first item of a batch waits for company.
    pub linger: Duration,
    pub max_in_flight: usize,
    /// On a stale epoch, take the id over with a newer epoch.
    pub auto_claim: bool,
    /// Retries per request before the producer fails.
    pub max_retries: u32,
}

impl ProducerOptions {
    pub fn new(id: &str, content_type: &str) -> ProducerOptions {
        ProducerOptions {
            id: id.to_string(),
            epoch: 0,
            content_type: content_type.to_string(),
            max_batch_bytes: 1024 * 1024,
            max_batch_count: 100_000,
            linger: Duration::from_millis(5),
            max_in_flight: 4,
            auto_claim: false,
            max_retries: 10,
        }
    }
}

enum Cmd {
    Item(Bytes),
    Flush(oneshot::Sender<Result<()>>),
}

/// A batching idempotent producer; dropping it stops it (call
/// [`IdempotentProducer::close`] to send what is queued first).
pub struct IdempotentProducer {
    tx: mpsc::Sender<Cmd>,
    task: JoinHandle<()>,
}

impl IdempotentProducer {
    pub fn new(stream: Stream, options: ProducerOptions) -> IdempotentProducer {
        let (tx, rx) = mpsc::channel(1024);
        let task = tokio::spawn(run(stream, options, rx));
        IdempotentProducer { tx, task }
    }

    /// Queues one item (one JSON value in JSON mode). Waits only when the
    /// queue is full.
    pub async fn send(&self, item: impl Into<Bytes>) -> Result<()> {
        self.tx
            .send(Cmd::Item(item.into()))
            .await
            .map_err(|_| Error::Protocol("the producer has stopped".into()))
    }

    /// Waits until everything queued so far is acknowledged.
    pub async fn flush(&self) -> Result<()> {
        let (done, answer) = oneshot::channel();
        self.tx
            .send(Cmd::Flush(done))
            .await
            .map_err(|_| Error::Protocol("the producer has stopped".into()))?;
        answer
            .await
            .map_err(|_| Error::Protocol("the producer has stopped".into()))?
    }

    /// Flushes, then stops the producer.
    pub async fn close(self) -> Result<()> {
        let r = self.flush().await;
        drop(self.tx);
        let _ = self.task.await;
        r
    }
}

/// One request's outcome: its body back, and how it went.
type Sent = (Bytes, Result<()>);

struct Sender {
    stream: Stream,
    o: ProducerOptions,
    epoch: u64,
    seq: u64,
}

impl Sender {
    fn body(&self, items: &[Bytes]) -> Bytes {
        if self.o.content_type.starts_with("application/json") {
            let mut out =
                Vec::with_capacity(items.iter().map(Bytes::len).sum::<usize>() + items.len() + 2);
            out.push(b'[');
            for (i, it) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(it);
            }
            out.push(b']');
            Bytes::from(out)
        } else {
            Bytes::from(items.concat())
        }
    }

    /// The request for `body` with the next tuple, as a future.
    fn launch(&mut self, body: Bytes) -> impl std::future::Future<Output = Sent> + use<> {
        let (stream, o, epoch, seq) = (self.stream.clone(), self.o.clone(), self.epoch, self.seq);
        self.seq += 1;
        async move {
            let r = send_one(&stream, &o, epoch, seq, &body).await;
            (body, r)
        }
    }
}

/// Sends one batch until it is acknowledged (200, or 204: a duplicate of
/// one already appended) or fails for good.
async fn send_one(
    stream: &Stream,
    o: &ProducerOptions,
    epoch: u64,
    seq: u64,
    body: &Bytes,
) -> Result<()> {
    let backoff = Backoff::default();
    let mut failures = 0;
    loop {
        let sent = stream
            .request(reqwest::Method::POST, stream.url())
            .header("content-type", &o.content_type)
            .header("producer-id", &o.id)
            .header("producer-epoch", epoch.to_string())
            .header("producer-seq", seq.to_string())
            .body(body.clone())
            .send()
            .await;
        let outcome = match sent {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => crate::error::from_response(r).await,
            Err(e) => Error::Transport(e),
        };
        let retry = match &outcome {
            // An earlier request has not landed yet: it is being retried.
            Error::SeqGap { expected_seq, .. } if *expected_seq < seq => true,
            e => e.retryable(),
        };
        if !retry || failures >= o.max_retries {
            return Err(outcome);
        }
        let wait = outcome
            .retry_after()
            .unwrap_or_else(|| backoff.delay(failures));
        failures += 1;
        tokio::time::sleep(wait).await;
    }
}

async fn run(stream: Stream, o: ProducerOptions, mut rx: mpsc::Receiver<Cmd>) {
    let mut s = Sender {
        stream,
        epoch: o.epoch,
        seq: 0,
        o,
    };
    let mut queue: Vec<Bytes> = Vec::new();
    let mut queued_bytes = 0usize;
    let mut in_flight: FuturesOrdered<_> = FuturesOrdered::new();
    let mut flushes: Vec<oneshot::Sender<Result<()>>> = Vec::new();
    let mut failed: Option<String> = None;
    let mut redo: Vec<Bytes> = Vec::new();
    let mut claim: Option<u64> = None;
    let mut open = true;
    loop {
        if failed.is_some() {
            // A failed producer sends nothing more: later sequence numbers
            // would only be gaps. Flushes get the error.
            queue.clear();
            queued_bytes = 0;
        }
        let full = queue.len() >= s.o.max_batch_count || queued_bytes >= s.o.max_batch_bytes;
        let can_send = in_flight.len() < s.o.max_in_flight.max(1) && claim.is_none();
        // Send a batch when it is full, or when nothing more is coming soon.
        if can_send && !queue.is_empty() && (full || !open || !flushes.is_empty()) {
            let take = queue.len().min(s.o.max_batch_count);
            let items: Vec<Bytes> = queue.drain(..take).collect();
            queued_bytes = queue.iter().map(Bytes::len).sum();
            let body = s.body(&items);
            in_flight.push_back(s.launch(body));
            continue;
        }
        if in_flight.is_empty() {
            // A stale epoch with auto-claim: everything unacknowledged goes
            // again under the next epoch, from sequence 0.
            if let Some(current) = claim.take() {
                s.epoch = current.max(s.epoch) + 1;
                s.seq = 0;
                for body in std::mem::take(&mut redo) {
                    in_flight.push_back(s.launch(body));
                }
                continue;
            }
            if queue.is_empty() {
                for f in flushes.drain(..) {
                    let _ = f.send(match &failed {
                        Some(e) => Err(Error::Protocol(e.clone())),
                        None => Ok(()),
                    });
                }
                if !open {
                    return;
                }
            }
        }
        let linger = tokio::time::sleep(s.o.linger);
        tokio::select! {
            cmd = rx.recv(), if open => match cmd {
                Some(Cmd::Item(b)) => {
                    queued_bytes += b.len();
                    queue.push(b);
                }
                Some(Cmd::Flush(f)) => flushes.push(f),
                None => open = false,
            },
            Some((body, r)) = in_flight.next(), if !in_flight.is_empty() => match r {
                Ok(()) => {}
                Err(Error::StaleEpoch { current_epoch }) if s.o.auto_claim => {
                    claim = Some(claim.unwrap_or(0).max(current_epoch.unwrap_or(s.epoch)));
                    redo.push(body);
                }
                Err(e) => {
                    failed.get_or_insert_with(|| e.to_string());
                }
            },
            _ = linger, if !queue.is_empty() && can_send => {
                let items: Vec<Bytes> = queue.drain(..queue.len().min(s.o.max_batch_count)).collect();
                queued_bytes = queue.iter().map(Bytes::len).sum();
                let body = s.body(&items);
                in_flight.push_back(s.launch(body));
            }
        }
    }
}
