//! What a subscription says about itself (PROTOCOL.md §6.3, §7.1): its
//! JSON view, the webhook and claim bodies, wake events and its URLs.

use super::Sub;
use serde_json::{json, Value};

impl Sub {
    /// The links as wake payloads list them (§7.1).
    pub fn stream_infos(&self) -> Vec<Value> {
        self.links
            .iter()
            .map(|(path, l)| {
                json!({
                    "path": path,
                    "link_type": l.link_type(),
                    "acked_offset": l.acked,
                    "tail_offset": l.tail,
                    "has_pending": l.pending(),
                })
            })
            .collect()
    }

    /// The URL of an action on this subscription.
    pub fn action_url(&self, action: &str) -> String {
        format!(
            "{}/v1/stream/__ds/subscriptions/{}/{action}",
            self.head.base_url, self.head.id
        )
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/v1/stream/__ds/jwks.json", self.head.base_url)
    }

    /// The webhook body for the wake in flight (§7.1).
    pub fn webhook_body(&self, token: &str) -> String {
        json!({
            "subscription_id": self.head.id,
            "wake_id": self.head.wake.as_ref().map(|w| w.id.clone()),
            "generation": self.head.generation,
            "streams": self.stream_infos(),
            "callback_url": self.action_url("callback"),
            "callback_token": token,
        })
        .to_string()
    }

    /// A successful claim's body (§7.2).
    pub fn claim_body(&self, token: &str) -> Value {
        json!({
            "wake_id": self.head.wake.as_ref().map(|w| w.id.clone()),
            "generation": self.head.generation,
            "token": token,
            "streams": self.stream_infos(),
            "lease_ttl_ms": self.head.config.lease_ttl_ms,
        })
    }

    /// A pull-wake event (§7.2).
    pub fn wake_event(&self, stream: &str, now: u64) -> String {
        json!({
            "type": "wake",
            "subscription_id": self.head.id,
            "stream": stream,
            "generation": self.head.generation,
            "ts": now,
        })
        .to_string()
    }

    /// The subscription as `GET` shows it (§6.3). `signing`: the webhook
    /// signing metadata.
    pub fn describe(&self, signing: Option<Value>, created_at: &str) -> Value {
        let c = &self.head.config;
        let streams: Vec<Value> = self
            .links
            .iter()
            .map(|(path, l)| {
                json!({
                    "path": path,
                    "link_type": l.link_type(),
                    "acked_offset": l.acked,
                })
            })
            .collect();
        let webhook = c.webhook_url.as_ref().map(|u| {
            let mut w = json!({ "url": u });
            if let (Some(s), Some(o)) = (signing.clone(), w.as_object_mut()) {
                o.insert("signing".into(), s);
            }
            w
        });
        json!({
            "id": self.head.id,
            "subscription_id": self.head.id,
            "type": c.kind.as_str(),
            "pattern": c.pattern,
            "streams": streams,
            "webhook": webhook,
            "wake_stream": c.wake_stream,
            "lease_ttl_ms": c.lease_ttl_ms,
            "created_at": created_at,
            "status": if self.head.failed { "failed" } else { "active" },
            "description": c.description,
            "generation": self.head.generation,
            "streams_refused": self.head.refused,
        })
    }
}
