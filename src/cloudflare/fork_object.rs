//! A stream object's two roles in the fork protocol of [`super::forks`]:
//! creating a fork (the fork's side: intent, acquire, commit or give up)
//! and serving one (the source's side: acquire, chunks, release).

use super::convert;
use super::faults::Fault;
use super::forks::{self, Refused};
use super::shared::{now_ms, Shared, Step};
use crate::engine::fork::{Acquire, Need};
use crate::engine::fork_create;
use crate::engine::outcome::Action;
use crate::engine::request::Request as NeutralRequest;
use crate::engine::response::Response as Neutral;
use crate::engine::source;
use crate::engine::state::Chunk;
use crate::engine::store::{Commit, Store};
use crate::engine::wire;
use crate::protocol::error::{Invalid, ProtocolError};
use std::time::Duration;
use worker::{Request, Response, Result};

impl Shared {
    /// Creates a fork of `source` (the fork's side of the protocol).
    pub async fn create_fork(
        &self,
        request: &NeutralRequest,
        source: &str,
        acquire: Acquire,
    ) -> Result<Response> {
        let due = now_ms().saturating_add(self.config.fork_grace_ms);
        self.store
            .commit(fork_create::fork_intent(source, &acquire.fork_id, due))?;
        self.store.take_outbox_dirty();
        self.arm_or_remember(due).await;
        let acquired = match forks::acquire(&self.env, source, &acquire).await {
            Ok(a) => a,
            Err(Ok(Refused(r))) => {
                self.store.commit(Commit::Settle {
                    fork_id: acquire.fork_id,
                })?;
                return convert::render(r);
            }
            Err(Err(e)) => {
                worker::console_error!("fork acquire at {source}: {e}");
                fork_create::abandon_fork(&self.store, source, &acquire.fork_id, now_ms())?;
                self.effects(false, None).await;
                return convert::render_error(&ProtocolError::Unavailable);
            }
        };
        match self.faults.get() {
            Some(Fault::AfterAcquire) => {
                self.faults.arm(None);
                return convert::render(Neutral::new(500).finish());
            }
            Some(Fault::SlowFork(ms)) => {
                worker::Delay::from(Duration::from_millis(ms)).await;
            }
            _ => {}
        }
        let ctx = self.ctx(now_ms(), &acquire.fork_id);
        let (outcome, committed) = fork_create::finish_fork(&self.store, request, &ctx, &acquired)?;
        if !committed {
            fork_create::abandon_fork(&self.store, source, &acquire.fork_id, now_ms())?;
        }
        self.effects(outcome.notify || committed, outcome.alarm)
            .await;
        match outcome.action {
            Action::Respond(r) => convert::render(r),
            _ => convert::render_error(&ProtocolError::Unavailable),
        }
    }

    /// The source's side of the protocol: `/__internal/*` from a fork.
    pub async fn serve_fork(&self, req: &Request, request: &NeutralRequest) -> Result<Response> {
        let path = req.path();
        let url = req.url()?;
        let query = |k: &str| {
            url.query_pairs()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.into_owned())
        };
        let mut inherited: Vec<Chunk> = Vec::new();
        let answer = match path.as_str() {
            forks::ACQUIRE => match wire::decode_acquire(&request.body) {
                Some(a) => {
                    self.with_inherited(&mut inherited, |inherited| {
                        let ctx = self.ctx(now_ms(), "");
                        Ok(step(source::acquire(&self.store, &a, &ctx, inherited)?))
                    })
                    .await?
                }
                None => Err(Neutral::error(&Invalid::Body.into())),
            },
            forks::CHUNKS => {
                let num = |k: &str| query(k).and_then(|v| v.parse::<u64>().ok());
                match (num("from"), num("to"), query("id")) {
                    (Some(from), Some(to), Some(source_id)) => {
                        let want = Need {
                            source: String::new(),
                            source_id,
                            from,
                            to,
                        };
                        self.with_inherited(&mut inherited, |inherited| {
                            let ctx = self.ctx(now_ms(), "");
                            Ok(step(source::chunks(&self.store, &want, &ctx, inherited)?))
                        })
                        .await?
                    }
                    _ => Err(Neutral::error(&Invalid::Offset.into())),
                }
            }
            forks::RELEASE => match wire::decode_release(&request.body) {
                Some(fork_id) => {
                    let ctx = self.ctx(now_ms(), "");
                    let r = source::release(&self.store, &fork_id, &ctx)?;
                    self.effects(true, None).await;
                    Ok(r)
                }
                None => Err(Neutral::error(&Invalid::Body.into())),
            },
            _ => Err(Neutral::error(&ProtocolError::NotFound)),
        };
        convert::render(answer.unwrap_or_else(|r| r))
    }
}

/// An engine answer on the source's side as a step of [`Shared::with_inherited`].
fn step(action: Action) -> Step<Neutral> {
    match action {
        Action::NeedInherited(n) => Step::Need(n),
        Action::Respond(r) => Step::Done(r),
        _ => Step::Done(Neutral::error(&ProtocolError::Unavailable)),
    }
}
