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

use crate::protocol::subscription::{Kind, SubConfig, SubError, WakeRequest};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
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

    fn is_current(&self, generation: u64, wake_id: &str) -> bool {
        self.head.generation == generation
            && self.head.wake.as_ref().is_some_and(|w| w.id == wake_id)
    }

    /// Records a webhook delivery attempt for the wake it was made for.
    pub fn after_webhook(
        &mut self,
        generation: u64,
        wake_id: &str,
        result: Delivery,
        now: u64,
        jitter: f64,
        new_id: &mut dyn FnMut() -> String,
    ) {
        match result {
            Delivery::Ok { done } => {
                self.head.failed = false;
                self.head.retry_count = 0;
                self.head.next_attempt_at = None;
                if !self.is_current(generation, wake_id) {
                    return;
                }
                if let Some(w) = self.head.wake.as_mut() {
                    w.due = None;
                }
                if done {
                    self.finish_wake(None);
                    self.maybe_wake(now, new_id);
                }
            }
            Delivery::Failed => {
                self.head.failed = true;
                self.head.retry_count = self.head.retry_count.saturating_add(1);
                let at = now + backoff_ms(self.head.retry_count, jitter);
                self.head.next_attempt_at = Some(at);
                if let Some(w) = self.head.wake.as_mut() {
                    w.due = Some(at);
                }
            }
        }
    }

    /// Records a wake-event write (pull-wake).
    pub fn after_wake_event(&mut self, wake_id: &str, ok: bool, now: u64, jitter: f64) {
        let current = self.head.wake.as_ref().is_some_and(|w| w.id == wake_id);
        if ok {
            self.head.failed = false;
            self.head.retry_count = 0;
            self.head.next_attempt_at = None;
        } else {
            self.head.failed = true;
            self.head.retry_count = self.head.retry_count.saturating_add(1);
            self.head.next_attempt_at = Some(now + backoff_ms(self.head.retry_count, jitter));
        }
        if current {
            if let Some(w) = self.head.wake.as_mut() {
                w.due = self.head.next_attempt_at;
            }
        }
    }

    /// Ends the wake in flight; `None` acks its snapshot (`{done: true}`).
    fn finish_wake(&mut self, acks: Option<&[(String, String)]>) {
        let Some(w) = self.head.wake.take() else {
            return;
        };
        if acks.is_none() {
            for (path, tail) in w.snapshot {
                if let Some(mut link) = self.links.get(&path).cloned() {
                    if tail > link.acked {
                        link.acked = tail;
                        self.put_link(&path, link);
                    }
                }
            }
        }
    }

    /// Checks a wake request against the current wake (§7.3). `token_gen`:
    /// the generation in the verified token.
    fn fence(&self, token_gen: u64, req: &WakeRequest) -> Result<(), SubError> {
        let current = token_gen == self.head.generation
            && req.generation == Some(self.head.generation)
            && req
                .wake_id
                .as_deref()
                .is_some_and(|id| self.is_current(self.head.generation, id));
        if current {
            Ok(())
        } else {
            Err(fenced())
        }
    }

    /// Applies acks, all or none: each names a linked stream and an offset
    /// between its acked offset and its tail.
    fn apply_acks(&mut self, acks: &[(String, String)]) -> Result<(), SubError> {
        let invalid = |m: &str| SubError::new(409, "INVALID_OFFSET", m);
        for (path, offset) in acks {
            let link = self
                .links
                .get(path)
                .ok_or_else(|| invalid("the ack names a stream this subscription does not link"))?;
            if offset.as_str() < link.acked.as_str() {
                return Err(invalid("the ack offset is before the acked offset"));
            }
            if offset.as_str() > link.tail.as_str() {
                return Err(invalid("the ack offset is beyond the stream's tail"));
            }
        }
        for (path, offset) in acks {
            if let Some(mut link) = self.links.get(path).cloned() {
                link.acked = offset.clone();
                self.put_link(path, link);
            }
        }
        Ok(())
    }

    /// A webhook callback (§7.1) or a pull-wake ack (§7.2): acks, a lease
    /// extension, and with `done` the end of the wake. Returns `next_wake`.
    pub fn ack(
        &mut self,
        token_gen: u64,
        req: &WakeRequest,
        now: u64,
        new_id: &mut dyn FnMut() -> String,
    ) -> Result<bool, SubError> {
        self.fence(token_gen, req)?;
        self.apply_acks(&req.acks)?;
        if req.done {
            self.finish_wake(Some(&req.acks));
            return Ok(self.maybe_wake(now, new_id));
        }
        let ttl = self.head.config.lease_ttl_ms;
        if let Some(w) = self.head.wake.as_mut() {
            w.lease_until = Some(now + ttl);
        }
        Ok(false)
    }

    /// Gives a pull-wake claim back without acking (§7.2).
    pub fn release(
        &mut self,
        token_gen: u64,
        req: &WakeRequest,
        now: u64,
        new_id: &mut dyn FnMut() -> String,
    ) -> Result<(), SubError> {
        self.fence(token_gen, req)?;
        self.head.wake = None;
        self.maybe_wake(now, new_id);
        Ok(())
    }

    /// A pull-wake claim (§7.2): the wake in flight (or a new one) with a
    /// lease for `worker`.
    pub fn claim(
        &mut self,
        worker: &str,
        now: u64,
        new_id: &mut dyn FnMut() -> String,
    ) -> Result<(), SubError> {
        if self.head.config.kind != Kind::PullWake {
            return Err(SubError::invalid("the subscription is not pull-wake"));
        }
        if let Some(holder) = self.head.wake.as_ref().and_then(|w| w.holder.clone()) {
            return Err(SubError {
                holder: Some((holder, self.head.generation)),
                ..SubError::new(409, "ALREADY_CLAIMED", "another worker holds the lease")
            });
        }
        if !self.has_pending() {
            return Err(SubError::new(409, "NO_PENDING_WORK", "nothing is pending"));
        }
        self.maybe_wake(now, new_id);
        let ttl = self.head.config.lease_ttl_ms;
        if let Some(w) = self.head.wake.as_mut() {
            w.holder = Some(worker.to_string());
            w.lease_until = Some(now + ttl);
            // A claimed wake needs no wake event any more.
            w.due = None;
        }
        Ok(())
    }

    /// The links as wake payloads list them (§7.1).
    pub fn stream_infos(&self) -> Vec<Value> {
        self.links
            .iter()
            .map(|(path, l)| {
                json!({
                    "path": path,
                    "link_type": l.link_type(),
                    "acked_offset": l.acked,
                    "tail_offset": l.tail,
                    "has_pending": l.pending(),
                })
            })
            .collect()
    }

    /// The URL of an action on this subscription.
    pub fn action_url(&self, action: &str) -> String {
        format!(
            "{}/v1/stream/__ds/subscriptions/{}/{action}",
            self.head.base_url, self.head.id
        )
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/v1/stream/__ds/jwks.json", self.head.base_url)
    }

    /// The webhook body for the wake in flight (§7.1).
    pub fn webhook_body(&self, token: &str) -> String {
        json!({
            "subscription_id": self.head.id,
            "wake_id": self.head.wake.as_ref().map(|w| w.id.clone()),
            "generation": self.head.generation,
            "streams": self.stream_infos(),
            "callback_url": self.action_url("callback"),
            "callback_token": token,
        })
        .to_string()
    }

    /// A successful claim's body (§7.2).
    pub fn claim_body(&self, token: &str) -> Value {
        json!({
            "wake_id": self.head.wake.as_ref().map(|w| w.id.clone()),
            "generation": self.head.generation,
            "token": token,
            "streams": self.stream_infos(),
            "lease_ttl_ms": self.head.config.lease_ttl_ms,
        })
    }

    /// A pull-wake event (§7.2).
    pub fn wake_event(&self, stream: &str, now: u64) -> String {
        json!({
            "type": "wake",
            "subscription_id": self.head.id,
            "stream": stream,
            "generation": self.head.generation,
            "ts": now,
        })
        .to_string()
    }

    /// The subscription as `GET` shows it (§6.3). `signing`: the webhook
    /// signing metadata.
    pub fn describe(&self, signing: Option<Value>, created_at: &str) -> Value {
        let c = &self.head.config;
        let streams: Vec<Value> = self
            .links
            .iter()
            .map(|(path, l)| {
                json!({
                    "path": path,
                    "link_type": l.link_type(),
                    "acked_offset": l.acked,
                })
            })
            .collect();
        let webhook = c.webhook_url.as_ref().map(|u| {
            let mut w = json!({ "url": u });
            if let (Some(s), Some(o)) = (signing.clone(), w.as_object_mut()) {
                o.insert("signing".into(), s);
            }
            w
        });
        json!({
            "id": self.head.id,
            "subscription_id": self.head.id,
            "type": c.kind.as_str(),
            "pattern": c.pattern,
            "streams": streams,
            "webhook": webhook,
            "wake_stream": c.wake_stream,
            "lease_ttl_ms": c.lease_ttl_ms,
            "created_at": created_at,
            "status": if self.head.failed { "failed" } else { "active" },
            "description": c.description,
            "generation": self.head.generation,
            "streams_refused": self.head.refused,
        })
    }
}
