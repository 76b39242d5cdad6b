//! Stream content types (PROTOCOL.md §5.1, §5.2, §9).
//!
//! A content type is kept as the client sent it (trimmed) and compared by its
//! essence, `type/subtype` lowercased, so parameters such as `charset` and the
//! case of the type do not turn a matching append into a 409. The essence also
//! decides the stream's mode: `application/json` is JSON mode (§9.1); SSE
//! carries `text/*` and JSON as text and everything else as base64 (§5.8).

use super::error::Invalid;

/// The type used when a PUT has no `Content-Type` (§5.1 MAY).
pub const DEFAULT: &str = "application/octet-stream";
const JSON: &str = "application/json";
const MAX_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    raw: String,
    essence: String,
}

/// How SSE `data` events carry this stream's bytes (§5.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseEncoding {
    Text,
    Base64,
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl ContentType {
    /// Parses a `Content-Type` value: `type "/" subtype *( ";" parameter )`.
    pub fn parse(value: &str) -> Result<ContentType, Invalid> {
        let raw = value.trim();
        if raw.len() > MAX_LEN || raw.bytes().any(|b| b.is_ascii_control()) {
            return Err(Invalid::ContentType);
        }
        let media = raw.split(';').next().unwrap_or_default().trim();
        let (ty, sub) = media.split_once('/').ok_or(Invalid::ContentType)?;
        if !is_token(ty) || !is_token(sub) {
            return Err(Invalid::ContentType);
        }
        Ok(ContentType {
            raw: raw.to_string(),
            essence: media.to_ascii_lowercase(),
        })
    }

    pub fn default_type() -> ContentType {
        ContentType {
            raw: DEFAULT.to_string(),
            essence: DEFAULT.to_string(),
        }
    }

    /// As the stream's creator sent it.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    pub fn essence(&self) -> &str {
        &self.essence
    }

    /// Same media type, ignoring case and parameters.
    pub fn matches(&self, other: &ContentType) -> bool {
        self.essence == other.essence
    }

    pub fn is_json(&self) -> bool {
        self.essence == JSON
    }

    /// Whether a browser may run this type as a document or script (HTML,
    /// SVG, XML, JavaScript): reads of such streams are served as
    /// attachments, never rendered in the deployment's origin (§12.3).
    pub fn is_active(&self) -> bool {
        let e = self.essence.as_str();
        matches!(
            e,
            "text/html"
                | "application/xhtml+xml"
                | "image/svg+xml"
                | "text/xml"
                | "application/xml"
                | "text/javascript"
                | "application/javascript"
                | "application/ecmascript"
                | "text/ecmascript"
                | "text/xsl"
                | "application/xslt+xml"
        ) || e.ends_with("+xml")
            || e.ends_with("/xml")
    }

    pub fn sse_encoding(&self) -> SseEncoding {
        if self.is_json() || self.essence.starts_with("text/") {
            SseEncoding::Text
        } else {
            SseEncoding::Base64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_ignoring_case_and_parameters() {
        let a = ContentType::parse("application/json").unwrap();
        let b = ContentType::parse("Application/JSON; charset=utf-8").unwrap();
        assert!(a.matches(&b));
        assert!(b.is_json());
        assert_eq!(b.as_str(), "Application/JSON; charset=utf-8");
    }

    #[test]
    fn different_types_do_not_match() {
        let a = ContentType::parse("text/plain").unwrap();
        let b = ContentType::parse("text/html").unwrap();
        assert!(!a.matches(&b));
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "json",
            "/json",
            "text/",
            "te xt/plain",
            "text/plain\u{0}",
            "a/b/c",
        ] {
            assert_eq!(ContentType::parse(s), Err(Invalid::ContentType), "{s:?}");
        }
    }

    #[test]
    fn sse_encoding_follows_the_type() {
        let enc = |s: &str| ContentType::parse(s).unwrap().sse_encoding();
        assert_eq!(enc("text/plain"), SseEncoding::Text);
        assert_eq!(enc("application/json"), SseEncoding::Text);
        assert_eq!(enc("application/octet-stream"), SseEncoding::Base64);
        assert_eq!(enc("application/ndjson"), SseEncoding::Base64);
    }
}
