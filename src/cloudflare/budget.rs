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
/// once against one source. Each answer is up to `MAX_READ_CHUNK_BYTES`;
/// without a bound, 50 fork readers starting at offset 0 would have 50 pages
/// rendered and in flight at once. The bound is per source, so a read down a
/// fork chain (each level fetching from the next source while its own fetch
/// is open) never waits for itself.
const FETCH_SLOTS: u64 = 4;

/// Fetches running against one source, and the fetches waiting for a slot.
#[derive(Default)]
struct Slots {
    running: u64,
    waiting: std::collections::VecDeque<futures_channel::oneshot::Sender<()>>,
}

thread_local! {
    static FETCHES: std::cell::RefCell<std::collections::HashMap<String, Slots>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// A running inherited fetch; dropping it lets the next waiter run.
pub struct FetchSlot(String);

/// The longest a fetch waits for a slot. Past it, it runs anyway: a slot
/// whose request the runtime abandoned (its future never dropped) must not
/// stall this source's readers for good.
const SLOT_WAIT_MS: u64 = 5_000;

/// Waits for one of the isolate's [`FETCH_SLOTS`] for `source` (at most
/// [`SLOT_WAIT_MS`]).
pub async fn fetch_slot(source: &str) -> FetchSlot {
    let give_up = worker::Date::now().as_millis().saturating_add(SLOT_WAIT_MS);
    loop {
        let now = worker::Date::now().as_millis();
        let rx = FETCHES.with(|f| {
            let mut f = f.borrow_mut();
            let slots = f.entry(source.to_string()).or_default();
            if slots.running < FETCH_SLOTS || now >= give_up {
                slots.running += 1;
                return None;
            }
            let (tx, rx) = futures_channel::oneshot::channel();
            slots.waiting.push_back(tx);
            Some(rx)
        });
        let Some(rx) = rx else {
            return FetchSlot(source.to_string());
        };
        // Woken when a slot frees (or its waker went away: look again).
        let timer = worker::Delay::from(std::time::Duration::from_millis(give_up - now));
        let _ = futures_util::future::select(rx, timer).await;
    }
}

impl Drop for FetchSlot {
    fn drop(&mut self) {
        FETCHES.with(|f| {
            let mut f = f.borrow_mut();
            let Some(slots) = f.get_mut(&self.0) else {
                return;
            };
            slots.running = slots.running.saturating_sub(1);
            while let Some(tx) = slots.waiting.pop_front() {
                if tx.send(()).is_ok() {
                    break;
                }
            }
            if slots.running == 0 && slots.waiting.is_empty() {
                f.remove(&self.0);
            }
        });
    }
}
