//! The webhook signing key (PROTOCOL.md §6.5, §7.1, §12.9, §12.10): an
//! Ed25519 key from the `SUBSCRIPTION_SIGNING_KEY` secret, used through
//! WebCrypto (nothing added to the wasm bundle) to sign webhook bodies and
//! the wake tokens of callbacks, acks and releases, and published as a JWK
//! Set whose `kid` is derived from the key (RFC 7638 thumbprint).
//!
//! The secret is the 32-byte Ed25519 seed, base64 or base64url, or the key
//! as PKCS #8 PEM (`openssl genpkey -algorithm ed25519`). Imported once per
//! isolate.

use super::crypto::subtle;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use js_sys::{Array, Object, Reflect, Uint8Array};
use serde_json::{json, Value};
use std::rc::Rc;
use wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::Env;

/// The secret holding the key.
pub const SECRET: &str = "SUBSCRIPTION_SIGNING_KEY";
/// PKCS #8 prefix of a bare Ed25519 seed (RFC 8410).
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The imported key pair.
pub struct Signer {
    private: JsValue,
    public: JsValue,
    pub kid: String,
    /// The public key, base64url (the JWK's `x`).
    pub x: String,
}

thread_local! {
    static SIGNER: std::cell::RefCell<Option<Rc<Signer>>> = const { std::cell::RefCell::new(None) };
}

fn crypto() -> Result<JsValue, JsValue> {
    Reflect::get(&js_sys::global(), &JsValue::from_str("crypto"))
}

fn ed25519() -> Result<JsValue, JsValue> {
    let o = Object::new();
    Reflect::set(&o, &"name".into(), &"Ed25519".into())?;
    Ok(o.into())
}

/// `n` random bytes from `crypto.getRandomValues`, hex.
pub fn random_hex(n: u32) -> String {
    let buf = Uint8Array::new_with_length(n);
    let filled = crypto().and_then(|c| {
        let f = Reflect::get(&c, &"getRandomValues".into())?;
        f.unchecked_into::<js_sys::Function>().call1(&c, &buf)
    });
    if filled.is_err() {
        // Not expected in workerd; Math.random is still unique enough for ids.
        return format!("{:016x}", super::shared::random_u64());
    }
    buf.to_vec().iter().map(|b| format!("{b:02x}")).collect()
}

/// The seed or PKCS #8 DER in the secret.
fn pkcs8(secret: &str) -> Option<Vec<u8>> {
    let text = secret.trim();
    let der = if text.starts_with("-----BEGIN") {
        let body: String = text
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>();
        STANDARD.decode(body.trim()).ok()?
    } else {
        let t = text.trim_end_matches('=');
        URL_SAFE_NO_PAD
            .decode(t)
            .or_else(|_| STANDARD.decode(text))
            .ok()?
    };
    match der.len() {
        32 => Some([PKCS8_PREFIX.as_slice(), &der].concat()),
        48 if der.starts_with(&PKCS8_PREFIX) => Some(der),
        _ => None,
    }
}

async fn import(secret: &str) -> Result<Signer, JsValue> {
    let der = pkcs8(secret).ok_or_else(|| {
        JsValue::from_str("SUBSCRIPTION_SIGNING_KEY is not an Ed25519 seed or PKCS #8 key")
    })?;
    let subtle = subtle()?;
    let private = JsFuture::from(subtle.import_key(
        "pkcs8",
        &Uint8Array::from(der.as_slice()).into(),
        &ed25519()?,
        true,
        &Array::of1(&"sign".into()),
    )?)
    .await?;
    let jwk = JsFuture::from(subtle.export_key("jwk", &private)?).await?;
    let x = Reflect::get(&jwk, &"x".into())?
        .as_string()
        .ok_or_else(|| JsValue::from_str("no x in the exported key"))?;
    let public_jwk = Object::new();
    for (k, v) in [("kty", "OKP"), ("crv", "Ed25519"), ("x", x.as_str())] {
        Reflect::set(&public_jwk, &k.into(), &v.into())?;
    }
    let public = JsFuture::from(subtle.import_key(
        "jwk",
        &public_jwk.into(),
        &ed25519()?,
        true,
        &Array::of1(&"verify".into()),
    )?)
    .await?;
    // RFC 7638: the thumbprint of the required members in lexicographic order.
    let thumb_input = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    let digest =
        JsFuture::from(subtle.digest("SHA-256", &Uint8Array::from(thumb_input.as_bytes()))?)
            .await?;
    let digest = Uint8Array::new(&digest).to_vec();
    let thumb = URL_SAFE_NO_PAD.encode(digest);
    Ok(Signer {
        private,
        public,
        kid: format!("ds_{}", thumb.get(..22).unwrap_or(&thumb)),
        x,
    })
}

/// The deployment's signer; `None` (logged) when the secret is missing or
/// malformed: subscriptions then answer 503 saying so.
pub async fn signer(env: &Env) -> Option<Rc<Signer>> {
    if let Some(s) = SIGNER.with(|s| s.borrow().clone()) {
        return Some(s);
    }
    let secret = env
        .secret(SECRET)
        .ok()
        .map(|v| v.to_string())
        .or_else(|| env.var(SECRET).ok().map(|v| v.to_string()))?;
    match import(&secret).await {
        Ok(s) => {
            let s = Rc::new(s);
            SIGNER.with(|c| *c.borrow_mut() = Some(s.clone()));
            Some(s)
        }
        Err(e) => {
            worker::console_error!("{SECRET}: {e:?}");
            None
        }
    }
}

impl Signer {
    /// The Ed25519 signature of `data`, base64url without padding.
    pub async fn sign(&self, data: &[u8]) -> Result<String, JsValue> {
        let sig =
            JsFuture::from(subtle()?.sign(&ed25519()?, &self.private, &Uint8Array::from(data))?)
                .await?;
        Ok(URL_SAFE_NO_PAD.encode(Uint8Array::new(&sig).to_vec()))
    }

    async fn verifies(&self, data: &[u8], sig: &[u8]) -> bool {
        let r = async {
            let p = subtle()?.verify(
                &ed25519()?,
                &self.public,
                &Uint8Array::from(sig),
                &Uint8Array::from(data),
            )?;
            Ok::<bool, JsValue>(JsFuture::from(p).await?.as_bool().unwrap_or(false))
        }
        .await;
        r.unwrap_or(false)
    }

    /// `Webhook-Signature: t=<secs>,kid=<kid>,ed25519=<sig>` over `<t>.<body>` (§7.1).
    pub async fn webhook_signature(&self, body: &str, now_ms: u64) -> Result<String, JsValue> {
        let t = now_ms / 1000;
        let sig = self.sign(format!("{t}.{body}").as_bytes()).await?;
        Ok(format!("t={t},kid={},ed25519={sig}", self.kid))
    }

    /// The JWK Set (§6.5).
    pub fn jwks(&self) -> String {
        json!({ "keys": [{
            "kty": "OKP", "crv": "Ed25519", "kid": self.kid,
            "use": "sig", "alg": "EdDSA", "x": self.x,
        }]})
        .to_string()
    }

    /// The signing metadata subscription responses carry (§6.3).
    pub fn metadata(&self, jwks_url: &str) -> Value {
        json!({ "alg": "ed25519", "kid": self.kid, "jwks_url": jwks_url })
    }

    /// A wake token (§12.9): `b64url(claims).b64url(ed25519 signature)`,
    /// claims naming the subscription, generation and wake.
    pub async fn wake_token(
        &self,
        sub: &str,
        generation: u64,
        wake: &str,
    ) -> Result<String, JsValue> {
        let claims = json!({ "typ": "ds-wake", "sub": sub, "gen": generation, "wake": wake });
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let sig = self.sign(payload.as_bytes()).await?;
        Ok(format!("{payload}.{sig}"))
    }

    /// The generation of a wake token for `sub` whose signature verifies.
    pub async fn check_wake_token(&self, token: &str, sub: &str) -> Option<u64> {
        let (payload, sig) = token.split_once('.')?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok().filter(|s| s.len() == 64)?;
        if !self.verifies(payload.as_bytes(), &sig).await {
            return None;
        }
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        let ok = claims.get("typ")? == "ds-wake" && claims.get("sub")? == sub;
        ok.then(|| claims.get("gen")?.as_u64()).flatten()
    }
}
