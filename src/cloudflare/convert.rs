//! Platform request/response conversion: `worker::Request` → the engine's
//! neutral [`Request`], and the engine's [`Response`] → `worker::Response`.
//!
//! The body is always read to its end before anything answers: workerd
//! resets the object if a response goes out while the request body is still
//! streaming. Past the size limit the rest is drained and dropped, so a huge
//! upload costs no memory and still gets its 413.

use super::budget;
use crate::engine::request::{Method, Request};
use crate::engine::response::Response;
use crate::protocol::error::{Invalid, ProtocolError};
use futures_util::StreamExt;
use worker::{Headers, ResponseBuilder};

/// Why a body could not be taken whole.
pub enum BodyError {
    TooLarge(u64),
    /// The isolate's append budget is spent (see [`budget`]).
    Busy,
    Broken,
}

impl BodyError {
    pub fn protocol(&self) -> ProtocolError {
        match self {
            BodyError::TooLarge(limit) => ProtocolError::PayloadTooLarge { limit: *limit },
            BodyError::Busy => ProtocolError::AppendsBusy,
            BodyError::Broken => Invalid::Body.into(),
        }
    }
}

/// The `Content-Length` a request declares, if any.
pub fn declared_length(req: &worker::Request) -> Option<u64> {
    req.headers()
        .get(crate::protocol::headers::CONTENT_LENGTH)
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Reads the whole body, keeping at most `limit` bytes and reserving what
/// it keeps in the isolate's append budget (at most `budget_limit` in all);
/// the reservation lives as long as the caller holds it. A body that is too
/// large or does not fit the budget is still read to its end and dropped:
/// workerd resets the object if it answers while the body is streaming.
pub async fn read_body(
    req: &mut worker::Request,
    limit: u64,
    budget_limit: u64,
) -> Result<(Vec<u8>, Option<budget::Reserved>), BodyError> {
    if matches!(req.method(), worker::Method::Get | worker::Method::Head) {
        return Ok((Vec::new(), None));
    }
    let declared = declared_length(req);
    // A declared length within the limit: one read of the whole body.
    if let Some(n) = declared.filter(|n| *n <= limit) {
        let Some(held) = budget::reserve(n, budget_limit) else {
            drain(req).await;
            return Err(BodyError::Busy);
        };
        let body = req.bytes().await.map_err(|_| BodyError::Broken)?;
        return Ok((body, Some(held)));
    }
    let Ok(mut stream) = req.stream() else {
        return Ok((Vec::new(), None));
    };
    let mut body = Vec::new();
    let mut held = budget::reserve(0, budget_limit);
    let mut refused: Option<BodyError> = None;
    let mut broken = false;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) if refused.is_none() => {
                let n = bytes.len() as u64;
                if body.len() as u64 + n > limit {
                    refused = Some(BodyError::TooLarge(limit));
                } else if !held.as_mut().is_some_and(|h| h.grow(n, budget_limit)) {
                    refused = Some(BodyError::Busy);
                } else {
                    body.extend_from_slice(&bytes);
                    continue;
                }
                body = Vec::new();
                held = None;
            }
            Ok(_) => {}
            Err(_) => {
                broken = true;
                break;
            }
        }
    }
    match (broken, refused) {
        (true, _) => Err(BodyError::Broken),
        (false, Some(e)) => Err(e),
        (false, None) => Ok((body, held)),
    }
}

/// Drains and drops a body we will not use (no budget: nothing is kept).
pub async fn drain(req: &mut worker::Request) {
    drain_at_most(req, u64::MAX).await;
}

/// Reads and drops up to `max` bytes of a body.
pub async fn drain_at_most(req: &mut worker::Request, max: u64) {
    if let Ok(mut stream) = req.stream() {
        let mut seen: u64 = 0;
        while let Some(Ok(chunk)) = stream.next().await {
            seen = seen.saturating_add(chunk.len() as u64);
            if seen >= max {
                break;
            }
        }
    }
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

/// The platform headers of an engine response.
pub fn headers_of(r: &Response) -> worker::Result<Headers> {
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
