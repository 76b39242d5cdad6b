//! Idempotent producer fencing (PROTOCOL.md §5.2.1): a pure decision from the
//! stored state and the request's tuple. Nothing is mutated here; the new
//! state is committed with the data, in the same transaction.
//!
//! ```text
//! no state      : seq == 0 → accept            else → 409 gap (expected 0)
//! epoch < state : 403 stale (Producer-Epoch: current)
//! epoch > state : seq == 0 → accept new epoch  else → 400
//! same epoch    : seq ≤ last → 204 duplicate
//!                 seq = last+1 → accept        else → 409 gap (expected last+1)
//! ```

use super::state::ProducerState;
use crate::protocol::error::{Invalid, ProtocolError};
use crate::protocol::producer::ProducerTuple;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerCheck {
    /// Append, then store this state.
    Accept(ProducerState),
    /// Already applied; `last_seq` is the highest accepted seq of the epoch.
    Duplicate { last_seq: u64 },
}

/// How many idle producers one prune forgets at most (bounded work).
pub const PRUNE_LIMIT: u32 = 1000;

/// The commit that forgets producers idle for longer than the configured
/// TTL at `now_ms` (§5.2.1 "Producer State Cleanup").
pub fn prune(now_ms: u64, config: &super::config::Config) -> super::store::Commit {
    super::store::Commit::PruneProducers {
        idle_before_ms: now_ms.saturating_sub(config.producer_ttl_s.saturating_mul(1000)),
        limit: PRUNE_LIMIT,
    }
}

pub fn check(
    state: Option<ProducerState>,
    t: &ProducerTuple,
) -> Result<ProducerCheck, ProtocolError> {
    let accept = |epoch, seq| {
        ProducerCheck::Accept(ProducerState {
            epoch,
            last_seq: seq,
        })
    };
    let Some(s) = state else {
        return if t.seq == 0 {
            Ok(accept(t.epoch, 0))
        } else {
            Err(ProtocolError::SeqGap {
                expected: 0,
                received: t.seq,
            })
        };
    };
    if t.epoch < s.epoch {
        return Err(ProtocolError::StaleEpoch { current: s.epoch });
    }
    if t.epoch > s.epoch {
        return if t.seq == 0 {
            Ok(accept(t.epoch, 0))
        } else {
            Err(Invalid::NewEpochSeqNotZero.into())
        };
    }
    if t.seq <= s.last_seq {
        return Ok(ProducerCheck::Duplicate {
            last_seq: s.last_seq,
        });
    }
    if t.seq == s.last_seq + 1 {
        return Ok(accept(t.epoch, t.seq));
    }
    Err(ProtocolError::SeqGap {
        expected: s.last_seq + 1,
        received: t.seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(epoch: u64, seq: u64) -> ProducerTuple {
        ProducerTuple {
            id: "p".into(),
            epoch,
            seq,
        }
    }
    fn st(epoch: u64, last_seq: u64) -> Option<ProducerState> {
        Some(ProducerState { epoch, last_seq })
    }

    #[test]
    fn table() {
        use ProducerCheck::*;
        let acc = |e, s| {
            Ok(Accept(ProducerState {
                epoch: e,
                last_seq: s,
            }))
        };
        assert_eq!(check(None, &t(0, 0)), acc(0, 0));
        assert_eq!(check(None, &t(5, 0)), acc(5, 0));
        assert_eq!(
            check(None, &t(0, 1)),
            Err(ProtocolError::SeqGap {
                expected: 0,
                received: 1
            })
        );
        assert_eq!(
            check(st(2, 4), &t(1, 9)),
            Err(ProtocolError::StaleEpoch { current: 2 })
        );
        assert_eq!(check(st(2, 4), &t(3, 0)), acc(3, 0));
        assert_eq!(
            check(st(2, 4), &t(3, 1)),
            Err(Invalid::NewEpochSeqNotZero.into())
        );
        assert_eq!(check(st(2, 4), &t(2, 4)), Ok(Duplicate { last_seq: 4 }));
        assert_eq!(check(st(2, 4), &t(2, 0)), Ok(Duplicate { last_seq: 4 }));
        assert_eq!(check(st(2, 4), &t(2, 5)), acc(2, 5));
        assert_eq!(
            check(st(2, 4), &t(2, 7)),
            Err(ProtocolError::SeqGap {
                expected: 5,
                received: 7
            })
        );
    }
}
