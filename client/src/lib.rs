//! A [Durable Streams](https://github.com/durable-streams/durable-streams)
//! client (PROTOCOL.md): a [`Stream`] handle for one URL, a resuming
//! [`Consumer`], and a batching [`IdempotentProducer`]; the `ds` command
//! line is built on them.
//!
//! ```no_run
//! use durable_streams_client::{Client, Consumer, CreateOptions, Live, START};
//! use futures_util::StreamExt;
//!
//! # async fn demo() -> durable_streams_client::Result<()> {
//! let client = Client::new();
//! let stream = client.stream("http://127.0.0.1:8787/v1/stream/chat");
//! stream
//!     .create(&CreateOptions { content_type: Some("text/plain".into()), ..Default::default() })
//!     .await?;
//! stream.append("hello", "text/plain").await?;
//! let mut batches = Box::pin(Consumer::new(stream.clone(), START).live(Live::No).batches());
//! while let Some(batch) = batches.next().await {
//!     let batch = batch?;
//!     println!("{:?} (resume at {})", batch.data, batch.next_offset);
//! }
//! # Ok(())
//! # }
//! ```

mod consumer;
mod error;
mod producer;
mod sse;
mod stream;

pub use consumer::{Backoff, Consumer, Live};
pub use error::{Error, Result};
pub use producer::{IdempotentProducer, ProducerOptions};
pub use stream::{Batch, Client, CreateOptions, Head, Stream, NOW, START};
