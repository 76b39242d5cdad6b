//! What the engine hands the adapter for one request: an [`Action`] (answer,
//! park a live reader, fetch inherited chunks, ask a fork's source) and the
//! effects it owes (wake readers, arm the alarm).

use super::failure::Failure;
use super::fork::{Acquire, Need};
use super::live::{LongPoll, SseState};
use super::response::Response;
use super::ws::WsState;

/// What the adapter does with a request.
#[derive(Debug)]
pub enum Action {
    /// Send this response.
    Respond(Response),
    /// Park a long-poll until the stream changes or its deadline passes,
    /// then call `resume::resume_long_poll`.
    LongPoll(LongPoll),
    /// Send `head`, then stream `resume::sse_next`'s events.
    Sse { head: Response, state: SseState },
    /// Accept a WebSocket reader at this position, then send
    /// `resume::ws_next`'s frames (an extension, `live=ws`).
    Ws(WsState),
    /// Fetch the source's chunks and call again with them.
    NeedInherited(Need),
    /// Ask the source (`acquire.fork_path`'s source) for a reference, then
    /// call `fork_create::finish_fork` with its answer.
    Fork { source: String, acquire: Acquire },
}

/// An action, plus the effects the adapter owes.
#[derive(Debug)]
pub struct Outcome {
    pub action: Action,
    /// The deadline the object's alarm must cover (expiry, owed messages).
    pub alarm: Option<u64>,
    /// The stream's data, closure or existence changed: wake parked readers.
    pub notify: bool,
}

impl Outcome {
    pub fn act(action: Action) -> Outcome {
        Outcome {
            action,
            alarm: None,
            notify: false,
        }
    }

    pub fn respond(response: Response) -> Outcome {
        Outcome::act(Action::Respond(response))
    }
}

/// Renders an outcome's responses with the common headers, and protocol
/// errors as error responses; storage failures go on to the adapter.
pub fn render<E>(result: Result<Outcome, Failure<E>>) -> Result<Outcome, E> {
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
