//! The per-stream engine: pure decisions over a stream's state, driven
//! through the synchronous [`store::Store`] contract by [`service::handle`].
//! No clock, no I/O, no platform types: `now` and configuration come in as
//! values, and responses go out as [`response::Response`].

pub mod access;
pub mod append;
pub mod body;
pub mod bridge;
pub mod config;
pub mod create;
pub mod ctx;
pub mod decision;
pub mod demo_page;
pub mod failure;
pub mod fork;
pub mod fork_create;
pub mod lifecycle;
pub mod live;
pub mod outcome;
pub mod producer;
pub mod proxy;
pub mod read;
pub mod request;
pub mod response;
pub mod resume;
pub mod retention;
pub mod service;
pub mod socket_reader;
pub mod source;
pub mod state;
pub mod store;
pub mod subscription;
pub mod trim;
pub mod wire;
pub mod ws;
