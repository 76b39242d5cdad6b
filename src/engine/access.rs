//! Who may do what (PROTOCOL.md §12.1): the deployment's access settings,
//! read from its variables, and the decision for one request. Pure: the
//! adapter verifies a token's signature (WebCrypto) between [`gate`] and
//! [`admit`], and applies the answer before the edge cache and before any
//! body is read.
//!
//! ```text
//! AUTH_MODE        jwt (default) | open
//! AUTH_JWT_SECRET  HS256 secrets, separated by spaces or commas (several: rotation)
//! AUTH_JWKS        {"keys": [...]}: Ed25519 (OKP) and P-256 (EC) public keys, by kid
//! AUTH_ISSUER      required iss, if set;   AUTH_AUDIENCE  required aud, if set
//! PUBLIC_READ      stream globs anonymous clients may read
//! CORS_ORIGINS     allowed browser origins, separated by spaces or commas (default *)
//! ```

use crate::protocol::auth::{self, parse_jwks, Alg, Denied, Expect, Op, PublicKey, Token};
use crate::protocol::glob::{glob_list, Glob};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every request needs a token that allows it (or `PUBLIC_READ`).
    Jwt,
    /// No checks (local development, the conformance suite).
    Open,
}

/// The access settings of a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub mode: Mode,
    pub secrets: Vec<Vec<u8>>,
    pub keys: Vec<PublicKey>,
    pub expect: Expect,
    pub public_read: Vec<Glob>,
    /// `None`: any origin (`*`).
    pub cors_origins: Option<Vec<String>>,
    /// A configuration error, told to every client that would need a key.
    pub problem: Option<String>,
}

fn list(v: &str) -> impl Iterator<Item = &str> {
    v.split([' ', ',', '\n', '\t']).filter(|s| !s.is_empty())
}

impl Settings {
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Settings {
        let mode = match lookup("AUTH_MODE").as_deref().map(str::trim) {
            Some("open") => Mode::Open,
            _ => Mode::Jwt,
        };
        let secrets = lookup("AUTH_JWT_SECRET")
            .map(|v| list(&v).map(|s| s.as_bytes().to_vec()).collect())
            .unwrap_or_default();
        let mut problem = None;
        let keys = match lookup("AUTH_JWKS").filter(|v| !v.trim().is_empty()) {
            None => Vec::new(),
            Some(text) => parse_jwks(&text).unwrap_or_else(|e| {
                problem = Some(e);
                Vec::new()
            }),
        };
        let nonempty = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let cors_origins = nonempty("CORS_ORIGINS")
            .filter(|v| v != "*")
            .map(|v| list(&v).map(str::to_string).collect());
        Settings {
            mode,
            secrets,
            keys,
            expect: Expect {
                issuer: nonempty("AUTH_ISSUER"),
                audience: nonempty("AUTH_AUDIENCE"),
            },
            public_read: lookup("PUBLIC_READ")
                .map(|v| glob_list(&v))
                .unwrap_or_default(),
            cors_origins,
            problem,
        }
    }

    /// Whether responses to a browser from `origin` may be read by it.
    pub fn cors_allows(&self, origin: &str) -> bool {
        self.cors_origins
            .as_ref()
            .is_none_or(|list| list.iter().any(|o| o == origin))
    }
}

/// A key a token's signature may be checked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Candidate {
    /// `Settings::secrets[i]` (HS256).
    Secret(usize),
    /// `Settings::keys[i]` (EdDSA or ES256).
    Key(usize),
}

/// A request the Worker may serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// Responses may be shared by caches (`public`): open mode, or an
    /// anonymous read of a `PUBLIC_READ` stream. Otherwise they are
    /// `private`: a CDN in front must not give them to other clients.
    pub shared: bool,
    /// Who is asking (the token's `sub`), for rate limits.
    pub subject: Option<String>,
}

/// The first step for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    Allow(Allowed),
    /// Check `token`'s signature with one of `candidates` (any one
    /// verifying is enough), then call [`admit`].
    Verify {
        token: Box<Token>,
        candidates: Vec<Candidate>,
    },
    Deny(Denied),
}

const NO_KEYS: &str = "access control is on (AUTH_MODE=jwt) but no keys are configured: \
set AUTH_JWT_SECRET (wrangler secret put) or AUTH_JWKS, or AUTH_MODE=open";

/// Decides what a request needs before its signature is checked. `needs`
/// comes from [`auth::needs`]; `token` from the `Authorization` header (or
/// `?token=` on reads).
pub fn gate(settings: &Settings, needs: &[(Op, String)], token: Option<&str>) -> Gate {
    if settings.mode == Mode::Open || needs.is_empty() {
        return Gate::Allow(Allowed {
            shared: true,
            subject: None,
        });
    }
    let Some(token) = token else {
        let public = needs.iter().all(|(op, path)| {
            *op == Op::Read && settings.public_read.iter().any(|g| g.matches(path))
        });
        if public {
            return Gate::Allow(Allowed {
                shared: true,
                subject: None,
            });
        }
        if settings.secrets.is_empty() && settings.keys.is_empty() {
            return Gate::Deny(Denied::Unauthenticated(NO_KEYS));
        }
        return Gate::Deny(Denied::Unauthenticated("a bearer token is required"));
    };
    let token = match auth::parse(token) {
        Ok(t) => t,
        Err(d) => return Gate::Deny(d),
    };
    let candidates: Vec<Candidate> = match token.alg {
        Alg::Hs256 => (0..settings.secrets.len()).map(Candidate::Secret).collect(),
        alg => settings
            .keys
            .iter()
            .enumerate()
            .filter(|(_, k)| k.alg == alg)
            .filter(|(_, k)| token.kid.is_none() || k.kid == token.kid)
            .map(|(i, _)| Candidate::Key(i))
            .collect(),
    };
    if candidates.is_empty() {
        return Gate::Deny(Denied::Unauthenticated(
            "no key of this server verifies this token's algorithm and kid",
        ));
    }
    Gate::Verify {
        token: Box::new(token),
        candidates,
    }
}

/// After the signature verified: the claims at `now_ms`, then the scopes.
pub fn admit(
    settings: &Settings,
    token: &Token,
    needs: &[(Op, String)],
    now_ms: u64,
) -> Result<Allowed, Denied> {
    auth::check_claims(&token.claims, &settings.expect, now_ms)?;
    auth::authorize(&token.claims.grants, needs)?;
    Ok(Allowed {
        shared: false,
        subject: token.claims.sub.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    fn settings(vars: &[(&str, &str)]) -> Settings {
        Settings::from_lookup(|n| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        })
    }

    fn token(alg: &str, kid: Option<&str>, scope: &str) -> String {
        let mut h = serde_json::json!({ "alg": alg });
        if let Some(k) = kid {
            h["kid"] = k.into();
        }
        let c = serde_json::json!({ "exp": 4_000_000_000u64, "scope": scope, "sub": "alice" });
        let e = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.{}", e(&h), e(&c), URL_SAFE_NO_PAD.encode([1u8; 64]))
    }

    #[test]
    fn the_default_is_jwt_and_says_how_to_configure_keys() {
        let s = settings(&[]);
        assert_eq!(s.mode, Mode::Jwt);
        let read = auth::needs("GET", "a", None);
        assert_eq!(
            gate(&s, &read, None),
            Gate::Deny(Denied::Unauthenticated(NO_KEYS))
        );
        let open = settings(&[("AUTH_MODE", "open")]);
        assert!(matches!(
            gate(&open, &read, None),
            Gate::Allow(Allowed { shared: true, .. })
        ));
    }

    #[test]
    fn public_read_lets_anonymous_clients_read_matching_streams_only() {
        let s = settings(&[
            ("AUTH_JWT_SECRET", "s1 s2"),
            ("PUBLIC_READ", "news/** status"),
        ]);
        assert_eq!(s.secrets.len(), 2);
        assert!(matches!(
            gate(&s, &auth::needs("GET", "news/today", None), None),
            Gate::Allow(_)
        ));
        assert!(matches!(
            gate(&s, &auth::needs("HEAD", "status", None), None),
            Gate::Allow(_)
        ));
        assert!(matches!(
            gate(&s, &auth::needs("POST", "news/today", None), None),
            Gate::Deny(_)
        ));
        assert!(matches!(
            gate(&s, &auth::needs("GET", "private/x", None), None),
            Gate::Deny(_)
        ));
    }

    #[test]
    fn tokens_are_only_checked_against_keys_of_their_own_algorithm() {
        let x = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let jwks = format!(r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":"ed1"}}]}}"#);
        let s = settings(&[("AUTH_JWT_SECRET", "secret"), ("AUTH_JWKS", &jwks)]);
        let needs = auth::needs("GET", "a", None);
        let hs = gate(&s, &needs, Some(&token("HS256", None, "read:a")));
        assert!(
            matches!(hs, Gate::Verify { ref candidates, .. } if candidates == &[Candidate::Secret(0)])
        );
        let ed = gate(&s, &needs, Some(&token("EdDSA", Some("ed1"), "read:a")));
        assert!(
            matches!(ed, Gate::Verify { ref candidates, .. } if candidates == &[Candidate::Key(0)])
        );
        assert!(matches!(
            gate(&s, &needs, Some(&token("EdDSA", Some("other"), "read:a"))),
            Gate::Deny(_)
        ));
        assert!(matches!(
            gate(&s, &needs, Some(&token("ES256", None, "read:a"))),
            Gate::Deny(_)
        ));
        let no_secrets = settings(&[("AUTH_JWKS", &jwks)]);
        assert!(matches!(
            gate(&no_secrets, &needs, Some(&token("HS256", None, "read:a"))),
            Gate::Deny(_)
        ));
    }

    #[test]
    fn admitted_requests_are_private_and_scoped() {
        let s = settings(&[("AUTH_JWT_SECRET", "k")]);
        let t = auth::parse(&token("HS256", None, "read:chat/** append:chat/room-1")).unwrap();
        let now = 1_000_000_000_000;
        let ok = admit(&s, &t, &auth::needs("GET", "chat/x", None), now).unwrap();
        assert_eq!(
            ok,
            Allowed {
                shared: false,
                subject: Some("alice".into())
            }
        );
        assert!(matches!(
            admit(&s, &t, &auth::needs("POST", "chat/room-2", None), now),
            Err(Denied::Forbidden { op: Op::Append, .. })
        ));
        assert!(matches!(
            admit(
                &s,
                &t,
                &auth::needs("PUT", "chat/new", Some("chat/room-1")),
                now
            ),
            Err(Denied::Forbidden { op: Op::Create, .. })
        ));
        assert!(matches!(
            admit(
                &s,
                &t,
                &auth::needs("GET", "chat/x", None),
                5_000_000_000_000
            ),
            Err(Denied::Unauthenticated(_))
        ));
    }

    #[test]
    fn cors_origins_are_an_allow_list() {
        assert!(settings(&[]).cors_allows("https://x.example"));
        let s = settings(&[("CORS_ORIGINS", "https://a.example, https://b.example")]);
        assert!(s.cors_allows("https://b.example"));
        assert!(!s.cors_allows("https://evil.example"));
    }
}
