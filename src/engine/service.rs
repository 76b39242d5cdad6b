//! The fixed rhythm for one client request against one stream: load (with
//! the expiry check of §5.1), decide, persist in one commit, render. Generic
//! over [`Store`], so the Durable Object runs it on SQLite and host tests run
//! the very same code on an in-memory store.
//!
//! A fork's reads may need chunks of its source's range: the service then
//! answers [`Action::NeedInherited`]; the adapter fetches them and calls
//! again with them. A new fork answers [`Action::Fork`]: the adapter asks the
//! source, then calls `fork_create::finish_fork`.

use super::append::{self, AppendInput};
use super::create::{self, CreateInput};
use super::ctx::Ctx;
use super::decision::Decision;
use super::failure::{Failure, StoreResult};
use super::fork::{self, reading, Acquire};
use super::lifecycle::{cache_budget_s, current_meta, need, public_meta, touch};
use super::live::{self, LongPoll, PollStep, SseState};
use super::outcome::{render, Action, Outcome};
use super::read;
use super::request::{Method, Request};
use super::response::Response;
use super::state::Chunk;
use super::state::StreamMeta;
use super::store::{Commit, Store};
use super::trim;
use super::ws::WsState;
use crate::protocol::cache;
use crate::protocol::error::{Invalid, ProtocolError};
use crate::protocol::headers as h;
use crate::protocol::offset::OffsetParam;
use crate::protocol::path::StreamPath;
use crate::protocol::query::{Live, ReadQuery};

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
        Method::Other => Err(ProtocolError::MethodNotAllowed {
            allow: crate::protocol::error::ALLOWED_METHODS,
        }
        .into()),
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

/// The alarm a new stream needs: its expiry, or when its first data ages
/// out under a max-age policy.
pub(super) fn created_deadline(decision: &Decision) -> Option<u64> {
    match decision.commit.as_deref() {
        Some(Commit::Create { meta, chunks, .. }) => {
            let aged = chunks.first().and_then(|c| age_deadline(meta, c.at_ms));
            [meta.deadline(), aged].into_iter().flatten().min()
        }
        _ => None,
    }
}

/// When data appended at `at_ms` ages out of `meta`'s policy, if it can.
fn age_deadline(meta: &StreamMeta, at_ms: u64) -> Option<u64> {
    meta.retention
        .max_age_s
        .map(|s| at_ms.saturating_add(s.saturating_mul(1000)))
}

/// After an append to a stream with a retention policy: one bounded trim
/// step if it is over a size bound (the alarm goes on at once if more is
/// due), and the alarm for age when the append is the only data retained.
/// Returns the alarm it needs.
fn after_append<S: Store>(
    store: &S,
    before: &StreamMeta,
    after: &StreamMeta,
    ctx: &Ctx,
) -> Result<Option<u64>, Failure<S::Error>> {
    let mut alarm = None;
    if trim::retained(before).bytes == 0 {
        alarm = age_deadline(after, ctx.now_ms);
    }
    if trim::over_size(after) {
        let unit_rows = trim::unit_rows(ctx.config);
        let step =
            trim::step(store, after, ctx.now_ms, trim::APPEND_STEP_UNITS, unit_rows).store()?;
        if let Some(commit) = step.commit {
            store.commit(commit).store()?;
        }
        if step.more {
            alarm = Some(ctx.now_ms);
        }
    }
    Ok(alarm)
}

fn post<S: Store>(store: &S, req: &Request, ctx: &Ctx) -> Result<Outcome, Failure<S::Error>> {
    let input = AppendInput::parse(req, ctx)?;
    let meta = public_meta(store, ctx.now_ms)?;
    // Idle producer state expires (§5.2.1 "Producer State Cleanup"): an
    // expired producer is treated as new, even before the prune removes it.
    let ttl_ms = ctx.config.producer_ttl_s.saturating_mul(1000);
    let producer_state = match &input.producer {
        Some(p) => store
            .producer(&p.id)
            .store()?
            .filter(|(_, used)| used.saturating_add(ttl_ms) > ctx.now_ms)
            .map(|(state, _)| state),
        None => None,
    };
    let decision = append::decide(&meta, producer_state, input, ctx)?;
    let appended = match decision.commit.as_deref() {
        Some(Commit::Append {
            meta: after,
            chunks,
            ..
        }) if !chunks.is_empty() && !after.retention.is_none() => Some(after.clone()),
        _ => None,
    };
    let mut outcome = apply(store, decision, None)?;
    if let Some(after) = appended {
        outcome.alarm = after_append(store, &meta, &after, ctx)?;
    }
    Ok(outcome)
}

/// Persists a decision's commit, then hands back its response.
pub(super) fn apply<S: Store>(
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

fn get<S: Store>(
    store: &S,
    req: &Request,
    ctx: &Ctx,
    inherited: &[Chunk],
) -> Result<Outcome, Failure<S::Error>> {
    let meta = public_meta(store, ctx.now_ms)?;
    let query = ReadQuery::parse(&req.query)?;
    let param = match (query.live, req.header(h::LAST_EVENT_ID).map(str::trim)) {
        // A reconnecting EventSource resumes after the last event it saw
        // (§5.8 SSE `id:`); its URL still names where it first started.
        (Live::Sse, Some(id)) if !id.is_empty() => {
            OffsetParam::At(id.parse().map_err(|_| Invalid::Offset)?)
        }
        _ => query.offset.unwrap_or(OffsetParam::Start),
    };
    let start = live::start_offset(&meta, param)?;
    if let Some(n) = need(&meta, start, inherited) {
        return Ok(Outcome::act(Action::NeedInherited(n)));
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
                &read::Caching {
                    pinned,
                    chunk: cache::shared_chunk(
                        ctx.config.cache_max_age_s,
                        ctx.config.cache_swr_s,
                        cache_budget_s(&meta, ctx.now_ms),
                    ),
                },
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
        Live::Ws => {
            let upgrade = req.header(h::UPGRADE).map(str::trim);
            if !upgrade.is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
                return Err(Invalid::WebSocketUpgrade.into());
            }
            read::check_start(&view, &meta, start)?;
            Action::Ws(WsState {
                offset: start,
                started: false,
            })
        }
    };
    Ok(Outcome::act(action))
}
