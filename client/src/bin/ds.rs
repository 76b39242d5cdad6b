//! `ds`: a Durable Streams stream as easy to use as a file.
//!
//! ```text
//! ds create URL [--json | --content-type CT] [--ttl S]
//! ds append URL [DATA | -]        (-: stdin, line by line, through the idempotent producer)
//! ds cat URL [--from OFFSET]      (everything to the tail; the next offset on stderr)
//! ds tail -f URL [--from OFFSET] [--sse]   (live; resumes across disconnects)
//! ds head URL
//! ds delete URL
//! ```
//!
//! `--token` (or `DS_TOKEN`) sends a bearer token.

use clap::{Parser, Subcommand};
use durable_streams_client::{
    Client, Consumer, CreateOptions, Error, IdempotentProducer, Live, ProducerOptions, START,
};
use futures_util::StreamExt;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Parser)]
#[command(name = "ds", version, about = "Read and write Durable Streams")]
struct Cli {
    /// A bearer token.
    #[arg(long, env = "DS_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates a stream.
    Create {
        url: String,
        /// A JSON-mode stream (application/json).
        #[arg(long)]
        json: bool,
        #[arg(long, conflicts_with = "json")]
        content_type: Option<String>,
        /// A sliding TTL, in seconds.
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// Appends DATA, or stdin line by line with `-` (the default).
    Append {
        url: String,
        data: Option<String>,
        /// The content type (default: the stream's).
        #[arg(long)]
        content_type: Option<String>,
    },
    /// Prints the stream from an offset to its tail.
    Cat {
        url: String,
        #[arg(long, default_value = START)]
        from: String,
    },
    /// Follows the stream live.
    Tail {
        /// Follow (the only mode).
        #[arg(short = 'f', long)]
        follow: bool,
        url: String,
        #[arg(long, default_value = START)]
        from: String,
        /// SSE instead of long-polls.
        #[arg(long)]
        sse: bool,
    },
    /// Prints the stream's metadata.
    Head { url: String },
    /// Deletes the stream.
    Delete { url: String },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ds: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Error> {
    let mut client = Client::new();
    if let Some(t) = &cli.token {
        client = client.with_token(t)?;
    }
    match cli.command {
        Command::Create {
            url,
            json,
            content_type,
            ttl,
        } => {
            let ct = if json {
                Some("application/json".to_string())
            } else {
                content_type
            };
            let opts = CreateOptions {
                content_type: ct,
                ttl_s: ttl,
                ..CreateOptions::default()
            };
            let next = client.stream(&url).create(&opts).await?;
            println!("{next}");
        }
        Command::Append {
            url,
            data,
            content_type,
        } => {
            let stream = client.stream(&url);
            let ct = match content_type {
                Some(ct) => ct,
                None => stream.head().await?.content_type,
            };
            match data.as_deref() {
                Some(d) if d != "-" => {
                    let next = stream.append(d.to_string(), &ct).await?;
                    println!("{next}");
                }
                _ => append_stdin(stream, &ct).await?,
            }
        }
        Command::Cat { url, from } => {
            read(client.stream(&url), &from, Live::No).await?;
        }
        Command::Tail {
            url,
            from,
            sse,
            follow: _,
        } => {
            let live = if sse { Live::Sse } else { Live::LongPoll };
            read(client.stream(&url), &from, live).await?;
        }
        Command::Head { url } => {
            let h = client.stream(&url).head().await?;
            println!("content-type: {}", h.content_type);
            println!("next-offset: {}", h.next_offset);
            println!("closed: {}", h.closed);
            if let Some(t) = h.ttl_s {
                println!("ttl: {t}");
            }
            if let Some(e) = h.expires_at {
                println!("expires-at: {e}");
            }
            if let Some(e) = h.earliest_offset {
                println!("earliest-offset: {e}");
            }
        }
        Command::Delete { url } => client.stream(&url).delete().await?,
    }
    Ok(())
}

/// Appends stdin line by line (each line with its newline; in JSON mode
/// each line is one JSON value) through the idempotent producer.
async fn append_stdin(stream: durable_streams_client::Stream, ct: &str) -> Result<(), Error> {
    let json = ct.starts_with("application/json");
    let id = format!("ds-{:016x}", fastrand::u64(..));
    let producer = IdempotentProducer::new(stream, ProducerOptions::new(&id, ct));
    let mut lines = BufReader::new(tokio::io::stdin());
    let mut buf = Vec::new();
    let (mut count, mut bytes) = (0u64, 0u64);
    let started = Instant::now();
    let mut shown = Instant::now();
    loop {
        buf.clear();
        let n = lines
            .read_until(b'\n', &mut buf)
            .await
            .map_err(|e| Error::Protocol(format!("stdin: {e}")))?;
        if n == 0 {
            break;
        }
        let item = if json {
            let t = String::from_utf8_lossy(&buf).trim().to_string();
            if t.is_empty() {
                continue;
            }
            t.into_bytes()
        } else {
            buf.clone()
        };
        count += 1;
        bytes += n as u64;
        producer.send(item).await?;
        if shown.elapsed() >= Duration::from_secs(1) {
            shown = Instant::now();
            eprint!("\rds: {count} lines, {bytes} bytes appended");
        }
    }
    producer.close().await?;
    if started.elapsed() >= Duration::from_secs(1) {
        eprintln!("\rds: {count} lines, {bytes} bytes appended");
    }
    Ok(())
}

/// Prints the stream from `from`; the offset to continue from goes to
/// stderr at the end (or on Ctrl-C).
async fn read(stream: durable_streams_client::Stream, from: &str, live: Live) -> Result<(), Error> {
    let mut batches = Box::pin(Consumer::new(stream, from).live(live).batches());
    let mut offset = from.to_string();
    let mut out = std::io::stdout().lock();
    let (mut bytes, mut shown) = (0u64, Instant::now());
    let outcome = loop {
        let next = tokio::select! {
            b = batches.next() => b,
            _ = tokio::signal::ctrl_c() => break Ok(()),
        };
        let Some(batch) = next else { break Ok(()) };
        let batch = match batch {
            Ok(b) => b,
            Err(e) => break Err(e),
        };
        out.write_all(&batch.data)
            .and_then(|()| out.flush())
            .map_err(|e| Error::Protocol(format!("stdout: {e}")))?;
        bytes += batch.data.len() as u64;
        offset = batch.next_offset;
        if live == Live::No && shown.elapsed() >= Duration::from_secs(1) {
            shown = Instant::now();
            eprint!("\rds: {bytes} bytes read");
        }
    };
    eprintln!("ds: next offset {offset}");
    outcome
}
