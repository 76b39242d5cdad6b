//! Answers to a wake (PROTOCOL.md §7.1-§7.4): webhook delivery results,
//! wake-event writes, acks, releases and pull-wake claims, each fenced by
//! the wake's generation and id so a stale worker changes nothing.

use super::{backoff_ms, fenced, Delivery, Kind, Sub, SubError, WakeRequest};

impl Sub {
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
}
