//! The subscription object's requests (a child of `sub_object`, so it
//! reaches the object's private state): clients' create, read, delete,
//! callbacks, acks, releases and claims (§6.3, §7.1-§7.4), and the stream
//! notifications that move its links' tails.

use super::*;

impl SubscriptionObject {
    /// Generations continue across a delete and re-create of the same id,
    /// so a token of the old subscription never matches the new one.
    pub(super) fn generation_floor(&self) -> Result<u64> {
        let sql = self.sql();
        sql.exec("CREATE TABLE IF NOT EXISTS sub_floor (k INTEGER PRIMARY KEY CHECK (k = 1), generation INTEGER NOT NULL)", None)?;
        let rows: Vec<Vec<V>> = sql
            .exec("SELECT generation FROM sub_floor", None)?
            .raw()
            .collect::<Result<_>>()?;
        Ok(match rows.first().and_then(|r| r.first()) {
            Some(V::Integer(g)) => u64::try_from(*g).unwrap_or(0),
            _ => 0,
        })
    }

    pub(super) async fn delete(&self) -> Result<Response> {
        let Some(sub) = self.load()? else {
            return refuse(&SubError::new(
                404,
                "SUBSCRIPTION_NOT_FOUND",
                "no such subscription",
            ));
        };
        let sql = self.sql();
        sql.exec("CREATE TABLE IF NOT EXISTS sub_floor (k INTEGER PRIMARY KEY CHECK (k = 1), generation INTEGER NOT NULL)", None)?;
        sql.exec(
            "INSERT OR REPLACE INTO sub_floor (k, generation) VALUES (1, ?)",
            vec![V::Integer(
                i64::try_from(sub.head.generation).unwrap_or(i64::MAX),
            )],
        )?;
        self.drop_sub().await?;
        if sub.head.indexed {
            // Best effort: a stale index entry only makes streams ask a
            // subscription that answers `linked: false` (sub_calls).
            if let Err(e) =
                sub_calls::index(&self.env, INDEX_REMOVE, json!({ "id": sub.head.id })).await
            {
                worker::console_error!("subscription {}: index removal failed ({e})", sub.head.id);
            }
        }
        Ok(Response::empty()?.with_status(204))
    }

    /// A stream reports its tail (see `sub_calls`).
    pub(super) async fn notify(&self, body: &Value) -> Result<Response> {
        let Some(path) = member(body, "path") else {
            return answer(400, &json!({ "linked": false }));
        };
        let Some(mut sub) = self.load()? else {
            return answer(200, &json!({ "linked": false }));
        };
        let tail = member(body, "tail");
        let since =
            member(body, "since").unwrap_or_else(|| crate::engine::subscription::ZERO.into());
        let linked = sub.notify(&path, tail.as_deref(), &since);
        sub.maybe_wake(now_ms(), &mut new_id);
        self.save(sub).await?;
        answer(200, &json!({ "linked": linked }))
    }

    /// Callback (§7.1), ack and release (§7.2), under the wake token.
    pub(super) async fn wake_action(
        &self,
        action: &Action,
        id: &str,
        auth: Option<String>,
        body: &[u8],
    ) -> Result<Response> {
        let Some(mut sub) = self.load()? else {
            return refuse(&SubError::new(
                404,
                "SUBSCRIPTION_NOT_FOUND",
                "no such subscription",
            ));
        };
        if *action != Action::Callback && sub.head.config.kind != wire::Kind::PullWake {
            return refuse(&SubError::invalid("the subscription is not pull-wake"));
        }
        let req = match wire::parse_wake_request(body) {
            Ok(r) => r,
            Err(e) => return refuse(&e),
        };
        let Some(signer) = signing::signer(&self.env).await else {
            return refuse(&unavailable("SUBSCRIPTION_SIGNING_KEY is not configured"));
        };
        let token = auth
            .as_deref()
            .and_then(crate::protocol::auth::bearer)
            .unwrap_or_default();
        let Some(token_gen) = signer.check_wake_token(token, id).await else {
            return refuse(&SubError::new(
                401,
                "TOKEN_INVALID",
                "a valid wake token is required (Authorization: Bearer)",
            ));
        };
        // The signature check awaited: take the state as it is now.
        if let Some(now) = self.load()? {
            sub = now;
        }
        let now = now_ms();
        let result = if *action == Action::Release {
            sub.release(token_gen, &req, now, &mut new_id)
                .map(|()| None)
        } else {
            sub.ack(token_gen, &req, now, &mut new_id).map(Some)
        };
        match result {
            Err(e) => refuse(&e),
            Ok(next) => {
                self.save(sub).await?;
                match next {
                    None => Ok(Response::empty()?.with_status(204)),
                    Some(n) => answer(200, &json!({ "ok": true, "next_wake": n })),
                }
            }
        }
    }

    pub(super) async fn claim(&self, id: &str, body: &[u8]) -> Result<Response> {
        let worker_name = match wire::parse_claim(body) {
            Ok(w) => w,
            Err(e) => return refuse(&e),
        };
        let Some(signer) = signing::signer(&self.env).await else {
            return refuse(&unavailable("SUBSCRIPTION_SIGNING_KEY is not configured"));
        };
        let Some(mut sub) = self.load()? else {
            return refuse(&SubError::new(
                404,
                "SUBSCRIPTION_NOT_FOUND",
                "no such subscription",
            ));
        };
        if let Err(e) = sub.claim(&worker_name, now_ms(), &mut new_id) {
            return refuse(&e);
        }
        let wake = sub
            .head
            .wake
            .as_ref()
            .map(|w| w.id.clone())
            .unwrap_or_default();
        let generation = sub.head.generation;
        self.save(sub.clone()).await?;
        let token = signer
            .wake_token(id, generation, &wake)
            .await
            .map_err(|e| worker::Error::RustError(format!("{e:?}")))?;
        answer(200, &sub.claim_body(&token))
    }

    pub(super) async fn client(&self, mut req: Request) -> Result<Response> {
        let path = req.path();
        let Ok(Route::Sub { id, action }) = route(path.strip_prefix(PREFIX).unwrap_or_default())
        else {
            return refuse(&SubError::new(404, "NOT_FOUND", "no such control route"));
        };
        let method = req.method();
        let body = if matches!(method, Method::Put | Method::Post) {
            let b = req.bytes().await?;
            if b.len() > wire::MAX_BODY_BYTES {
                return refuse(&SubError::new(
                    413,
                    "PAYLOAD_TOO_LARGE",
                    "the body is too large",
                ));
            }
            b
        } else {
            Vec::new()
        };
        let not_found = || {
            refuse(&SubError::new(
                404,
                "SUBSCRIPTION_NOT_FOUND",
                "no such subscription",
            ))
        };
        match (&action, method) {
            (Action::Itself, Method::Put) => {
                let base = req.headers().get(BASE_HEADER)?.unwrap_or_default();
                self.put(&id, &body, &base).await
            }
            (Action::Itself, Method::Get) => match self.load()? {
                Some(sub) => self.describe(&sub, 200).await,
                None => not_found(),
            },
            (Action::Itself, Method::Delete) => self.delete().await,
            (Action::Streams, Method::Post) => {
                let streams = match wire::parse_streams(&body) {
                    Ok(s) => s,
                    Err(e) => return refuse(&e),
                };
                if self.load()?.is_none() {
                    return not_found();
                }
                let tails = match self.link_explicit(&id, &streams).await {
                    Ok(t) => t,
                    Err(e) => return refuse(&e),
                };
                let Some(mut sub) = self.load()? else {
                    return not_found();
                };
                for (s, t) in &tails {
                    sub.link(s, true, t);
                }
                sub.maybe_wake(now_ms(), &mut new_id);
                self.save(sub).await?;
                Ok(Response::empty()?.with_status(204))
            }
            (Action::Stream(stream), Method::Delete) => {
                let Some(mut sub) = self.load()? else {
                    return not_found();
                };
                sub.unlink_explicit(stream);
                self.save(sub).await?;
                Ok(Response::empty()?.with_status(204))
            }
            (Action::Claim, Method::Post) => self.claim(&id, &body).await,
            (Action::Callback | Action::Ack | Action::Release, Method::Post) => {
                let auth = req.headers().get("authorization")?;
                self.wake_action(&action, &id, auth, &body).await
            }
            _ => refuse(&SubError::method_not_allowed(action.methods())),
        }
    }
}
