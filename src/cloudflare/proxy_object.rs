//! The `ProxyJob` Durable Object: one per proxy job (`engine::proxy` holds
//! its decisions and the interruption rule). `POST /job` creates the job's
//! JSON-mode stream (with `PROXY_TTL_S` as its sliding TTL), stores the job
//! and sets the alarm; the alarm runs the upstream call and appends each
//! network read's tokens as one `delta` message, as an idempotent producer
//! (`producer-id: proxy`, epoch = the run), then the `done` message with
//! `Stream-Closed`. While a run is alive it keeps a watchdog alarm 5 s
//! ahead; if the object dies mid-run, the watchdog's alarm finds the job
//! `running` with no run alive and closes the stream as `interrupted`.
//! `DELETE /job` cancels: it aborts the upstream call of a live run, or has
//! the alarm close the stream as `cancelled`.
//!
//! Failure modes: an append that fails after retries leaves the job
//! `running`; the watchdog closes it (reading the stream for the output).
//! The upstream key is sent only upstream: never logged, never appended
//! (an upstream error message is redacted before it is).

use super::proxy::{demo_stream, settings, Bytes};
use crate::engine::proxy::{closing, gather, on_alarm, Answer, Ending, Job, State, Step};
use crate::protocol::proxy::{self as wire, parse_event, redact, SseReader, Status};
use futures_util::StreamExt;
use serde_json::Value;
use std::cell::{Cell, RefCell};
use std::time::Duration;
use worker::{
    durable_object, AbortController, DurableObject, Env, Fetch, Headers, Method, Request,
    RequestInit, Response, Result, State as DoState,
};

/// How far ahead a live run keeps its watchdog alarm.
const WATCHDOG_MS: u64 = 5_000;
/// Attempts per append before the run gives up (the watchdog closes).
const APPEND_TRIES: u32 = 4;
/// The producer id every run appends as.
const PRODUCER: &str = "proxy";
const KEY: &str = "job";

#[durable_object]
pub struct ProxyJob {
    state: DoState,
    env: Env,
    /// A run of this instance is alive.
    alive: Cell<bool>,
    /// A cancel reached the live run.
    cancelled: Cell<bool>,
    /// Aborts the live run's upstream call.
    abort: RefCell<Option<AbortController>>,
}

fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

fn stream_url(id: &str) -> String {
    format!("https://internal/v1/stream/{}", wire::stream_path(id))
}

/// How an append went.
enum Appended {
    Ok,
    /// A newer run owns the stream (403 stale epoch), or it is closed.
    Stop,
    Failed,
}

impl ProxyJob {
    async fn load(&self) -> Result<Option<Job>> {
        self.state.storage().get::<Job>(KEY).await
    }

    async fn save(&self, job: &Job) -> Result<()> {
        self.state.storage().put(KEY, job).await
    }

    async fn arm(&self, at: u64) -> Result<()> {
        let at = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(at as f64));
        self.state
            .storage()
            .set_alarm(worker::ScheduledTime::new(at))
            .await
    }

    fn stream(&self, id: &str) -> Result<worker::Stub> {
        self.env
            .durable_object(super::BINDING)?
            .get_by_name(&wire::stream_path(id))
    }

    async fn handle(&self, mut req: Request) -> Result<Response> {
        let header = |n: &str| req.headers().get(n).ok().flatten().unwrap_or_default();
        let (id, origin) = (header("x-ds-job"), header("x-ds-origin"));
        let stream = format!("{origin}/v1/stream/{}", wire::stream_path(&id));
        let job = self.load().await?;
        match (req.method(), job) {
            (Method::Post, Some(_)) => refuse(409, "JOB_EXISTS", "this job already exists"),
            (Method::Post, None) => {
                let body = req.bytes().await?;
                let request = String::from_utf8(body).unwrap_or_default();
                let ttl = settings(&self.env).ttl_s;
                let headers = Headers::new();
                headers.set("content-type", "application/json")?;
                headers.set("stream-ttl", &ttl.to_string())?;
                let mut init = RequestInit::new();
                init.with_method(Method::Put).with_headers(headers);
                let made = self
                    .stream(&id)?
                    .fetch_with_request(Request::new_with_init(&stream_url(&id), &init)?)
                    .await?;
                if made.status_code() != 201 {
                    return refuse(503, "UNAVAILABLE", "the job's stream could not be created");
                }
                let job = Job::new(id.clone(), request);
                self.save(&job).await?;
                self.arm(now_ms()).await?;
                let mut view = job.view(&stream);
                if let Some(o) = view.as_object_mut() {
                    o.insert(
                        "cancel".into(),
                        Value::from(format!("{origin}{}/{id}", wire::ROUTE)),
                    );
                }
                let r = Response::from_json(&view)?.with_status(201);
                r.headers().set("location", &stream)?;
                Ok(r)
            }
            (_, None) => refuse(404, "NOT_FOUND", "no such job"),
            (Method::Get, Some(job)) => Response::from_json(&job.view(&stream)),
            (Method::Delete, Some(mut job)) => {
                if job.state != State::Finished && !job.cancel {
                    job.cancel = true;
                    self.save(&job).await?;
                    if self.alive.get() {
                        self.cancelled.set(true);
                        if let Some(c) = self.abort.borrow_mut().take() {
                            c.abort();
                        }
                    } else {
                        self.arm(now_ms()).await?;
                    }
                }
                Ok(Response::from_json(&job.view(&stream))?.with_status(202))
            }
            _ => refuse(405, "METHOD_NOT_ALLOWED", "GET, POST or DELETE"),
        }
    }

    /// Appends `messages` as `epoch`/`seq`, closing the stream with them
    /// when `close`; retried (the producer makes a retry harmless).
    async fn append(
        &self,
        id: &str,
        epoch: u64,
        seq: u64,
        messages: &[Value],
        close: bool,
    ) -> Appended {
        let body = Value::Array(messages.to_vec()).to_string();
        for attempt in 0..APPEND_TRIES {
            if attempt > 0 {
                worker::Delay::from(Duration::from_millis(250 << attempt)).await;
            }
            let sent = async {
                let headers = Headers::new();
                headers.set("content-type", "application/json")?;
                headers.set("producer-id", PRODUCER)?;
                headers.set("producer-epoch", &epoch.to_string())?;
                headers.set("producer-seq", &seq.to_string())?;
                if close {
                    headers.set("stream-closed", "true")?;
                }
                let mut init = RequestInit::new();
                init.with_method(Method::Post)
                    .with_headers(headers)
                    .with_body(Some(wasm_bindgen::JsValue::from_str(&body)));
                let req = Request::new_with_init(&stream_url(id), &init)?;
                Ok::<u16, worker::Error>(
                    self.stream(id)?
                        .fetch_with_request(req)
                        .await?
                        .status_code(),
                )
            };
            match sent.await {
                Ok(200 | 204) => return Appended::Ok,
                Ok(403 | 404 | 409 | 410) => return Appended::Stop,
                Ok(s) => worker::console_log!("proxy {id}: append answered {s}"),
                Err(e) => worker::console_log!("proxy {id}: append failed: {e}"),
            }
        }
        Appended::Failed
    }

    /// The upstream's answer as bytes, or the reason it gave none.
    async fn open_upstream(&self, job: &Job) -> std::result::Result<Bytes, String> {
        let settings = settings(&self.env);
        let endpoint = settings.endpoint()?;
        let Some(url) = endpoint else {
            return Ok(demo_stream(job.request.as_bytes(), settings.token_ms));
        };
        let key = settings.key.clone().unwrap_or_default();
        let call = async {
            let headers = Headers::new();
            headers.set("content-type", "application/json")?;
            headers.set("accept", "text/event-stream")?;
            if !key.is_empty() {
                headers.set("authorization", &format!("Bearer {key}"))?;
            }
            let mut init = RequestInit::new();
            init.with_method(Method::Post)
                .with_headers(headers)
                .with_redirect(worker::RequestRedirect::Manual)
                .with_body(Some(wasm_bindgen::JsValue::from_str(&job.request)));
            let controller = AbortController::default();
            let signal = controller.signal();
            *self.abort.borrow_mut() = Some(controller);
            Fetch::Request(Request::new_with_init(&url, &init)?)
                .send_with_signal(&signal)
                .await
        };
        let mut r = call
            .await
            .map_err(|e| redact(&format!("the upstream could not be reached: {e}"), &key))?;
        if r.status_code() != 200 {
            let text = r.text().await.unwrap_or_default();
            let detail = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| {
                    v.pointer("/error/message")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .unwrap_or_default();
            let detail: String = detail.chars().take(200).collect();
            return Err(redact(
                &format!("the upstream answered {}: {detail}", r.status_code()),
                &key,
            ));
        }
        let body = r
            .stream()
            .map_err(|e| format!("the upstream's answer could not be read: {e}"))?;
        Ok(Box::pin(body))
    }

    /// One run: the upstream's answer into the stream, as `epoch`.
    async fn run(&self, mut job: Job, epoch: u64) -> Result<()> {
        self.alive.set(true);
        self.cancelled.set(false);
        let outcome = self.run_inner(&mut job, epoch).await;
        self.alive.set(false);
        *self.abort.borrow_mut() = None;
        outcome
    }

    async fn run_inner(&self, job: &mut Job, epoch: u64) -> Result<()> {
        let id = job.id.clone();
        self.arm(now_ms() + WATCHDOG_MS).await?;
        let mut answer = Answer::default();
        let mut seq = 0;
        let mut beat = now_ms();
        let ending = match self.open_upstream(job).await {
            Err(why) => {
                answer.apply(wire::Event::Error(why));
                Ending::Ended
            }
            Ok(mut body) => {
                let mut reader = SseReader::default();
                loop {
                    if self.cancelled.get() {
                        break Ending::Cancelled;
                    }
                    let bytes = match body.next().await {
                        None => break Ending::Ended,
                        Some(Err(_)) if self.cancelled.get() => break Ending::Cancelled,
                        Some(Err(_)) => break Ending::Broken,
                        Some(Ok(b)) => b,
                    };
                    let Ok(events) = reader.feed(&bytes) else {
                        break Ending::Broken;
                    };
                    for data in events {
                        for e in parse_event(&data) {
                            answer.apply(e);
                        }
                    }
                    if let Some(m) = answer.take_batch() {
                        match self.append(&id, epoch, seq, &[m], false).await {
                            Appended::Ok => seq += 1,
                            // A newer run owns the stream, or it is gone; or the
                            // watchdog closes it.
                            Appended::Stop | Appended::Failed => return Ok(()),
                        }
                    }
                    if answer.over() {
                        break Ending::Ended;
                    }
                    if now_ms() >= beat + 1_000 {
                        beat = now_ms();
                        self.arm(beat + WATCHDOG_MS).await?;
                    }
                }
            }
        };
        let last = answer.finish(ending);
        let mut messages: Vec<Value> = answer.take_batch().into_iter().collect();
        messages.push(last.message());
        if let Appended::Failed = self.append(&id, epoch, seq, &messages, true).await {
            return Ok(());
        }
        job.state = State::Finished;
        job.status = Some(last.status.as_str().into());
        self.save(job).await?;
        self.state.storage().delete_alarm().await
    }

    /// Closes the stream of a job whose run died, or that was cancelled with
    /// none alive: reads what the stream holds, then appends the `done`.
    async fn close(&self, mut job: Job, epoch: u64, status: Status) -> Result<()> {
        let id = job.id.clone();
        let mut messages: Vec<Value> = Vec::new();
        let mut offset = "-1".to_string();
        for _ in 0..10_000 {
            let url = format!("{}?offset={offset}", stream_url(&id));
            let mut r = self
                .stream(&id)?
                .fetch_with_request(Request::new(&url, Method::Get)?)
                .await?;
            if r.status_code() != 200 {
                // The stream expired or was deleted: nothing left to close.
                break;
            }
            let page: Vec<Value> = serde_json::from_slice(&r.bytes().await?).unwrap_or_default();
            messages.extend(page);
            let next = r.headers().get("stream-next-offset")?.unwrap_or_default();
            if r.headers().get("stream-up-to-date")?.as_deref() == Some("true") || next == offset {
                break;
            }
            offset = next;
        }
        let (output, done) = gather(&messages);
        let status = if done {
            None
        } else {
            let last = closing(status, output);
            match self.append(&id, epoch, 0, &[last.message()], true).await {
                Appended::Failed => {
                    return Err(worker::Error::RustError("closing append failed".into()))
                }
                _ => Some(last.status),
            }
        };
        job.state = State::Finished;
        job.status = status.map(|s| s.as_str().into()).or(job.status);
        self.save(&job).await
    }

    async fn work(&self) -> Result<()> {
        let Some(mut job) = self.load().await? else {
            return Ok(());
        };
        let step = on_alarm(&mut job, self.alive.get());
        match step {
            Step::Nothing if self.alive.get() => self.arm(now_ms() + WATCHDOG_MS).await,
            Step::Nothing => Ok(()),
            Step::Run { epoch } => {
                self.save(&job).await?;
                self.run(job, epoch).await
            }
            Step::Close { epoch, status } => {
                self.save(&job).await?;
                self.close(job, epoch, status).await
            }
        }
    }
}

fn refuse(status: u16, code: &str, message: &str) -> Result<Response> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    Ok(Response::from_json(&body)?.with_status(status))
}

impl DurableObject for ProxyJob {
    fn new(state: DoState, env: Env) -> Self {
        ProxyJob {
            state,
            env,
            alive: Cell::new(false),
            cancelled: Cell::new(false),
            abort: RefCell::new(None),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        match self.handle(req).await {
            Ok(r) => Ok(r),
            Err(e) => {
                worker::console_error!("proxy job: {e}");
                refuse(
                    503,
                    "UNAVAILABLE",
                    "the proxy job failed on the platform; retry",
                )
            }
        }
    }

    async fn alarm(&self) -> Result<Response> {
        if let Err(e) = self.work().await {
            worker::console_error!("proxy job alarm: {e}");
            // Retried by the watchdog, if one is set; else now.
            self.arm(now_ms() + 1_000).await?;
        }
        Response::empty()
    }
}
