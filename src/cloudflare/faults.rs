//! Test-only faults, armed per object through the test routes
//! (`test_routes.rs`, only with `TEST_ROUTES=1`), so the Miniflare tests can
//! exercise failure paths the platform produces rarely: crashes between
//! steps, undeliverable messages, slow steps, a platform that throws.

use std::cell::Cell;

/// A fault armed on one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The next fork creation stops right after the source recorded its
    /// reference, as if the object had crashed.
    AfterAcquire,
    /// The next `n` release deliveries fail.
    ReleaseFails(u32),
    /// The next fork creation waits `ms` after the source's answer before
    /// committing, and every release waits `ms` before it goes out: a slow
    /// creation racing the alarm that gives up on it.
    SlowFork(u64),
    /// The next `n` attempts to set the alarm fail.
    ArmFails(u32),
    /// The next `n` requests to the object throw, as a platform failure
    /// (reset, overload) does: the caller's stub fetch rejects.
    Throws(u32),
    /// The next catch-up read's answer, computed at once, is sent only
    /// after `ms`: a read in flight while other requests come and go.
    SlowRead(u64),
}

impl Fault {
    pub fn parse(url: &worker::Url) -> Option<Fault> {
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        let num = |k: &str| q.get(k).and_then(|c| c.parse::<u64>().ok());
        let count = num("count")
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(1);
        match q.get("fault").map(String::as_str) {
            Some("after-acquire") => Some(Fault::AfterAcquire),
            Some("release-fails") => Some(Fault::ReleaseFails(count)),
            Some("slow-fork") => Some(Fault::SlowFork(num("ms").unwrap_or(1000))),
            Some("arm-fails") => Some(Fault::ArmFails(count)),
            Some("throws") => Some(Fault::Throws(count)),
            Some("slow-read") => Some(Fault::SlowRead(num("ms").unwrap_or(1000))),
            _ => None,
        }
    }
}

/// The fault armed on one object, if any.
#[derive(Default)]
pub struct Faults(Cell<Option<Fault>>);

impl Faults {
    /// Arms `fault` (`None` disarms).
    pub fn arm(&self, fault: Option<Fault>) {
        self.0.set(fault);
    }

    /// The armed fault, if any.
    pub fn get(&self) -> Option<Fault> {
        self.0.get()
    }

    /// Consumes one use of a counted fault of kind `kind`, if one is armed.
    fn take(&self, kind: fn(u32) -> Fault) -> bool {
        let Some(armed) = self.0.get() else {
            return false;
        };
        let n = match armed {
            Fault::ReleaseFails(n) | Fault::ArmFails(n) | Fault::Throws(n) => n,
            _ => return false,
        };
        if n == 0 || kind(n) != armed {
            return false;
        }
        self.0.set((n > 1).then(|| kind(n - 1)));
        true
    }

    /// Consumes one failed release delivery, if that fault is armed.
    pub fn release_fault(&self) -> bool {
        self.take(Fault::ReleaseFails)
    }

    /// Consumes one failed attempt to set the alarm, if that fault is armed.
    pub fn arm_fault(&self) -> bool {
        self.take(Fault::ArmFails)
    }

    /// Consumes one thrown request, if that fault is armed.
    pub fn throw_fault(&self) -> bool {
        self.take(Fault::Throws)
    }

    /// Consumes an armed [`Fault::SlowRead`]: its delay.
    pub fn slow_read_ms(&self) -> Option<u64> {
        match self.0.get() {
            Some(Fault::SlowRead(ms)) => {
                self.0.set(None);
                Some(ms)
            }
            _ => None,
        }
    }

    /// The delay of an armed [`Fault::SlowFork`], if any.
    pub fn slow_fork_ms(&self) -> Option<u64> {
        match self.0.get() {
            Some(Fault::SlowFork(ms)) => Some(ms),
            _ => None,
        }
    }
}
