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
//!   - `offset`: positions, wire offsets (`%016d_%016d`: generation, position), `-1`/`now` (§8).
//!   - `content_type`: media types compared by essence; JSON mode, SSE encoding (§9).
//!   - `expiry`: strict `Stream-TTL`, RFC 3339 `Stream-Expires-At` (§5.1).
//!   - `producer`: idempotent producer headers and `Stream-Seq` (§5.2, §5.2.1).
//!   - `json`: JSON-mode validation and one-pass flattening into stored rows (§9.1).
//!   - `cache`: cache policy and keys, ETags, `If-None-Match` (§10).
//!   - `cursor`: long-poll and SSE cursors with jitter (§10.1).
//!   - `sse`: SSE event framing, base64, UTF-8-safe cuts (§5.8).
//!   - `path`: stream path validation and canonical names (§12.2).
//!   - `query`: `offset`, `live`, `cursor` parsing (§5.6–§5.8).
//!   - `retention`: retention policy headers, deployment defaults and ceilings.
//!   - `auth`: access tokens, scopes and the operations a request needs (§12.1).
//!   - `glob`: stream path globs and glob coverage (§6, §12.1).
//!   - `subscription`: the `__ds` routes, subscription bodies, webhook URL checks (§6, §7, §12.8).
//!   - `error`: the one `ProtocolError` enum and its status/code/header view.
//! - [`engine`]: the per-stream state machine.
//!   - `ctx`, `config`: per-request values and the configuration (defaults, ranges).
//!   - `state`: metadata (and which of it is stored lazily), producer state, chunk rows.
//!   - `store`: the synchronous storage contract and an in-memory store (host only).
//!   - `lifecycle`: loading with expiry, sliding-TTL renewal, cache lifetimes, the alarm.
//!   - `service`: load → decide → persist → render for one client request.
//!   - `outcome`: what the adapter does next, and the effects it owes.
//!   - `create`, `append`, `read`, `producer`, `body`: one decision each (§5.1–§5.6).
//!   - `live`, `resume`: long-poll and SSE steps, and resuming a parked reader (§5.7, §5.8).
//!   - `fork`, `fork_create`, `source`: forks (§4.2): the pure part, the fork's
//!     side and the source's side of the protocol between objects.
//!   - `wire`: the messages between a fork's object and its source's.
//!   - `retention`: which whole units a trim step drops (bounded steps).
//!   - `trim`: one trim step over the store (units from rows, the Trim commit).
//!   - `subscription`: one subscription's state machine: links, wakes, leases,
//!     webhook retries (`wake`: answers to a wake, fenced; `views`: its JSON
//!     and bodies), pull-wake claims, fencing (§7).
//!   - `demo_page`: the demo page and its script, embedded, with their headers.
//!   - `request`, `response`, `decision`, `failure`: neutral types and helpers.
//! - `cloudflare` (wasm32 only): the Worker entry and its edge cache, the
//!   Durable Object (shared state, effects and outbox, SSE pump, fork roles),
//!   live readers, the isolate's memory budget, the fork protocol between
//!   objects, subscriptions (their object, the pattern index, a stream's
//!   links, the signing key), the SQLite store with its schema versions, request/response
//!   conversion and the test-only routes; the only code that uses `worker`.

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
