//! Pure session-token verification: no I/O, explicit clock, Clerk's rules in Clerk's order
//! (spec §1): decode → category → key → `typ` → `alg` → signature → `sub`, `aud`, `azp`, `exp`,
//! `nbf`, `iat` (→ optional `iss`).

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{
    alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    Engine as _,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use crate::{
    base::claims::ClerkClaims,
    base::error::{AuthError, AuthErrorReason as R},
    tokens::keys::VerificationKeys,
};

/// Header `cat` of Clerk session tokens.
pub const CATEGORY_SESSION: &str = "cl_B7d4PD111AAA";
/// Header `cat` of JWT-template tokens.
pub const CATEGORY_JWT_TEMPLATE: &str = "cl_B7d4PD222AAA";
/// Header `cat` of machine-to-machine tokens.
pub const CATEGORY_M2M: &str = "cl_B7d4PD333AAA";
/// Header `cat` that carries no class information.
pub const CATEGORY_IGNORE: &str = "cl_I7d4PD111III";

/// The default clock skew, as in Clerk's SDKs.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(5);
/// The default largest token accepted: 8 KiB. Clerk keeps session tokens in a cookie, which
/// browsers cap at 4 KiB (name included), and Clerk limits custom session claims to keep them
/// there; twice that leaves room for header-borne tokens. Anything larger is refused before any
/// decoding.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 8 * 1024;

/// base64url as Clerk's JS decoder reads token segments in "loose" mode: trailing `=` padding
/// (any amount) is ignored, non-zero trailing bits are an error.
const B64_SEGMENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

fn decode_segment(segment: &str) -> Result<Vec<u8>, base64::DecodeError> {
    B64_SEGMENT.decode(segment.trim_end_matches('='))
}

const B64_CANONICAL: GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// What to check besides the signature and the times. Cheap to clone.
///
/// ```
/// use std::time::Duration;
/// use clerk_actix::VerifyOptions;
/// let opts = VerifyOptions::default()
///     .authorized_parties(["https://app.example.com"])
///     .clock_skew(Duration::from_secs(5))
///     .audience(["my-api"])
///     .issuer("https://clerk.example.com");
/// assert_eq!(opts.get_authorized_parties(), ["https://app.example.com"]);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct VerifyOptions {
    authorized_parties: Arc<[String]>,
    audience: Arc<[String]>,
    issuer: Option<Arc<str>>,
    clock_skew: Duration,
    max_token_len: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            authorized_parties: Arc::from([]),
            audience: Arc::from([]),
            issuer: None,
            clock_skew: DEFAULT_CLOCK_SKEW,
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
        }
    }
}

fn non_empty_list<I, S>(items: I) -> Arc<[String]>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    items
        .into_iter()
        .map(Into::into)
        .filter(|s| !s.is_empty())
        .collect()
}

impl VerifyOptions {
    /// Origins allowed in `azp` (exact string match, e.g. `http://localhost:3000`, no trailing
    /// slash). When set, a token without `azp` is refused. Empty = not checked.
    pub fn authorized_parties<I, S>(mut self, parties: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.authorized_parties = non_empty_list(parties);
        self
    }

    /// Accepted audiences. Checked only when this list and the token's `aud` are both non-empty
    /// (Clerk's rule): a string `aud` must be listed, an array must share an entry. Applies to
    /// session tokens and, as Clerk's `verifyJwt` does, to machine JWTs (an M2M JWT's `aud` is
    /// the machines it may reach).
    pub fn audience<I, S>(mut self, audience: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.audience = non_empty_list(audience);
        self
    }

    /// Require `iss` to equal this exactly (e.g. `https://clerk.example.com`). Clerk's JS SDK
    /// does not check `iss`; satellite domains and proxies change it.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(Arc::from(issuer.into()));
        self
    }

    /// Tolerance for `exp`, `nbf` and `iat`. Default 5 s; an explicit zero stays zero.
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// The largest token accepted, in bytes (default [`DEFAULT_MAX_TOKEN_LEN`]).
    pub fn max_token_len(mut self, len: usize) -> Self {
        self.max_token_len = len;
        self
    }

    /// The configured authorized parties.
    pub fn get_authorized_parties(&self) -> &[String] {
        &self.authorized_parties
    }

    /// The configured clock skew.
    pub fn get_clock_skew(&self) -> Duration {
        self.clock_skew
    }
}

/// Verifies Clerk session tokens against [`VerificationKeys`] with an explicit clock.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use clerk_actix::{TokenVerifier, VerificationKeys, VerifyOptions};
///
/// let pem = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAqYy3MY8fOneEyzNDu9lp\n6iGXKkNUF+u/dUnrlkadZYyB35efzKFJEr9fftmWv5PUj1uRHTQ3bh6X1cceOYsI\njy008dHWZJsKhGOxgdTjeK91rjaklxt7tyFXEiKHIOr1LSgKzopClOfCIjxK/oPU\nOf38pVh7WnekcSBQmU5fqA+EzKMi6k9VwvbzqKlZM4XQsiFyn28d9VubJWjTU8nN\not0n1NE+9k6TxM8nglM4RwkBH4Ni4B0LhKKOOV+AG8tBNiZVil415dpBldmJ/j0w\nk7Ad4VFi9en3Z17oCKr+K+zuT7vKMKSb1548dk0vnmi0vj2QGXSo+61wM5yQWpk6\nsQIDAQAB\n-----END PUBLIC KEY-----";
/// let keys = VerificationKeys::from_pem(pem).unwrap();
/// let verifier = TokenVerifier::new(Default::default());
/// let err = verifier.verify_at("not.a.jwt", &keys, UNIX_EPOCH + Duration::from_secs(1666648250));
/// assert_eq!(err.unwrap_err().reason().as_str(), "token-invalid");
/// ```
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    options: VerifyOptions,
}

impl Default for TokenVerifier {
    fn default() -> Self {
        Self::new(VerifyOptions::default())
    }
}

/// A token split and decoded, not yet verified.
#[derive(Debug)]
pub(crate) struct DecodedToken<'t> {
    header: Map<String, Value>,
    payload: Map<String, Value>,
    signing_input: &'t str,
    signature: Vec<u8>,
}

impl DecodedToken<'_> {
    /// The header `kid`, when it is a string.
    pub(crate) fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }

    pub(crate) fn header_str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    /// An OAuth access token (RFC 9068 `typ`).
    pub(crate) fn is_oauth_jwt(&self) -> bool {
        matches!(
            self.header_str("typ"),
            Some("at+jwt" | "application/at+jwt")
        )
    }

    /// An M2M token: the M2M category, or a `mch_` subject.
    pub(crate) fn is_m2m_jwt(&self) -> bool {
        self.header_str("cat") == Some(CATEGORY_M2M)
            || self
                .payload
                .get("sub")
                .and_then(Value::as_str)
                .is_some_and(|s| s.starts_with("mch_"))
    }

    /// Clerk's `authenticateRequest` refusal of non-session JWTs on session routes.
    fn check_session_type(&self) -> Result<(), AuthError> {
        if let Some(cat) = self.header.get("cat") {
            let cat = cat.as_str().unwrap_or_default();
            if cat != CATEGORY_SESSION && cat != CATEGORY_IGNORE {
                return Err(AuthError::new(
                    R::TokenTypeMismatch,
                    "not a session token (category)",
                ));
            }
        }
        if self.is_oauth_jwt() {
            return Err(AuthError::new(
                R::TokenTypeMismatch,
                "an OAuth access token is not a session token",
            ));
        }
        if self.is_m2m_jwt() {
            return Err(AuthError::new(
                R::TokenTypeMismatch,
                "a machine token is not a session token",
            ));
        }
        Ok(())
    }
}

/// jsonwebtoken picks its crypto backend from its crate features; when an application's other
/// dependencies enable a second backend it would panic on every verification. Install aws-lc-rs
/// (unless the application already chose one) so verification never depends on that.
pub(crate) fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    });
}

/// Opaque machine-token prefixes (API keys, M2M, OAuth; `m2m_` is legacy).
const MACHINE_PREFIXES: [&str; 4] = ["ak_", "mt_", "oat_", "m2m_"];

fn invalid(detail: &'static str) -> AuthError {
    AuthError::new(R::TokenInvalid, detail)
}

fn decode_json_object(segment: &str) -> Result<Map<String, Value>, AuthError> {
    let bytes = decode_segment(segment).map_err(|_| invalid("a token segment is not base64url"))?;
    // A UTF-8 byte-order mark is skipped, as JS's TextDecoder and Python's json.loads do.
    let json = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes);
    match serde_json::from_slice(json) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(invalid("a token segment is not a JSON object")),
    }
}

impl TokenVerifier {
    /// A verifier with these options.
    pub fn new(options: VerifyOptions) -> Self {
        install_crypto_provider();
        Self { options }
    }

    /// The options in force.
    pub fn options(&self) -> &VerifyOptions {
        &self.options
    }

    /// Verifies `token` at time `now`, exactly as Clerk's `verifyToken` does: M2M tokens are
    /// refused (`token-invalid`), other categories verify. Session routes should use
    /// [`verify_session_at`](Self::verify_session_at), which also refuses JWT-template and
    /// machine tokens.
    pub fn verify_at(
        &self,
        token: &str,
        keys: &VerificationKeys,
        now: SystemTime,
    ) -> Result<ClerkClaims, AuthError> {
        let decoded = self.decode(token)?;
        self.verify_decoded(decoded, keys, now)
    }

    /// Verifies a token presented to a session route, as Clerk's `authenticateRequest` does:
    /// first refuses machine tokens (`ak_`/`mt_`/`oat_` strings, `mch_` subjects, `at+jwt`,
    /// any `cat` but session/ignore) with `token-type-mismatch`, then [`verify_at`](Self::verify_at).
    pub fn verify_session_at(
        &self,
        token: &str,
        keys: &VerificationKeys,
        now: SystemTime,
    ) -> Result<ClerkClaims, AuthError> {
        let decoded = self.decode_session(token)?;
        self.verify_decoded(decoded, keys, now)
    }

    /// Size limit, split and decode, plus the session-route type check.
    pub(crate) fn decode_session<'t>(&self, token: &'t str) -> Result<DecodedToken<'t>, AuthError> {
        if MACHINE_PREFIXES.iter().any(|p| token.starts_with(p)) {
            return Err(AuthError::new(
                R::TokenTypeMismatch,
                "a machine token is not a session token",
            ));
        }
        let decoded = self.decode(token)?;
        decoded.check_session_type()?;
        Ok(decoded)
    }

    /// The size limit alone: checked before any decoding or cache lookup.
    pub(crate) fn check_len(&self, token: &str) -> Result<(), AuthError> {
        if token.len() > self.options.max_token_len {
            return Err(invalid("token too large"));
        }
        Ok(())
    }

    /// Size limit, three segments, base64url, JSON objects.
    pub(crate) fn decode<'t>(&self, token: &'t str) -> Result<DecodedToken<'t>, AuthError> {
        self.check_len(token)?;
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("a JWT has exactly three segments"));
        };
        let header_map = decode_json_object(header)?;
        let payload_map = decode_json_object(payload)?;
        let signature =
            decode_segment(signature).map_err(|_| invalid("the signature is not base64url"))?;
        Ok(DecodedToken {
            header: header_map,
            payload: payload_map,
            signing_input: &token[..header.len() + 1 + payload.len()],
            signature,
        })
    }

    /// Everything after decoding: category, key, `typ`, `alg`, signature, claims.
    pub(crate) fn verify_decoded(
        &self,
        decoded: DecodedToken<'_>,
        keys: &VerificationKeys,
        now: SystemTime,
    ) -> Result<ClerkClaims, AuthError> {
        if decoded.header_str("cat") == Some(CATEGORY_M2M) {
            return Err(invalid("invalid session token category"));
        }
        let Some(key) = keys.key_for(decoded.kid()) else {
            return Err(AuthError::new(
                R::JwkKidMismatch,
                "no JWK matches the token's kid",
            ));
        };
        self.verify_with_key(decoded, key, now)
    }

    fn verify_with_key(
        &self,
        decoded: DecodedToken<'_>,
        key: &DecodingKey,
        now: SystemTime,
    ) -> Result<ClerkClaims, AuthError> {
        if let Some(typ) = decoded.header.get("typ") {
            if typ.as_str() != Some("JWT") {
                return Err(invalid("invalid JWT type"));
            }
        }
        check_signature(&decoded, key)?;
        self.check_claims(decoded.payload, now)
    }

    /// A JWT-form machine token (M2M or OAuth, spec §5.3): the same keys, `alg`, signature
    /// and time rules as session tokens; `typ` must be `at+jwt` for OAuth and `JWT` (or
    /// absent) for M2M; a `cat` other than M2M's is refused. `azp` is not a machine claim.
    /// Returns the verified payload.
    pub(crate) fn verify_machine_jwt(
        &self,
        decoded: DecodedToken<'_>,
        oauth: bool,
        keys: &VerificationKeys,
        now: SystemTime,
    ) -> Result<Map<String, Value>, AuthError> {
        let Some(key) = keys.key_for(decoded.kid()) else {
            return Err(AuthError::new(
                R::JwkKidMismatch,
                "no JWK matches the token's kid",
            ));
        };
        if oauth {
            if !decoded.is_oauth_jwt() {
                return Err(invalid("invalid JWT type"));
            }
        } else {
            if decoded
                .header
                .get("typ")
                .is_some_and(|t| t.as_str() != Some("JWT"))
            {
                return Err(invalid("invalid JWT type"));
            }
            if decoded
                .header
                .get("cat")
                .is_some_and(|c| c.as_str() != Some(CATEGORY_M2M))
            {
                return Err(invalid("invalid machine token category"));
            }
        }
        check_signature(&decoded, key)?;
        let failed = |detail| AuthError::new(R::TokenVerificationFailed, detail);
        match decoded.payload.get("sub").and_then(Value::as_str) {
            Some(sub) if !sub.is_empty() => {}
            _ => return Err(failed("subject claim (sub) is required")),
        }
        self.check_times(&decoded.payload, now)?;
        // Clerk's verifyJwt applies the configured audience to machine JWTs too (an M2M JWT's
        // `aud` is the machines it may reach).
        self.check_audience(&decoded.payload)?;
        Ok(decoded.payload)
    }
}

/// `alg` must be RS256 and the signature must match.
fn check_signature(decoded: &DecodedToken<'_>, key: &DecodingKey) -> Result<(), AuthError> {
    {
        if decoded.header_str("alg") != Some("RS256") {
            return Err(AuthError::new(
                R::TokenInvalidAlgorithm,
                "only RS256 is accepted",
            ));
        }
        let signature = B64_CANONICAL.encode(&decoded.signature);
        match jsonwebtoken::crypto::verify(
            &signature,
            decoded.signing_input.as_bytes(),
            key,
            Algorithm::RS256,
        ) {
            Ok(true) => {}
            Ok(false) => {
                return Err(AuthError::new(
                    R::TokenInvalidSignature,
                    "the signature does not match",
                ))
            }
            Err(_) => {
                return Err(AuthError::new(
                    R::TokenVerificationFailed,
                    "the signature could not be checked",
                ))
            }
        }
        Ok(())
    }
}

impl TokenVerifier {
    /// `aud` against the accepted audiences, as Clerk's `assertAudienceClaim`: checked only
    /// when both the configured list and the token's `aud` are non-empty.
    fn check_audience(&self, payload: &Map<String, Value>) -> Result<(), AuthError> {
        let audience = &self.options.audience;
        if audience.is_empty() {
            return Ok(());
        }
        let ok = match payload.get("aud") {
            Some(Value::String(aud)) if !aud.is_empty() => audience.contains(aud),
            Some(Value::Array(auds)) if !auds.is_empty() && auds.iter().all(Value::is_string) => {
                auds.iter()
                    .filter_map(Value::as_str)
                    .any(|a| audience.iter().any(|x| x == a))
            }
            _ => true,
        };
        if ok {
            Ok(())
        } else {
            Err(AuthError::new(
                R::TokenVerificationFailed,
                "audience (aud) does not match",
            ))
        }
    }

    pub(crate) fn check_claims(
        &self,
        payload: Map<String, Value>,
        now: SystemTime,
    ) -> Result<ClerkClaims, AuthError> {
        let failed = |detail| AuthError::new(R::TokenVerificationFailed, detail);
        let opts = &self.options;

        let Some(sub) = payload.get("sub").and_then(Value::as_str) else {
            return Err(failed("subject claim (sub) is required"));
        };
        let sub = sub.to_owned();

        self.check_audience(&payload)?;

        if !opts.authorized_parties.is_empty() {
            let azp = payload.get("azp").and_then(Value::as_str).unwrap_or("");
            if azp.is_empty() || !opts.authorized_parties.iter().any(|p| p == azp) {
                return Err(AuthError::new(
                    R::TokenInvalidAuthorizedParties,
                    "authorized party (azp) missing or not allowed",
                ));
            }
        }

        let exp_ms = self.check_times(&payload, now)?;
        if let Some(issuer) = &opts.issuer {
            if payload.get("iss").and_then(Value::as_str) != Some(&**issuer) {
                return Err(failed("issuer (iss) does not match"));
            }
        }

        let exp_s = (exp_ms / 1000.0) as i64;
        Ok(ClerkClaims::from_payload(payload, sub, exp_s))
    }

    /// `exp` (required), `nbf`, `iat` with the clock skew, in Clerk's order; `exp` in ms.
    fn check_times(&self, payload: &Map<String, Value>, now: SystemTime) -> Result<f64, AuthError> {
        let failed = |detail| AuthError::new(R::TokenVerificationFailed, detail);
        let opts = &self.options;
        let now_ms = now
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_millis() as f64);
        let skew_ms = opts.clock_skew.as_millis() as f64;
        let time = |name: &str| -> Result<Option<f64>, AuthError> {
            match payload.get(name) {
                None => Ok(None),
                Some(v) => v
                    .as_f64()
                    .map(|s| Some(s.trunc() * 1000.0))
                    .ok_or_else(|| failed("a time claim is not a number")),
            }
        };

        let Some(exp_ms) = time("exp")? else {
            return Err(failed("expiration claim (exp) is required"));
        };
        if exp_ms <= now_ms - skew_ms {
            return Err(AuthError::new(R::TokenExpired, "the token has expired"));
        }
        if let Some(nbf_ms) = time("nbf")? {
            if nbf_ms > now_ms + skew_ms {
                return Err(AuthError::new(
                    R::TokenNotActiveYet,
                    "the token is not active yet (nbf)",
                ));
            }
        }
        if let Some(iat_ms) = time("iat")? {
            if iat_ms > now_ms + skew_ms {
                return Err(AuthError::new(
                    R::TokenIatInTheFuture,
                    "the token was issued in the future (iat)",
                ));
            }
        }
        Ok(exp_ms)
    }
}
