//! One subscription's state machine (PROTOCOL.md §6.1, §7): stream links
//! with their acked and tail offsets, wake generations, leases, webhook
//! retries and pull-wake claims. Pure: the clock, wake ids and jitter come
//! in as arguments; the adapter (`cloudflare::sub_object`) persists
//! [`Sub`] after every step, signs tokens, and performs the [`Due`] work.
//!
//! ```text
//! idle ──(a linked stream's tail passes its acked offset)──► wake g+1 in flight
//!   webhook:   delivery due now; lease = now + lease_ttl; 2xx {done:true} or a
//!              callback with done → acks applied, idle (and a new wake if still
//!              pending); failure → retry at 1 s·2^(n-1) ≤ 60 s, ±20 % jitter
//!   pull-wake: wake event due on wake_stream; claim → holder, lease; ack (heartbeat,
//!              or done) / release → idle (and a new wake if still pending)
//!   lease expiry → holder and wake cleared; a new wake if pending (§7.3)
//! ```
//!
//! Offsets are compared as strings: every printed offset has the same
//! width (PROTOCOL.md §8), so string order is offset order.

mod views;
mod wake;

use crate::protocol::subscription::{Kind, SubConfig, SubError, WakeRequest};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The offset every stream starts at: the tail of a stream never seen.
pub const ZERO: &str = "0000000000000000_0000000000000000";
/// Webhook retry backoff bounds (§7.1).
pub const RETRY_BASE_MS: u64 = 1_000;
pub const RETRY_MAX_MS: u64 = 60_000;

/// One linked stream (§6.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub explicit: bool,
    pub glob: bool,
    /// Last processed offset, inclusive.
    pub acked: String,
    /// The newest tail its stream reported.
    pub tail: String,
}

impl Link {
    pub fn pending(&self) -> bool {
        self.tail > self.acked
    }

    /// As responses name it: `explicit` takes precedence (§6.1).
    pub fn link_type(&self) -> &'static str {
        if self.explicit {
            "explicit"
        } else {
            "glob"
        }
    }
}

/// The wake in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wake {
    pub id: String,
    /// Each linked stream's tail when the wake was issued.
    pub snapshot: Vec<(String, String)>,
    /// The pull-wake worker holding the lease.
    pub holder: Option<String>,
    pub lease_until: Option<u64>,
    /// The next delivery attempt (webhook) or wake-event write (pull-wake).
    pub due: Option<u64>,
}

/// A subscription, everything but its links (stored as rows of their own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub id: String,
    pub config: SubConfig,
    /// The origin clients used to create it: callback and JWKS URLs.
    pub base_url: String,
    pub created_ms: u64,
    pub generation: u64,
    pub wake: Option<Wake>,
    pub retry_count: u32,
    pub next_attempt_at: Option<u64>,
    pub failed: bool,
    /// Registered with the pattern index (only with a pattern).
    #[serde(default)]
    pub indexed: bool,
    /// Pattern backfill in progress: the last stream path linked (§6.2).
    #[serde(default)]
    pub backfill: Option<String>,
    /// When a failed index registration or backfill step is retried.
    #[serde(default)]
    pub setup_at: Option<u64>,
    /// The most streams it links; further matches are refused (counted).
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
    #[serde(default)]
    pub refused: u64,
}

/// `SUBSCRIPTION_MAX_STREAMS` by default.
pub const DEFAULT_MAX_STREAMS: usize = 1_000;

fn default_max_streams() -> usize {
    DEFAULT_MAX_STREAMS
}

/// A subscription and the links changed since it was last persisted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sub {
    pub head: Head,
    pub links: BTreeMap<String, Link>,
    /// Links to write (present) or delete (absent) when persisting.
    pub dirty: BTreeSet<String>,
}

/// Work the adapter owes now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// POST the wake to the webhook (generation, wake id).
    Webhook { generation: u64, wake_id: String },
    /// Append a wake event to the wake stream.
    WakeEvent {
        generation: u64,
        wake_id: String,
        stream: String,
    },
}

/// What a webhook delivery attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// 2xx; `done`: the body was `{"done": true}`.
    Ok {
        done: bool,
    },
    Failed,
}

/// The backoff before retry `n` (1-based): 1 s·2^(n-1), at most 60 s, with
/// `jitter` in [-1, 1] scaled to ±20 %.
pub fn backoff_ms(n: u32, jitter: f64) -> u64 {
    let base = RETRY_BASE_MS
        .saturating_mul(1u64 << n.saturating_sub(1).min(16))
        .min(RETRY_MAX_MS);
    let j = jitter.clamp(-1.0, 1.0) * 0.2 * base as f64;
    (base as f64 + j).max(0.0) as u64
}

fn fenced() -> SubError {
    SubError::new(409, "FENCED", "the wake generation is stale")
}

impl Sub {
    pub fn new(id: &str, config: SubConfig, base_url: &str, now: u64) -> Sub {
        Sub {
            head: Head {
                id: id.to_string(),
                config,
                base_url: base_url.trim_end_matches('/').to_string(),
                created_ms: now,
                generation: 0,
                wake: None,
                retry_count: 0,
                next_attempt_at: None,
                failed: false,
                indexed: false,
                backfill: None,
                setup_at: None,
                max_streams: DEFAULT_MAX_STREAMS,
                refused: 0,
            },
            links: BTreeMap::new(),
            dirty: BTreeSet::new(),
        }
    }

    fn put_link(&mut self, path: &str, link: Link) {
        self.links.insert(path.to_string(), link);
        self.dirty.insert(path.to_string());
    }

    /// Whether a new link fits under `max_streams` (a refusal is counted).
    fn room(&mut self, path: &str) -> bool {
        if self.links.contains_key(path) || self.links.len() < self.head.max_streams {
            return true;
        }
        self.head.refused = self.head.refused.saturating_add(1);
        false
    }

    /// Links `path` explicitly or by the pattern at `tail` (§6.2, §6.4):
    /// an existing link keeps its cursor and gains the link type. `false`:
    /// refused, the subscription links `max_streams` already.
    pub fn link(&mut self, path: &str, explicit: bool, tail: &str) -> bool {
        if !self.room(path) {
            return false;
        }
        let mut link = self.links.get(path).cloned().unwrap_or(Link {
            explicit: false,
            glob: false,
            acked: tail.to_string(),
            tail: tail.to_string(),
        });
        link.explicit |= explicit;
        link.glob |= !explicit;
        if tail > link.tail.as_str() {
            link.tail = tail.to_string();
        }
        self.put_link(path, link);
        true
    }

    /// Removes the explicit link (§6.4); a glob link stays while the
    /// pattern matches.
    pub fn unlink_explicit(&mut self, path: &str) {
        let Some(mut link) = self.links.get(path).cloned() else {
            return;
        };
        link.explicit = false;
        let matches = self.head.config.glob().is_some_and(|g| g.matches(path));
        if link.glob && matches {
            self.put_link(path, link);
        } else {
            self.links.remove(path);
            self.dirty.insert(path.to_string());
        }
    }

    /// A stream reports its tail (`since`: where a link it did not have
    /// yet starts, the stream's tail before the change), or its deletion
    /// (`tail: None`). Returns whether the stream is still linked (if not,
    /// it forgets this subscription).
    pub fn notify(&mut self, path: &str, tail: Option<&str>, since: &str) -> bool {
        // Its own wake stream never wakes it (each wake event would).
        if self.head.config.wake_stream.as_deref() == Some(path) {
            return false;
        }
        let Some(tail) = tail else {
            if self.links.remove(path).is_some() {
                self.dirty.insert(path.to_string());
            }
            return false;
        };
        if let Some(mut link) = self.links.get(path).cloned() {
            if tail > link.tail.as_str() {
                link.tail = tail.to_string();
                self.put_link(path, link);
            }
            return true;
        }
        if self.head.config.glob().is_some_and(|g| g.matches(path)) && self.room(path) {
            let acked = since.min(tail).to_string();
            self.put_link(
                path,
                Link {
                    explicit: false,
                    glob: true,
                    acked,
                    tail: tail.to_string(),
                },
            );
            return true;
        }
        false
    }

    pub fn has_pending(&self) -> bool {
        self.links.values().any(Link::pending)
    }

    fn first_pending(&self) -> String {
        self.links
            .iter()
            .find(|(_, l)| l.pending())
            .map(|(p, _)| p.clone())
            .unwrap_or_default()
    }

    /// Issues a wake if work is pending and none is in flight (§7).
    pub fn maybe_wake(&mut self, now: u64, new_id: &mut dyn FnMut() -> String) -> bool {
        if self.head.wake.is_some() || !self.has_pending() {
            return false;
        }
        self.head.generation += 1;
        let webhook = self.head.config.kind == Kind::Webhook;
        self.head.wake = Some(Wake {
            id: new_id(),
            snapshot: self
                .links
                .iter()
                .map(|(p, l)| (p.clone(), l.tail.clone()))
                .collect(),
            holder: None,
            lease_until: webhook.then_some(now + self.head.config.lease_ttl_ms),
            // A retry schedule in progress is kept (it survives generations).
            due: Some(self.head.next_attempt_at.unwrap_or(now).max(now)),
        });
        true
    }

    /// Expires a lease that ran out, then issues a wake if work is pending.
    pub fn tick(&mut self, now: u64, new_id: &mut dyn FnMut() -> String) {
        let expired = self
            .head
            .wake
            .as_ref()
            .and_then(|w| w.lease_until)
            .is_some_and(|t| t <= now);
        if expired {
            self.head.wake = None;
        }
        self.maybe_wake(now, new_id);
    }

    /// The work due at `now`.
    pub fn due(&self, now: u64) -> Option<Due> {
        let w = self.head.wake.as_ref()?;
        if w.due.is_none_or(|d| d > now) {
            return None;
        }
        Some(match self.head.config.kind {
            Kind::Webhook => Due::Webhook {
                generation: self.head.generation,
                wake_id: w.id.clone(),
            },
            Kind::PullWake => Due::WakeEvent {
                generation: self.head.generation,
                wake_id: w.id.clone(),
                stream: self.first_pending(),
            },
        })
    }

    /// When the alarm must fire next.
    pub fn next_alarm(&self) -> Option<u64> {
        let w = self.head.wake.as_ref()?;
        [w.due, w.lease_until].into_iter().flatten().min()
    }
}
