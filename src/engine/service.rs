//! The fixed rhythm for one request against one stream: load (with the
//! expiry check of §5.1), decide, persist in one commit, render. Generic over
//! [`Store`], so the Durable Object runs it on SQLite and host tests run the
//! very same code on [`super::store::MemStore`].

use super::append::{self, AppendInput};
use super::config::Config;
use super::create::{self, CreateInput};
use super::decision::Decision;
use super::failure::{Failure, StoreResult};
use super::read;
use super::request::{Method, Request};
use super::response::Response;
use super::state::StreamMeta;
use super::store::{Commit, Store};
use crate::protocol::error::{Invalid, ProtocolError};
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
}

/// A response, and the expiry deadline the object's alarm must cover.
#[derive(Debug)]
pub struct Outcome {
    pub response: Response,
    pub alarm: Option<u64>,
}

impl Outcome {
    fn respond(response: Response) -> Outcome {
        Outcome {
            response,
            alarm: None,
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
        Ok(o) => Ok(Outcome {
            response: o.response.finish(),
            alarm: o.alarm,
        }),
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
            Ok(Outcome::respond(Response::new(204)))
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
    let response = apply(store, decision)?;
    Ok(Outcome { response, alarm })
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
    Ok(Outcome::respond(apply(store, decision)?))
}

/// Persists a decision's commit, then hands back its response.
fn apply<S: Store>(store: &S, decision: Decision) -> Result<Response, Failure<S::Error>> {
    if let Some(commit) = decision.commit {
        store.commit(*commit).store()?;
    }
    Ok(decision.response)
}

/// Renews a sliding TTL on a read (§5.1: reads and writes reset it).
fn touch<S: Store>(store: &S, meta: &StreamMeta, now_ms: u64) -> Result<(), Failure<S::Error>> {
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
    if query.live != Live::CatchUp {
        // Live reads (§5.7, §5.8) are served by the live-reader issue.
        return Err(Invalid::LiveMode.into());
    }
    let response = match query.offset {
        Some(OffsetParam::Now) => read::at_now(&meta),
        None | Some(OffsetParam::Start) => read::catch_up(
            store,
            &meta,
            Offset::ZERO,
            req.header(h::IF_NONE_MATCH),
            ctx.config.max_read_chunk_bytes,
        )?,
        Some(OffsetParam::At(o)) => read::catch_up(
            store,
            &meta,
            o,
            req.header(h::IF_NONE_MATCH),
            ctx.config.max_read_chunk_bytes,
        )?,
    };
    touch(store, &meta, ctx.now_ms)?;
    Ok(Outcome::respond(response))
}

/// The object's alarm: frees an expired stream, or says when to look again.
pub fn on_alarm<S: Store>(store: &S, now_ms: u64) -> Result<Option<u64>, S::Error> {
    Ok(current_meta(store, now_ms)?.and_then(|m| m.deadline()))
}
