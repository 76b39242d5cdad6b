//! The fixed rhythm for one request against one stream: load (with the
//! expiry check of §5.1), decide, persist in one commit, render. Generic over
//! [`Store`], so the Durable Object runs it on SQLite and host tests run the
//! very same code on [`super::store::MemStore`].
//!
//! A fork's reads may need chunks of its source's range: the service then
//! answers [`Action::NeedInherited`]; the adapter fetches them and calls
//! again with them. A new fork answers [`Action::Fork`]: the adapter asks the
//! source, then calls [`finish_fork`].

use super::append::{self, AppendInput};
use super::config::Config;
use super::create::{self, CreateInput};
use super::decision::Decision;
use super::failure::{Failure, StoreResult};
use super::fork::{self, reading, Acquire, Acquired};
use super::live::{self, LongPoll, PollStep, SseState, SseStep};
use super::read;
use super::request::{Method, Request};
use super::response::Response;
use super::state::{Chunk, StreamMeta};
use super::store::{Commit, Outgoing, OutgoingKind, Store};
use crate::protocol::error::ProtocolError;
use crate::protocol::headers as h;
use crate::protocol::offset::{Offset, OffsetParam};
use crate::protocol::path::StreamPath;
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
    /// Fetch the source's chunks of `[from, to)` and call again with them.
    NeedInherited { source: String, from: u64, to: u64 },
    /// Ask the source (`acquire.fork_path`'s source) for a reference, then
    /// call [`finish_fork`] with its answer.
    Fork { source: String, acquire: Acquire },
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
    fn act(action: Action) -> Outcome {
        Outcome {
            action,
            alarm: None,
            notify: false,
        }
    }

    fn respond(response: Response) -> Outcome {
        Outcome::act(Action::Respond(response))
    }
}

/// The stream's metadata, or `None` when absent or expired. An expired
/// stream is retired on the spot (soft-deleted while forks reference it,
/// else dropped), so a re-create starts clean.
pub fn current_meta<S: Store>(store: &S, now_ms: u64) -> Result<Option<StreamMeta>, S::Error> {
    match store.meta()? {
        Some(m) if !m.soft_deleted && m.is_expired(now_ms) => {
            let commit = fork::retire(&m, store.refs()?, now_ms);
            let kept = match &commit {
                Commit::SoftDelete { meta } => Some(meta.clone()),
                _ => None,
            };
            store.commit(commit)?;
            Ok(kept)
        }
        other => Ok(other),
    }
}

/// The stream a client may use: 404 when absent, 410 when soft-deleted.
fn public_meta<S: Store>(store: &S, now_ms: u64) -> Result<StreamMeta, Failure<S::Error>> {
    let meta = current_meta(store, now_ms)
        .store()?
        .ok_or(ProtocolError::NotFound)?;
    if meta.soft_deleted {
        return Err(ProtocolError::Gone.into());
    }
    Ok(meta)
}

/// Renders an outcome's responses with the common headers, and protocol
/// errors as error responses.
fn render<E>(result: Result<Outcome, Failure<E>>) -> Result<Outcome, E> {
    match result {
        Ok(mut o) => {
            o.action = match o.action {
                Action::Respond(r) => Action::Respond(r.finish()),
                Action::Sse { head, state } => Action::Sse {
                    head: head.finish(),
                    state,
                },
                other => other,
            };
            Ok(o)
        }
        Err(Failure::Protocol(e)) => Ok(Outcome::respond(Response::error(&e))),
        Err(Failure::Store(e)) => Err(e),
    }
}

/// Handles one client request for the stream behind `store`. `inherited`
/// holds source chunks fetched after an [`Action::NeedInherited`] (else empty).
pub fn handle<S: Store>(
    store: &S,
    req: &Request,
    ctx: &Ctx,
    inherited: &[Chunk],
) -> Result<Outcome, S::Error> {
    render(dispatch(store, req, ctx, inherited))
}

fn dispatch<S: Store>(
    store: &S,
    req: &Request,
    ctx: &Ctx,
    inherited: &[Chunk],
) -> Result<Outcome, Failure<S::Error>> {
    match req.method {
        Method::Options => Ok(Outcome::respond(Response::preflight())),
        Method::Put => put(store, req, ctx),
        Method::Post => post(store, req, ctx),
        Method::Get => get(store, req, ctx, inherited),
        Method::Head => Ok(Outcome::respond(read::head(&public_meta(
            store, ctx.now_ms,
        )?))),
        Method::Delete => {
            let meta = public_meta(store, ctx.now_ms)?;
            store
                .commit(fork::retire(&meta, store.refs().store()?, ctx.now_ms))
                .store()?;
            let mut o = Outcome::respond(Response::new(204));
            o.notify = true;
            Ok(o)
        }
        Method::Other => Err(ProtocolError::MethodNotAllowed.into()),
    }
}

fn put<S: Store>(store: &S, req: &Request, ctx: &Ctx) -> Result<Outcome, Failure<S::Error>> {
    let input = CreateInput::parse(req, ctx)?;
    if let Some(existing) = current_meta(store, ctx.now_ms).store()? {
        return apply(store, create::confirm(&existing, &input)?, None);
    }
    if let Some(f) = &input.fork {
        let fork_path = StreamPath::from_url_path(url_path(&req.url))?
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        let acquire = Acquire {
            fork_path,
            fork_id: ctx.new_stream_id.to_string(),
            offset: f.offset,
            sub_offset: f.sub_offset,
            content_type: input.content_type.clone(),
        };
        return Ok(Outcome::act(Action::Fork {
            source: f.source.as_str().to_string(),
            acquire,
        }));
    }
    let generation = create::next_generation(store.last_generation().store()?, ctx.now_ms);
    let decision = create::create_plain(&input, generation, &req.url, ctx)?;
    let alarm = created_deadline(&decision);
    apply(store, decision, alarm)
}

fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or("/", |i| rest.get(i..).unwrap_or("/"))
}

fn created_deadline(decision: &Decision) -> Option<u64> {
    match decision.commit.as_deref() {
        Some(Commit::Create { meta, .. }) => meta.deadline(),
        _ => None,
    }
}

/// The creation intent a fork records before asking its source: released at
/// the source by the alarm unless the fork commits first.
pub fn fork_intent(source: &str, fork_id: &str, due_ms: u64) -> Commit {
    Commit::Send(Outgoing {
        fork_id: fork_id.to_string(),
        source: source.to_string(),
        kind: OutgoingKind::Intent,
        due_ms,
    })
}

/// Completes a fork once the source has recorded its reference. Returns the
/// outcome and whether the fork was committed; when it was not, the adapter
/// must release the reference (see [`abandon_fork`]).
pub fn finish_fork<S: Store>(
    store: &S,
    req: &Request,
    ctx: &Ctx,
    acquired: &Acquired,
) -> Result<(Outcome, bool), S::Error> {
    let result = (|| -> Result<(Outcome, bool), Failure<S::Error>> {
        let input = CreateInput::parse(req, ctx)?;
        if let Some(existing) = current_meta(store, ctx.now_ms).store()? {
            // Another PUT created the stream while we asked the source.
            return Ok((
                apply(store, create::confirm(&existing, &input)?, None)?,
                false,
            ));
        }
        let still_pending = store
            .outbox()
            .store()?
            .iter()
            .any(|o| o.fork_id == ctx.new_stream_id && o.kind == OutgoingKind::Intent);
        if !still_pending {
            // The alarm gave up on this creation and released the reference.
            return Err(ProtocolError::Unavailable.into());
        }
        let generation = create::next_generation(store.last_generation().store()?, ctx.now_ms);
        let decision = create::finish_fork(&input, acquired, generation, &req.url, ctx)?;
        let alarm = created_deadline(&decision);
        Ok((apply(store, decision, alarm)?, true))
    })();
    match result {
        Ok((o, committed)) => Ok((render(Ok(o))?, committed)),
        Err(e) => Ok((render(Err(e))?, false)),
    }
}

/// A fork creation that will not commit: turn its intent into a release due
/// now, so the source's reference is dropped.
pub fn abandon_fork<S: Store>(
    store: &S,
    source: &str,
    fork_id: &str,
    now_ms: u64,
) -> Result<(), S::Error> {
    store.commit(Commit::Send(Outgoing {
        fork_id: fork_id.to_string(),
        source: source.to_string(),
        kind: OutgoingKind::Release,
        due_ms: now_ms,
    }))
}

fn post<S: Store>(store: &S, req: &Request, ctx: &Ctx) -> Result<Outcome, Failure<S::Error>> {
    let input = AppendInput::parse(req, ctx)?;
    let meta = public_meta(store, ctx.now_ms)?;
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

/// `Some(NeedInherited)` when a read of `meta` from `from` needs source
/// chunks that `inherited` does not hold.
fn need(meta: &StreamMeta, from: Offset, inherited: &[Chunk]) -> Option<Action> {
    let (from, to) = fork::missing(meta, from, inherited)?;
    let source = meta.fork.as_ref()?.source.clone();
    Some(Action::NeedInherited { source, from, to })
}

fn get<S: Store>(
    store: &S,
    req: &Request,
    ctx: &Ctx,
    inherited: &[Chunk],
) -> Result<Outcome, Failure<S::Error>> {
    let meta = public_meta(store, ctx.now_ms)?;
    let query = ReadQuery::parse(&req.query)?;
    let param = query.offset.unwrap_or(OffsetParam::Start);
    let start = live::start_offset(&meta, param)?;
    if let Some(action) = need(&meta, start, inherited) {
        return Ok(Outcome::act(action));
    }
    touch(store, &meta, ctx.now_ms)?;
    let view = reading(store, &meta, inherited);
    let cap = ctx.config.max_read_chunk_bytes;
    let pinned = matches!(param, OffsetParam::At(w) if w.generation == meta.generation);
    let action = match query.live {
        Live::CatchUp => Action::Respond(match param {
            OffsetParam::Now => read::at_now(&meta),
            _ => read::catch_up(
                &view,
                &meta,
                start,
                pinned,
                req.header(h::IF_NONE_MATCH),
                cap,
            )?,
        }),
        Live::LongPoll => {
            let wait = LongPoll {
                offset: start,
                deadline: ctx.now_ms.saturating_add(ctx.config.long_poll_timeout_ms),
                cursor: query.cursor,
                from_start: param == OffsetParam::Start,
                pinned,
            };
            match live::poll(&view, Some(&meta), wait, ctx)? {
                PollStep::Respond(r) => Action::Respond(r),
                PollStep::Wait(w) => Action::LongPoll(w),
            }
        }
        Live::Sse => {
            read::check_start(&view, &meta, start)?;
            Action::Sse {
                head: live::sse_head(&meta),
                state: SseState {
                    offset: start,
                    cursor: query.cursor,
                    started: false,
                },
            }
        }
    };
    Ok(Outcome::act(action))
}

/// A parked long-poll's next step: a response (finished), wait again, or
/// fetch inherited chunks first.
pub fn resume_long_poll<S: Store>(
    store: &S,
    wait: LongPoll,
    ctx: &Ctx,
    inherited: &[Chunk],
) -> Result<Action, S::Error> {
    let meta = current_meta(store, ctx.now_ms)?.filter(|m| !m.soft_deleted);
    if let Some(m) = &meta {
        if let Some(action) = need(m, wait.offset, inherited) {
            return Ok(action);
        }
    }
    let result = match &meta {
        Some(m) => touch(store, m, ctx.now_ms)
            .and_then(|()| live::poll(&reading(store, m, inherited), meta.as_ref(), wait, ctx)),
        None => live::poll(store, None, wait, ctx),
    };
    match result {
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
    inherited: &[Chunk],
) -> Result<SseStep, S::Error> {
    let Some(meta) = current_meta(store, ctx.now_ms)?.filter(|m| !m.soft_deleted) else {
        return Ok(SseStep::End);
    };
    if state.offset < meta.tail {
        if let Some(Action::NeedInherited { source, from, to }) =
            need(&meta, state.offset, inherited)
        {
            return Ok(SseStep::NeedInherited { source, from, to });
        }
    }
    live::sse_step(&reading(store, &meta, inherited), state, ctx, keepalive)
}

// ---------------------------------------------------------------------------
// The source's side of the fork protocol (internal requests).

/// An acquire from a fork (§4.2 creation): validate, resolve the point, and
/// record the reference; or ask for inherited chunks to resolve a sub-offset.
pub fn acquire<S: Store>(
    store: &S,
    req: &Acquire,
    ctx: &Ctx,
    inherited: &[Chunk],
) -> Result<Action, S::Error> {
    let meta = current_meta(store, ctx.now_ms)?;
    let mut chunks = Vec::new();
    if let (Some(m), true) = (&meta, req.sub_offset > 0) {
        // An offset the source never issued is refused by `fork::acquire`.
        let offset = match req.offset {
            None => m.tail,
            Some(w) => m.resolve(w).unwrap_or(m.tail),
        };
        if offset < m.tail && !m.soft_deleted {
            if let Some(action) = need(m, offset, inherited) {
                return Ok(action);
            }
            chunks = fork::slice_chunks(
                &reading(store, m, inherited),
                m,
                offset.position(),
                m.tail.position(),
                u64::MAX,
            )?;
        }
    }
    match fork::acquire(meta.as_ref(), req, &chunks) {
        Ok((acquired, commit)) => {
            store.commit(commit)?;
            let r = Response::new(200)
                .header(h::CONTENT_TYPE, "application/json")
                .body(super::wire::encode_acquired(&acquired));
            Ok(Action::Respond(r))
        }
        Err(e) => Ok(Action::Respond(Response::error(&e))),
    }
}

/// Chunks of `[from, to)` for a fork's read (soft-deleted streams still
/// serve them), or a request for this stream's own inherited chunks.
pub fn chunks<S: Store>(
    store: &S,
    from: u64,
    to: u64,
    ctx: &Ctx,
    inherited: &[Chunk],
) -> Result<Action, S::Error> {
    let Some(meta) = current_meta(store, ctx.now_ms)? else {
        return Ok(Action::Respond(Response::error(&ProtocolError::Gone)));
    };
    let Some(start) = Offset::new(from).filter(|o| *o <= meta.tail) else {
        return Ok(Action::Respond(Response::error(
            &crate::protocol::error::Invalid::Offset.into(),
        )));
    };
    if let Some(action) = need(&meta, start, inherited) {
        return Ok(action);
    }
    let cap = ctx.config.max_read_chunk_bytes;
    let found = fork::slice_chunks(&reading(store, &meta, inherited), &meta, from, to, cap)?;
    Ok(Action::Respond(
        Response::new(200).body(super::wire::encode_chunks(&found)),
    ))
}

/// A fork's release of its reference (idempotent). A soft-deleted stream
/// whose last reference goes is dropped, and releases its own reference at
/// its source in turn (the cascade of §4.2).
pub fn release<S: Store>(store: &S, fork_id: &str, ctx: &Ctx) -> Result<Response, S::Error> {
    store.commit(Commit::RemoveRef {
        fork_id: fork_id.to_string(),
    })?;
    if let Some(meta) = store.meta()? {
        if meta.soft_deleted && store.refs()? == 0 {
            store.commit(fork::retire(&meta, 0, ctx.now_ms))?;
        }
    }
    Ok(Response::new(204))
}

/// The object's alarm: retires an expired stream, or says when to look again.
pub fn on_alarm<S: Store>(store: &S, now_ms: u64) -> Result<Option<u64>, S::Error> {
    Ok(current_meta(store, now_ms)?
        .filter(|m| !m.soft_deleted)
        .and_then(|m| m.deadline()))
}
