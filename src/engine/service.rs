//! The fixed rhythm for one request against one stream: load (with the
//! expiry check of §5.1), decide, persist in one commit, render. Generic over
//! [`Store`], so the Durable Object runs it on SQLite and host tests run the
//! very same code on [`super::store::MemStore`].

use super::append::{self, AppendInput};
use super::config::Config;
use super::create::{self, CreateInput};
use super::decision::Decision;
use super::failure::{Failure, StoreResult};
use super::live::{self, LongPoll, PollStep, SseState};
use super::read;
use super::request::{Method, Request};
use super::response::Response;
use super::state::StreamMeta;
use super::store::{Commit, Store};
use crate::protocol::error::ProtocolError;
use crate::protocol::headers as h;
use crate::protocol::offset::{Offset, OffsetParam};
use crate::protocol::query::{Live, ReadQuery};

/// Per-request values from outside the engine.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The object's clock, in ms since the Unix epoch.
    pub now_ms: u64,
    /// The id a stream created by this request gets (unique per creation).
    pub new_stream_id: &'a str,
    pub config: &'a Config,
    /// A random value (cursor jitter, §10.1).
    pub random: u64,
}

/// What the adapter does with a request.
#[derive(Debug)]
pub enum Action {
    /// Send this response.
    Respond(Response),
    /// Park a long-poll until the stream changes or its deadline passes,
    /// then call [`resume_long_poll`].
    LongPoll(LongPoll),
    /// Send `head`, then stream [`sse_next`]'s events.
    Sse { head: Response, state: SseState },
}

/// An action, plus the effects the adapter owes.
#[derive(Debug)]
pub struct Outcome {
    pub action: Action,
    /// The expiry deadline the object's alarm must cover.
    pub alarm: Option<u64>,
    /// The stream's data, closure or existence changed: wake parked readers.
    pub notify: bool,
}

impl Outcome {
    fn respond(response: Response) -> Outcome {
        Outcome {
            action: Action::Respond(response),
            alarm: None,
            notify: false,
        }
    }
}

/// The stream's metadata, or `None` when absent or expired. An expired
/// stream's storage is freed on the spot, so a re-create starts clean.
pub fn current_meta<S: Store>(store: &S, now_ms: u64) -> Result<Option<StreamMeta>, S::Error> {
    match store.meta()? {
        Some(m) if m.is_expired(now_ms) => {
            store.commit(Commit::Delete)?;
            Ok(None)
        }
        other => Ok(other),
    }
}

/// Handles one request for the stream behind `store`.
pub fn handle<S: Store>(store: &S, req: &Request, ctx: &Ctx) -> Result<Outcome, S::Error> {
    match dispatch(store, req, ctx) {
        Ok(mut o) => {
            o.action = match o.action {
                Action::Respond(r) => Action::Respond(r.finish()),
                Action::Sse { head, state } => Action::Sse {
                    head: head.finish(),
                    state,
                },
                wait @ Action::LongPoll(_) => wait,
            };
            Ok(o)
        }
        Err(Failure::Protocol(e)) => Ok(Outcome::respond(Response::error(&e))),
        Err(Failure::Store(e)) => Err(e),
    }
}

fn dispatch<S: Store>(store: &S, req: &Request, ctx: &Ctx) -> Result<Outcome, Failure<S::Error>> {
    match req.method {
        Method::Options => Ok(Outcome::respond(Response::preflight())),
        Method::Put => put(store, req, ctx),
        Method::Post => post(store, req, ctx),
        Method::Get => get(store, req, ctx),
        Method::Head => {
            let meta = current_meta(store, ctx.now_ms)
                .store()?
                .ok_or(ProtocolError::NotFound)?;
            Ok(Outcome::respond(read::head(&meta)))
        }
        Method::Delete => {
            current_meta(store, ctx.now_ms)
                .store()?
                .ok_or(ProtocolError::NotFound)?;
            store.commit(Commit::Delete).store()?;
            let mut o = Outcome::respond(Response::new(204));
            o.notify = true;
            Ok(o)
        }
        Method::Other => Err(ProtocolError::MethodNotAllowed.into()),
    }
}

fn put<S: Store>(store: &S, req: &Request, ctx: &Ctx) -> Result<Outcome, Failure<S::Error>> {
    let input = CreateInput::parse(req, ctx)?;
    let existing = current_meta(store, ctx.now_ms).store()?;
    let decision = create::decide(existing.as_ref(), input, &req.url, ctx)?;
    let alarm = match decision.commit.as_deref() {
        Some(Commit::Create { meta, .. }) => meta.deadline(),
        _ => None,
    };
    apply(store, decision, alarm)
}

fn post<S: Store>(store: &S, req: &Request, ctx: &Ctx) -> Result<Outcome, Failure<S::Error>> {
    let input = AppendInput::parse(req, ctx)?;
    let meta = current_meta(store, ctx.now_ms)
        .store()?
        .ok_or(ProtocolError::NotFound)?;
    let producer_state = match &input.producer {
        Some(p) => store.producer(&p.id).store()?,
        None => None,
    };
    let decision = append::decide(&meta, producer_state, input, ctx)?;
    apply(store, decision, None)
}

/// Persists a decision's commit, then hands back its response.
fn apply<S: Store>(
    store: &S,
    decision: Decision,
    alarm: Option<u64>,
) -> Result<Outcome, Failure<S::Error>> {
    let notify = decision.commit.is_some();
    if let Some(commit) = decision.commit {
        store.commit(*commit).store()?;
    }
    Ok(Outcome {
        action: Action::Respond(decision.response),
        alarm,
        notify,
    })
}

/// Renews a sliding TTL on a read (§5.1: reads and writes reset it; for live
/// reads, when the server begins processing and again after waits).
pub fn touch<S: Store>(store: &S, meta: &StreamMeta, now_ms: u64) -> Result<(), Failure<S::Error>> {
    if meta.slides() && meta.last_access_ms != now_ms {
        let mut next = meta.clone();
        next.last_access_ms = now_ms;
        store
            .commit(Commit::Append {
                meta: next,
                chunks: Vec::new(),
                producer: None,
            })
            .store()?;
    }
    Ok(())
}

fn get<S: Store>(store: &S, req: &Request, ctx: &Ctx) -> Result<Outcome, Failure<S::Error>> {
    let meta = current_meta(store, ctx.now_ms)
        .store()?
        .ok_or(ProtocolError::NotFound)?;
    let query = ReadQuery::parse(&req.query)?;
    touch(store, &meta, ctx.now_ms)?;
    let param = query.offset.unwrap_or(OffsetParam::Start);
    let action = match query.live {
        Live::CatchUp => Action::Respond(match param {
            OffsetParam::Now => read::at_now(&meta),
            OffsetParam::Start => read::catch_up(
                store,
                &meta,
                Offset::ZERO,
                req.header(h::IF_NONE_MATCH),
                ctx.config.max_read_chunk_bytes,
            )?,
            OffsetParam::At(o) => read::catch_up(
                store,
                &meta,
                o,
                req.header(h::IF_NONE_MATCH),
                ctx.config.max_read_chunk_bytes,
            )?,
        }),
        Live::LongPoll => {
            let wait = LongPoll {
                offset: live::start_offset(&meta, param)?,
                deadline: ctx.now_ms.saturating_add(ctx.config.long_poll_timeout_ms),
                cursor: query.cursor,
                from_start: param == OffsetParam::Start,
            };
            match live::poll(store, Some(&meta), wait, ctx)? {
                PollStep::Respond(r) => Action::Respond(r),
                PollStep::Wait(w) => Action::LongPoll(w),
            }
        }
        Live::Sse => {
            let offset = live::start_offset(&meta, param)?;
            read::check_start(store, &meta, offset)?;
            Action::Sse {
                head: live::sse_head(&meta),
                state: SseState {
                    offset,
                    cursor: query.cursor,
                    started: false,
                },
            }
        }
    };
    Ok(Outcome {
        action,
        alarm: None,
        notify: false,
    })
}

/// A parked long-poll's next step: a response (finished), or wait again.
pub fn resume_long_poll<S: Store>(
    store: &S,
    wait: LongPoll,
    ctx: &Ctx,
) -> Result<Action, S::Error> {
    match live::resume_poll(store, wait, ctx) {
        Ok(PollStep::Respond(r)) => Ok(Action::Respond(r.finish())),
        Ok(PollStep::Wait(w)) => Ok(Action::LongPoll(w)),
        Err(Failure::Protocol(e)) => Ok(Action::Respond(Response::error(&e))),
        Err(Failure::Store(e)) => Err(e),
    }
}

/// The next events of an SSE connection (see [`live::sse_step`]).
pub fn sse_next<S: Store>(
    store: &S,
    state: &mut SseState,
    ctx: &Ctx,
    keepalive: bool,
) -> Result<live::SseStep, S::Error> {
    live::sse_step(store, state, ctx, keepalive)
}

/// The object's alarm: frees an expired stream, or says when to look again.
pub fn on_alarm<S: Store>(store: &S, now_ms: u64) -> Result<Option<u64>, S::Error> {
    Ok(current_meta(store, now_ms)?.and_then(|m| m.deadline()))
}
