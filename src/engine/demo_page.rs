//! The demo page (README.md, Try it): `demo/index.html` and `demo/app.js`,
//! embedded in the Worker and answered here, so no request pays for a
//! static-asset router in front of the Worker. The page only calls the
//! proxy and reads its answer's stream, which go through access control;
//! the page itself holds nothing secret.
//!
//! The page runs script in this origin, so it gets its own Content Security
//! Policy (its script and styles only, requests to this origin only, no
//! framing) instead of the `sandbox` policy of every other response (§12.3).

use super::request::Method;
use super::response::Response;
use crate::protocol::cache::if_none_match;
use crate::protocol::error::ProtocolError;
use crate::protocol::headers as h;

/// One embedded file.
pub struct File {
    content_type: &'static str,
    body: &'static str,
    /// [`fnv1a`] of `body`, for its `ETag`.
    hash: u64,
}

const PAGE_BODY: &str = include_str!("../../demo/index.html");
const SCRIPT_BODY: &str = include_str!("../../demo/app.js");

const PAGE: File = File {
    content_type: "text/html; charset=utf-8",
    body: PAGE_BODY,
    hash: fnv1a(PAGE_BODY.as_bytes()),
};

const SCRIPT: File = File {
    content_type: "text/javascript; charset=utf-8",
    body: SCRIPT_BODY,
    hash: fnv1a(SCRIPT_BODY.as_bytes()),
};

/// The page's policy: its own script and styles (the inline `<style>`
/// included), fetches and `EventSource` to this origin, never in a frame.
const PAGE_POLICY: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; \
connect-src 'self'; frame-ancestors 'none'";

/// The methods the page's paths answer (the router answers every
/// `OPTIONS`).
const PAGE_METHODS: &str = "GET, HEAD, OPTIONS";

/// The file served at `path`, if any (`/` and `/index.html` are the page);
/// any other path is routed on.
pub fn file(path: &str) -> Option<&'static File> {
    match path {
        "/" | "/index.html" => Some(&PAGE),
        "/app.js" => Some(&SCRIPT),
        _ => None,
    }
}

/// FNV-1a over the file, at compile time: the validator changes with the
/// bytes, so a redeploy with a new page is never answered with a stale 304.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut rest = bytes;
    while let [byte, tail @ ..] = rest {
        hash ^= *byte as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        rest = tail;
    }
    hash
}

fn etag(file: &File) -> String {
    format!("\"demo-{:016x}\"", file.hash)
}

/// The answer for a request for `file`: `GET` and `HEAD` get it (or `304`
/// when `If-None-Match` names it); other methods get `405`.
pub fn answer(file: &File, method: Method, if_none: Option<&str>) -> Response {
    if !matches!(method, Method::Get | Method::Head) {
        return Response::error(&ProtocolError::MethodNotAllowed {
            allow: PAGE_METHODS,
        });
    }
    let tag = etag(file);
    let fresh = if_none.is_some_and(|v| if_none_match(v, &tag));
    let head = Response::new(if fresh { 304 } else { 200 })
        .header(h::CONTENT_TYPE, file.content_type)
        .header(h::ETAG, tag)
        // Revalidated on every load: a redeploy shows at once.
        .header(h::CACHE_CONTROL, "no-cache")
        .header(h::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(h::REFERRER_POLICY, "no-referrer")
        .header(h::CONTENT_SECURITY_POLICY, PAGE_POLICY);
    if fresh || method == Method::Head {
        head
    } else {
        head.body(file.body.as_bytes().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer for `path`, which must be one of the page's.
    fn request(method: Method, path: &str, if_none: Option<&str>) -> Response {
        answer(file(path).unwrap(), method, if_none)
    }

    #[test]
    fn the_page_and_its_script_are_served_with_their_types_and_policy() {
        for (path, ty, needle) in [
            ("/", "text/html", "Resumable AI answers"),
            (
                "/index.html",
                "text/html",
                "<script type=\"module\" src=\"/app.js\">",
            ),
            ("/app.js", "text/javascript", "new EventSource"),
        ] {
            let r = request(Method::Get, path, None);
            assert_eq!(r.status, 200, "{path}");
            assert!(r.get(h::CONTENT_TYPE).unwrap().starts_with(ty), "{path}");
            assert!(String::from_utf8_lossy(&r.body).contains(needle), "{path}");
            assert_eq!(r.get(h::CONTENT_SECURITY_POLICY), Some(PAGE_POLICY));
            assert_eq!(r.get(h::X_CONTENT_TYPE_OPTIONS), Some("nosniff"));
        }
    }

    #[test]
    fn other_paths_are_not_the_pages() {
        for path in ["/app.js/", "/index.htm", "/v1/stream/x", "", "/demo/app.js"] {
            assert!(file(path).is_none(), "{path}");
        }
    }

    #[test]
    fn a_matching_validator_gets_304_and_head_gets_no_body() {
        let first = request(Method::Get, "/app.js", None);
        let tag = first.get(h::ETAG).unwrap().to_string();
        let again = request(Method::Get, "/app.js", Some(&tag));
        assert_eq!(again.status, 304);
        assert!(again.body.is_empty());
        let stale = request(Method::Get, "/app.js", Some("\"demo-0\""));
        assert_eq!(stale.status, 200);
        let head = request(Method::Head, "/", None);
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        let page = request(Method::Get, "/", None);
        assert_ne!(
            page.get(h::ETAG),
            Some(tag.as_str()),
            "each file has its own tag"
        );
    }

    #[test]
    fn writes_to_the_page_get_405_naming_get_and_head() {
        for m in [Method::Post, Method::Put, Method::Delete, Method::Other] {
            let r = request(m, "/", None);
            assert_eq!(r.status, 405);
            assert_eq!(r.get(h::ALLOW), Some(PAGE_METHODS));
        }
    }
}
