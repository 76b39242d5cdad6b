//! Live readers held by the stream's object (PROTOCOL.md §5.7, §5.8): the one
//! place that knows how a reader waits. The engine says "wait"; a reader
//! [`Live::park`]s, and every change to the stream (append, close, delete,
//! expiry) calls [`Live::wake_all`]. A parked reader that goes away (its
//! deadline passed, or its client disconnected and the runtime dropped its
//! future) unregisters itself on drop, so nothing leaks.
//!
//! Today a reader is an HTTP response held in the object; the interface would
//! not change for hibernatable WebSockets behind a stateless Worker.

use futures_channel::oneshot;
use futures_util::future::{select, Either};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

#[derive(Default)]
pub struct Live {
    waiters: RefCell<BTreeMap<u64, oneshot::Sender<()>>>,
    next_id: Cell<u64>,
    sse_connections: Cell<u64>,
    long_polls: Cell<u64>,
}

/// Why a parked reader resumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woke {
    Changed,
    Timeout,
}

/// A registered waiter; dropping it unregisters it.
pub struct Parked {
    live: Rc<Live>,
    id: u64,
    rx: oneshot::Receiver<()>,
}

impl Live {
    /// Registers a waiter. Register before the `await`, after the last look
    /// at the stream: the object is single-threaded, so no change can slip
    /// in between.
    pub fn park(self: &Rc<Self>) -> Parked {
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        let (tx, rx) = oneshot::channel();
        self.waiters.borrow_mut().insert(id, tx);
        Parked {
            live: Rc::clone(self),
            id,
            rx,
        }
    }

    /// Wakes every parked reader.
    pub fn wake_all(&self) {
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for (_, tx) in waiters {
            let _ = tx.send(());
        }
    }

    /// Readers waiting right now.
    pub fn parked(&self) -> u64 {
        self.waiters.borrow().len() as u64
    }

    /// Open SSE connections.
    pub fn sse_connections(&self) -> u64 {
        self.sse_connections.get()
    }

    /// Live readers right now: open SSE connections and long-polls in
    /// progress (`MAX_READERS_PER_STREAM` bounds them).
    pub fn readers(&self) -> u64 {
        self.sse_connections.get() + self.long_polls.get()
    }

    /// Counts an SSE connection for as long as the guard lives.
    pub fn sse_guard(self: &Rc<Self>) -> ReaderGuard {
        self.sse_connections.set(self.sse_connections.get() + 1);
        ReaderGuard {
            live: Rc::clone(self),
            long_poll: false,
        }
    }

    /// Counts a long-poll for as long as the guard lives.
    pub fn long_poll_guard(self: &Rc<Self>) -> ReaderGuard {
        self.long_polls.set(self.long_polls.get() + 1);
        ReaderGuard {
            live: Rc::clone(self),
            long_poll: true,
        }
    }
}

impl Parked {
    /// Waits for a change or until `deadline_ms` (given `now_ms`).
    pub async fn until(mut self, now_ms: u64, deadline_ms: u64) -> Woke {
        let ms = deadline_ms.saturating_sub(now_ms);
        let timer = worker::Delay::from(Duration::from_millis(ms));
        match select(&mut self.rx, timer).await {
            Either::Left(_) => Woke::Changed,
            Either::Right(_) => Woke::Timeout,
        }
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        self.live.waiters.borrow_mut().remove(&self.id);
    }
}

/// A live reader, counted while it lives.
pub struct ReaderGuard {
    live: Rc<Live>,
    long_poll: bool,
}

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        let count = if self.long_poll {
            &self.live.long_polls
        } else {
            &self.live.sse_connections
        };
        count.set(count.get().saturating_sub(1));
    }
}
