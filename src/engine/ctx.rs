//! The per-request values that come from outside the engine: the clock, the
//! id a new stream would get, the configuration and a random value. Time,
//! randomness and configuration are arguments, never globals.

use super::config::Config;

/// Per-request values from outside the engine.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The object's clock, in ms since the Unix epoch.
    pub now_ms: u64,
    /// The id a stream created by this request gets (unique per creation).
    pub new_stream_id: &'a str,
    pub config: &'a Config,
    /// A random value (cursor jitter, §10.1).
    pub random: u64,
}
