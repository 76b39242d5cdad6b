//! The framework-neutral request the engine reads: method, absolute URL,
//! query string, headers and the whole body. The adapter builds it from the
//! platform request; tests build it directly.

use crate::protocol::headers as h;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Put,
    Post,
    Delete,
    Options,
    Other,
}

impl Method {
    pub fn parse(s: &str) -> Method {
        match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "PUT" => Method::Put,
            "POST" => Method::Post,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// Absolute URL without the query, used for `Location` on 201.
    pub url: String,
    /// Raw query string without `?`.
    pub query: String,
    /// Header names lowercased; repeated headers already joined by `, `.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn new(method: Method, url: &str) -> Request {
        let (url, query) = url.split_once('?').unwrap_or((url, ""));
        Request {
            method,
            url: url.to_string(),
            query: query.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Request {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `Stream-Closed` is set only by the value `true`, any case (§4.1);
    /// every other value is as if absent.
    pub fn stream_closed(&self) -> bool {
        self.header(h::STREAM_CLOSED)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_case_insensitive() {
        let r =
            Request::new(Method::Post, "http://x/v1/stream/a").with_header("Stream-Closed", "TRUE");
        assert!(r.stream_closed());
        assert_eq!(r.header("STREAM-CLOSED"), Some("TRUE"));
    }

    #[test]
    fn only_true_closes() {
        for v in ["false", "yes", "1", "", "truee"] {
            let r = Request::new(Method::Post, "http://x/").with_header("stream-closed", v);
            assert!(!r.stream_closed(), "{v:?}");
        }
    }

    #[test]
    fn splits_the_query() {
        let r = Request::new(Method::Get, "http://x/v1/stream/a?offset=-1");
        assert_eq!(r.url, "http://x/v1/stream/a");
        assert_eq!(r.query, "offset=-1");
    }
}
