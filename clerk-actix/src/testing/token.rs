//! A builder for Clerk-shaped session tokens (v1 and v2), including deliberately broken ones.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Map, Value};

use super::keys::{TestKey, TEST_KEYS};

/// The issuer (Frontend API URL) of tokens minted by the test kit.
pub const TEST_ISSUER: &str = "https://clerk.mock.clerk-actix.test";
/// The default `azp` of tokens minted by the test kit.
pub const TEST_AUTHORIZED_PARTY: &str = "http://localhost:3000";

/// Unix seconds now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// How to break a token after signing it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Breakage {
    /// Change the payload after signing (signature no longer matches).
    TamperPayload,
    /// Change the header after signing.
    TamperHeader,
    /// Flip a bit of the signature.
    TamperSignature,
    /// `alg: none` and an empty signature.
    AlgNone,
    /// HS256 keyed with the RSA public key PEM text (algorithm confusion).
    Hs256WithPublicKey,
    /// Sign with another key pair while keeping this key's `kid`.
    WrongKey,
}

/// Builds signed session tokens. Defaults: `sub = user_test`, `sid = sess_test`,
/// `iat = now`, `nbf = now - 10`, `exp = now + 60`, `azp = http://localhost:3000`, `iss` the
/// test issuer, header `{alg: RS256, kid, typ: JWT}`, v1 claims.
///
/// ```
/// use clerk_actix::testing::TokenBuilder;
/// let token = TokenBuilder::new()
///     .subject("user_123")
///     .v2()
///     .org_v2("org_1", "admin", "acme", "manage,read", "3")
///     .features("o:dashboard")
///     .build();
/// assert_eq!(token.split('.').count(), 3);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct TokenBuilder {
    header: Map<String, Value>,
    claims: Map<String, Value>,
    key: TestKey,
    breakage: Option<Breakage>,
}

impl Default for TokenBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenBuilder {
    /// A valid v1 session token signed with the first test key.
    pub fn new() -> Self {
        Self::with_key(TEST_KEYS[0])
    }

    /// A valid v1 session token signed with `key`.
    pub fn with_key(key: TestKey) -> Self {
        let now = unix_now();
        let header = json!({"alg": "RS256", "kid": key.kid, "typ": "JWT"});
        let claims = json!({
            "azp": TEST_AUTHORIZED_PARTY,
            "exp": now + 60,
            "iat": now,
            "iss": TEST_ISSUER,
            "nbf": now - 10,
            "sid": "sess_test",
            "sub": "user_test",
        });
        let (Value::Object(header), Value::Object(claims)) = (header, claims) else {
            unreachable!("json! objects")
        };
        Self {
            header,
            claims,
            key,
            breakage: None,
        }
    }

    /// Sets any claim.
    pub fn claim(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.claims.insert(name.to_owned(), value.into());
        self
    }

    /// Removes a claim.
    pub fn without_claim(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }

    /// Sets any header field.
    pub fn header(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.header.insert(name.to_owned(), value.into());
        self
    }

    /// Removes a header field.
    pub fn without_header(mut self, name: &str) -> Self {
        self.header.remove(name);
        self
    }

    /// `sub`.
    pub fn subject(self, sub: &str) -> Self {
        self.claim("sub", sub)
    }

    /// `sid`.
    pub fn session_id(self, sid: &str) -> Self {
        self.claim("sid", sid)
    }

    /// `azp`.
    pub fn authorized_party(self, azp: &str) -> Self {
        self.claim("azp", azp)
    }

    /// `iss`.
    pub fn issuer(self, iss: &str) -> Self {
        self.claim("iss", iss)
    }

    /// Sets `iat = at`, `nbf = at - 10`, `exp = at + 60`, as Clerk mints them.
    pub fn issued_at(self, at: i64) -> Self {
        self.claim("iat", at)
            .claim("nbf", at - 10)
            .claim("exp", at + 60)
    }

    /// `exp` (Unix seconds).
    pub fn expires_at(self, exp: i64) -> Self {
        self.claim("exp", exp)
    }

    /// `exp = now + secs` (negative for an expired token).
    pub fn expires_in(self, secs: i64) -> Self {
        self.claim("exp", unix_now() + secs)
    }

    /// `nbf`.
    pub fn not_before(self, nbf: i64) -> Self {
        self.claim("nbf", nbf)
    }

    /// `kid` header.
    pub fn kid(self, kid: &str) -> Self {
        self.header("kid", kid)
    }

    /// Signs with another test key (its `kid` goes into the header).
    pub fn signed_with(mut self, key: TestKey) -> Self {
        self.key = key;
        self.header("kid", key.kid)
    }

    /// v2 claims: `"v": 2` (add `fea`, `pla`, `o`, `fva`, `sts` with the other methods).
    pub fn v2(self) -> Self {
        self.claim("v", 2).claim("jti", "jti_test")
    }

    /// v1 organization claims (`org_id`, `org_role`, `org_slug`, `org_permissions`).
    pub fn org_v1(self, id: &str, role: &str, slug: &str, permissions: &[&str]) -> Self {
        self.claim("org_id", id)
            .claim("org_role", role)
            .claim("org_slug", slug)
            .claim("org_permissions", permissions.to_vec())
    }

    /// v2 organization claim `o` (`rol` without the `org:` prefix; `per` and `fpm` comma lists).
    pub fn org_v2(self, id: &str, rol: &str, slg: &str, per: &str, fpm: &str) -> Self {
        self.claim(
            "o",
            json!({"id": id, "rol": rol, "slg": slg, "per": per, "fpm": fpm}),
        )
    }

    /// v2 `fea` (e.g. `o:dashboard,u:profile`).
    pub fn features(self, fea: &str) -> Self {
        self.claim("fea", fea)
    }

    /// v2 `pla` (e.g. `o:pro`).
    pub fn plans(self, pla: &str) -> Self {
        self.claim("pla", pla)
    }

    /// `fva` (minutes since first / second factor verification; -1 = none).
    pub fn fva(self, first: i64, second: i64) -> Self {
        self.claim("fva", vec![first, second])
    }

    /// `sts` (`active` / `pending`).
    pub fn session_status(self, sts: &str) -> Self {
        self.claim("sts", sts)
    }

    /// Breaks the token in the given way after signing.
    pub fn broken(mut self, breakage: Breakage) -> Self {
        self.breakage = Some(breakage);
        self
    }

    /// The signed compact JWT.
    pub fn build(self) -> String {
        crate::tokens::verify::install_crypto_provider();
        let mut header = self.header.clone();
        match self.breakage {
            Some(Breakage::AlgNone) => {
                header.insert("alg".into(), "none".into());
            }
            Some(Breakage::Hs256WithPublicKey) => {
                header.insert("alg".into(), "HS256".into());
            }
            _ => {}
        }
        let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap_or_default());
        let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&self.claims).unwrap_or_default());
        let message = format!("{h}.{p}");
        let signature = match self.breakage {
            Some(Breakage::AlgNone) => String::new(),
            Some(Breakage::Hs256WithPublicKey) => jsonwebtoken::crypto::sign(
                message.as_bytes(),
                &EncodingKey::from_secret(self.key.public_pem.as_bytes()),
                Algorithm::HS256,
            )
            .unwrap_or_default(),
            Some(Breakage::WrongKey) => {
                let other = TEST_KEYS
                    .iter()
                    .find(|k| k.kid != self.key.kid)
                    .unwrap_or(&TEST_KEYS[0]);
                sign_rs256(&message, other)
            }
            _ => sign_rs256(&message, &self.key),
        };
        match self.breakage {
            Some(Breakage::TamperPayload) => {
                let mut claims = self.claims;
                claims.insert("sub".into(), "user_attacker".into());
                let p2 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
                format!("{h}.{p2}.{signature}")
            }
            Some(Breakage::TamperHeader) => {
                header.insert("x".into(), "tampered".into());
                let h2 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap_or_default());
                format!("{h2}.{p}.{signature}")
            }
            Some(Breakage::TamperSignature) => {
                let mut bytes = URL_SAFE_NO_PAD.decode(&signature).unwrap_or_default();
                if let Some(b) = bytes.get_mut(10) {
                    *b ^= 0x01;
                }
                format!("{message}.{}", URL_SAFE_NO_PAD.encode(bytes))
            }
            _ => format!("{message}.{signature}"),
        }
    }
}

pub(crate) fn sign_rs256(message: &str, key: &TestKey) -> String {
    let Ok(encoding) = EncodingKey::from_rsa_pem(key.private_pem.as_bytes()) else {
        return String::new();
    };
    jsonwebtoken::crypto::sign(message.as_bytes(), &encoding, Algorithm::RS256).unwrap_or_default()
}
