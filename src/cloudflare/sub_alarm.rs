//! The subscription object's alarm work (a child of `sub_object`, so it
//! reaches the object's private state): webhook deliveries (signed, no
//! redirects followed, bounded in time and in the answer read), wake events
//! appended to a pull-wake `wake_stream`, index registration and pattern
//! backfill, and the alarm's bounded steps.

use super::*;

impl SubscriptionObject {
    /// POSTs the wake to the webhook (§7.1): signed, no redirects followed,
    /// bounded in time and in the answer read.
    pub(super) async fn deliver(&self, sub: &Sub, generation: u64, wake_id: &str) -> Delivery {
        let (Some(url), Some(signer)) = (
            sub.head.config.webhook_url.clone(),
            signing::signer(&self.env).await,
        ) else {
            return Delivery::Failed;
        };
        let attempt = async {
            let token = signer
                .wake_token(&sub.head.id, generation, wake_id)
                .await
                .map_err(|e| worker::Error::RustError(format!("{e:?}")))?;
            let body = sub.webhook_body(&token);
            let sig = signer
                .webhook_signature(&body, now_ms())
                .await
                .map_err(|e| worker::Error::RustError(format!("{e:?}")))?;
            let headers = worker::Headers::new();
            headers.set("content-type", "application/json")?;
            headers.set("webhook-signature", &sig)?;
            let mut init = RequestInit::new();
            init.with_method(Method::Post)
                .with_headers(headers)
                .with_redirect(worker::RequestRedirect::Manual)
                .with_body(Some(wasm_bindgen::JsValue::from_str(&body)));
            let mut r = Fetch::Request(Request::new_with_init(&url, &init)?)
                .send()
                .await?;
            if !(200..300).contains(&r.status_code()) {
                return Ok(Delivery::Failed);
            }
            let small = r
                .headers()
                .get("content-length")?
                .and_then(|l| l.parse::<usize>().ok())
                .is_none_or(|n| n <= MAX_ANSWER_BYTES);
            let done = small
                && serde_json::from_slice::<Value>(&r.bytes().await.unwrap_or_default())
                    .ok()
                    .and_then(|v| v.get("done").and_then(Value::as_bool))
                    == Some(true);
            Ok::<Delivery, worker::Error>(Delivery::Ok { done })
        };
        let timeout = worker::Delay::from(Duration::from_millis(WEBHOOK_TIMEOUT_MS));
        let outcome = select(Box::pin(attempt), Box::pin(timeout)).await;
        match outcome {
            Either::Left((Ok(d), _)) => d,
            Either::Left((Err(e), _)) => {
                worker::console_log!("webhook {} failed: {e}", sub.head.id);
                Delivery::Failed
            }
            Either::Right(_) => Delivery::Failed,
        }
    }

    /// Appends a wake event to the wake stream (§7.2).
    pub(super) async fn wake_event(&self, sub: &Sub, stream: &str) -> bool {
        let Some(wake_stream) = sub.head.config.wake_stream.clone() else {
            return false;
        };
        let event = sub.wake_event(stream, now_ms());
        let attempt = async {
            let stub = self
                .env
                .durable_object(crate::cloudflare::BINDING)?
                .get_by_name(&wake_stream)?;
            let headers = worker::Headers::new();
            headers.set("content-type", "application/json")?;
            let mut init = RequestInit::new();
            init.with_method(Method::Post)
                .with_headers(headers)
                .with_body(Some(wasm_bindgen::JsValue::from_str(&event)));
            let r = stub
                .fetch_with_request(Request::new_with_init(&stream_url(&wake_stream), &init)?)
                .await?;
            Ok::<bool, worker::Error>((200..300).contains(&r.status_code()))
        };
        match attempt.await {
            Ok(ok) => ok,
            Err(e) => {
                worker::console_log!("wake event for {} failed: {e}", sub.head.id);
                false
            }
        }
    }

    /// The alarm: [`Self::steps`], then the next alarm for what is owed
    /// then (a request arriving meanwhile arms for itself once the flag is
    /// down, so nothing it adds is missed).
    pub(super) async fn work(&self) -> Result<()> {
        self.in_alarm.set(true);
        let done = self.steps().await;
        self.in_alarm.set(false);
        let more = done?;
        let next = match self.load()? {
            Some(sub) => self.next_alarm(&sub),
            None => None,
        };
        let next = if more { Some(now_ms()) } else { next };
        if let Some(at) = next {
            let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(at.max(now_ms()) as f64));
            self.state
                .storage()
                .set_alarm(worker::ScheduledTime::new(date))
                .await?;
        }
        Ok(())
    }

    /// What the alarm owes: lease expiry, set-up, deliveries (bounded).
    /// `Ok(true)`: more is owed at once.
    pub(super) async fn steps(&self) -> Result<bool> {
        for _ in 0..ALARM_STEPS {
            let Some(mut sub) = self.load()? else {
                return Ok(false);
            };
            let now = now_ms();
            sub.tick(now, &mut new_id);
            let setup = (sub.head.config.pattern.is_some() && !sub.head.indexed)
                || sub.head.backfill.is_some();
            if setup && sub.head.setup_at.is_none_or(|t| t <= now) {
                self.save(sub).await?;
                self.setup().await?;
                continue;
            }
            let due = sub.due(now);
            self.save(sub.clone()).await?;
            match due {
                None => return Ok(false),
                Some(Due::Webhook {
                    generation,
                    wake_id,
                }) => {
                    let result = self.deliver(&sub, generation, &wake_id).await;
                    let Some(mut fresh) = self.load()? else {
                        return Ok(false);
                    };
                    fresh.after_webhook(
                        generation,
                        &wake_id,
                        result,
                        now_ms(),
                        jitter(),
                        &mut new_id,
                    );
                    self.save(fresh).await?;
                }
                Some(Due::WakeEvent {
                    wake_id, stream, ..
                }) => {
                    let ok = self.wake_event(&sub, &stream).await;
                    let Some(mut fresh) = self.load()? else {
                        return Ok(false);
                    };
                    fresh.after_wake_event(&wake_id, ok, now_ms(), jitter());
                    self.save(fresh).await?;
                }
            }
        }
        Ok(true)
    }

    /// Index registration and one backfill page (§6.2), applied to the
    /// subscription as it is once the calls are back.
    pub(super) async fn setup(&self) -> Result<()> {
        let Some(sub) = self.load()? else {
            return Ok(());
        };
        let id = sub.head.id.clone();
        let Some(pattern) = sub.head.config.pattern.clone() else {
            return Ok(());
        };
        let mut indexed = sub.head.indexed;
        let mut failed = false;
        let mut linked: Vec<(String, String)> = Vec::new();
        let mut next = sub.head.backfill.clone();
        let mut full = 0u64;
        if !indexed {
            match sub_calls::index(
                &self.env,
                INDEX_ADD,
                json!({ "id": id, "pattern": pattern }),
            )
            .await
            {
                Ok(_) => indexed = true,
                Err(e) => {
                    worker::console_error!("subscription {id}: index registration failed ({e})");
                    failed = true;
                }
            }
        }
        if let (false, Some(after)) = (failed, sub.head.backfill.clone()) {
            match sub_calls::index(
                &self.env,
                INDEX_MATCH,
                json!({ "pattern": pattern, "after": after }),
            )
            .await
            {
                Ok(page) => {
                    let paths: Vec<String> = page
                        .get("paths")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|p| p.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    let fresh: Vec<String> = paths
                        .into_iter()
                        .filter(|p| !sub.links.contains_key(p))
                        .collect();
                    let tails = futures_util::future::join_all(
                        fresh.iter().map(|p| sub_calls::link(&self.env, p, &id)),
                    )
                    .await;
                    for (p, t) in fresh.into_iter().zip(tails) {
                        match t {
                            Ok(Some(t)) => linked.push((p, t)),
                            Ok(None) => full += 1,
                            Err(e) => {
                                worker::console_error!(
                                    "subscription {id}: link {p} failed ({e}); retried"
                                );
                                failed = true;
                            }
                        }
                    }
                    if !failed {
                        next = page.get("next").and_then(Value::as_str).map(str::to_string);
                    }
                }
                Err(e) => {
                    worker::console_error!("subscription {id}: backfill failed ({e})");
                    failed = true;
                }
            }
        }
        let Some(mut sub) = self.load()? else {
            return Ok(());
        };
        sub.head.indexed = indexed;
        sub.head.refused = sub.head.refused.saturating_add(full);
        for (p, t) in &linked {
            if sub.head.config.wake_stream.as_deref() != Some(p.as_str()) {
                sub.link(p, false, t);
            }
        }
        sub.head.backfill = next;
        sub.head.setup_at = failed.then(|| now_ms() + setup_retry());
        self.save(sub).await
    }
}

/// The retry delay for set-up steps: the webhook backoff's first step.
pub(super) fn setup_retry() -> u64 {
    crate::engine::subscription::backoff_ms(1, jitter())
}
