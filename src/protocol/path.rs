//! Stream paths: the part of the URL after `/v1/stream/` (PROTOCOL.md §3
//! leaves the URL shape to the server; §12.2 asks for path validation).
//!
//! The raw (percent-encoded) path is decoded segment by segment into the
//! stream's canonical name, which names its Durable Object. Refused: an empty
//! name or segment, `.` and `..`, an encoded `/` or `\`, control characters,
//! invalid UTF-8, names over 1024 bytes (414), and a first segment `__ds`
//! (reserved for the subscription APIs of §6).

use super::error::{Invalid, ProtocolError};
use percent_encoding::percent_decode_str;

/// Where streams live.
pub const PREFIX: &str = "/v1/stream/";
/// Longest accepted stream name, in bytes, raw or decoded.
pub const MAX_LEN: usize = 1024;
const RESERVED: &str = "__ds";

/// A validated stream name, e.g. `chat/room-1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamPath(String);

impl StreamPath {
    /// From a URL path such as `/v1/stream/chat/room-1`. `Ok(None)` when the
    /// path is not under [`PREFIX`] at all (not a stream route).
    pub fn from_url_path(url_path: &str) -> Result<Option<StreamPath>, ProtocolError> {
        match url_path.strip_prefix(PREFIX) {
            Some(raw) => StreamPath::parse(raw).map(Some),
            None => Ok(None),
        }
    }

    /// From the raw (percent-encoded) name.
    pub fn parse(raw: &str) -> Result<StreamPath, ProtocolError> {
        if raw.len() > MAX_LEN * 3 {
            return Err(ProtocolError::UriTooLong);
        }
        if raw.is_empty() {
            return Err(Invalid::Path.into());
        }
        let mut name = String::with_capacity(raw.len());
        for (i, seg) in raw.split('/').enumerate() {
            let decoded = percent_decode_str(seg)
                .decode_utf8()
                .map_err(|_| Invalid::Path)?;
            let bad = decoded.is_empty()
                || decoded == "."
                || decoded == ".."
                || decoded
                    .chars()
                    .any(|c| c == '/' || c == '\\' || c.is_control());
            if bad {
                return Err(Invalid::Path.into());
            }
            if i == 0 && decoded == RESERVED {
                return Err(Invalid::PathReserved.into());
            }
            if i > 0 {
                name.push('/');
            }
            name.push_str(&decoded);
        }
        if name.len() > MAX_LEN {
            return Err(ProtocolError::UriTooLong);
        }
        Ok(StreamPath(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The stream's URL path (`/v1/stream/` and its segments, encoded).
    pub fn url_path(&self) -> String {
        let segs: Vec<String> = self
            .0
            .split('/')
            .map(|s| {
                percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
            })
            .collect();
        format!("{PREFIX}{}", segs.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(p: &str) -> Result<Option<String>, ProtocolError> {
        StreamPath::from_url_path(p).map(|o| o.map(|s| s.0))
    }

    #[test]
    fn accepts_nested_names_and_decodes_them() {
        assert_eq!(parse("/v1/stream/a").unwrap().unwrap(), "a");
        assert_eq!(
            parse("/v1/stream/chat/room-1").unwrap().unwrap(),
            "chat/room-1"
        );
        assert_eq!(parse("/v1/stream/caf%C3%A9").unwrap().unwrap(), "café");
        assert_eq!(parse("/v1/stream/a%20b").unwrap().unwrap(), "a b");
    }

    #[test]
    fn url_paths_round_trip() {
        for name in ["a", "chat/room-1", "café/a b", "x%y/z?w#v"] {
            let p = StreamPath::parse(&StreamPath(name.into()).url_path()[PREFIX.len()..]);
            assert_eq!(p.unwrap().as_str(), name);
        }
    }

    #[test]
    fn other_routes_are_not_streams() {
        assert_eq!(parse("/").unwrap(), None);
        assert_eq!(parse("/v1/streams/a").unwrap(), None);
    }

    #[test]
    fn refuses_bad_names() {
        for p in [
            "/v1/stream/",
            "/v1/stream/a//b",
            "/v1/stream/a/",
            "/v1/stream/..",
            "/v1/stream/a/../b",
            "/v1/stream/%2e%2e",
            "/v1/stream/a%2Fb",
            "/v1/stream/a%5Cb",
            "/v1/stream/a%00b",
            "/v1/stream/a%0Ab",
            "/v1/stream/%FF",
        ] {
            assert_eq!(parse(p), Err(Invalid::Path.into()), "{p}");
        }
        assert_eq!(
            parse("/v1/stream/__ds/subscriptions/x"),
            Err(Invalid::PathReserved.into())
        );
    }

    #[test]
    fn refuses_long_names() {
        let long = format!("/v1/stream/{}", "a".repeat(MAX_LEN + 1));
        assert_eq!(parse(&long), Err(ProtocolError::UriTooLong));
        let ok = format!("/v1/stream/{}", "a".repeat(MAX_LEN));
        assert!(parse(&ok).is_ok());
    }
}
