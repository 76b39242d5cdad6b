//! Bytes an isolate may hold for request bodies at once. Every stream
//! object of this script in an isolate shares the isolate's 128 MB (wasm
//! memory included, and wasm memory never shrinks), so the budget is per
//! isolate, not per object: an append reserves its body's size before the
//! body is read and gives it back when the request ends; one that does not
//! fit is answered 503 with `Retry-After`.

use std::cell::Cell;

thread_local! {
    /// Bytes reserved right now (one wasm instance = one isolate).
    static RESERVED: Cell<u64> = const { Cell::new(0) };
}

/// A reservation; dropping it gives the bytes back.
#[derive(Debug)]
pub struct Reserved(u64);

/// Reserves `bytes` if the isolate holds at most `limit - bytes` already.
pub fn reserve(bytes: u64, limit: u64) -> Option<Reserved> {
    RESERVED.with(|r| {
        let now = r.get();
        let after = now.checked_add(bytes).filter(|a| *a <= limit)?;
        r.set(after);
        Some(Reserved(bytes))
    })
}

impl Reserved {
    /// Grows the reservation by `bytes`, if it fits under `limit`.
    pub fn grow(&mut self, bytes: u64, limit: u64) -> bool {
        match reserve(bytes, limit) {
            Some(more) => {
                self.0 += more.0;
                std::mem::forget(more);
                true
            }
            None => false,
        }
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        RESERVED.with(|r| r.set(r.get().saturating_sub(self.0)));
    }
}

/// Bytes reserved in this isolate right now (the tests observe it).
pub fn reserved() -> u64 {
    RESERVED.with(Cell::get)
}
