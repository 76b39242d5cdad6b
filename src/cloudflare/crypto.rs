//! Token signatures checked with the runtime's WebCrypto (`crypto.subtle`):
//! HMAC SHA-256, Ed25519 and ECDSA P-256 run natively in workerd (BoringSSL,
//! constant-time comparisons) and add nothing to the wasm bundle. Imported
//! keys are kept for the isolate's life: keys change only with a redeploy,
//! which starts new isolates.

use crate::engine::access::{Candidate, Settings};
use crate::protocol::auth::Alg;
use js_sys::{Array, Object, Promise, Reflect, Uint8Array};
use std::cell::RefCell;
use std::collections::HashMap;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;

#[wasm_bindgen]
extern "C" {
    /// `SubtleCrypto`, the methods used here and by `signing.rs`.
    pub(super) type Subtle;

    #[wasm_bindgen(method, catch, js_name = importKey)]
    pub(super) fn import_key(
        this: &Subtle,
        format: &str,
        key: &JsValue,
        algorithm: &JsValue,
        extractable: bool,
        usages: &Array,
    ) -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, catch)]
    pub(super) fn verify(
        this: &Subtle,
        algorithm: &JsValue,
        key: &JsValue,
        signature: &Uint8Array,
        data: &Uint8Array,
    ) -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, catch, js_name = exportKey)]
    pub(super) fn export_key(
        this: &Subtle,
        format: &str,
        key: &JsValue,
    ) -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, catch)]
    pub(super) fn sign(
        this: &Subtle,
        algorithm: &JsValue,
        key: &JsValue,
        data: &Uint8Array,
    ) -> Result<Promise, JsValue>;

    #[wasm_bindgen(method, catch)]
    pub(super) fn digest(
        this: &Subtle,
        algorithm: &str,
        data: &Uint8Array,
    ) -> Result<Promise, JsValue>;
}

thread_local! {
    /// Imported `CryptoKey`s by candidate.
    static KEYS: RefCell<HashMap<Candidate, JsValue>> = RefCell::new(HashMap::new());
}

pub(super) fn subtle() -> Result<Subtle, JsValue> {
    let crypto = Reflect::get(&js_sys::global(), &JsValue::from_str("crypto"))?;
    Ok(Reflect::get(&crypto, &JsValue::from_str("subtle"))?.unchecked_into())
}

fn object(entries: &[(&str, JsValue)]) -> Result<JsValue, JsValue> {
    let o = Object::new();
    for (k, v) in entries {
        Reflect::set(&o, &JsValue::from_str(k), v)?;
    }
    Ok(o.into())
}

fn s(v: &str) -> JsValue {
    JsValue::from_str(v)
}

/// The WebCrypto algorithm for importing and for verifying with a candidate.
fn algorithms(settings: &Settings, c: Candidate) -> Result<(JsValue, JsValue), JsValue> {
    Ok(match c {
        Candidate::Secret(_) => {
            let a = object(&[("name", s("HMAC")), ("hash", s("SHA-256"))])?;
            (a, s("HMAC"))
        }
        Candidate::Key(i) => match settings.keys.get(i).map(|k| k.alg) {
            Some(Alg::EdDsa) => (
                object(&[("name", s("Ed25519"))])?,
                object(&[("name", s("Ed25519"))])?,
            ),
            Some(Alg::Es256) => (
                object(&[("name", s("ECDSA")), ("namedCurve", s("P-256"))])?,
                object(&[("name", s("ECDSA")), ("hash", s("SHA-256"))])?,
            ),
            _ => return Err(s("no such key")),
        },
    })
}

async fn key(subtle: &Subtle, settings: &Settings, c: Candidate) -> Result<JsValue, JsValue> {
    if let Some(k) = KEYS.with(|m| m.borrow().get(&c).cloned()) {
        return Ok(k);
    }
    let (import_alg, _) = algorithms(settings, c)?;
    let usages = Array::of1(&s("verify"));
    let promise = match c {
        Candidate::Secret(i) => {
            let secret = settings.secrets.get(i).ok_or_else(|| s("no such secret"))?;
            subtle.import_key(
                "raw",
                &Uint8Array::from(secret.as_slice()).into(),
                &import_alg,
                false,
                &usages,
            )?
        }
        Candidate::Key(i) => {
            let k = settings.keys.get(i).ok_or_else(|| s("no such key"))?;
            let mut jwk = vec![("x", s(&k.x))];
            match (k.alg, &k.y) {
                (Alg::Es256, Some(y)) => {
                    jwk.extend([("kty", s("EC")), ("crv", s("P-256")), ("y", s(y))])
                }
                _ => jwk.extend([("kty", s("OKP")), ("crv", s("Ed25519"))]),
            }
            subtle.import_key("jwk", &object(&jwk)?, &import_alg, false, &usages)?
        }
    };
    let imported = JsFuture::from(promise).await?;
    KEYS.with(|m| m.borrow_mut().insert(c, imported.clone()));
    Ok(imported)
}

/// Whether `signature` over `input` verifies with candidate `c`. Any
/// failure (a key that does not import, a signature of the wrong length)
/// is a "no", logged.
pub async fn verifies(settings: &Settings, c: Candidate, input: &[u8], signature: &[u8]) -> bool {
    let result = async {
        // Ed25519 and ES256 signatures are 64 bytes (r || s for ECDSA, as JWS
        // and WebCrypto both encode it); WebCrypto throws or says no otherwise.
        if matches!(c, Candidate::Key(_)) && signature.len() != 64 {
            return Ok(false);
        }
        let subtle = subtle()?;
        let key = key(&subtle, settings, c).await?;
        let (_, verify_alg) = algorithms(settings, c)?;
        let promise = subtle.verify(
            &verify_alg,
            &key,
            &Uint8Array::from(signature),
            &Uint8Array::from(input),
        )?;
        Ok::<bool, JsValue>(JsFuture::from(promise).await?.as_bool().unwrap_or(false))
    }
    .await;
    result.unwrap_or_else(|e| {
        worker::console_error!("token key {c:?}: {e:?}");
        false
    })
}
