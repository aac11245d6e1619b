//! Verification keys: a single PEM public key (`CLERK_JWT_KEY`) or a JWKS document.

use std::{collections::HashMap, fmt, sync::Arc};

use base64::{
    alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    Engine as _,
};
use jsonwebtoken::DecodingKey;
use serde::Deserialize;

/// base64url, padding optional, lenient about trailing bits: for JWK `n` / `e`, as Clerk's
/// decoder reads them.
const B64_LOOSE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Why a key or key set could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The PEM text is not an RSA public key (SPKI or PKCS#1), with or without armor.
    #[error("the PEM key is not an RSA public key (expected `-----BEGIN PUBLIC KEY-----`)")]
    InvalidPem,
    /// The JWKS document is not JSON of the form `{"keys": [...]}`.
    #[error("the JWKS document is not valid JSON of the form {{\"keys\": [...]}}")]
    InvalidJwks,
    /// The JWKS document holds no RSA signing key usable for RS256.
    #[error("the JWKS document holds no usable RS256 key")]
    NoUsableKey,
}

/// The keys a [`TokenVerifier`](crate::TokenVerifier) checks signatures against.
///
/// Either one PEM public key (the "JWKS Public Key" / `CLERK_JWT_KEY` from Clerk's dashboard;
/// the token's `kid` is then ignored, as in Clerk's SDKs) or a JWKS document (key chosen by `kid`).
/// Cheap to clone.
///
/// ```
/// use clerk_actix::VerificationKeys;
/// let jwks = r#"{"keys":[{"kty":"RSA","kid":"ins_1","use":"sig","alg":"RS256",
///   "n":"qYy3MY8fOneEyzNDu9lp6iGXKkNUF-u_dUnrlkadZYyB35efzKFJEr9fftmWv5PUj1uRHTQ3bh6X1cceOYsIjy008dHWZJsKhGOxgdTjeK91rjaklxt7tyFXEiKHIOr1LSgKzopClOfCIjxK_oPUOf38pVh7WnekcSBQmU5fqA-EzKMi6k9VwvbzqKlZM4XQsiFyn28d9VubJWjTU8nNot0n1NE-9k6TxM8nglM4RwkBH4Ni4B0LhKKOOV-AG8tBNiZVil415dpBldmJ_j0wk7Ad4VFi9en3Z17oCKr-K-zuT7vKMKSb1548dk0vnmi0vj2QGXSo-61wM5yQWpk6sQ",
///   "e":"AQAB"}]}"#;
/// let keys = VerificationKeys::from_jwks_json(jwks).unwrap();
/// assert_eq!(keys.kids().collect::<Vec<_>>(), ["ins_1"]);
/// ```
#[derive(Clone)]
pub struct VerificationKeys {
    inner: KeysInner,
}

#[derive(Clone)]
enum KeysInner {
    Pem(Arc<DecodingKey>),
    Jwks(Arc<HashMap<String, Arc<DecodingKey>>>),
}

impl fmt::Debug for VerificationKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            KeysInner::Pem(_) => f.write_str("VerificationKeys::Pem"),
            KeysInner::Jwks(map) => f
                .debug_struct("VerificationKeys::Jwks")
                .field("kids", &map.keys().collect::<Vec<_>>())
                .finish(),
        }
    }
}

#[derive(Deserialize)]
struct JwksDoc {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RsaJwk {
    kty: String,
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    n: String,
    e: String,
}

impl VerificationKeys {
    /// One RSA public key in PEM form. Accepts SPKI (`BEGIN PUBLIC KEY`) or PKCS#1
    /// (`BEGIN RSA PUBLIC KEY`), with or without the armor lines (the dashboard used to show the
    /// key without them), with LF, CRLF, or literal `\n` escapes (as env files often carry it).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let normalized = normalize_pem(pem);
        let key =
            DecodingKey::from_rsa_pem(normalized.as_bytes()).map_err(|_| KeyError::InvalidPem)?;
        Ok(Self {
            inner: KeysInner::Pem(Arc::new(key)),
        })
    }

    /// A JWKS document (`{"keys": [...]}`) as served by `GET /v1/jwks`. Keys that cannot verify
    /// RS256 (not `kty: RSA`, `use` other than `sig`, `alg` other than `RS256`, bad base64) are
    /// skipped; a document with no usable key is an error.
    pub fn from_jwks_json(json: &str) -> Result<Self, KeyError> {
        Self::from_jwks_bytes(json.as_bytes())
    }

    /// [`from_jwks_json`](Self::from_jwks_json) on raw bytes.
    pub fn from_jwks_bytes(json: &[u8]) -> Result<Self, KeyError> {
        let doc: JwksDoc = serde_json::from_slice(json).map_err(|_| KeyError::InvalidJwks)?;
        let mut map = HashMap::new();
        for raw in doc.keys {
            let Ok(jwk) = serde_json::from_value::<RsaJwk>(raw) else {
                continue;
            };
            if jwk.kty != "RSA"
                || jwk.alg.as_deref().is_some_and(|a| a != "RS256")
                || jwk.use_.as_deref().is_some_and(|u| u != "sig")
            {
                continue;
            }
            let Some(kid) = jwk.kid else { continue };
            // Clerk's decoder is loose (padding optional, trailing bits ignored); so is this.
            let (Ok(n), Ok(e)) = (B64_LOOSE.decode(&jwk.n), B64_LOOSE.decode(&jwk.e)) else {
                continue;
            };
            if n.is_empty() || e.is_empty() {
                continue;
            }
            map.insert(kid, Arc::new(DecodingKey::from_rsa_raw_components(&n, &e)));
        }
        if map.is_empty() {
            return Err(KeyError::NoUsableKey);
        }
        Ok(Self {
            inner: KeysInner::Jwks(Arc::new(map)),
        })
    }

    /// The key for a token with this `kid` (`None` = no `kid` in the header). A PEM key is
    /// returned whatever the `kid`.
    pub(crate) fn key_for(&self, kid: Option<&str>) -> Option<&DecodingKey> {
        match &self.inner {
            KeysInner::Pem(key) => Some(key),
            KeysInner::Jwks(map) => kid.and_then(|kid| map.get(kid)).map(|k| &**k),
        }
    }

    /// Whether a key for this `kid` is present (always true for a PEM key).
    pub fn contains(&self, kid: Option<&str>) -> bool {
        self.key_for(kid).is_some()
    }

    /// The key ids of a JWKS (empty for a PEM key).
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        let map = match &self.inner {
            KeysInner::Pem(_) => None,
            KeysInner::Jwks(map) => Some(map.keys().map(String::as_str)),
        };
        map.into_iter().flatten()
    }

    /// True for a single PEM key.
    pub fn is_pem(&self) -> bool {
        matches!(self.inner, KeysInner::Pem(_))
    }

    /// Keys of `self` plus those of `newer` (newer wins on a shared `kid`). Used when a JWKS
    /// refresh should not forget keys that tokens in flight may still use.
    pub(crate) fn merged_with(&self, newer: &VerificationKeys) -> VerificationKeys {
        match (&self.inner, &newer.inner) {
            (KeysInner::Jwks(old), KeysInner::Jwks(new)) => {
                let mut map: HashMap<_, _> = (**old).clone();
                map.extend(new.iter().map(|(k, v)| (k.clone(), v.clone())));
                VerificationKeys {
                    inner: KeysInner::Jwks(Arc::new(map)),
                }
            }
            _ => newer.clone(),
        }
    }
}

/// Turns the forms a PEM key arrives in into one that a PEM parser accepts.
fn normalize_pem(input: &str) -> String {
    let text = input.trim().replace("\\r\\n", "\n").replace("\\n", "\n");
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    if text.contains("-----BEGIN") {
        // Re-flow the armored body: some copies lose their line breaks entirely.
        let mut out = String::with_capacity(text.len() + 16);
        let mut body = String::new();
        let mut begin = None;
        let mut end = None;
        for line in text.lines().map(str::trim) {
            if line.starts_with("-----BEGIN") {
                begin = Some(line.to_owned());
            } else if line.starts_with("-----END") {
                end = Some(line.to_owned());
            } else {
                body.extend(line.split_whitespace());
            }
        }
        // A single line "-----BEGIN PUBLIC KEY----- MIIB... -----END PUBLIC KEY-----".
        if begin.is_none() || end.is_none() {
            return text;
        }
        out.push_str(begin.as_deref().unwrap_or_default());
        out.push('\n');
        push_wrapped(&mut out, &body);
        out.push_str(end.as_deref().unwrap_or_default());
        out.push('\n');
        out
    } else {
        let body: String = text.split_whitespace().collect();
        let mut out = String::from("-----BEGIN PUBLIC KEY-----\n");
        push_wrapped(&mut out, &body);
        out.push_str("-----END PUBLIC KEY-----\n");
        out
    }
}

fn push_wrapped(out: &mut String, body: &str) {
    let mut rest = body;
    while !rest.is_empty() {
        let cut = rest.len().min(64);
        // base64 is ASCII; a non-ASCII byte makes the key invalid anyway, so never split inside
        // a character.
        let cut = (cut..=rest.len())
            .find(|&i| rest.is_char_boundary(i))
            .unwrap_or(rest.len());
        out.push_str(&rest[..cut]);
        out.push('\n');
        rest = &rest[cut..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = include_str!("../testing/keys/clerk_test.pub.pem");

    #[test]
    fn pem_with_armor_lf_crlf_escaped_and_without_armor_all_load() {
        assert!(VerificationKeys::from_pem(PEM).is_ok());
        assert!(VerificationKeys::from_pem(&PEM.replace('\n', "\r\n")).is_ok());
        assert!(VerificationKeys::from_pem(&PEM.replace('\n', "\\n")).is_ok());
        let bare: String = PEM
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(VerificationKeys::from_pem(&bare).is_ok());
        let one_line: String = bare.split_whitespace().collect();
        assert!(VerificationKeys::from_pem(&one_line).is_ok());
    }

    #[test]
    fn garbage_pem_is_an_error_not_a_panic() {
        assert_eq!(
            VerificationKeys::from_pem("not a key").unwrap_err(),
            KeyError::InvalidPem
        );
        assert_eq!(
            VerificationKeys::from_pem("").unwrap_err(),
            KeyError::InvalidPem
        );
        assert!(VerificationKeys::from_pem(
            "-----BEGIN PUBLIC KEY-----\nzzzz\n-----END PUBLIC KEY-----"
        )
        .is_err());
    }

    #[test]
    fn jwks_skips_unusable_keys_and_rejects_empty_sets() {
        assert_eq!(
            VerificationKeys::from_jwks_json(r#"{"keys":[]}"#).unwrap_err(),
            KeyError::NoUsableKey
        );
        assert_eq!(
            VerificationKeys::from_jwks_json("[]").unwrap_err(),
            KeyError::InvalidJwks
        );
        let jwks = r#"{"keys":[
            {"kty":"EC","kid":"ec","crv":"P-256","x":"a","y":"b"},
            {"kty":"RSA","kid":"rs384","alg":"RS384","n":"qYy3","e":"AQAB"},
            {"kty":"RSA","kid":"enc","use":"enc","n":"qYy3","e":"AQAB"},
            {"kty":"RSA","kid":"good","n":"qYy3","e":"AQAB"}]}"#;
        let keys = VerificationKeys::from_jwks_json(jwks).unwrap();
        assert_eq!(keys.kids().collect::<Vec<_>>(), ["good"]);
        assert!(keys.contains(Some("good")));
        assert!(!keys.contains(Some("ec")));
        assert!(!keys.contains(None));
    }

    #[test]
    fn merge_keeps_old_kids_and_adds_new() {
        let a = VerificationKeys::from_jwks_json(
            r#"{"keys":[{"kty":"RSA","kid":"a","n":"qYy3","e":"AQAB"}]}"#,
        )
        .unwrap();
        let b = VerificationKeys::from_jwks_json(
            r#"{"keys":[{"kty":"RSA","kid":"b","n":"qYy3","e":"AQAB"}]}"#,
        )
        .unwrap();
        let m = a.merged_with(&b);
        let mut kids: Vec<_> = m.kids().collect();
        kids.sort_unstable();
        assert_eq!(kids, ["a", "b"]);
    }
}
