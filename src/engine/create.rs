//! PUT: create a stream, or confirm an identical one (PROTOCOL.md §5.1).
//!
//! Order: headers parse (content type, TTL/Expires-At, closed flag; 400s),
//! then the size limit (413), then, for an existing stream, the idempotency
//! comparison (content type by essence, the same expiry policy, the same
//! closure status: 200 or 409; the body is never appended on 200), else the
//! new stream with its initial body (JSON-validated, `[]` allowed) → 201.

use super::body::{advance, check_size, chunks_for};
use super::decision::Decision;
use super::request::Request;
use super::response::Response;
use super::service::Ctx;
use super::state::StreamMeta;
use super::store::Commit;
use crate::protocol::content_type::ContentType;
use crate::protocol::error::ProtocolError;
use crate::protocol::expiry::Expiry;
use crate::protocol::headers as h;
use crate::protocol::json::JsonBody;
use crate::protocol::offset::Offset;

/// A parsed PUT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateInput<'a> {
    pub content_type: ContentType,
    pub expiry: Expiry,
    pub closed: bool,
    pub body: &'a [u8],
}

impl<'a> CreateInput<'a> {
    pub fn parse(req: &'a Request, ctx: &Ctx) -> Result<CreateInput<'a>, ProtocolError> {
        let content_type = match req.header(h::CONTENT_TYPE).map(str::trim) {
            None | Some("") => ContentType::default_type(),
            Some(v) => ContentType::parse(v)?,
        };
        if req.header(h::STREAM_FORKED_FROM).is_some() {
            // Forks arrive with the fork issue; until then refuse them plainly
            // rather than create a stream that is not a fork.
            return Err(crate::protocol::error::Invalid::ForkSource.into());
        }
        let expiry =
            Expiry::from_headers(req.header(h::STREAM_TTL), req.header(h::STREAM_EXPIRES_AT))?;
        check_size(&req.body, ctx.config.max_append_bytes)?;
        Ok(CreateInput {
            content_type,
            expiry,
            closed: req.stream_closed(),
            body: &req.body,
        })
    }
}

/// The headers a PUT answers with, 200 or 201.
fn described(status: u16, meta: &StreamMeta) -> Response {
    let r = Response::new(status)
        .header(h::CONTENT_TYPE, meta.content_type.as_str())
        .header(h::STREAM_NEXT_OFFSET, meta.tail.to_string());
    if meta.closed {
        r.header(h::STREAM_CLOSED, "true")
    } else {
        r
    }
}

pub fn decide(
    existing: Option<&StreamMeta>,
    input: CreateInput<'_>,
    url: &str,
    ctx: &Ctx,
) -> Result<Decision, ProtocolError> {
    if let Some(meta) = existing {
        let same = meta.content_type.matches(&input.content_type)
            && meta.expiry.same_policy(&input.expiry)
            && meta.closed == input.closed;
        return if same {
            Ok(Decision::reply(described(200, meta)))
        } else {
            Err(ProtocolError::ConfigMismatch)
        };
    }
    let (chunks, len) = chunks_for(
        &input.content_type,
        input.body,
        JsonBody::Create,
        0,
        ctx.config.row_bytes,
    )?;
    let meta = StreamMeta {
        stream_id: ctx.new_stream_id.to_string(),
        content_type: input.content_type,
        tail: advance(Offset::ZERO, len)?,
        closed: input.closed,
        closed_by: None,
        expiry: input.expiry,
        created_ms: ctx.now_ms,
        last_access_ms: ctx.now_ms,
        last_stream_seq: None,
    };
    let response = described(201, &meta).header(h::LOCATION, url);
    Ok(Decision::write(Commit::Create { meta, chunks }, response))
}
