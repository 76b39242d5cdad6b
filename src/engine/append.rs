//! POST: append, append-and-close, close-only (PROTOCOL.md §5.2, §5.2.1, §5.3).
//!
//! Check order (the reference servers' and the conformance suite's):
//! 1. producer headers all-or-none and well-formed (400);
//! 2. empty body: close-only if `Stream-Closed: true`, else 400; with a body,
//!    `Content-Type` present and valid (400), `Stream-Seq` well-formed (400),
//!    size (413);
//! 3. the stream exists (404);
//! 4. closed: the closing tuple again → 204; close-only without a producer →
//!    204; anything else → 409 with `Stream-Closed` and `Stream-Next-Offset`;
//! 5. content type matches (409);
//! 6. producer fencing (403 / 400 / 409 gap / 204 duplicate), before
//!    `Stream-Seq` so a retried duplicate is never a sequence conflict;
//! 7. `Stream-Seq` strictly greater, byte-wise (409);
//! 8. JSON validation and flattening (400, `[]` → 400);
//! 9. one commit: chunks, tail, closure, `Stream-Seq` and producer state.

use super::body::{advance, check_size, chunks_for, Layout};
use super::ctx::Ctx;
use super::decision::Decision;
use super::producer::{check, ProducerCheck};
use super::request::Request;
use super::response::Response;
use super::state::{ProducerState, StreamMeta};
use super::store::Commit;
use crate::protocol::content_type::ContentType;
use crate::protocol::error::{Invalid, ProtocolError};
use crate::protocol::headers as h;
use crate::protocol::json::JsonBody;
use crate::protocol::producer::{ProducerTuple, StreamSeq};

/// A parsed POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendInput<'a> {
    pub close: bool,
    pub producer: Option<ProducerTuple>,
    /// The body's content type; `None` exactly when the body is empty.
    pub content_type: Option<ContentType>,
    pub seq: Option<StreamSeq>,
    pub body: &'a [u8],
}

impl<'a> AppendInput<'a> {
    pub fn parse(req: &'a Request, ctx: &Ctx) -> Result<AppendInput<'a>, ProtocolError> {
        let producer = ProducerTuple::from_headers(
            req.header(h::PRODUCER_ID),
            req.header(h::PRODUCER_EPOCH),
            req.header(h::PRODUCER_SEQ),
        )?;
        let close = req.stream_closed();
        let body = req.body.as_slice();
        if body.is_empty() {
            if !close {
                return Err(Invalid::EmptyBody.into());
            }
            return Ok(AppendInput {
                close,
                producer,
                content_type: None,
                seq: None,
                body,
            });
        }
        let content_type = match req.header(h::CONTENT_TYPE).map(str::trim) {
            None | Some("") => return Err(Invalid::ContentTypeMissing.into()),
            Some(v) => ContentType::parse(v)?,
        };
        let seq = req
            .header(h::STREAM_SEQ)
            .map(StreamSeq::parse)
            .transpose()?;
        check_size(body, ctx.config.max_append_bytes)?;
        Ok(AppendInput {
            close,
            producer,
            content_type: Some(content_type),
            seq,
            body,
        })
    }

    fn close_only(&self) -> bool {
        self.body.is_empty()
    }
}

fn with_producer(r: Response, epoch: u64, seq: u64) -> Response {
    r.header(h::PRODUCER_EPOCH, epoch.to_string())
        .header(h::PRODUCER_SEQ, seq.to_string())
}

fn closed_ack(meta: &StreamMeta) -> Response {
    Response::new(204)
        .header(h::STREAM_NEXT_OFFSET, meta.wire(meta.tail))
        .header(h::STREAM_CLOSED, "true")
}

pub fn decide(
    meta: &StreamMeta,
    producer_state: Option<ProducerState>,
    input: AppendInput<'_>,
    ctx: &Ctx,
) -> Result<Decision, ProtocolError> {
    if meta.closed {
        if let Some(p) = &input.producer {
            if meta.closed_by.as_ref() == Some(p) {
                return Ok(Decision::reply(with_producer(
                    closed_ack(meta),
                    p.epoch,
                    p.seq,
                )));
            }
        } else if input.close_only() {
            // Idempotent close; it still counts as a write for the TTL.
            let mut next = meta.clone();
            next.last_access_ms = ctx.now_ms;
            let commit = Commit::Append {
                meta: next,
                chunks: Vec::new(),
                producer: None,
            };
            return Ok(Decision::write(commit, closed_ack(meta)));
        }
        return Err(ProtocolError::StreamClosed {
            tail: meta.wire(meta.tail),
        });
    }
    if let Some(ct) = &input.content_type {
        if !ct.matches(&meta.content_type) {
            return Err(ProtocolError::ContentTypeMismatch);
        }
    }
    let producer = match &input.producer {
        None => None,
        Some(p) => match check(producer_state, p)? {
            ProducerCheck::Duplicate { last_seq } => {
                let r = with_producer(Response::new(204), p.epoch, last_seq);
                return Ok(Decision::reply(r));
            }
            ProducerCheck::Accept(state) => Some((p.id.clone(), state)),
        },
    };
    if let (Some(seq), Some(last)) = (&input.seq, &meta.last_stream_seq) {
        if seq <= last {
            return Err(ProtocolError::SeqRegression);
        }
    }
    let (chunks, len) = chunks_for(
        &meta.content_type,
        input.body,
        JsonBody::Append,
        &Layout::append(meta, ctx),
    )?;
    let mut next = meta.clone();
    next.tail = advance(meta.tail, len)?;
    next.tail_count = chunks.last().map_or(meta.tail_count, |c| c.count);
    next.last_access_ms = ctx.now_ms;
    if input.seq.is_some() {
        next.last_stream_seq = input.seq.clone();
    }
    if input.close {
        next.closed = true;
        next.closed_by = input.producer.clone();
    }
    let status = if input.producer.is_some() && !input.close_only() {
        200
    } else {
        204
    };
    let mut response = Response::new(status).header(h::STREAM_NEXT_OFFSET, next.wire(next.tail));
    if next.closed {
        response = response.header(h::STREAM_CLOSED, "true");
    }
    if let Some(p) = &input.producer {
        response = with_producer(response, p.epoch, p.seq);
    }
    let commit = Commit::Append {
        meta: next,
        chunks,
        producer,
    };
    Ok(Decision::write(commit, response))
}
