//! Cache policy values (PROTOCOL.md §10.1, §5.5, §12.7): `Cache-Control` per
//! response kind, ETags and `If-None-Match` matching.
//!
//! ETag: `"{stream_id}:{start}:{end}"`, plus `:c` once the stream is closed and
//! the response reaches its final offset, so a close changes the tag (§10.1).
//! `stream_id` is minted at creation, so a stream re-created at the same path
//! never reuses an old tag.

use super::offset::Offset;

/// Catch-up reads of shared streams (§10.1).
pub const CATCH_UP: &str = "public, max-age=60, stale-while-revalidate=300";
/// HEAD, `offset=now` and anything that must not be stored (§5.5, §8).
pub const NO_STORE: &str = "no-store";
/// SSE (§5.8): never stored by intermediaries.
pub const SSE: &str = "no-cache";

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
