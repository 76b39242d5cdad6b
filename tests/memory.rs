//! Memory bounds of the core, measured with a counting allocator (one test per
//! binary, so nothing else allocates meanwhile).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// §9.1: a maximum-size JSON append of single-digit elements (8 MiB, about four
/// million messages) is validated, flattened and cut into rows in one pass: the
/// peak allocation stays within three times the body, not tens of bytes per message.
#[test]
fn json_flattening_is_one_pass() {
    use durable_streams_edge::engine::body::{chunks_for, Layout as RowLayout};
    use durable_streams_edge::protocol::content_type::ContentType;
    use durable_streams_edge::protocol::json::{JsonBody, Packing};
    let n = 4 * 1024 * 1024;
    let mut body = Vec::with_capacity(2 * n + 1);
    body.push(b'[');
    for i in 0..n {
        if i > 0 {
            body.push(b',');
        }
        body.push(b'0' + (i % 10) as u8);
    }
    body.push(b']');
    let json = ContentType::parse("application/json").unwrap();
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let layout = RowLayout {
        start: 0,
        row_bytes: 1024 * 1024,
        max_messages: u64::MAX,
        packing: Packing::Shared,
        at_ms: 0,
        count: 0,
    };
    let (chunks, len) = chunks_for(&json, &body, JsonBody::Append, &layout).unwrap();
    let peak = PEAK.load(Ordering::Relaxed) - base;
    assert_eq!(len, 2 * n as u64);
    assert_eq!(chunks.len(), 8);
    assert!(
        peak <= 3 * body.len(),
        "peak {peak} bytes for a {} byte body",
        body.len()
    );
}
