//! Platform request/response conversion: `worker::Request` → the engine's
//! neutral [`Request`], and the engine's [`Response`] → `worker::Response`.
//!
//! The body is always read to its end before anything answers: workerd
//! resets the object if a response goes out while the request body is still
//! streaming. Past the size limit the rest is drained and dropped, so a huge
//! upload costs no memory and still gets its 413.

use crate::engine::request::{Method, Request};
use crate::engine::response::Response;
use crate::protocol::error::{Invalid, ProtocolError};
use futures_util::StreamExt;
use worker::{Headers, ResponseBuilder};

/// Why a body could not be taken whole.
pub enum BodyError {
    TooLarge(u64),
    Broken,
}

impl BodyError {
    pub fn protocol(&self) -> ProtocolError {
        match self {
            BodyError::TooLarge(limit) => ProtocolError::PayloadTooLarge { limit: *limit },
            BodyError::Broken => Invalid::Body.into(),
        }
    }
}

/// Reads the whole body, keeping at most `limit` bytes.
pub async fn read_body(req: &mut worker::Request, limit: u64) -> Result<Vec<u8>, BodyError> {
    if matches!(req.method(), worker::Method::Get | worker::Method::Head) {
        return Ok(Vec::new());
    }
    // A declared length within the limit: one read of the whole body.
    let declared = req
        .headers()
        .get(crate::protocol::headers::CONTENT_LENGTH)
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n <= limit) {
        return req.bytes().await.map_err(|_| BodyError::Broken);
    }
    let Ok(mut stream) = req.stream() else {
        return Ok(Vec::new());
    };
    let mut body = Vec::new();
    let mut too_large = false;
    let mut broken = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) if !too_large => {
                if (body.len() + bytes.len()) as u64 > limit {
                    too_large = true;
                    body = Vec::new();
                } else {
                    body.extend_from_slice(&bytes);
                }
            }
            Ok(_) => {}
            Err(_) => {
                broken = true;
                break;
            }
        }
    }
    if broken {
        Err(BodyError::Broken)
    } else if too_large {
        Err(BodyError::TooLarge(limit))
    } else {
        Ok(body)
    }
}

/// Drains and drops a body we will not use.
pub async fn drain(req: &mut worker::Request) {
    let _ = read_body(req, 0).await;
}

/// The neutral request, with `body` already read.
pub fn to_neutral(req: &worker::Request, body: Vec<u8>) -> worker::Result<Request> {
    let mut url = req.url()?;
    let query = url.query().unwrap_or_default().to_string();
    url.set_query(None);
    url.set_fragment(None);
    Ok(Request {
        method: Method::parse(req.inner().method().as_str()),
        url: url.to_string(),
        query,
        headers: req.headers().entries().collect(),
        body,
    })
}

/// The platform response for an engine response.
/// The platform headers of an engine response.
fn headers_of(r: &Response) -> worker::Result<Headers> {
    let headers = Headers::new();
    for (name, value) in &r.headers {
        headers.append(name, value)?;
    }
    Ok(headers)
}

pub fn render(r: Response) -> worker::Result<worker::Response> {
    let headers = headers_of(&r)?;
    let builder = ResponseBuilder::new()
        .with_status(r.status)
        .with_headers(headers);
    Ok(if r.body.is_empty() {
        builder.empty()
    } else {
        builder.fixed(r.body)
    })
}

/// A streamed platform response: `head`'s status and headers, `body`'s chunks.
pub fn render_stream<S>(head: Response, body: S) -> worker::Result<worker::Response>
where
    S: futures_util::Stream<Item = worker::Result<Vec<u8>>> + 'static,
{
    let headers = headers_of(&head)?;
    Ok(worker::Response::from_stream(body)?
        .with_status(head.status)
        .with_headers(headers))
}

/// A protocol error as a platform response.
pub fn render_error(e: &ProtocolError) -> worker::Result<worker::Response> {
    render(Response::error(e))
}
