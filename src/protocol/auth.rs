//! Access control (PROTOCOL.md §12.1): bearer tokens as compact JWS (JWT),
//! pure. This module parses a token, checks its claims against a clock
//! value, and matches its scopes against the operations a request needs;
//! verifying the signature is the adapter's job (WebCrypto), over the
//! signing input this module hands back.
//!
//! ```text
//! token   = b64url(header) "." b64url(claims) "." b64url(signature)   ≤ MAX_TOKEN_BYTES
//! header  = {"alg": "HS256" | "EdDSA" | "ES256", "kid"?: ..., "typ"?: ...}
//! claims  = {"exp": secs (required), "nbf"?: secs, "iat"?: secs, "iss"?: ..., "aud"?: str | [str],
//!            "sub"?: ..., "scope": "OP:PATTERN OP:PATTERN ..."}
//! OP      = read | append | create | delete | subscribe | proxy | *
//! PATTERN = a stream path glob: "*" one segment, "**" zero or more (as §6)
//! ```
//!
//! Every refusal is a [`Denied`]: 401 (no usable token) or 403 (a valid
//! token without the scope), each with a short reason.

use super::glob::Glob;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

/// The longest token accepted (bytes); longer ones are refused unparsed.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
pub const CLOCK_SKEW_S: u64 = 60;
/// The most scope entries one token may carry.
pub const MAX_SCOPES: usize = 64;

/// What a request does to a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Append,
    Create,
    Delete,
    /// Manage subscription `<id>` (the pattern is matched against the id):
    /// create, read, delete, change its streams, claim it (§6, §7).
    Subscribe,
    /// Start or cancel an LLM proxy job whose stream is at the path (the
    /// pattern is matched against `proxy/<id>`; README, Resumable AI
    /// responses). Reading the answer is `read` on that stream.
    Proxy,
}

impl Op {
    fn parse(s: &str) -> Option<Option<Op>> {
        Some(match s {
            "read" => Some(Op::Read),
            "append" => Some(Op::Append),
            "create" => Some(Op::Create),
            "delete" => Some(Op::Delete),
            "subscribe" => Some(Op::Subscribe),
            "proxy" => Some(Op::Proxy),
            "*" => None,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Append => "append",
            Op::Create => "create",
            Op::Delete => "delete",
            Op::Subscribe => "subscribe",
            Op::Proxy => "proxy",
        }
    }
}

/// A signature algorithm this server verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// HMAC SHA-256 with a shared secret.
    Hs256,
    /// Ed25519 with a public key from the JWKS.
    EdDsa,
    /// ECDSA P-256 SHA-256 with a public key from the JWKS.
    Es256,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// 401: no token, or one that cannot be trusted; the reason says which.
    Unauthenticated(&'static str),
    /// 403: a valid token whose scopes do not cover the request.
    Forbidden { op: Op, path: String },
}

impl From<Denied> for super::error::ProtocolError {
    fn from(d: Denied) -> Self {
        match d {
            Denied::Unauthenticated(reason) => super::error::ProtocolError::Unauthorized { reason },
            Denied::Forbidden { op, path } => super::error::ProtocolError::Forbidden {
                op: op.as_str(),
                path,
            },
        }
    }
}

/// One `OP:PATTERN` scope entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `None`: every operation (`*`).
    pub op: Option<Op>,
    pub pattern: Glob,
}

/// The claims this server reads from a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub exp: u64,
    pub nbf: Option<u64>,
    pub iat: Option<u64>,
    pub iss: Option<String>,
    pub aud: Vec<String>,
    /// The subject, for rate limits (else the client's address is used).
    pub sub: Option<String>,
    pub grants: Vec<Grant>,
}

/// A parsed token whose signature is still to be verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub alg: Alg,
    pub kid: Option<String>,
    pub claims: Claims,
    /// `header.claims`, the bytes the signature covers.
    pub signing_input: Vec<u8>,
    pub signature: Vec<u8>,
}

const MALFORMED: Denied = Denied::Unauthenticated("malformed token");

fn b64(part: &str) -> Result<Vec<u8>, Denied> {
    URL_SAFE_NO_PAD.decode(part).map_err(|_| MALFORMED)
}

fn parse_grants(scope: &str) -> Result<Vec<Grant>, Denied> {
    let bad = Denied::Unauthenticated("malformed scope: expected OP:PATTERN entries");
    let entries: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
    if entries.len() > MAX_SCOPES {
        return Err(Denied::Unauthenticated("too many scope entries"));
    }
    entries
        .into_iter()
        .map(|e| {
            let (op, pattern) = e.split_once(':').ok_or_else(|| bad.clone())?;
            Ok(Grant {
                op: Op::parse(op).ok_or_else(|| bad.clone())?,
                pattern: Glob::parse(pattern).ok_or_else(|| bad.clone())?,
            })
        })
        .collect()
}

fn secs(v: Option<&Value>) -> Result<Option<u64>, Denied> {
    match v {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .map(Some)
            .ok_or(Denied::Unauthenticated(
                "a time claim is not a number of seconds",
            )),
        Some(_) => Err(Denied::Unauthenticated(
            "a time claim is not a number of seconds",
        )),
    }
}

/// Parses a compact JWS. Refuses unknown and `none` algorithms, oversized
/// tokens and anything malformed (401 with a reason).
pub fn parse(token: &str) -> Result<Token, Denied> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Denied::Unauthenticated("token too large"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(MALFORMED);
    };
    let header: Value = serde_json::from_slice(&b64(h)?).map_err(|_| MALFORMED)?;
    let alg = match header.get("alg").and_then(Value::as_str) {
        Some("HS256") => Alg::Hs256,
        Some("EdDSA") => Alg::EdDsa,
        Some("ES256") => Alg::Es256,
        Some("none") | Some("None") | Some("NONE") => {
            return Err(Denied::Unauthenticated(
                "unsigned tokens (alg none) are refused",
            ))
        }
        _ => return Err(Denied::Unauthenticated("unsupported token algorithm")),
    };
    if header.get("crit").is_some() {
        return Err(Denied::Unauthenticated(
            "critical token extensions are not supported",
        ));
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .map(str::to_string);
    let claims: Value = serde_json::from_slice(&b64(c)?).map_err(|_| MALFORMED)?;
    let exp =
        secs(claims.get("exp"))?.ok_or(Denied::Unauthenticated("the token has no expiry (exp)"))?;
    let text = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_string);
    let aud = match claims.get("aud") {
        None => Vec::new(),
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or(MALFORMED))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(MALFORMED),
    };
    let grants = match claims.get("scope") {
        None => Vec::new(),
        Some(Value::String(scope)) => parse_grants(scope)?,
        Some(_) => return Err(MALFORMED),
    };
    Ok(Token {
        alg,
        kid,
        claims: Claims {
            exp,
            nbf: secs(claims.get("nbf"))?,
            iat: secs(claims.get("iat"))?,
            iss: text("iss"),
            aud,
            sub: text("sub"),
            grants,
        },
        signing_input: format!("{h}.{c}").into_bytes(),
        signature: b64(s)?,
    })
}

/// What a deployment requires of a token's claims.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expect {
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

/// Checks the time and identity claims at `now_ms` (with [`CLOCK_SKEW_S`]).
pub fn check_claims(c: &Claims, expect: &Expect, now_ms: u64) -> Result<(), Denied> {
    let now = now_ms / 1000;
    if c.exp.saturating_add(CLOCK_SKEW_S) <= now {
        return Err(Denied::Unauthenticated("the token has expired"));
    }
    if c.nbf
        .is_some_and(|nbf| nbf > now.saturating_add(CLOCK_SKEW_S))
    {
        return Err(Denied::Unauthenticated("the token is not valid yet (nbf)"));
    }
    if c.iat
        .is_some_and(|iat| iat > now.saturating_add(CLOCK_SKEW_S))
    {
        return Err(Denied::Unauthenticated(
            "the token was issued in the future (iat)",
        ));
    }
    if let Some(iss) = &expect.issuer {
        if c.iss.as_ref() != Some(iss) {
            return Err(Denied::Unauthenticated(
                "the token's issuer (iss) is not accepted",
            ));
        }
    }
    if let Some(aud) = &expect.audience {
        if !c.aud.iter().any(|a| a == aud) {
            return Err(Denied::Unauthenticated(
                "the token's audience (aud) does not include this server",
            ));
        }
    }
    Ok(())
}

/// Whether the grants cover `op` on the stream `path`. A `path` with a
/// wildcard segment is a subscription's pattern: a grant must cover every
/// path it can match ([`Glob::covers`]).
pub fn allows(grants: &[Grant], op: Op, path: &str) -> bool {
    let pattern = path
        .split('/')
        .any(|s| s == "*" || s == "**")
        .then(|| Glob::parse(path))
        .flatten();
    grants.iter().any(|g| {
        g.op.is_none_or(|o| o == op)
            && match &pattern {
                Some(p) => g.pattern.covers(p),
                None => g.pattern.matches(path),
            }
    })
}

/// Checks every `(op, path)` a request needs; the first one missing is the 403.
pub fn authorize(grants: &[Grant], needs: &[(Op, String)]) -> Result<(), Denied> {
    match needs.iter().find(|(op, path)| !allows(grants, *op, path)) {
        Some((op, path)) => Err(Denied::Forbidden {
            op: *op,
            path: path.clone(),
        }),
        None => Ok(()),
    }
}

/// A public key from `AUTH_JWKS` (RFC 7517): an Ed25519 (`OKP`) or P-256
/// (`EC`) key, with the JWK members WebCrypto imports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub kid: Option<String>,
    pub alg: Alg,
    /// The base64url coordinates (`y` only for P-256).
    pub x: String,
    pub y: Option<String>,
}

/// Parses a JSON Web Key Set. Keys of other types (RSA, symmetric) are
/// refused: a deployment must not believe it verifies what it cannot.
pub fn parse_jwks(text: &str) -> Result<Vec<PublicKey>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("AUTH_JWKS is not JSON: {e}"))?;
    let keys = v
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("AUTH_JWKS must be {\"keys\": [...]}")?;
    keys.iter()
        .map(|k| {
            let s = |m: &str| k.get(m).and_then(Value::as_str).map(str::to_string);
            let coord = |m: &str| {
                s(m).filter(|c| URL_SAFE_NO_PAD.decode(c).is_ok_and(|b| b.len() == 32))
                    .ok_or_else(|| format!("AUTH_JWKS: key member {m} must be 32 base64url bytes"))
            };
            let alg = match (s("kty").as_deref(), s("crv").as_deref()) {
                (Some("OKP"), Some("Ed25519")) => Alg::EdDsa,
                (Some("EC"), Some("P-256")) => Alg::Es256,
                other => return Err(format!("AUTH_JWKS: unsupported key type {other:?}")),
            };
            if let Some(a) = s("alg") {
                let expected = if alg == Alg::EdDsa { "EdDSA" } else { "ES256" };
                if a != expected {
                    return Err(format!("AUTH_JWKS: key alg {a} does not match its type"));
                }
            }
            Ok(PublicKey {
                kid: s("kid"),
                alg,
                x: coord("x")?,
                y: if alg == Alg::Es256 {
                    Some(coord("y")?)
                } else {
                    None
                },
            })
        })
        .collect()
}

/// The token of `Authorization: Bearer <token>`, if that is the scheme.
pub fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The operations a request needs: `GET`/`HEAD` read, `POST` appends, `PUT`
/// creates (and a fork also reads its source), `DELETE` deletes.
pub fn needs(method: &str, path: &str, forked_from: Option<&str>) -> Vec<(Op, String)> {
    let op = match method {
        "GET" | "HEAD" => Op::Read,
        "POST" => Op::Append,
        "PUT" => Op::Create,
        "DELETE" => Op::Delete,
        _ => return Vec::new(),
    };
    let mut out = vec![(op, path.to_string())];
    if let (Op::Create, Some(source)) = (op, forked_from) {
        out.push((Op::Read, source.to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(v.to_string())
    }

    fn token(header: Value, claims: Value) -> String {
        format!(
            "{}.{}.{}",
            enc(&header),
            enc(&claims),
            URL_SAFE_NO_PAD.encode(b"sig")
        )
    }

    #[test]
    fn tokens_parse_and_refuse_with_reasons() {
        let claims = serde_json::json!({"exp": 2_000_000_000u64, "scope": "read:chat/** append:chat/room-1", "sub": "u1"});
        let t = parse(&token(
            serde_json::json!({"alg": "HS256", "kid": "k1"}),
            claims.clone(),
        ))
        .unwrap();
        assert_eq!(t.alg, Alg::Hs256);
        assert_eq!(t.kid.as_deref(), Some("k1"));
        assert_eq!(t.claims.grants.len(), 2);
        assert_eq!(t.signature, b"sig");
        let none = token(serde_json::json!({"alg": "none"}), claims.clone());
        assert_eq!(
            parse(&none),
            Err(Denied::Unauthenticated(
                "unsigned tokens (alg none) are refused"
            ))
        );
        let rs = token(serde_json::json!({"alg": "RS256"}), claims.clone());
        assert_eq!(
            parse(&rs),
            Err(Denied::Unauthenticated("unsupported token algorithm"))
        );
        let no_exp = token(
            serde_json::json!({"alg": "HS256"}),
            serde_json::json!({"scope": "read:a"}),
        );
        assert_eq!(
            parse(&no_exp),
            Err(Denied::Unauthenticated("the token has no expiry (exp)"))
        );
        let bad_scope = token(
            serde_json::json!({"alg": "HS256"}),
            serde_json::json!({"exp": 1, "scope": "write:a"}),
        );
        assert!(
            matches!(parse(&bad_scope), Err(Denied::Unauthenticated(r)) if r.starts_with("malformed scope"))
        );
        for junk in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.??.**",
            &"x".repeat(MAX_TOKEN_BYTES + 1),
        ] {
            assert!(
                matches!(parse(junk), Err(Denied::Unauthenticated(_))),
                "{junk:.20}"
            );
        }
    }

    #[test]
    fn claims_are_checked_with_skew() {
        let c = |exp: u64, nbf: Option<u64>| Claims {
            exp,
            nbf,
            iat: None,
            iss: Some("me".into()),
            aud: vec!["streams".into()],
            sub: None,
            grants: vec![],
        };
        let none = Expect::default();
        let now = 1_000_000u64 * 1000;
        assert!(check_claims(&c(1_000_000 + 1, None), &none, now).is_ok());
        assert!(
            check_claims(&c(1_000_000 - 30, None), &none, now).is_ok(),
            "within the skew"
        );
        assert!(check_claims(&c(1_000_000 - 61, None), &none, now).is_err());
        assert!(check_claims(&c(2_000_000, Some(1_000_000 + 61)), &none, now).is_err());
        assert!(check_claims(&c(2_000_000, Some(1_000_000 + 59)), &none, now).is_ok());
        let strict = Expect {
            issuer: Some("me".into()),
            audience: Some("streams".into()),
        };
        assert!(check_claims(&c(2_000_000, None), &strict, now).is_ok());
        let other = Expect {
            issuer: Some("them".into()),
            audience: None,
        };
        assert!(check_claims(&c(2_000_000, None), &other, now).is_err());
        let aud = Expect {
            issuer: None,
            audience: Some("else".into()),
        };
        assert!(check_claims(&c(2_000_000, None), &aud, now).is_err());
    }

    #[test]
    fn jwks_keys_are_typed_and_checked() {
        let x = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let jwks = format!(
            r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":"ed"}},{{"kty":"EC","crv":"P-256","x":"{x}","y":"{x}","alg":"ES256"}}]}}"#
        );
        let keys = parse_jwks(&jwks).unwrap();
        assert_eq!(keys[0].alg, Alg::EdDsa);
        assert_eq!(keys[0].kid.as_deref(), Some("ed"));
        assert_eq!(keys[1].alg, Alg::Es256);
        assert!(parse_jwks(r#"{"keys":[{"kty":"RSA","n":"x","e":"AQAB"}]}"#).is_err());
        assert!(parse_jwks(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#).is_err());
        assert!(parse_jwks("[]").is_err());
        let wrong_alg =
            format!(r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{x}","alg":"HS256"}}]}}"#);
        assert!(parse_jwks(&wrong_alg).is_err());
    }

    #[test]
    fn requests_need_operations() {
        assert_eq!(needs("GET", "a", None), vec![(Op::Read, "a".into())]);
        assert_eq!(
            needs("PUT", "f", Some("src")),
            vec![(Op::Create, "f".into()), (Op::Read, "src".into())]
        );
        assert_eq!(needs("OPTIONS", "a", None), vec![]);
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
    }

    #[test]
    fn scopes_cover_operations_on_matching_paths() {
        let grants = parse_grants("read:chat/** append:chat/room-1 *:tmp/*").unwrap();
        assert!(allows(&grants, Op::Read, "chat/room-9"));
        assert!(allows(&grants, Op::Append, "chat/room-1"));
        assert!(!allows(&grants, Op::Append, "chat/room-2"));
        assert!(!allows(&grants, Op::Delete, "chat/room-1"));
        assert!(allows(&grants, Op::Delete, "tmp/x"));
        let needs = vec![
            (Op::Create, "chat/new".to_string()),
            (Op::Read, "chat/room-1".to_string()),
        ];
        assert_eq!(
            authorize(&grants, &needs),
            Err(Denied::Forbidden {
                op: Op::Create,
                path: "chat/new".into()
            })
        );
    }
}
