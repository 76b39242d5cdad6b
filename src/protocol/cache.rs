//! Cache policy (PROTOCOL.md §10.1, §5.5, §12.7): `Cache-Control` per
//! response kind, the Worker's cache keys, ETags and `If-None-Match`.
//!
//! | response | Cache-Control |
//! | --- | --- |
//! | catch-up from an offset of this incarnation, ending before the tail | `public, max-age=60, stale-while-revalidate=300` (configurable; within the stream's life) |
//! | long-poll 200 from an offset of this incarnation | `public, max-age=<cursor interval>` (within the stream's life) |
//! | catch-up reaching the tail, or from `-1`/no offset | `no-cache` (revalidate: read-your-writes) |
//! | HEAD, `offset=now`, long-poll 204, errors | `no-store` |
//! | SSE | `no-cache` |
//!
//! An offset names one incarnation of a stream (its generation), so a chunk
//! that ends before the tail is the same bytes for as long as the stream
//! exists; but a cached copy outlives a DELETE or an expiry. So such chunks
//! follow §10.1's recommendation (a short `max-age` with
//! `stale-while-revalidate`), and the lifetime never reaches past the
//! stream's expiry: deleted data stays visible in caches for at most
//! `max-age + stale-while-revalidate`. A read that reaches the tail may grow,
//! and one from `-1` does not name an incarnation, so neither may be served
//! without asking the origin.
//!
//! ETag: `"{stream_id}:{start}:{end}"`, plus `:c` once the stream is closed and
//! the response reaches its final offset, so a close changes the tag (§10.1).
//! `stream_id` is minted at creation, so a stream re-created at the same path
//! never reuses an old tag.

use super::offset::Offset;

/// A chunk that does not change while its stream exists (see the module
/// table): cacheable for `max_age_s`, then served stale for `swr_s` while
/// revalidating, all within `budget_s` (the stream's remaining life, if it
/// has an end). A budget under a second means "ask the origin every time".
pub fn shared_chunk(max_age_s: u64, swr_s: u64, budget_s: Option<u64>) -> String {
    let budget = budget_s.unwrap_or(u64::MAX);
    let max_age = max_age_s.min(budget);
    if max_age == 0 {
        return REVALIDATE.to_string();
    }
    let swr = swr_s.min(budget - max_age);
    if swr == 0 {
        format!("public, max-age={max_age}")
    } else {
        format!("public, max-age={max_age}, stale-while-revalidate={swr}")
    }
}
/// Stored only if revalidated on every use (ETag → 304).
pub const REVALIDATE: &str = "no-cache";
/// HEAD, `offset=now` and anything that must not be stored (§5.5, §8).
pub const NO_STORE: &str = "no-store";
/// SSE (§5.8): never stored by intermediaries.
pub const SSE: &str = "no-cache";

/// A long-poll answer, for one cursor interval (§10.1 collapsing), within
/// `budget_s` (the stream's remaining life, if it has an end).
pub fn for_interval(secs: u64, budget_s: Option<u64>) -> String {
    match secs.min(budget_s.unwrap_or(u64::MAX)) {
        0 => NO_STORE.to_string(),
        s => format!("public, max-age={s}"),
    }
}

/// Whether the Worker may store a response with this status and policy.
pub fn storable(status: u16, cache_control: &str) -> bool {
    status == 200
        && cache_control.split(',').any(|d| d.trim() == "public")
        && cache_control
            .split(',')
            .filter_map(|d| d.trim().strip_prefix("max-age="))
            .any(|v| v.parse::<u64>().is_ok_and(|s| s > 0))
}

/// The Worker's cache key for a read, or `None` when the read is never
/// served from the cache (SSE, `offset=now`, `-1`/no offset, bad queries).
/// Only the protocol's parameters count, sorted by name; unknown ones are
/// dropped; nothing user-specific is part of it.
pub fn key(url_path: &str, query: &str) -> Option<String> {
    build_key(url_path, query, true)
}

/// The key under which identical bridged long-polls collapse in one
/// isolate: [`key`] without the cursor. The bridge renders each client's
/// `Stream-Cursor` itself (§8.1), so the object's answer depends only on
/// the stream and the offset, and readers with distinct cursors share one
/// socket.
pub fn collapse_key(url_path: &str, query: &str) -> Option<String> {
    build_key(url_path, query, false)
}

fn build_key(url_path: &str, query: &str, with_cursor: bool) -> Option<String> {
    use super::offset::OffsetParam;
    use super::query::{Live, ReadQuery};
    let q = ReadQuery::parse(query).ok()?;
    let OffsetParam::At(offset) = q.offset? else {
        return None;
    };
    let mut params = Vec::new();
    match q.live {
        Live::Sse | Live::Ws => return None,
        Live::CatchUp => {}
        Live::LongPoll => {
            if let Some(c) = q.cursor.as_ref().filter(|_| with_cursor) {
                params.push(format!("cursor={c}"));
            }
            params.push("live=long-poll".to_string());
        }
    }
    params.push(format!("offset={offset}"));
    Some(format!(
        "https://cache.durable-streams.invalid{url_path}?{}",
        params.join("&")
    ))
}

/// The ETag of a read of `[start, end)`.
pub fn etag(stream_id: &str, start: Offset, end: Offset, closed: bool) -> String {
    let suffix = if closed { ":c" } else { "" };
    format!(
        "\"{stream_id}:{}:{}{suffix}\"",
        start.position(),
        end.position()
    )
}

/// Whether an `If-None-Match` value matches `tag` (weak comparison,
/// RFC 9110 §13.1.2: `W/` prefixes are ignored, `*` matches anything).
pub fn if_none_match(header: &str, tag: &str) -> bool {
    let strip = |t: &str| t.trim().trim_start_matches("W/").to_string();
    let tag = strip(tag);
    header.split(',').map(strip).any(|c| c == "*" || c == tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_changes_on_close() {
        let a = Offset::ZERO;
        let b = Offset::new(5).unwrap();
        let open = etag("s1", a, b, false);
        let closed = etag("s1", a, b, true);
        assert_eq!(open, "\"s1:0:5\"");
        assert_ne!(open, closed);
        assert!(closed.ends_with(":c\""));
    }

    #[test]
    fn keys_are_canonical_and_only_for_cacheable_reads() {
        let o = "0001760000000000_0000000000000005";
        assert_eq!(
            key("/v1/stream/a", &format!("x=1&offset={o}")).as_deref(),
            Some("https://cache.durable-streams.invalid/v1/stream/a?offset=0001760000000000_0000000000000005")
        );
        let lp = key(
            "/v1/stream/a",
            &format!("offset={o}&cursor=7&live=long-poll"),
        );
        assert_eq!(
            lp,
            key(
                "/v1/stream/a",
                &format!("live=long-poll&cursor=7&offset={o}")
            )
        );
        assert!(lp.unwrap().contains("?cursor=7&live=long-poll&offset="));
        let collapsed = |c: &str| {
            collapse_key(
                "/v1/stream/a",
                &format!("offset={o}&cursor={c}&live=long-poll"),
            )
        };
        assert_eq!(collapsed("7"), collapsed("8"));
        assert!(!collapsed("7").unwrap().contains("cursor"));
        for q in [
            "",
            "offset=-1",
            "offset=now",
            &format!("offset={o}&live=sse"),
            "offset=junk",
            "offset=now&live=long-poll",
        ] {
            assert_eq!(key("/v1/stream/a", q), None, "{q}");
        }
    }

    #[test]
    fn only_public_answers_with_a_lifetime_are_stored() {
        let chunk = shared_chunk(60, 300, None);
        assert!(storable(200, &chunk));
        assert!(storable(200, &for_interval(20, None)));
        assert!(!storable(200, REVALIDATE));
        assert!(!storable(200, NO_STORE));
        assert!(!storable(204, &chunk));
        assert!(!storable(200, "public, max-age=0"));
    }

    #[test]
    fn cached_lifetimes_never_outlive_the_stream() {
        assert_eq!(
            shared_chunk(60, 300, None),
            "public, max-age=60, stale-while-revalidate=300"
        );
        assert_eq!(
            shared_chunk(60, 300, Some(100)),
            "public, max-age=60, stale-while-revalidate=40"
        );
        assert_eq!(shared_chunk(60, 300, Some(30)), "public, max-age=30");
        assert_eq!(shared_chunk(60, 300, Some(0)), REVALIDATE);
        assert_eq!(shared_chunk(0, 300, None), REVALIDATE);
        assert_eq!(for_interval(20, Some(5)), "public, max-age=5");
        assert_eq!(for_interval(20, Some(0)), NO_STORE);
    }

    #[test]
    fn if_none_match_forms() {
        let t = "\"s:1:2\"";
        assert!(if_none_match("\"s:1:2\"", t));
        assert!(if_none_match("W/\"s:1:2\"", t));
        assert!(if_none_match("\"x\", \"s:1:2\"", t));
        assert!(if_none_match("*", t));
        assert!(!if_none_match("\"s:1:3\"", t));
        assert!(!if_none_match("", t));
    }
}
