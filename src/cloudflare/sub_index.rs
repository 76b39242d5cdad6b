//! The pattern index (PROTOCOL.md §6.2): one Durable Object holding every
//! registered stream path and every subscription pattern, so a new stream
//! learns the patterns that match it and a new pattern lists the existing
//! streams it matches (the backfill), with no scan over objects. See
//! [`super::sub_calls`] for the protocol and its failure modes.
//!
//! It sees one request per stream registration and per subscription
//! change, never one per append. Each request is one synchronous SQLite
//! step, so a stream and a pattern registered concurrently always see each
//! other. Matching a new stream tests every pattern (the number of pattern
//! subscriptions bounds it); a backfill page reads paths in key order from
//! the pattern's literal prefix.

use super::sub_calls::{INDEX_ADD, INDEX_MATCH, INDEX_REGISTER, INDEX_REMOVE, INDEX_UNREGISTER};
use crate::protocol::glob::Glob;
use serde_json::{json, Value};
use std::cell::Cell;
use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, SqlStorageValue as V, State,
};

/// Paths one backfill page returns at most.
const PAGE: usize = 100;
/// Rows one page examines at most (non-matching ones included).
const SCAN: usize = 2_000;

#[durable_object]
pub struct SubIndex {
    state: State,
    ready: Cell<bool>,
}

fn text(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

impl SubIndex {
    fn sql(&self) -> worker::SqlStorage {
        self.state.storage().sql()
    }

    fn ensure(&self) -> Result<()> {
        if !self.ready.get() {
            let sql = self.sql();
            sql.exec(
                "CREATE TABLE IF NOT EXISTS streams (path TEXT PRIMARY KEY)",
                None,
            )?;
            sql.exec(
                "CREATE TABLE IF NOT EXISTS patterns (id TEXT PRIMARY KEY, pattern TEXT NOT NULL)",
                None,
            )?;
            self.ready.set(true);
        }
        Ok(())
    }

    fn rows(&self, q: &str, params: Vec<V>) -> Result<Vec<Vec<V>>> {
        self.sql().exec(q, params)?.raw().collect()
    }

    fn handle(&self, path: &str, body: &Value) -> Result<Value> {
        self.ensure()?;
        let sql = self.sql();
        let bad = || worker::Error::RustError("index: bad request".into());
        Ok(match path {
            INDEX_REGISTER => {
                let p = text(body, "path").ok_or_else(bad)?;
                sql.exec(
                    "INSERT OR IGNORE INTO streams (path) VALUES (?)",
                    vec![V::String(p.clone())],
                )?;
                let subs: Vec<String> = self
                    .rows("SELECT id, pattern FROM patterns", Vec::new())?
                    .into_iter()
                    .filter_map(|r| match (r.first(), r.get(1)) {
                        (Some(V::String(id)), Some(V::String(g))) => {
                            Glob::parse(g).filter(|g| g.matches(&p)).map(|_| id.clone())
                        }
                        _ => None,
                    })
                    .collect();
                json!({ "subs": subs })
            }
            INDEX_UNREGISTER => {
                let p = text(body, "path").ok_or_else(bad)?;
                sql.exec("DELETE FROM streams WHERE path = ?", vec![V::String(p)])?;
                json!({})
            }
            INDEX_ADD => {
                let id = text(body, "id").ok_or_else(bad)?;
                let pattern = text(body, "pattern").ok_or_else(bad)?;
                sql.exec(
                    "INSERT OR REPLACE INTO patterns (id, pattern) VALUES (?, ?)",
                    vec![V::String(id), V::String(pattern)],
                )?;
                json!({})
            }
            INDEX_REMOVE => {
                let id = text(body, "id").ok_or_else(bad)?;
                sql.exec("DELETE FROM patterns WHERE id = ?", vec![V::String(id)])?;
                json!({})
            }
            INDEX_MATCH => {
                let pattern = text(body, "pattern")
                    .and_then(|p| Glob::parse(&p))
                    .ok_or_else(bad)?;
                let after = text(body, "after").unwrap_or_default();
                self.page(&pattern, &after)?
            }
            _ => return Err(bad()),
        })
    }

    /// The next matching paths after `after`, in key order, from the
    /// pattern's literal prefix: `{paths, next}` (`next`: where the next page
    /// starts, absent at the end).
    fn page(&self, pattern: &Glob, after: &str) -> Result<Value> {
        let text = pattern.text();
        let literal: Vec<&str> = text
            .split('/')
            .take_while(|s| *s != "*" && *s != "**")
            .collect();
        let prefix = if literal.is_empty() {
            String::new()
        } else {
            format!("{}/", literal.join("/"))
        };
        let start = if after.is_empty() {
            prefix.clone()
        } else {
            after.to_string()
        };
        let rows = self.rows(
            "SELECT path FROM streams WHERE path > ? OR (path = ? AND ? = '') ORDER BY path LIMIT ?",
            vec![
                V::String(start.clone()),
                V::String(literal.join("/")),
                V::String(after.to_string()),
                V::Integer(SCAN as i64),
            ],
        )?;
        let mut paths = Vec::new();
        let mut last = None;
        let mut ended = rows.len() < SCAN;
        for r in &rows {
            let Some(V::String(p)) = r.first() else {
                continue;
            };
            if !prefix.is_empty() && !p.starts_with(&prefix) && *p != literal.join("/") {
                ended = true;
                break;
            }
            last = Some(p.clone());
            if pattern.matches(p) {
                paths.push(p.clone());
                if paths.len() >= PAGE {
                    ended = false;
                    break;
                }
            }
        }
        let next = if ended { None } else { last };
        Ok(json!({ "paths": paths, "next": next }))
    }
}

impl DurableObject for SubIndex {
    fn new(state: State, _env: Env) -> Self {
        SubIndex {
            state,
            ready: Cell::new(false),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let path = req.path();
        let body: Value = serde_json::from_str(&req.text().await?).unwrap_or(Value::Null);
        match self.handle(&path, &body) {
            Ok(v) => Response::from_json(&v),
            Err(e) => {
                worker::console_error!("subscription index: {e}");
                Ok(Response::error("index request failed", 503)?)
            }
        }
    }
}
