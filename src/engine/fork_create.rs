//! The fork's side of fork creation (PROTOCOL.md §4.2; the protocol between
//! objects is stated in `cloudflare/forks.rs`): record an intent, commit the
//! fork once the source holds a reference, or turn the intent into a release
//! when the creation will not commit. Pure over [`Store`], tested on the host.

use super::create::{self, CreateInput};
use super::ctx::Ctx;
use super::failure::{Failure, StoreResult};
use super::fork::Acquired;
use super::lifecycle::current_meta;
use super::outcome::{render, Outcome};
use super::request::Request;
use super::service::{apply, created_deadline};
use super::store::{Commit, Outgoing, OutgoingKind, Store};
use crate::protocol::error::ProtocolError;

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

/// The messages due at `now_ms`, ready to send. Every due creation intent
/// is first turned into a release, all in one synchronous step before
/// anything goes out: from then on [`finish_fork`] finds no intent and
/// refuses to commit, so no fork can be created whose reference is being
/// released (and a fork committed just before keeps its reference: its
/// commit settled the intent, so it is not in the list).
pub fn due_messages<S: Store>(store: &S, now_ms: u64) -> Result<Vec<Outgoing>, S::Error> {
    let mut due = Vec::new();
    for mut out in store.outbox()? {
        if out.due_ms > now_ms {
            continue;
        }
        if out.kind == OutgoingKind::Intent {
            out.kind = OutgoingKind::Release;
            store.commit(Commit::Send(out.clone()))?;
        }
        due.push(out);
    }
    Ok(due)
}

/// After a delivery attempt: a delivered message is dropped, an undelivered
/// one is due again at `retry_at_ms`.
pub fn after_delivery<S: Store>(
    store: &S,
    out: Outgoing,
    delivered: bool,
    retry_at_ms: u64,
) -> Result<(), S::Error> {
    store.commit(if delivered {
        Commit::Settle {
            fork_id: out.fork_id,
        }
    } else {
        Commit::Send(Outgoing {
            due_ms: retry_at_ms,
            ..out
        })
    })
}

/// When the outbox next needs the alarm.
pub fn next_due<S: Store>(store: &S) -> Result<Option<u64>, S::Error> {
    Ok(store.outbox()?.iter().map(|o| o.due_ms).min())
}
