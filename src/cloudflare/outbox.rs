//! The effects a committed change owes, run after the commit: wake parked
//! readers, make sure the alarm covers a deadline, deliver queued messages
//! to other objects (the fork protocol of [`super::forks`]).
//!
//! None of them may turn a committed write into an error: the write is
//! durable, and a 5xx would make a plain client retry it into a duplicate.
//! A failure is logged and recovered instead: an alarm that could not be set
//! is set by the next request or alarm ([`Shared::recover`]); a message that
//! could not be delivered stays in the outbox and the alarm retries it.

use super::forks;
use super::shared::{now_ms, Shared};
use crate::engine::fork_create;
use std::time::Duration;
use worker::Result;

impl Shared {
    /// Makes sure the alarm fires no later than `deadline`.
    pub async fn arm(&self, deadline: u64) -> Result<()> {
        if self.faults.arm_fault() {
            return Err(worker::Error::RustError("test fault: arm fails".into()));
        }
        let storage = self.store.storage();
        let current = storage.get_alarm().await?;
        let due = i64::try_from(deadline).unwrap_or(i64::MAX);
        if current.is_none_or(|c| c > due) {
            let at = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(deadline as f64));
            storage.set_alarm(worker::ScheduledTime::new(at)).await?;
        }
        Ok(())
    }

    /// [`Shared::arm`], remembering the deadline for [`Shared::recover`] if
    /// the platform refuses.
    pub async fn arm_or_remember(&self, deadline: u64) {
        if let Err(e) = self.arm(deadline).await {
            worker::console_error!("alarm for {deadline} not set ({e}); retried on the next event");
            let pending = self
                .pending_alarm
                .get()
                .map_or(deadline, |p| p.min(deadline));
            self.pending_alarm.set(Some(pending));
        }
    }

    /// Sets an alarm an earlier effect could not set. Called at the start of
    /// every request and alarm.
    pub async fn recover(&self) {
        if let Some(deadline) = self.pending_alarm.take() {
            self.arm_or_remember(deadline).await;
        }
    }

    /// The effects an outcome owes. Never fails: see the module doc.
    pub async fn effects(&self, notify: bool, alarm: Option<u64>) {
        if notify {
            self.live.wake_all();
            // The socket readers' fan-out runs after the change's answer:
            // a writer's acknowledgement never waits for its readers.
            if let Some(me) = self.me.upgrade() {
                worker::wasm_bindgen_futures::spawn_local(async move {
                    me.fan_out_once().await;
                });
            }
        }
        if let Some(deadline) = alarm {
            self.arm_or_remember(deadline).await;
        }
        if self.store.take_outbox_dirty() {
            if let Err(e) = self.deliver_outbox().await {
                worker::console_error!("outbox delivery failed ({e}); the alarm retries it");
                self.arm_or_remember(now_ms().saturating_add(self.config.fork_retry_ms))
                    .await;
            }
        }
    }

    /// Runs [`Shared::fan_out`], one at a time: a change that arrives while
    /// one runs makes it run again, so no reader gets a frame twice.
    pub async fn fan_out_once(&self) {
        if self.fanning.replace(true) {
            self.fan_again.set(true);
            return;
        }
        loop {
            self.fan_again.set(false);
            self.fan_out().await;
            if !self.fan_again.get() {
                break;
            }
        }
        self.fanning.set(false);
    }

    /// Sends every due message (releases, and intents past their grace,
    /// settled as releases before anything goes out); failures are retried
    /// by the alarm.
    pub async fn deliver_outbox(&self) -> Result<()> {
        let due = fork_create::due_messages(&self.store, now_ms())?;
        for out in due {
            if let Some(ms) = self.faults.slow_fork_ms() {
                worker::Delay::from(Duration::from_millis(ms)).await;
            }
            let delivered = !self.faults.release_fault()
                && forks::release(&self.env, &out.source, &out.fork_id).await;
            let retry_at = now_ms().saturating_add(self.config.fork_retry_ms);
            fork_create::after_delivery(&self.store, out, delivered, retry_at)?;
        }
        self.store.take_outbox_dirty();
        if let Some(next) = fork_create::next_due(&self.store)? {
            self.arm(next).await?;
        }
        Ok(())
    }
}
