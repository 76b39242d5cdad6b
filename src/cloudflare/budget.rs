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

/// Inherited-chunk fetches (a fork's reads of its source) an isolate runs at
/// once. Each answer is up to `MAX_READ_CHUNK_BYTES`, held in JavaScript
/// until it is read whole; without a bound, 50 fork readers starting at
/// offset 0 would hold 50 pages at once.
const FETCH_SLOTS: u64 = 4;

thread_local! {
    static FETCHES: Cell<u64> = const { Cell::new(0) };
    static FETCH_WAITERS: std::cell::RefCell<std::collections::VecDeque<futures_channel::oneshot::Sender<()>>> =
        const { std::cell::RefCell::new(std::collections::VecDeque::new()) };
}

/// A running inherited fetch; dropping it lets the next waiter run.
pub struct FetchSlot(());

/// Waits for one of the isolate's [`FETCH_SLOTS`].
pub async fn fetch_slot() -> FetchSlot {
    loop {
        let free = FETCHES.with(|f| {
            let n = f.get();
            (n < FETCH_SLOTS).then(|| f.set(n + 1)).is_some()
        });
        if free {
            return FetchSlot(());
        }
        let (tx, rx) = futures_channel::oneshot::channel();
        FETCH_WAITERS.with(|w| w.borrow_mut().push_back(tx));
        // Woken when a slot frees (or the waker's request went away: look again).
        let _ = rx.await;
    }
}

impl Drop for FetchSlot {
    fn drop(&mut self) {
        FETCHES.with(|f| f.set(f.get().saturating_sub(1)));
        FETCH_WAITERS.with(|w| {
            let mut w = w.borrow_mut();
            while let Some(tx) = w.pop_front() {
                if tx.send(()).is_ok() {
                    break;
                }
            }
        });
    }
}
