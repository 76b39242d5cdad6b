//! # durable-streams-edge
//!
//! A [Durable Streams](https://github.com/durable-streams/durable-streams)
//! server (PROTOCOL.md) for Cloudflare Workers: every stream path under
//! `/v1/stream/` is its own Durable Object, storing its bytes in the object's
//! SQLite storage.
//!
//! ## Layout
//!
//! Dependencies point inward: `cloudflare` → `engine` → `protocol`.
//!
//! - [`protocol`]: wire values and codecs, with no storage, time or platform.
//!   - `headers`: every header and query name, as constants.
//!   - `offset`: `Offset` (`%016d_%016d`) and the `-1`/`now` sentinels (§8).
//!   - `content_type`: media types compared by essence; JSON mode, SSE encoding (§9).
//!   - `expiry`: strict `Stream-TTL`, RFC 3339 `Stream-Expires-At` (§5.1).
//!   - `producer`: idempotent producer headers and `Stream-Seq` (§5.2, §5.2.1).
//!   - `json`: JSON-mode validation, one-level flattening, stored form (§9.1).
//!   - `cache`: Cache-Control values, ETags, `If-None-Match` (§10).
//!   - `path`: stream path validation and canonical names (§12.2).
//!   - `query`: `offset`, `live`, `cursor` parsing (§5.6–§5.8).
//!   - `error`: the one `ProtocolError` enum and its status/code/header view.
//! - [`engine`]: the per-stream state machine.
//!   - `state`: metadata, producer state and chunk rows; cutting appends into rows.
//!   - `store`: the synchronous storage contract and an in-memory store.
//!   - `create`, `append`, `read`, `producer`: one decision each (§5.1–§5.6).
//!   - `service`: load → decide → persist → render for one request.
//!   - `request`, `response`, `config`, `failure`, `body`: neutral types and helpers.
//! - `cloudflare` (wasm32 only): the Worker entry, the Durable Object, its
//!   SQLite store and request/response conversion; the only code that uses `worker`.

// Nothing on a request path may panic: a panic resets every Durable Object in
// the isolate. Tests are exempt (clippy.toml).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented,
    clippy::await_holding_refcell_ref
)]

pub mod engine;
pub mod protocol;

#[cfg(target_arch = "wasm32")]
mod cloudflare;
