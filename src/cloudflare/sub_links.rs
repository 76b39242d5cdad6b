//! A stream's side of subscriptions (PROTOCOL.md §6, §7; protocol and
//! failure modes in [`super::sub_calls`]): after every committed change
//! and before the change's answer, the stream registers with the pattern
//! index once, then tells each subscription linked to it its new tail, so
//! a claim or `GET` right after an append's answer already sees it.
//!
//! ```text
//! sub_links(sub_id TEXT PRIMARY KEY, since TEXT)   -- who to notify; since: where a
//!                                                  -- link the subscription lacks starts
//! sub_reg(k = 1, path, registered, owed)           -- index registration; a failed
//!                                                  -- step owed to the alarm
//! ```
//!
//! Cost: a stream no subscription links pays two SQLite reads per change
//! and one index request in its life; a linked stream pays one request
//! per linked subscription per change (coalesced by nothing: each change's
//! answer waits for them).

use super::shared::{now_ms, Shared};
use super::sub_calls::{self, INDEX_REGISTER, INDEX_UNREGISTER, MAX_SUBS_PER_STREAM};
use crate::engine::store::Store;
use crate::engine::subscription::ZERO;
use serde_json::{json, Value};
use worker::{Response, Result, SqlStorageValue as V};

/// Whether subscriptions are on (`SUBSCRIPTIONS` is not `off`).
pub fn enabled(env: &worker::Env) -> bool {
    env.var("SUBSCRIPTIONS")
        .map(|v| v.to_string())
        .map_or(true, |v| v != "off")
}

impl Shared {
    fn sub_tables(&self) -> Result<worker::SqlStorage> {
        let sql = self.state.storage().sql();
        if self.sub_tables_ready.get() {
            return Ok(sql);
        }
        sql.exec(
            "CREATE TABLE IF NOT EXISTS sub_links (sub_id TEXT PRIMARY KEY, since TEXT NOT NULL)",
            None,
        )?;
        sql.exec(
            "CREATE TABLE IF NOT EXISTS sub_reg (k INTEGER PRIMARY KEY CHECK (k = 1), path TEXT NOT NULL, \
             registered INTEGER NOT NULL, owed INTEGER NOT NULL)",
            None,
        )?;
        self.sub_tables_ready.set(true);
        Ok(sql)
    }

    /// The stream's tail as printed, if it exists (and is not soft-deleted).
    fn live_tail(&self) -> Result<Option<String>> {
        Ok(self
            .store
            .meta()?
            .filter(|m| !m.soft_deleted)
            .map(|m| m.wire(m.tail)))
    }

    /// The tail before a change (the start for a stream that did not exist).
    pub fn tail_before(&self) -> String {
        self.live_tail()
            .ok()
            .flatten()
            .unwrap_or_else(|| ZERO.to_string())
    }

    /// Whether `sub` is linked, or one more link fits ([`MAX_SUBS_PER_STREAM`]).
    fn sub_link_room(&self, sql: &worker::SqlStorage, sub: &str) -> Result<bool> {
        let rows: Vec<Vec<V>> = sql
            .exec(
                "SELECT (SELECT count(*) FROM sub_links), \
                 (SELECT count(*) FROM sub_links WHERE sub_id = ?)",
                vec![V::String(sub.into())],
            )?
            .raw()
            .collect::<Result<_>>()?;
        let n = |i: usize| match rows.first().and_then(|r| r.get(i)) {
            Some(V::Integer(n)) => usize::try_from(*n).unwrap_or(usize::MAX),
            _ => 0,
        };
        Ok(n(1) > 0 || n(0) < MAX_SUBS_PER_STREAM)
    }

    /// `/__internal/sub/link` from a subscription (§6.2, §6.4): notify it
    /// from now on; answers the tail it is linked at.
    pub fn sub_link(&self, body: &[u8]) -> Result<Response> {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let (Some(sub), Some(path)) = (
            v.get("sub").and_then(Value::as_str),
            v.get("path").and_then(Value::as_str),
        ) else {
            return Response::error("bad link", 400);
        };
        let sql = self.sub_tables()?;
        if !self.sub_link_room(&sql, sub)? {
            return Response::from_json(&json!({ "full": true }));
        }
        let tail = self.live_tail()?;
        let at = tail.clone().unwrap_or_else(|| ZERO.to_string());
        sql.exec(
            "INSERT OR IGNORE INTO sub_links (sub_id, since) VALUES (?, ?)",
            vec![V::String(sub.into()), V::String(at.clone())],
        )?;
        sql.exec(
            "INSERT OR IGNORE INTO sub_reg (k, path, registered, owed) VALUES (1, ?, 0, 0)",
            vec![V::String(path.into())],
        )?;
        Response::from_json(&json!({ "tail": at, "exists": tail.is_some() }))
    }

    /// After a committed change of stream `path` (`before`: its tail
    /// before). Never fails the change: a failed step is owed to the alarm.
    pub async fn sync_subscriptions(&self, path: &str, before: &str) {
        if !enabled(&self.env) {
            return;
        }
        if let Err(e) = self.try_sync(Some(path), before).await {
            worker::console_error!("subscriptions of {path}: {e}; the alarm retries");
            self.owe_sync().await;
        }
    }

    /// The alarm's retry of an owed step.
    pub async fn sync_owed(&self) {
        // Owed, or registered but gone (expired by the alarm): sync.
        let owed = self.sub_tables().and_then(|sql| {
            let rows: Vec<Vec<V>> = sql
                .exec("SELECT owed, registered FROM sub_reg", None)?
                .raw()
                .collect::<Result<_>>()?;
            let flag =
                |i: usize| matches!(rows.first().and_then(|r| r.get(i)), Some(V::Integer(1)));
            Ok(flag(0) || (flag(1) && self.live_tail()?.is_none()))
        });
        if enabled(&self.env) && owed.unwrap_or(false) {
            let before = self.tail_before();
            if let Err(e) = self.try_sync(None, &before).await {
                worker::console_error!("subscriptions: {e}; retried");
                self.owe_sync().await;
            }
        }
    }

    async fn owe_sync(&self) {
        if let Ok(sql) = self.sub_tables() {
            let _ = sql.exec("UPDATE sub_reg SET owed = 1", None);
        }
        self.arm_or_remember(now_ms().saturating_add(self.config.fork_retry_ms))
            .await;
    }

    async fn try_sync(&self, path: Option<&str>, before: &str) -> Result<()> {
        let sql = self.sub_tables()?;
        if let Some(p) = path {
            sql.exec(
                "INSERT OR IGNORE INTO sub_reg (k, path, registered, owed) VALUES (1, ?, 0, 0)",
                vec![V::String(p.into())],
            )?;
        }
        let rows: Vec<Vec<V>> = sql
            .exec("SELECT path, registered FROM sub_reg", None)?
            .raw()
            .collect::<Result<_>>()?;
        let (Some(V::String(path)), registered) = (
            rows.first().and_then(|r| r.first()).cloned(),
            matches!(rows.first().and_then(|r| r.get(1)), Some(V::Integer(1))),
        ) else {
            return Ok(());
        };
        let tail = self.live_tail()?;
        if tail.is_some() && !registered {
            let v = sub_calls::index(&self.env, INDEX_REGISTER, json!({ "path": path })).await?;
            for id in v
                .get("subs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let room = match id.as_str() {
                    Some(id) => self.sub_link_room(&sql, id)?,
                    None => false,
                };
                if let (true, Some(id)) = (room, id.as_str()) {
                    sql.exec(
                        "INSERT OR IGNORE INTO sub_links (sub_id, since) VALUES (?, ?)",
                        vec![V::String(id.into()), V::String(before.into())],
                    )?;
                }
            }
            sql.exec("UPDATE sub_reg SET registered = 1", None)?;
        }
        let links: Vec<(String, String)> = sql
            .exec("SELECT sub_id, since FROM sub_links", None)?
            .raw()
            .filter_map(|r| match r.ok()?.as_slice() {
                [V::String(id), V::String(since)] => Some((id.clone(), since.clone())),
                _ => None,
            })
            .collect();
        let calls = links
            .iter()
            .map(|(id, since)| sub_calls::notify(&self.env, id, &path, tail.as_deref(), since));
        let answers = futures_util::future::join_all(calls).await;
        let mut failed = None;
        for ((id, _), a) in links.iter().zip(answers) {
            match a {
                Ok(true) => {}
                Ok(false) => {
                    sql.exec(
                        "DELETE FROM sub_links WHERE sub_id = ?",
                        vec![V::String(id.clone())],
                    )?;
                }
                Err(e) => failed = Some(e),
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if tail.is_none() {
            // Deleted: every subscription was told; forget them and the index entry.
            sql.exec("DELETE FROM sub_links", None)?;
            if registered {
                let _ =
                    sub_calls::index(&self.env, INDEX_UNREGISTER, json!({ "path": path })).await;
                sql.exec("UPDATE sub_reg SET registered = 0", None)?;
            }
        }
        sql.exec("UPDATE sub_reg SET owed = 0", None)?;
        Ok(())
    }
}
