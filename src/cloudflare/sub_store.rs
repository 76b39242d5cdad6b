//! The subscription object's storage (a child of `sub_object`): the head
//! row, the link rows and the generation floor; saving arms the alarm for
//! what the subscription owes next.

use super::*;

impl SubscriptionObject {
    pub(super) fn sql(&self) -> worker::SqlStorage {
        self.state.storage().sql()
    }

    /// The subscription, loaded once per object life.
    pub(super) fn load(&self) -> Result<Option<Sub>> {
        if let Some(s) = self.sub.borrow().as_ref() {
            return Ok(s.clone());
        }
        let sql = self.sql();
        sql.exec("CREATE TABLE IF NOT EXISTS sub_head (k INTEGER PRIMARY KEY CHECK (k = 1), json TEXT NOT NULL)", None)?;
        sql.exec(
            "CREATE TABLE IF NOT EXISTS sub_links (path TEXT PRIMARY KEY, json TEXT NOT NULL)",
            None,
        )?;
        let corrupt = |w: &str| worker::Error::RustError(format!("corrupt subscription {w}"));
        let head: Vec<Vec<V>> = sql
            .exec("SELECT json FROM sub_head", None)?
            .raw()
            .collect::<Result<_>>()?;
        let sub = match head.first().and_then(|r| r.first()) {
            Some(V::String(j)) => {
                let head: Head = serde_json::from_str(j).map_err(|_| corrupt("head"))?;
                let mut sub = Sub {
                    head,
                    links: Default::default(),
                    dirty: Default::default(),
                };
                for r in sql.exec("SELECT path, json FROM sub_links", None)?.raw() {
                    let r = r?;
                    if let (Some(V::String(p)), Some(V::String(j))) = (r.first(), r.get(1)) {
                        let link: Link = serde_json::from_str(j).map_err(|_| corrupt("link"))?;
                        sub.links.insert(p.clone(), link);
                    }
                }
                Some(sub)
            }
            _ => None,
        };
        *self.sub.borrow_mut() = Some(sub.clone());
        Ok(sub)
    }

    /// Writes the head and the changed links in one transaction, then
    /// arms the alarm for what is owed next.
    pub(super) async fn save(&self, mut sub: Sub) -> Result<()> {
        let sql = self.sql();
        let head = serde_json::to_string(&sub.head)
            .map_err(|e| worker::Error::RustError(e.to_string()))?;
        let mut writes: Vec<(String, Option<String>)> = Vec::new();
        for p in std::mem::take(&mut sub.dirty) {
            let j = match sub.links.get(&p) {
                Some(l) => Some(
                    serde_json::to_string(l)
                        .map_err(|e| worker::Error::RustError(e.to_string()))?,
                ),
                None => None,
            };
            writes.push((p, j));
        }
        crate::cloudflare::sql_store::transaction_sync(&self.state.storage(), move || {
            sql.exec(
                "INSERT OR REPLACE INTO sub_head (k, json) VALUES (1, ?)",
                vec![V::String(head)],
            )?;
            for (p, j) in &writes {
                match j {
                    Some(j) => sql.exec(
                        "INSERT OR REPLACE INTO sub_links (path, json) VALUES (?, ?)",
                        vec![V::String(p.clone()), V::String(j.clone())],
                    )?,
                    None => sql.exec(
                        "DELETE FROM sub_links WHERE path = ?",
                        vec![V::String(p.clone())],
                    )?,
                };
            }
            Ok(())
        })?;
        let next = self.next_alarm(&sub);
        *self.sub.borrow_mut() = Some(Some(sub));
        if !self.in_alarm.get() {
            self.arm(next).await?;
        }
        Ok(())
    }

    /// Sets the alarm for `next` unless an earlier one is pending.
    pub(super) async fn arm(&self, next: Option<u64>) -> Result<()> {
        if let Some(at) = next.map(|t| t.max(now_ms())) {
            let storage = self.state.storage();
            let current = storage.get_alarm().await?;
            // An alarm in the past is running (or about to): it may already
            // have looked at the state, so a new deadline is always set. `at`
            // is the earliest of everything owed, so this never postpones
            // overdue work.
            let past = |c: i64| c <= now_ms() as i64;
            if current.is_none_or(|c| c > at as i64 || past(c)) {
                let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(at as f64));
                storage.set_alarm(worker::ScheduledTime::new(date)).await?;
            }
        }
        Ok(())
    }

    pub(super) fn next_alarm(&self, sub: &Sub) -> Option<u64> {
        let setup =
            (sub.head.config.pattern.is_some() && !sub.head.indexed) || sub.head.backfill.is_some();
        let setup_at = setup.then(|| sub.head.setup_at.unwrap_or(0));
        [sub.next_alarm(), setup_at].into_iter().flatten().min()
    }

    pub(super) async fn drop_sub(&self) -> Result<()> {
        let sql = self.sql();
        crate::cloudflare::sql_store::transaction_sync(&self.state.storage(), move || {
            sql.exec("DELETE FROM sub_head", None)?;
            sql.exec("DELETE FROM sub_links", None)?;
            Ok(())
        })?;
        *self.sub.borrow_mut() = Some(None);
        Ok(())
    }
}
