//! PUT: create a stream or a fork, or confirm an identical one (PROTOCOL.md
//! §5.1, §4.2).
//!
//! Order: headers parse (content type, TTL/Expires-At, closed flag, fork
//! headers; 400s), then the size limit (413), then, for an existing stream,
//! the idempotency comparison (content type by essence, the same expiry
//! policy, the same closure status, the same fork configuration, every
//! retention header sent equal to the stored policy: 200 or
//! 409; a soft-deleted path is 409; the body is never appended on 200).
//! A new plain stream is created here (201); a new fork first needs its
//! source's answer ([`super::fork::Acquired`]), then [`finish_fork`].

use super::body::{advance, check_size, chunks_for, Layout};
use super::ctx::Ctx;
use super::decision::Decision;
use super::fork::{inherit_expiry, Acquired, ForkInput};
use super::request::Request;
use super::response::Response;
use super::state::{ForkLink, StreamMeta};
use super::store::Commit;
use crate::protocol::content_type::ContentType;
use crate::protocol::error::ProtocolError;
use crate::protocol::expiry::Expiry;
use crate::protocol::headers as h;
use crate::protocol::json::JsonBody;
use crate::protocol::offset::Offset;
use crate::protocol::retention::Retention;

/// A parsed PUT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateInput<'a> {
    /// As sent; `None` means the default, or for a fork the source's.
    pub content_type: Option<ContentType>,
    pub expiry: Expiry,
    pub closed: bool,
    pub fork: Option<ForkInput>,
    /// The retention headers as sent, and the policy they give under the
    /// deployment's defaults and ceilings.
    pub retention_asked: Retention,
    pub retention: Retention,
    pub body: &'a [u8],
}

impl<'a> CreateInput<'a> {
    pub fn parse(req: &'a Request, ctx: &Ctx) -> Result<CreateInput<'a>, ProtocolError> {
        let content_type = match req.header(h::CONTENT_TYPE).map(str::trim) {
            None | Some("") => None,
            Some(v) => Some(ContentType::parse(v)?),
        };
        let expiry =
            Expiry::from_headers(req.header(h::STREAM_TTL), req.header(h::STREAM_EXPIRES_AT))?;
        let fork = ForkInput::from_headers(
            req.header(h::STREAM_FORKED_FROM),
            req.header(h::STREAM_FORK_OFFSET),
            req.header(h::STREAM_FORK_SUB_OFFSET),
        )?;
        let retention_asked = Retention::from_headers(
            req.header(h::STREAM_RETENTION_MAX_AGE),
            req.header(h::STREAM_RETENTION_MAX_BYTES),
            req.header(h::STREAM_RETENTION_MAX_MESSAGES),
        )?;
        let retention = retention_asked.within(&ctx.config.retention_limits())?;
        check_size(&req.body, ctx.config.max_append_bytes)?;
        Ok(CreateInput {
            content_type,
            expiry,
            closed: req.stream_closed(),
            fork,
            retention_asked,
            retention,
            body: &req.body,
        })
    }

    /// Whether `meta` is the stream this PUT would create.
    fn matches(&self, meta: &StreamMeta) -> bool {
        let fork_ok = match (&self.fork, &meta.fork) {
            (None, None) => true,
            (Some(input), Some(link)) => input.matches(link),
            _ => false,
        };
        let ct_ok = match (&self.content_type, &self.fork) {
            (Some(ct), _) => ct.matches(&meta.content_type),
            (None, Some(_)) => true,
            (None, None) => ContentType::default_type().matches(&meta.content_type),
        };
        let inherited = meta.fork.as_ref().is_some_and(|l| l.expiry_inherited);
        let expiry_ok = if inherited && self.expiry == Expiry::Never {
            true
        } else {
            !inherited && meta.expiry.same_policy(&self.expiry)
        };
        fork_ok
            && ct_ok
            && expiry_ok
            && meta.closed == self.closed
            && self.retention_asked.agrees(&meta.retention)
    }
}

/// The headers a PUT answers with, 200 or 201 (fork headers are not echoed).
fn described(status: u16, meta: &StreamMeta) -> Response {
    let r = Response::new(status)
        .header(h::CONTENT_TYPE, meta.content_type.as_str())
        .header(h::STREAM_NEXT_OFFSET, meta.wire(meta.tail));
    if meta.closed {
        r.header(h::STREAM_CLOSED, "true")
    } else {
        r
    }
}

/// An existing stream at the path: 200 if it is this one, else 409.
pub fn confirm(meta: &StreamMeta, input: &CreateInput<'_>) -> Result<Decision, ProtocolError> {
    if meta.soft_deleted || !input.matches(meta) {
        return Err(ProtocolError::ConfigMismatch);
    }
    Ok(Decision::reply(described(200, meta)))
}

fn new_stream(
    meta: StreamMeta,
    input: &CreateInput<'_>,
    url: &str,
    ctx: &Ctx,
    settle: Option<String>,
) -> Result<Decision, ProtocolError> {
    let start = meta.tail;
    let (chunks, len) = chunks_for(
        &meta.content_type,
        input.body,
        JsonBody::Create,
        &Layout::append(&meta, ctx),
    )?;
    let meta = StreamMeta {
        tail: advance(start, len)?,
        tail_count: chunks.last().map_or(0, |c| c.count),
        ..meta
    };
    let response = described(201, &meta).header(h::LOCATION, url);
    Ok(Decision::write(
        Commit::Create {
            meta,
            chunks,
            settle,
        },
        response,
    ))
}

/// The generation a stream created now gets: later than any before it at
/// this path (and, normally, its creation time in ms).
pub fn next_generation(last: u64, now_ms: u64) -> u64 {
    now_ms.max(last.saturating_add(1))
}

/// The fields every new stream starts with.
struct Fresh {
    generation: u64,
    content_type: ContentType,
    expiry: Expiry,
    closed: bool,
    tail: Offset,
    retention: Retention,
}

fn base_meta(ctx: &Ctx, f: Fresh) -> StreamMeta {
    StreamMeta {
        stream_id: ctx.new_stream_id.to_string(),
        generation: f.generation,
        content_type: f.content_type,
        tail: f.tail,
        closed: f.closed,
        closed_by: None,
        expiry: f.expiry,
        created_ms: ctx.now_ms,
        last_access_ms: ctx.now_ms,
        last_stream_seq: None,
        fork: None,
        soft_deleted: false,
        retention: f.retention,
        earliest: Offset::ZERO,
        earliest_count: 0,
        tail_count: 0,
    }
}

/// A new plain stream (no fork headers): 201.
pub fn create_plain(
    input: &CreateInput<'_>,
    generation: u64,
    url: &str,
    ctx: &Ctx,
) -> Result<Decision, ProtocolError> {
    let fresh = Fresh {
        generation,
        content_type: input
            .content_type
            .clone()
            .unwrap_or_else(ContentType::default_type),
        expiry: input.expiry.clone(),
        closed: input.closed,
        tail: Offset::ZERO,
        retention: input.retention,
    };
    new_stream(base_meta(ctx, fresh), input, url, ctx, None)
}

/// A new fork, once its source has answered: the fork starts open at the
/// divergence point with the source's content type and, unless it asked for
/// its own, the source's expiry (§4.2); its initial body is its first own
/// data. It also accepts the offsets its source chain printed for the
/// inherited range. Settles the creation intent `ctx.new_stream_id` in the
/// same commit.
pub fn finish_fork(
    input: &CreateInput<'_>,
    acquired: &Acquired,
    generation: u64,
    url: &str,
    ctx: &Ctx,
) -> Result<Decision, ProtocolError> {
    let Some(fork) = &input.fork else {
        return Err(ProtocolError::ConfigMismatch);
    };
    let (expiry, expiry_inherited) = inherit_expiry(input.expiry.clone(), &acquired.expiry);
    let fresh = Fresh {
        generation,
        content_type: acquired.content_type.clone(),
        expiry,
        closed: input.closed,
        tail: acquired.point,
        retention: input.retention,
    };
    let point = acquired.point.position();
    let mut ancestors: Vec<(u64, u64)> = acquired
        .ancestors
        .iter()
        .map(|(g, limit)| (*g, (*limit).min(point)))
        .collect();
    ancestors.push((acquired.generation, point));
    let mut meta = base_meta(ctx, fresh);
    meta.fork = Some(ForkLink {
        source: fork.source.as_str().to_string(),
        source_id: acquired.source_id.clone(),
        offset: acquired.offset,
        offset_given: fork.offset.is_some(),
        sub_offset: fork.sub_offset,
        point: acquired.point,
        expiry_inherited,
        ancestors,
    });
    new_stream(meta, input, url, ctx, Some(ctx.new_stream_id.to_string()))
}
