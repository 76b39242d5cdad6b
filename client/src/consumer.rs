//! A resuming reader (PROTOCOL.md §5.6–§5.8): catch-up from an offset, then
//! live by long-poll or SSE, as a `futures::Stream` of batches, each with
//! the offset to resume from. Network errors, 5xx and 429 reconnect from
//! the last offset with exponential backoff and jitter (honouring
//! `Retry-After`); the stream ends after the batch that reaches a closed
//! stream's end. Any other error is yielded once and ends it.

use crate::error::{Error, Result};
use crate::sse::{Event, Parser};
use crate::stream::{Batch, Stream};
use bytes::Bytes;
use futures_util::stream::{self, Stream as FuturesStream};
use futures_util::StreamExt;
use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

/// How a consumer waits at the tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Live {
    LongPoll,
    Sse,
    /// Stop once up to date (a catch-up read only).
    No,
}

/// Reconnection delays: `initial`, doubling up to `max`, each with up to
/// 20 % jitter either way.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    /// Give up after this many failures in a row (`None`: never).
    pub max_retries: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            max_retries: None,
        }
    }
}

impl Backoff {
    /// The delay before retry number `n` (from 0).
    pub fn delay(&self, n: u32) -> Duration {
        let base = self.initial.saturating_mul(1u32 << n.min(16)).min(self.max);
        let jitter = 0.8 + fastrand::f64() * 0.4;
        base.mul_f64(jitter)
    }
}

/// A reader of one stream from an offset.
#[derive(Clone, Debug)]
pub struct Consumer {
    stream: Stream,
    offset: String,
    live: Live,
    backoff: Backoff,
}

struct State {
    c: Consumer,
    cursor: Option<String>,
    caught_up: bool,
    failures: u32,
    queue: VecDeque<Batch>,
    done: bool,
    sse: Option<SseConn>,
}

impl Consumer {
    /// Reads `stream` from `offset` (`stream::START` for the beginning).
    pub fn new(stream: Stream, offset: &str) -> Consumer {
        Consumer {
            stream,
            offset: offset.to_string(),
            live: Live::LongPoll,
            backoff: Backoff::default(),
        }
    }

    pub fn live(mut self, live: Live) -> Consumer {
        self.live = live;
        self
    }

    pub fn backoff(mut self, backoff: Backoff) -> Consumer {
        self.backoff = backoff;
        self
    }

    /// The batches, in order. Each batch's `next_offset` is where to resume.
    pub fn batches(self) -> impl FuturesStream<Item = Result<Batch>> {
        let state = State {
            c: self,
            cursor: None,
            caught_up: false,
            failures: 0,
            queue: VecDeque::new(),
            done: false,
            sse: None,
        };
        stream::unfold(state, |mut s| async move {
            loop {
                if let Some(b) = s.queue.pop_front() {
                    s.c.offset.clone_from(&b.next_offset);
                    if b.closed || (s.c.live == Live::No && b.up_to_date) {
                        s.done = true;
                    }
                    return Some((Ok(b), s));
                }
                if s.done {
                    return None;
                }
                match s.step().await {
                    Ok(()) => s.failures = 0,
                    Err(e) if e.retryable() && s.retry_allowed() => {
                        let wait = e
                            .retry_after()
                            .unwrap_or_else(|| s.c.backoff.delay(s.failures));
                        s.failures += 1;
                        tokio::time::sleep(wait).await;
                    }
                    Err(e) => {
                        s.done = true;
                        return Some((Err(e), s));
                    }
                }
            }
        })
    }
}

impl State {
    fn retry_allowed(&self) -> bool {
        self.c.backoff.max_retries.is_none_or(|m| self.failures < m)
    }

    /// One request's worth of batches into the queue.
    async fn step(&mut self) -> Result<()> {
        if !self.caught_up || self.c.live == Live::No {
            let b = self.c.stream.read(&self.c.offset).await?;
            self.caught_up = b.up_to_date;
            if !b.data.is_empty() || b.up_to_date || b.closed {
                self.queue.push_back(b);
            } else {
                self.c.offset = b.next_offset;
            }
            return Ok(());
        }
        match self.c.live {
            Live::LongPoll => {
                let b = self
                    .c
                    .stream
                    .long_poll(&self.c.offset, self.cursor.as_deref())
                    .await?;
                self.cursor.clone_from(&b.cursor);
                if b.data.is_empty() && !b.closed {
                    // A timeout at the tail: wait again.
                    self.c.offset = b.next_offset;
                } else {
                    self.queue.push_back(b);
                }
                Ok(())
            }
            Live::Sse => self.sse().await,
            Live::No => Ok(()),
        }
    }

    /// Reads the open SSE connection (opening one at the last offset if
    /// none is) until batches arrive or the server ends it (the next step
    /// reopens it from the last offset).
    async fn sse(&mut self) -> Result<()> {
        if self.sse.is_none() {
            self.sse = Some(open_sse(self.c.stream.clone(), self.c.offset.clone()).await?);
        }
        let Some(conn) = self.sse.as_mut() else {
            return Ok(());
        };
        while let Some(chunk) = conn.body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    self.sse = None;
                    return Err(e.into());
                }
            };
            let events = match conn.parser.feed(&chunk) {
                Ok(e) => e,
                Err(e) => {
                    self.sse = None;
                    return Err(Error::Protocol(e));
                }
            };
            for e in events {
                match e {
                    Event::Data(d) => conn.pending.extend_from_slice(&d),
                    Event::Control {
                        next_offset,
                        cursor,
                        up_to_date,
                        closed,
                    } => {
                        let batch = Batch {
                            data: Bytes::from(std::mem::take(&mut conn.pending)),
                            next_offset,
                            up_to_date,
                            closed,
                            cursor,
                        };
                        if batch.data.is_empty() && !batch.closed {
                            self.c.offset = batch.next_offset;
                        } else {
                            self.queue.push_back(batch);
                        }
                    }
                }
            }
            if !self.queue.is_empty() {
                return Ok(());
            }
        }
        self.sse = None;
        Ok(())
    }
}

/// Opens an SSE response at `offset` (a free function: the consumer's
/// future must not hold a shared borrow of its state across the request).
async fn open_sse(stream: Stream, offset: String) -> Result<SseConn> {
    let mut url = reqwest::Url::parse(stream.url())
        .map_err(|e| Error::BadRequest(format!("bad stream URL: {e}")))?;
    url.query_pairs_mut()
        .append_pair("offset", &offset)
        .append_pair("live", "sse");
    let r = stream
        .request(reqwest::Method::GET, url.as_str())
        .send()
        .await?;
    if r.status().as_u16() != 200 {
        return Err(crate::error::from_response(r).await);
    }
    let base64 = r
        .headers()
        .get("stream-sse-data-encoding")
        .and_then(|v| v.to_str().ok())
        == Some("base64");
    Ok(SseConn {
        parser: Parser::new(base64),
        body: Box::pin(r.bytes_stream()),
        pending: Vec::new(),
    })
}

/// An open SSE response.
struct SseConn {
    parser: Parser,
    body: Pin<Box<dyn FuturesStream<Item = reqwest::Result<Bytes>> + Send>>,
    /// Data events not yet followed by their control event.
    pending: Vec<u8>,
}
