//! Protocol values and codecs: everything about the wire format and nothing
//! about storage, time or the platform (PROTOCOL.md §4–§10).

pub mod auth;
pub mod cache;
pub mod content_type;
pub mod cursor;
pub mod demo_model;
pub mod error;
pub mod expiry;
pub mod glob;
pub mod headers;
pub mod json;
pub mod multi;
pub mod offset;
pub mod outbound;
pub mod path;
pub mod producer;
pub mod proxy;
pub mod query;
pub mod retention;
pub mod sse;
pub mod subscription;
