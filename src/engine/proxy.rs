//! One proxy job's decisions (`protocol::proxy`; README.md, Resumable AI
//! responses): its stored record, what its alarm does, and how an answer is
//! gathered from the upstream's events into `delta` batches and the final
//! message. Pure: the adapter (`cloudflare::proxy_object`) does the calls.
//!
//! The interruption rule. A run appends as an idempotent producer whose
//! epoch is the run's number, so a retried append is never a duplicate
//! token. A run that stops without its final message (the object restarted
//! or was evicted mid-generation) is never resumed: the next alarm finds
//! the job still `running` with no run alive, reads the stream to learn
//! what was appended, and closes it with `status: "interrupted"` under a
//! newer epoch (which fences the old run, should it still append). An
//! upstream that ends or breaks before it finished gives `interrupted`
//! too; an upstream error, `failed`; a `DELETE`, `cancelled`. Every stream
//! ends with exactly one `done` message.

use crate::protocol::proxy::{delta_message, Event, Final, Status};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Created; its first run starts on the alarm.
    Queued,
    /// A run started (and may have died).
    Running,
    /// Its final message is appended and the stream closed.
    Finished,
}

/// A job as its object stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    /// The body sent upstream (JSON text).
    pub request: String,
    pub state: State,
    /// Runs started so far; the current run's producer epoch.
    pub attempt: u64,
    /// A cancel was asked for.
    pub cancel: bool,
    /// How it ended, once finished.
    pub status: Option<String>,
}

impl Job {
    pub fn new(id: String, request: String) -> Job {
        Job {
            id,
            request,
            state: State::Queued,
            attempt: 0,
            cancel: false,
            status: None,
        }
    }

    pub fn view(&self, stream_url: &str) -> Value {
        serde_json::json!({
            "id": self.id,
            "stream": stream_url,
            "state": self.state,
            "status": self.status,
        })
    }
}

/// What the job's alarm does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Call the upstream and append the answer, as producer epoch `epoch`.
    Run {
        epoch: u64,
    },
    /// A run died (or a cancel came with none alive): close the stream with
    /// this status, as epoch `epoch`.
    Close {
        epoch: u64,
        status: Status,
    },
    Nothing,
}

/// The alarm's step for `job` (updated), given whether a run of this
/// object instance is still alive.
pub fn on_alarm(job: &mut Job, run_alive: bool) -> Step {
    match job.state {
        State::Finished => Step::Nothing,
        _ if run_alive => Step::Nothing,
        State::Queued if !job.cancel => {
            job.state = State::Running;
            job.attempt += 1;
            Step::Run { epoch: job.attempt }
        }
        State::Queued | State::Running => {
            job.state = State::Running;
            job.attempt += 1;
            Step::Close {
                epoch: job.attempt,
                status: if job.cancel {
                    Status::Cancelled
                } else {
                    Status::Interrupted
                },
            }
        }
    }
}

/// The longest answer a job keeps (bytes of text): a longer one ends
/// `interrupted` there, so an upstream that never stops cannot grow a job's
/// memory or its stream without bound.
pub const MAX_OUTPUT_BYTES: usize = 4 * 1024 * 1024;

/// The answer so far, as events arrive.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    pub output: String,
    /// Text not appended yet.
    batch: String,
    finish: Option<String>,
    usage: Option<Value>,
    error: Option<String>,
    done: bool,
}

/// Why a run ended, besides the upstream's own end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The upstream's response ended (cleanly or not).
    Ended,
    /// The upstream's response broke mid-way.
    Broken,
    Cancelled,
}

impl Answer {
    pub fn apply(&mut self, e: Event) {
        match e {
            Event::Delta(t) => {
                self.output.push_str(&t);
                self.batch.push_str(&t);
            }
            Event::Finish(r) => self.finish = Some(r),
            Event::Usage(u) => self.usage = Some(u),
            Event::Error(m) => self.error = Some(m),
            Event::Done => self.done = true,
        }
    }

    /// The upstream said it is over (`[DONE]` or an error), or the answer
    /// reached [`MAX_OUTPUT_BYTES`].
    pub fn over(&self) -> bool {
        self.done || self.error.is_some() || self.too_long()
    }

    fn too_long(&self) -> bool {
        self.output.len() > MAX_OUTPUT_BYTES
    }

    /// The text gathered since the last batch, as one `delta` message.
    pub fn take_batch(&mut self) -> Option<Value> {
        if self.batch.is_empty() {
            return None;
        }
        Some(delta_message(&std::mem::take(&mut self.batch)))
    }

    /// The final message for a run that ended as `ending`.
    pub fn finish(&self, ending: Ending) -> Final {
        let (status, reason) = match (ending, &self.error) {
            (Ending::Cancelled, _) => (Status::Cancelled, Some("cancelled by DELETE".into())),
            (_, Some(e)) => (Status::Failed, Some(format!("the upstream failed: {e}"))),
            _ if self.too_long() => (
                Status::Interrupted,
                Some(format!("the answer passed {MAX_OUTPUT_BYTES} bytes")),
            ),
            // Finished text is complete, even if the connection broke after.
            (_, None) if self.finish.is_some() || self.done => (Status::Complete, None),
            _ => (
                Status::Interrupted,
                Some("the upstream's answer ended before it finished".into()),
            ),
        };
        Final {
            status,
            output: self.output.clone(),
            finish_reason: self.finish.clone(),
            usage: self.usage.clone(),
            reason,
        }
    }
}

/// The final message of a job closed by its alarm (see the module doc):
/// `output` is every `delta` the stream holds.
pub fn closing(status: Status, output: String) -> Final {
    let reason = match status {
        Status::Cancelled => "cancelled by DELETE",
        _ => "the proxy restarted during generation; the answer is incomplete",
    };
    Final {
        status,
        output,
        finish_reason: None,
        usage: None,
        reason: Some(reason.into()),
    }
}

/// The text of every `delta` in `messages` (a read of the stream), and
/// whether a `done` message is among them.
pub fn gather(messages: &[Value]) -> (String, bool) {
    let mut out = String::new();
    let mut done = false;
    for m in messages {
        match m.get("type").and_then(Value::as_str) {
            Some("delta") => out.push_str(m.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("done") => done = true,
            _ => {}
        }
    }
    (out, done)
}

/// The proxy's variables (README.md, Configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `PROXY_UPSTREAM_URL`: the API base (`.../v1`); none: the demo model.
    pub upstream: Option<String>,
    /// `PROXY_UPSTREAM_KEY` (a secret): sent upstream as a bearer token.
    pub key: Option<String>,
    /// `PROXY_UPSTREAM_HOSTS`: the hosts (`host` or `host:port`) the
    /// upstream may be on.
    pub hosts: Vec<String>,
    /// `PROXY_MODEL`: the model when a request names none.
    pub model: String,
    /// `PROXY_TTL_S`: a job stream's sliding TTL.
    pub ttl_s: u64,
    /// `PROXY_DEMO_TOKEN_MS`: the demo model's pace.
    pub token_ms: u64,
    /// `PROXY_DEV_LOOPBACK=1`: an upstream on loopback, over http, is allowed.
    pub allow_loopback: bool,
}

pub const DEFAULT_TTL_S: u64 = 3_600;
pub const DEFAULT_TOKEN_MS: u64 = 60;
pub const DEMO_MODEL: &str = "demo";

impl Settings {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Settings {
        let text = |n: &str| {
            lookup(n)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let num = |n: &str, default: u64, lo: u64, hi: u64| {
            text(n)
                .and_then(|v| v.parse::<u64>().ok())
                .map_or(default, |v| v.clamp(lo, hi))
        };
        Settings {
            upstream: text("PROXY_UPSTREAM_URL"),
            key: text("PROXY_UPSTREAM_KEY"),
            hosts: text("PROXY_UPSTREAM_HOSTS")
                .unwrap_or_default()
                .split([',', ' '])
                .filter(|h| !h.is_empty())
                .map(str::to_ascii_lowercase)
                .collect(),
            model: text("PROXY_MODEL").unwrap_or_else(|| DEMO_MODEL.into()),
            ttl_s: num("PROXY_TTL_S", DEFAULT_TTL_S, 1, 30 * 86_400),
            token_ms: num("PROXY_DEMO_TOKEN_MS", DEFAULT_TOKEN_MS, 1, 5_000),
            allow_loopback: text("PROXY_DEV_LOOPBACK").as_deref() == Some("1"),
        }
    }

    /// The chat-completions URL to call, `Ok(None)` for the demo model, or
    /// why the configured upstream may not be called (SSRF rules of
    /// `protocol::outbound`, and the host allow-list).
    pub fn endpoint(&self) -> Result<Option<String>, String> {
        let Some(base) = &self.upstream else {
            return Ok(None);
        };
        let url = crate::protocol::outbound::check(
            base,
            "PROXY_UPSTREAM_URL",
            "PROXY_DEV_LOOPBACK",
            self.allow_loopback,
        )?;
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let with_port = url.port().map(|p| format!("{host}:{p}"));
        let listed = self
            .hosts
            .iter()
            .any(|h| *h == host || Some(h) == with_port.as_ref());
        if !listed {
            return Err(format!(
                "PROXY_UPSTREAM_URL's host {host} is not in PROXY_UPSTREAM_HOSTS"
            ));
        }
        Ok(Some(format!(
            "{}/chat/completions",
            base.trim_end_matches('/')
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_alarm_runs_once_then_closes_a_dead_run() {
        let mut job = Job::new("j".into(), "{}".into());
        assert_eq!(on_alarm(&mut job, false), Step::Run { epoch: 1 });
        assert_eq!(on_alarm(&mut job, true), Step::Nothing, "the run is alive");
        assert_eq!(
            on_alarm(&mut job, false),
            Step::Close {
                epoch: 2,
                status: Status::Interrupted
            },
            "never resumed: the dead run is recorded under a newer epoch"
        );
        job.state = State::Finished;
        assert_eq!(on_alarm(&mut job, false), Step::Nothing);
        let mut cancelled = Job::new("k".into(), "{}".into());
        cancelled.cancel = true;
        assert_eq!(
            on_alarm(&mut cancelled, false),
            Step::Close {
                epoch: 1,
                status: Status::Cancelled
            }
        );
    }

    #[test]
    fn answers_end_by_their_events() {
        let mut a = Answer::default();
        a.apply(Event::Delta("He".into()));
        a.apply(Event::Delta("llo".into()));
        assert_eq!(a.take_batch(), Some(delta_message("Hello")));
        assert_eq!(a.take_batch(), None);
        assert_eq!(a.finish(Ending::Ended).status, Status::Interrupted);
        assert_eq!(a.finish(Ending::Broken).status, Status::Interrupted);
        a.apply(Event::Finish("stop".into()));
        let f = a.finish(Ending::Ended);
        assert_eq!((f.status, f.output.as_str()), (Status::Complete, "Hello"));
        assert_eq!(a.finish(Ending::Broken).status, Status::Complete);
        assert_eq!(a.finish(Ending::Cancelled).status, Status::Cancelled);
        a.apply(Event::Error("overloaded".into()));
        assert_eq!(a.finish(Ending::Ended).status, Status::Failed);
        let mut long = Answer::default();
        long.apply(Event::Delta("x".repeat(MAX_OUTPUT_BYTES + 1)));
        assert!(long.over(), "an endless upstream is cut");
        let f = long.finish(Ending::Ended);
        assert_eq!(f.status, Status::Interrupted);
        assert!(f.reason.unwrap().contains("bytes"));
        let (text, done) = gather(&[
            delta_message("a"),
            delta_message("b"),
            closing(Status::Interrupted, "ab".into()).message(),
        ]);
        assert_eq!((text.as_str(), done), ("ab", true));
    }

    #[test]
    fn the_upstream_must_be_allowed() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            Settings::from_lookup(move |n| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| v.to_string())
            })
        };
        assert_eq!(
            vars(&[]).endpoint(),
            Ok(None),
            "no upstream: the demo model"
        );
        let ok = vars(&[
            ("PROXY_UPSTREAM_URL", "https://api.example.com/v1/"),
            ("PROXY_UPSTREAM_HOSTS", "api.example.com"),
        ]);
        assert_eq!(
            ok.endpoint(),
            Ok(Some("https://api.example.com/v1/chat/completions".into()))
        );
        let unlisted = vars(&[("PROXY_UPSTREAM_URL", "https://evil.example.net/v1")]);
        assert!(unlisted
            .endpoint()
            .unwrap_err()
            .contains("PROXY_UPSTREAM_HOSTS"));
        let private = vars(&[
            ("PROXY_UPSTREAM_URL", "https://10.0.0.1/v1"),
            ("PROXY_UPSTREAM_HOSTS", "10.0.0.1"),
        ]);
        assert!(private.endpoint().is_err());
        let local = vars(&[
            ("PROXY_UPSTREAM_URL", "http://127.0.0.1:9999/v1"),
            ("PROXY_UPSTREAM_HOSTS", "127.0.0.1:9999"),
            ("PROXY_DEV_LOOPBACK", "1"),
        ]);
        assert!(local.endpoint().is_ok());
        assert_eq!(vars(&[("PROXY_TTL_S", "0")]).ttl_s, 1);
    }
}
