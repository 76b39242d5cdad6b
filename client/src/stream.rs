//! A handle on one stream URL: create, append, close, head, delete and
//! catch-up reads (PROTOCOL.md §5.1–§5.6).

use crate::error::{from_response, Error, Result};
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::time::Duration;

/// `offset=-1`: the start of the stream (the earliest retained offset).
pub const START: &str = "-1";
/// `offset=now`: the tail.
pub const NOW: &str = "now";

/// How requests are made: the HTTP client, a bearer token, extra headers.
#[derive(Clone, Debug)]
pub struct Client {
    pub(crate) http: reqwest::Client,
    pub(crate) headers: HeaderMap,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    pub fn new() -> Client {
        Client {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            headers: HeaderMap::new(),
        }
    }

    /// Sends `Authorization: Bearer <token>` with every request.
    pub fn with_token(self, token: &str) -> Result<Client> {
        self.with_header("authorization", &format!("Bearer {token}"))
    }

    /// Sends this header with every request.
    pub fn with_header(mut self, name: &str, value: &str) -> Result<Client> {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Error::BadRequest(format!("bad header name {name}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| Error::BadRequest("bad header value".into()))?;
        self.headers.insert(name, value);
        Ok(self)
    }

    /// A handle on the stream at `url`.
    pub fn stream(&self, url: &str) -> Stream {
        Stream {
            client: self.clone(),
            url: url.to_string(),
        }
    }
}

/// One stream.
#[derive(Clone, Debug)]
pub struct Stream {
    pub(crate) client: Client,
    pub(crate) url: String,
}

/// How to create a stream.
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    /// `application/octet-stream` when unset.
    pub content_type: Option<String>,
    /// `Stream-TTL` (seconds, sliding).
    pub ttl_s: Option<u64>,
    /// `Stream-Expires-At` (RFC 3339).
    pub expires_at: Option<String>,
    /// Created closed.
    pub closed: bool,
    /// Initial content.
    pub body: Option<Bytes>,
}

/// A stream's metadata (`HEAD`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub content_type: String,
    pub next_offset: String,
    pub closed: bool,
    pub ttl_s: Option<u64>,
    pub expires_at: Option<String>,
    /// The earliest readable offset (servers with retention say).
    pub earliest_offset: Option<String>,
}

/// One read: the bytes (JSON mode: a JSON array), where to read next, and
/// whether the reader is at the tail or the end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub data: Bytes,
    pub next_offset: String,
    pub up_to_date: bool,
    pub closed: bool,
    /// The long-poll cursor to echo (PROTOCOL.md §10.1).
    pub cursor: Option<String>,
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn required(h: &HeaderMap, name: &str) -> Result<String> {
    header(h, name).ok_or_else(|| Error::Protocol(format!("the answer has no {name}")))
}

impl Stream {
    pub fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.client
            .http
            .request(method, url)
            .headers(self.client.headers.clone())
    }

    /// `PUT`: creates the stream (201), or confirms an identical one (200).
    /// Answers the tail offset.
    pub async fn create(&self, opts: &CreateOptions) -> Result<String> {
        let ct = opts
            .content_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".into());
        let mut req = self
            .request(reqwest::Method::PUT, &self.url)
            .header("content-type", ct);
        if let Some(ttl) = opts.ttl_s {
            req = req.header("stream-ttl", ttl.to_string());
        }
        if let Some(at) = &opts.expires_at {
            req = req.header("stream-expires-at", at);
        }
        if opts.closed {
            req = req.header("stream-closed", "true");
        }
        if let Some(b) = &opts.body {
            req = req.body(b.clone());
        }
        let r = req.send().await?;
        if !r.status().is_success() {
            return Err(from_response(r).await);
        }
        required(r.headers(), "stream-next-offset")
    }

    /// `POST`: appends `body` (of `content_type`); answers the new tail.
    pub async fn append(&self, body: impl Into<Bytes>, content_type: &str) -> Result<String> {
        let r = self
            .request(reqwest::Method::POST, &self.url)
            .header("content-type", content_type)
            .body(body.into())
            .send()
            .await?;
        if !r.status().is_success() {
            return Err(from_response(r).await);
        }
        required(r.headers(), "stream-next-offset")
    }

    /// Appends `value` as one JSON message (JSON-mode streams).
    pub async fn append_json<T: serde::Serialize>(&self, value: &T) -> Result<String> {
        let body = serde_json::to_vec(value).map_err(|e| Error::BadRequest(e.to_string()))?;
        self.append(body, "application/json").await
    }

    /// Closes the stream (idempotent); answers its final offset.
    pub async fn close(&self) -> Result<String> {
        let r = self
            .request(reqwest::Method::POST, &self.url)
            .header("stream-closed", "true")
            .send()
            .await?;
        if !r.status().is_success() {
            return Err(from_response(r).await);
        }
        required(r.headers(), "stream-next-offset")
    }

    pub async fn head(&self) -> Result<Head> {
        let r = self
            .request(reqwest::Method::HEAD, &self.url)
            .send()
            .await?;
        if !r.status().is_success() {
            return Err(from_response(r).await);
        }
        let h = r.headers();
        Ok(Head {
            content_type: header(h, "content-type").unwrap_or_default(),
            next_offset: required(h, "stream-next-offset")?,
            closed: header(h, "stream-closed").as_deref() == Some("true"),
            ttl_s: header(h, "stream-ttl").and_then(|v| v.parse().ok()),
            expires_at: header(h, "stream-expires-at"),
            earliest_offset: header(h, "stream-earliest-offset"),
        })
    }

    pub async fn delete(&self) -> Result<()> {
        let r = self
            .request(reqwest::Method::DELETE, &self.url)
            .send()
            .await?;
        if !r.status().is_success() {
            return Err(from_response(r).await);
        }
        Ok(())
    }

    /// One catch-up read from `offset` (`START`, `NOW`, or an offset the
    /// server gave).
    pub async fn read(&self, offset: &str) -> Result<Batch> {
        self.read_query(offset, None).await
    }

    /// One long-poll read from `offset`: data, or after the server's timeout
    /// an empty batch at the same offset.
    pub async fn long_poll(&self, offset: &str, cursor: Option<&str>) -> Result<Batch> {
        self.read_query(offset, Some(cursor.unwrap_or(""))).await
    }

    async fn read_query(&self, offset: &str, long_poll: Option<&str>) -> Result<Batch> {
        let mut url = reqwest::Url::parse(&self.url)
            .map_err(|e| Error::BadRequest(format!("bad stream URL: {e}")))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("offset", offset);
            if let Some(cursor) = long_poll {
                q.append_pair("live", "long-poll");
                if !cursor.is_empty() {
                    q.append_pair("cursor", cursor);
                }
            }
        }
        let r = self
            .request(reqwest::Method::GET, url.as_str())
            .send()
            .await?;
        let status = r.status().as_u16();
        if status != 200 && status != 204 {
            return Err(from_response(r).await);
        }
        let h = r.headers().clone();
        let next_offset = required(&h, "stream-next-offset")?;
        let data = if status == 204 {
            Bytes::new()
        } else {
            r.bytes().await?
        };
        Ok(Batch {
            data,
            next_offset,
            up_to_date: header(&h, "stream-up-to-date").as_deref() == Some("true"),
            closed: header(&h, "stream-closed").as_deref() == Some("true"),
            cursor: header(&h, "stream-cursor"),
        })
    }
}
