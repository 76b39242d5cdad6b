//! Resuming a parked live reader (PROTOCOL.md §5.7, §5.8): the next step of
//! a long-poll or an SSE connection when the stream changed, a timer fired
//! or a deadline passed, including a fork's inherited chunks. The decisions
//! themselves are in [`super::live`].

use super::ctx::Ctx;
use super::failure::Failure;
use super::fork::reading;
use super::lifecycle::{current_meta, need, touch};
use super::live::{poll, sse_step, LongPoll, PollStep, SseState, SseStep};
use super::outcome::Action;
use super::response::Response;
use super::state::Chunk;
use super::store::Store;
use super::ws::{ws_step, WsState, WsStep};

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
        if let Some(n) = need(m, wait.offset, inherited) {
            return Ok(Action::NeedInherited(n));
        }
    }
    let result = match &meta {
        Some(m) => touch(store, m, ctx.now_ms)
            .and_then(|()| poll(&reading(store, m, inherited), meta.as_ref(), wait, ctx)),
        None => poll(store, None, wait, ctx),
    };
    match result {
        Ok(PollStep::Respond(r)) => Ok(Action::Respond(r.finish())),
        Ok(PollStep::Wait(w)) => Ok(Action::LongPoll(w)),
        Err(Failure::Protocol(e)) => Ok(Action::Respond(Response::error(&e))),
        Err(Failure::Store(e)) => Err(e),
    }
}

/// The next events of an SSE connection (see [`sse_step`]).
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
        if let Some(n) = need(&meta, state.offset, inherited) {
            return Ok(SseStep::NeedInherited(n));
        }
    }
    sse_step(&reading(store, &meta, inherited), state, ctx, keepalive)
}

/// The next frame of a WebSocket reader (see [`ws_step`]).
pub fn ws_next<S: Store>(
    store: &S,
    state: &mut WsState,
    ctx: &Ctx,
    inherited: &[Chunk],
) -> Result<WsStep, S::Error> {
    let Some(meta) = current_meta(store, ctx.now_ms)?.filter(|m| !m.soft_deleted) else {
        return Ok(WsStep::End);
    };
    if state.offset < meta.tail {
        if let Some(n) = need(&meta, state.offset, inherited) {
            return Ok(WsStep::NeedInherited(n));
        }
    }
    ws_step(&reading(store, &meta, inherited), state, ctx)
}
