//! The framework-neutral response, the headers every response carries
//! (PROTOCOL.md §12.7 browser security headers, CORS) and the CORS preflight.

use crate::protocol::error::{ProtocolError, ALLOWED_METHODS};
use crate::protocol::headers as h;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// Request headers a browser client may send.
const ALLOW_HEADERS: &str = "content-type, if-none-match, stream-ttl, stream-expires-at, stream-seq, \
stream-closed, stream-forked-from, stream-fork-offset, stream-fork-sub-offset, producer-id, producer-epoch, \
producer-seq, authorization, cache-control, last-event-id, stream-retention-max-age, stream-retention-max-bytes, \
stream-retention-max-messages";

/// Response headers a browser client may read.
const EXPOSE_HEADERS: &str = "content-type, etag, location, retry-after, www-authenticate, stream-next-offset, stream-cursor, \
stream-up-to-date, stream-closed, stream-ttl, stream-expires-at, stream-sse-data-encoding, producer-epoch, \
producer-seq, producer-expected-seq, producer-received-seq, x-cache, stream-earliest-offset, \
stream-retention-max-age, stream-retention-max-bytes, stream-retention-max-messages";

impl Response {
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: Vec<u8>) -> Response {
        self.body = body;
        self
    }

    /// A header's value by (lowercase) name, for tests and the adapter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Adds the headers every response carries, errors included. Idempotent:
    /// a finished response is returned as it is.
    pub fn finish(mut self) -> Response {
        if self.get(h::X_CONTENT_TYPE_OPTIONS).is_some() {
            return self;
        }
        self.headers.extend([
            (h::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            // Nothing this server sends may run script in its origin, whatever
            // a stream's content type (§12.3): a document is sandboxed.
            (h::CONTENT_SECURITY_POLICY, "sandbox".to_string()),
            (h::CROSS_ORIGIN_RESOURCE_POLICY, "cross-origin".to_string()),
            (h::ACCESS_CONTROL_ALLOW_ORIGIN, "*".to_string()),
            (h::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE_HEADERS.to_string()),
        ]);
        self
    }

    /// Marks a read of a stream whose type a browser would run (HTML, SVG,
    /// XML, JavaScript) as a download, never a page in this origin (§12.3).
    pub fn inert(self, content_type: &crate::protocol::content_type::ContentType) -> Response {
        if content_type.is_active() {
            self.header(h::CONTENT_DISPOSITION, "attachment")
        } else {
            self
        }
    }

    /// An error rendered as a small JSON body: `{"error":{"code","message"}}`.
    pub fn error(err: &ProtocolError) -> Response {
        let view = err.view();
        let body = serde_json::json!({ "error": { "code": view.code, "message": view.message } });
        let mut r = Response::new(view.status)
            .header(h::CONTENT_TYPE, "application/json")
            .header(h::CACHE_CONTROL, "no-store")
            .body(body.to_string().into_bytes());
        r.headers.extend(view.headers);
        r.finish()
    }

    /// The answer to a CORS preflight.
    pub fn preflight() -> Response {
        Response::new(204)
            .header(h::ACCESS_CONTROL_ALLOW_METHODS, ALLOWED_METHODS)
            .header(h::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS)
            .header(h::ACCESS_CONTROL_MAX_AGE, "86400")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_security_headers_and_a_reason() {
        let r = Response::error(&ProtocolError::NotFound);
        assert_eq!(r.status, 404);
        assert_eq!(r.get(h::X_CONTENT_TYPE_OPTIONS), Some("nosniff"));
        assert_eq!(r.get(h::CROSS_ORIGIN_RESOURCE_POLICY), Some("cross-origin"));
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["error"]["code"], "NOT_FOUND");
    }

    #[test]
    fn finishing_twice_adds_each_header_once() {
        let r = Response::preflight().finish();
        for name in [
            h::ACCESS_CONTROL_ALLOW_ORIGIN,
            h::ACCESS_CONTROL_EXPOSE_HEADERS,
            h::X_CONTENT_TYPE_OPTIONS,
        ] {
            let n = r.headers.iter().filter(|(k, _)| *k == name).count();
            assert_eq!(n, 1, "{name}");
        }
    }

    #[test]
    fn preflight_allows_if_none_match() {
        let r = Response::preflight();
        assert_eq!(r.status, 204);
        assert!(r
            .get(h::ACCESS_CONTROL_ALLOW_HEADERS)
            .unwrap()
            .contains("if-none-match"));
        assert_eq!(r.get(h::ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
    }
}
