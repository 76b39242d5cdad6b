//! An SSE connection's body (PROTOCOL.md §5.8): events from the engine,
//! parked between them, with keep-alive control events and a bounded
//! lifetime. The pump outlives the request that opened it, so it holds the
//! object's [`Shared`] state, never the object itself.

use super::convert;
use super::live::{ReaderGuard, Woke};
use super::shared::{now_ms, Shared, Step};
use crate::engine::live::{SseState, SseStep};
use crate::engine::response::Response as Neutral;
use crate::engine::resume;
use crate::engine::state::Chunk;
use futures_util::stream;
use std::rc::Rc;
use worker::{Response, Result};

struct SsePump {
    shared: Rc<Shared>,
    state: SseState,
    /// A fork's inherited chunks for the range the reader is in; emptied
    /// once the reader has passed them.
    inherited: Vec<Chunk>,
    closes_at: u64,
    done: bool,
    _guard: ReaderGuard,
}

impl SsePump {
    /// The next bytes to send, or `None` to end the connection.
    async fn next_chunk(&mut self) -> Option<Result<Vec<u8>>> {
        let mut keepalive = false;
        loop {
            let now = now_ms();
            if self.done || now >= self.closes_at {
                return None;
            }
            let shared = Rc::clone(&self.shared);
            let state = &mut self.state;
            let step = shared
                .with_inherited(&mut self.inherited, |inherited| {
                    let ctx = shared.ctx(now, "");
                    Ok(
                        match resume::sse_next(&shared.store, state, &ctx, keepalive, inherited)? {
                            SseStep::NeedInherited(n) => Step::Need(n),
                            other => Step::Done(other),
                        },
                    )
                })
                .await;
            // Drop inherited chunks the reader has passed.
            let offset = self.state.offset.position();
            self.inherited.retain(|c| c.end() > offset);
            match step {
                Err(e) => {
                    worker::console_error!("sse: {e}");
                    return None;
                }
                // The source refused or its chunks never came: end here; the
                // client reconnects from the last offset it saw.
                Ok(Err(_)) | Ok(Ok(SseStep::End)) | Ok(Ok(SseStep::NeedInherited(_))) => {
                    return None
                }
                Ok(Ok(SseStep::Emit { bytes, last })) => {
                    self.done = last;
                    return Some(Ok(bytes));
                }
                Ok(Ok(SseStep::Wait)) => {
                    let parked = self.shared.live.park();
                    let keepalive_ms = self.shared.config.sse_keepalive_ms;
                    let until = now.saturating_add(keepalive_ms).min(self.closes_at);
                    keepalive = parked.until(now, until).await == Woke::Timeout;
                }
            }
        }
    }
}

/// The SSE response: `head`, then the pump's events.
pub fn respond(shared: &Rc<Shared>, head: Neutral, state: SseState) -> Result<Response> {
    let pump = SsePump {
        shared: Rc::clone(shared),
        closes_at: now_ms().saturating_add(shared.config.sse_max_lifetime_ms),
        state,
        inherited: Vec::new(),
        done: false,
        _guard: shared.live.sse_guard(),
    };
    let body = stream::unfold(pump, |mut pump| async move {
        let chunk = pump.next_chunk().await?;
        Some((chunk, pump))
    });
    convert::render_stream(head, body)
}
