//! Fuzz entry points (feature `fuzzing`; not a public API, no semver promise). The targets in
//! `fuzz/` call these functions with libFuzzer's input, and `tests/fuzz_corpora.rs` replays
//! every committed corpus file through them on the stable toolchain, so CI guards what fuzzing
//! found without nightly.
//!
//! Each function takes raw bytes (structure-aware targets read them through
//! [`arbitrary::Unstructured`]) and panics only on a violated invariant: accepting a token whose
//! signature the test key did not make, a webhook whose HMAC does not match, a machine-token
//! answer that says revoked or expired, a header parse that invents bytes. Anything else —
//! every refusal — must come back as an error, never a panic.

use std::{
    sync::OnceLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use actix_web::{http::header, test::TestRequest};
use arbitrary::{Arbitrary, Unstructured};
use serde_json::{Map, Value};

use crate::{
    actix::auth::find_token,
    base::api::ClerkApiErrors,
    base::error::AuthErrorReason,
    base::events::TokenCarrier,
    base::user::ClerkUserData,
    machine::{self, TokenType},
    mirror::webhooks::WebhookVerifier,
    testing::{TokenBuilder, MOCK_WEBHOOK_SECRET, TEST_AUTHORIZED_PARTY, TEST_KEYS},
    tokens::keys::VerificationKeys,
    tokens::verify::{TokenVerifier, VerifyOptions},
};

mod seeds;

pub use seeds::seeds;

/// The fixed clock of every target: 2026-01-01T00:00:00Z.
pub const FUZZ_NOW_SECS: i64 = 1_767_225_600;

fn fuzz_now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(FUZZ_NOW_SECS as u64)
}

/// The JWKS of the first two test keys (the third is never published: tokens signed with it
/// are forgeries).
fn published_keys() -> VerificationKeys {
    let keys: Vec<Value> = TEST_KEYS[..2]
        .iter()
        .map(|k| {
            serde_json::json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": k.kid, "n": k.n, "e": k.e})
        })
        .collect();
    VerificationKeys::from_jwks_json(&serde_json::json!({ "keys": keys }).to_string())
        .unwrap_or_else(|e| panic!("the test JWKS parses: {e}"))
}

fn verifier() -> TokenVerifier {
    TokenVerifier::new(
        VerifyOptions::default()
            .authorized_parties([TEST_AUTHORIZED_PARTY])
            .clock_skew(Duration::from_secs(5)),
    )
}

/// `Authorization` and `Cookie` header parsing down to the token (input: the two header values,
/// separated by the first NUL byte). A token found is a non-empty, trimmed slice of the header
/// it came from (of the cookie header once percent-decoded).
pub fn authorization(data: &[u8]) {
    let (auth, cookie) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    };
    let mut req = TestRequest::get();
    if let Ok(value) = header::HeaderValue::from_bytes(auth) {
        req = req.insert_header((header::AUTHORIZATION, value));
    }
    if let Some(Ok(value)) = cookie.map(header::HeaderValue::from_bytes) {
        req = req.insert_header((header::COOKIE, value));
    }
    let req = req.to_http_request();
    for accept_cookie in [false, true] {
        let Ok(Some((token, carrier))) = find_token(&req, accept_cookie) else {
            continue;
        };
        let token = token.as_str();
        assert!(!token.is_empty(), "an empty token was found");
        assert_eq!(
            token,
            token.trim_ascii(),
            "a token with surrounding whitespace"
        );
        let source = match carrier {
            TokenCarrier::Header => auth,
            TokenCarrier::Cookie => {
                assert!(accept_cookie, "a cookie was read where cookies are off");
                cookie.unwrap_or_default()
            }
        };
        match carrier {
            // From the header: the whole value (no scheme), or what follows `Bearer ` (any
            // case), trimmed; never another scheme's credentials.
            TokenCarrier::Header => {
                let value = auth.trim_ascii();
                let bearer = value.len() > 7
                    && value[..7].eq_ignore_ascii_case(b"bearer ")
                    && value[7..].trim_ascii() == token.as_bytes();
                assert!(
                    value == token.as_bytes() && !value.contains(&b' ') || bearer,
                    "the header's token is neither the whole value nor a Bearer credential"
                );
            }
            // From a cookie: the value of a cookie named exactly `__session` (percent-decoded,
            // as Clerk's SDKs decode it), and only when the header gave none.
            TokenCarrier::Cookie => {
                assert!(
                    session_cookie_values(source).iter().any(|v| v == token),
                    "the token is not the value of a __session cookie"
                );
                assert!(
                    !matches!(find_token(&req, false), Ok(Some(_))),
                    "the cookie was read although the header had a token"
                );
            }
        }
    }
    // Completeness: a well-formed `Bearer <token>` is always found, as that token.
    if let Ok(value) = std::str::from_utf8(auth) {
        if let Some(credentials) = value
            .get(7..)
            .filter(|_| value.len() > 7 && value.as_bytes()[..7].eq_ignore_ascii_case(b"bearer "))
        {
            if credentials.bytes().all(|b| b.is_ascii_graphic()) && !credentials.is_empty() {
                let found = find_token(&req, true);
                assert!(
                    matches!(&found, Ok(Some((t, TokenCarrier::Header))) if t.as_str() == credentials),
                    "a well-formed Bearer header was not read as its token"
                );
            }
        }
    }
}

/// Whether `token`'s signature is the one the named test key makes over its first two segments
/// (RS256 with PKCS#1 v1.5 is deterministic: there is exactly one). The signature segment is
/// compared as the bytes it encodes, padding or not: the verifier (as Clerk's decoder) accepts
/// trailing `=`, and a padded genuine token is genuine.
fn genuinely_signed(token: &str) -> bool {
    use base64::engine::general_purpose;
    use base64::Engine as _;
    let mut parts = token.rsplitn(2, '.');
    let (Some(signature), Some(message)) = (parts.next(), parts.next()) else {
        return false;
    };
    let Some(signature) = lenient_base64(signature) else {
        return false;
    };
    let Some(header) = message.split('.').next() else {
        return false;
    };
    let header: Value = lenient_base64(header)
        .and_then(|h| serde_json::from_slice(&h).ok())
        .unwrap_or_default();
    let kid = header.get("kid").and_then(Value::as_str);
    TEST_KEYS[..2]
        .iter()
        .filter(|k| kid.is_none() || kid == Some(k.kid))
        .any(|k| {
            general_purpose::URL_SAFE_NO_PAD
                .decode(crate::testing::sign_rs256(message, k))
                .is_ok_and(|genuine| genuine == signature)
        })
}

/// base64url as leniently as anything may read it: any trailing `=`, trailing bits allowed (so
/// an oracle built on it never calls a genuine value forged).
fn lenient_base64(text: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine as _;
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    LENIENT.decode(text.trim_end_matches('=')).ok()
}

/// Session-token decoding and verification with the published test keys and the fixed clock,
/// then the machine-JWT paths (M2M and OAuth) on the same input. Accepting a token the keys
/// did not sign is a crash; so is accepting an expired one.
pub fn session_token(data: &[u8]) {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let keys = published_keys();
    let verifier = verifier();
    let now = fuzz_now();
    if let Ok(claims) = verifier.verify_session_at(token, &keys, now) {
        assert!(
            genuinely_signed(token),
            "a forged session token was accepted"
        );
        assert!(!claims.user_id().is_empty(), "a session without a subject");
        assert!(
            claims.expires_at() >= FUZZ_NOW_SECS - 5,
            "an expired session token was accepted"
        );
        assert_eq!(
            claims.authorized_party(),
            Some(TEST_AUTHORIZED_PARTY),
            "azp not enforced"
        );
    }
    for oauth in [false, true] {
        let Ok(decoded) = verifier.decode(token) else {
            continue;
        };
        if verifier
            .verify_machine_jwt(decoded, oauth, &keys, now)
            .is_ok()
        {
            assert!(genuinely_signed(token), "a forged machine JWT was accepted");
        }
    }
}

/// The values of the cookies named exactly `__session` in a `Cookie` header, trimmed and
/// percent-decoded (an independent reading of RFC 6265's `name=value; name=value`).
fn session_cookie_values(header: &[u8]) -> Vec<String> {
    let Ok(header) = std::str::from_utf8(header) else {
        return Vec::new();
    };
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| name.trim() == crate::actix::auth::SESSION_COOKIE)
        .flat_map(|(_, value)| {
            // ASCII whitespace, as the library trims (U+000B and Unicode spaces stay).
            let trim = |s: &str| s.trim_matches(|c: char| c.is_ascii_whitespace()).to_owned();
            // RFC 6265: a value may be wrapped in double quotes, which are not part of it.
            let value = value.trim();
            let unquoted = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            // The cookie parser (the `cookie` crate, under actix) also trims Unicode whitespace
            // (U+0085, U+00A0...) around a decoded value; no token that verifies has any.
            [value, unquoted].into_iter().flat_map(move |v| {
                let decoded = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
                [trim(v), trim(&decoded), trim(decoded.trim())]
            })
        })
        .collect()
}

/// A time claim as a token may carry it.
#[derive(Debug, Arbitrary)]
enum TimeClaim {
    Missing,
    /// Seconds from the fixed clock.
    Offset(i32),
    Float(f64),
    Text(String),
    Null,
    Bool(bool),
    Huge(i64),
}

impl TimeClaim {
    fn value(&self) -> Option<Value> {
        match self {
            Self::Missing => None,
            Self::Offset(s) => Some((FUZZ_NOW_SECS + i64::from(*s)).into()),
            Self::Float(f) => serde_json::Number::from_f64(*f).map(Value::Number),
            Self::Text(t) => Some(t.clone().into()),
            Self::Null => Some(Value::Null),
            Self::Bool(b) => Some((*b).into()),
            Self::Huge(n) => Some((*n).into()),
        }
    }
}

/// Session claims, structured so the rules (times, `azp`, `sub`, organisation claims, v2
/// claims) are reached; random bytes would rarely make valid JSON.
#[derive(Debug, Arbitrary)]
struct Claims {
    sub: Option<String>,
    azp: Option<String>,
    exp: TimeClaim,
    nbf: TimeClaim,
    iat: TimeClaim,
    v2: bool,
    org: Option<(String, String, String, String)>,
    extra: Vec<(String, String)>,
}

/// Clerk's claim rules on an unsigned payload (the signature is the other target's concern):
/// whatever passes has a subject, the authorized party, and times within the skew.
pub fn claims(data: &[u8]) {
    let Ok(c) = Claims::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let mut payload = Map::new();
    for (k, v) in &c.extra {
        payload.insert(k.clone(), v.clone().into());
    }
    if let Some(sub) = &c.sub {
        payload.insert("sub".into(), sub.clone().into());
    }
    if let Some(azp) = &c.azp {
        payload.insert("azp".into(), azp.clone().into());
    }
    for (name, claim) in [("exp", &c.exp), ("nbf", &c.nbf), ("iat", &c.iat)] {
        if let Some(v) = claim.value() {
            payload.insert(name.into(), v);
        }
    }
    if c.v2 {
        payload.insert("v".into(), 2.into());
    }
    if let Some((id, rol, per, fpm)) = &c.org {
        if c.v2 {
            payload.insert(
                "o".into(),
                serde_json::json!({"id": id, "rol": rol, "per": per, "fpm": fpm}),
            );
        } else {
            payload.insert("org_id".into(), id.clone().into());
            payload.insert("org_role".into(), rol.clone().into());
            payload.insert("org_permissions".into(), serde_json::json!([per, fpm]));
        }
    }
    // The subject the payload ends up with: an `extra` field may be named `sub` too.
    let sub = payload.get("sub").cloned();
    // The times it ends up with (an `extra` field may be named `exp` too): present or not, and
    // the whole seconds when a number.
    let payload_times: std::collections::HashMap<&str, Option<f64>> = ["exp", "nbf", "iat"]
        .into_iter()
        .filter_map(|name| {
            let v = payload.get(name)?;
            Some((name, v.as_f64().map(f64::trunc)))
        })
        .collect();
    let Ok(claims) = verifier().check_claims(payload, fuzz_now()) else {
        return;
    };
    assert_eq!(
        sub.as_ref().and_then(Value::as_str),
        Some(claims.user_id()),
        "claims passed without the string subject they carry"
    );
    assert_eq!(claims.authorized_party(), Some(TEST_AUTHORIZED_PARTY));
    assert!(
        claims.expires_at() >= FUZZ_NOW_SECS - 5,
        "expired claims passed"
    );
    // Each time claim that passed, read from the payload as Clerk reads it (seconds, a JSON
    // number, fractions dropped), is within the 5 s skew: exp after now - 5, nbf and iat not
    // after now + 5. A missing exp, or a time that is not a number, never passes.
    let seconds = |name: &str| payload_times.get(name).cloned().flatten();
    let exp = seconds("exp").expect("claims passed without a numeric exp");
    assert!(exp > (FUZZ_NOW_SECS - 5) as f64, "exp {exp} passed");
    for name in ["nbf", "iat"] {
        match payload_times.get(name) {
            None => {}
            Some(None) => panic!("claims passed with a {name} that is not a number"),
            Some(Some(t)) => assert!(*t <= (FUZZ_NOW_SECS + 5) as f64, "{name} {t} passed"),
        }
    }
    // Whatever passed answers has() without panicking.
    let _ = claims.has(crate::base::claims::Has::role("org:admin"));
    let _ = claims.has(crate::base::claims::Has::permission("org:a:b"));
    let _ = claims.has(crate::base::claims::Has::feature("o:x"));
}

/// JWKS (JSON) and PEM parsing: any input is a key set or an error.
pub fn keys(data: &[u8]) {
    if let Ok(keys) = VerificationKeys::from_jwks_bytes(data) {
        let kids: Vec<String> = keys.kids().map(str::to_owned).collect();
        for kid in &kids {
            assert!(keys.contains(Some(kid)), "a listed kid is not found");
        }
        // A key set verifies a test key's signature only if the input holds that key's
        // modulus (as the bytes it encodes, leading zeros aside): parsing invents no key.
        let moduli = jwks_moduli(data);
        for (i, token) in key_probe_tokens().iter().enumerate() {
            if verifier()
                .verify_session_at(token, &keys, fuzz_now())
                .is_ok()
            {
                let key = &TEST_KEYS[i / 2];
                assert!(
                    moduli.contains(&modulus_bytes(key.n).unwrap_or_default()),
                    "a key set verified test key {} without holding its modulus",
                    key.kid
                );
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(keys) = VerificationKeys::from_pem(text) {
            assert!(keys.is_pem());
        }
    }
}

/// Tokens signed with each test key, under its own kid and without one (`keys`' oracle).
fn key_probe_tokens() -> &'static [String] {
    static TOKENS: OnceLock<Vec<String>> = OnceLock::new();
    TOKENS.get_or_init(|| {
        TEST_KEYS
            .iter()
            .flat_map(|k| {
                let at = |b: TokenBuilder| {
                    b.issued_at(FUZZ_NOW_SECS - 10)
                        .not_before(FUZZ_NOW_SECS - 10)
                        .expires_at(FUZZ_NOW_SECS + 60)
                };
                [
                    at(TokenBuilder::with_key(*k)).build(),
                    at(TokenBuilder::with_key(*k).without_header("kid")).build(),
                ]
            })
            .collect()
    })
}

/// A JWK `n` as big-endian bytes without leading zeros (padding or not).
fn modulus_bytes(n: &str) -> Option<Vec<u8>> {
    let bytes = lenient_base64(n)?;
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    Some(bytes[first..].to_vec())
}

/// Every `n` of every object in the input's `keys` array (or of the input itself), decoded.
fn jwks_moduli(data: &[u8]) -> Vec<Vec<u8>> {
    let Ok(json) = serde_json::from_slice::<Value>(data) else {
        return Vec::new();
    };
    let entries: Vec<&Value> = match json.get("keys").and_then(Value::as_array) {
        Some(keys) => keys.iter().collect(),
        None => vec![&json],
    };
    entries
        .into_iter()
        .filter_map(|k| k.get("n").and_then(Value::as_str))
        .filter_map(modulus_bytes)
        .collect()
}

/// How the delivery's signature header is made.
#[derive(Debug, Arbitrary)]
enum Signature {
    /// The correct `v1,<mac>` (so the body parser is reached).
    Correct,
    /// The correct one among other entries, with arbitrary separators.
    Among(Vec<String>, bool),
    /// Whatever the fuzzer makes.
    Raw(String),
}

/// A delivery: Svix headers and a body.
#[derive(Debug, Arbitrary)]
struct Delivery {
    msg_id: String,
    /// Seconds from the fixed clock.
    ts_offset: i16,
    ts_raw: Option<String>,
    signature: Signature,
    /// A well-formed event to send instead of `body`.
    event: Option<Event>,
    body: Vec<u8>,
}

/// An event body: a kind selector, the user id and extra string fields of `data`.
type Event = (u8, String, Vec<(String, String)>);

/// Webhook verification (headers and body) and event parsing: whatever verifies carries an
/// HMAC of the secret over its id, timestamp and body; whatever parses is one of the event kinds.
pub fn webhook(data: &[u8]) {
    let Ok(d) = Delivery::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let Ok(verifier) = WebhookVerifier::new(MOCK_WEBHOOK_SECRET) else {
        panic!("the mock secret is valid");
    };
    let ts = d
        .ts_raw
        .clone()
        .unwrap_or_else(|| (FUZZ_NOW_SECS + i64::from(d.ts_offset)).to_string());
    let body = match &d.event {
        Some((kind, id, fields)) => {
            let event_type = [
                "user.created",
                "user.updated",
                "user.deleted",
                "session.created",
            ][usize::from(*kind) % 4];
            let mut data: Map<String, Value> = fields
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            data.insert("id".into(), id.clone().into());
            serde_json::to_vec(&serde_json::json!({"type": event_type, "object": "event", "data": data, "timestamp": FUZZ_NOW_SECS * 1000}))
                .unwrap_or_default()
        }
        None => d.body.clone(),
    };
    let correct = || match ts.parse::<i64>() {
        Ok(t) => verifier.sign(d.msg_id.trim(), t, &body),
        Err(_) => String::new(),
    };
    let signatures = match &d.signature {
        Signature::Correct => correct(),
        Signature::Among(others, first) => {
            let mut all = others.clone();
            if *first {
                all.insert(0, correct());
            } else {
                all.push(correct());
            }
            all.join(" ")
        }
        Signature::Raw(raw) => raw.clone(),
    };
    let outcome = verifier.verify_parts(
        Some(&d.msg_id),
        Some(&ts),
        Some(&signatures),
        &body,
        fuzz_now(),
    );
    if let Ok(event) = outcome {
        // The timestamp that verified is the one signed over (as text, trimmed).
        let expected = verifier.sign(d.msg_id.trim(), event.timestamp(), &body);
        assert!(
            ts.trim() == event.timestamp().to_string()
                && signatures.split(' ').any(|s| s == expected),
            "a webhook verified without the secret's signature"
        );
        assert!((event.timestamp() - FUZZ_NOW_SECS).abs() <= 5 * 60 + 1);
        let _ = event.kind();
    }
}

/// Backend API bodies: the user object (`GET /v1/users/{id}`) and error bodies.
pub fn backend_api(data: &[u8]) {
    if let Ok(user) = serde_json::from_slice::<ClerkUserData>(data) {
        let _ = (user.primary_email(), user.primary_phone(), user.is_active());
        // What parsed serialises again and parses to the same user.
        let again = serde_json::to_vec(&user).unwrap_or_default();
        let reparsed: Result<ClerkUserData, _> = serde_json::from_slice(&again);
        assert!(
            reparsed.is_ok_and(|u| same_user(&u, &user)),
            "a user does not round-trip"
        );
    }
    if let Ok(errors) = serde_json::from_slice::<ClerkApiErrors>(data) {
        let _ = crate::base::api::ApiError::Status {
            status: actix_web::http::StatusCode::UNAUTHORIZED,
            body: errors,
        }
        .is_invalid_secret_key();
    }
}

/// Equal, except that floats in metadata may differ in their last digit (serde_json's default
/// float parsing is not exactly round-trip; metadata is the application's, passed through).
fn same_user(a: &ClerkUserData, b: &ClerkUserData) -> bool {
    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y))
                    if x.is_finite()
                        && y.is_finite()
                        && (x.fract() != 0.0 || y.fract() != 0.0 || x.abs() > 9e15) =>
                {
                    (x - y).abs() <= f64::EPSILON * 4.0 * x.abs().max(y.abs())
                }
                _ => x == y,
            },
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
            }
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
            }
            _ => a == b,
        }
    }
    let metadata = |u: &ClerkUserData| {
        let mut u = u.clone();
        u.public_metadata = Value::Null;
        u.private_metadata = Value::Null;
        u.unsafe_metadata = Value::Null;
        u
    };
    metadata(a) == metadata(b)
        && same(&a.public_metadata, &b.public_metadata)
        && same(&a.private_metadata, &b.private_metadata)
        && same(&a.unsafe_metadata, &b.unsafe_metadata)
}

/// Machine-token verify answers (status and body) as verdicts: an accepted token was not
/// revoked, expired or inactive in the answer, and its expiration (if any) is in the future.
pub fn machine_answer(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let token_type = [
        TokenType::ApiKey,
        TokenType::M2mToken,
        TokenType::OAuthToken,
    ][usize::from(selector & 3) % 3];
    let status =
        [200, 400, 401, 403, 404, 422, 429, 500, 502, 503][usize::from(selector >> 4) % 10];
    let now_ms = FUZZ_NOW_SECS * 1000;
    let verdict = machine::verdict_for_fuzzing(token_type, status, body, now_ms);
    if let Ok(auth) = verdict {
        assert_eq!(status, 200, "a refused answer was accepted");
        let answer: Value = serde_json::from_slice(body).unwrap_or_default();
        assert_ne!(
            answer.get("revoked"),
            Some(&Value::Bool(true)),
            "revoked accepted"
        );
        assert_ne!(
            answer.get("expired"),
            Some(&Value::Bool(true)),
            "expired accepted"
        );
        assert_ne!(
            answer.get("active"),
            Some(&Value::Bool(false)),
            "inactive accepted"
        );
        if let Some(exp) = auth.expiration_ms() {
            assert!(exp > now_ms, "an answer past its expiration was accepted");
        }
        assert_eq!(auth.token_type(), token_type);
    }
}

/// The handshake's cookie path (`handshake`): a request's `Sec-Fetch-Dest`, `Accept`, query,
/// `Cookie` header and `Authorization` token (NUL-separated, after a control byte choosing the
/// instance, the method and the verifier's verdict) through the decision table. Only an
/// accepted verdict signs in; only an eligible document request is redirected, to the
/// instance's Frontend API with the request URL first, and every header the redirect sets is a
/// valid header value (no injection through cookies or the query).
pub fn handshake(data: &[u8]) {
    handshake_outcome(data);
}

/// What [`handshake`] made of `data`: `signed-in`, `signed-out`, `redirect`, `return-leg` or
/// `empty` (for the seed checks).
pub fn handshake_outcome(data: &[u8]) -> &'static str {
    use crate::handshake::{Carrier, CookiePath, DocumentRequest, Outcome, Resolution, Step};
    let Some((&control, rest)) = data.split_first() else {
        return "empty";
    };
    let fields: Vec<&str> = rest
        .split(|b| *b == 0)
        .map(|f| std::str::from_utf8(f).unwrap_or(""))
        .collect();
    let field = |i: usize| fields.get(i).copied().filter(|f| !f.is_empty());
    let production = control & 1 == 1;
    let instance = handshake_instance(production);
    let method = ["GET", "GET", "POST", "HEAD"][usize::from((control >> 1) & 3)];
    let verdicts = [
        Ok(()),
        Err(AuthErrorReason::TokenExpired),
        Err(AuthErrorReason::TokenNotActiveYet),
        Err(AuthErrorReason::TokenIatInTheFuture),
        Err(AuthErrorReason::TokenInvalidSignature),
    ];
    let verdict = verdicts[usize::from(control >> 3) % verdicts.len()];
    let request = DocumentRequest {
        method,
        sec_fetch_dest: field(0),
        accept: field(1),
        origin: "https://app.example.com",
        path: "/page",
        query: field(2).unwrap_or(""),
        cookie_header: field(3).unwrap_or(""),
        header_token: field(4),
    };
    let path = CookiePath::new(instance, &request, FUZZ_NOW_SECS);
    let mut verified = false;
    let outcome = match path.start() {
        Step::Done(outcome) => {
            assert!(
                !matches!(outcome, Outcome::SignedIn { .. }),
                "signed in without verification"
            );
            outcome
        }
        Step::ReturnLeg { nonce, token } => {
            assert!(
                nonce.is_some() || token.is_some(),
                "a return leg without a nonce"
            );
            assert!(
                request.header_token.is_none(),
                "a header request took the return leg"
            );
            return "return-leg";
        }
        Step::Verify { token, carrier } => {
            assert!(!token.is_empty(), "an empty token to verify");
            match carrier {
                Carrier::Header => assert_eq!(Some(token.as_str()), request.header_token),
                Carrier::Cookie => {
                    assert!(request.header_token.is_none(), "a cookie beat the header")
                }
            }
            verified = verdict.is_ok();
            path.verified(&token, verdict)
        }
    };
    match path.resolve(outcome) {
        Resolution::SignedIn { token } => {
            assert!(verified, "signed in without an accepted verdict");
            assert!(!token.is_empty());
            "signed-in"
        }
        Resolution::SignedOut { reason } => {
            assert!(!reason.is_empty(), "no reason");
            "signed-out"
        }
        Resolution::Redirect {
            location,
            set_cookie,
            reason,
        } => {
            let eligible = method == "GET"
                && match request.sec_fetch_dest {
                    Some(dest) => dest == "document" || dest == "iframe",
                    None => request.accept.is_some_and(|a| a.starts_with("text/html")),
                };
            assert!(
                eligible,
                "a redirect for a request that is not a document GET"
            );
            let base = format!(
                "https://{}/v1/client/handshake?redirect_url=https%3A%2F%2Fapp.example.com%2Fpage",
                instance.key().frontend_api()
            );
            assert!(
                location.starts_with(&base),
                "redirected elsewhere: {location}"
            );
            assert!(
                header::HeaderValue::from_str(&location).is_ok(),
                "Location is not a header value"
            );
            assert!(
                header::HeaderValue::from_str(&set_cookie).is_ok(),
                "Set-Cookie is not a header value"
            );
            assert!(
                set_cookie.starts_with("__clerk_redirect_count=")
                    && set_cookie.ends_with("; SameSite=Lax; HttpOnly; Max-Age=2"),
                "{set_cookie}"
            );
            let query = location.split_once('?').map_or("", |(_, q)| q);
            let names: Vec<String> = form_urlencoded::parse(query.as_bytes())
                .map(|(k, _)| k.into_owned())
                .collect();
            let expected = [
                "redirect_url",
                "__clerk_api_version",
                "suffixed_cookies",
                "__clerk_hs_reason",
                "format",
            ];
            assert_eq!(
                names[..expected.len().min(names.len())],
                expected,
                "parameters out of order"
            );
            assert!(
                names[expected.len()..]
                    .iter()
                    .all(|n| n == "__session" || (!production && n == "__clerk_db_jwt")),
                "unexpected parameters {names:?}"
            );
            assert!(form_urlencoded::parse(query.as_bytes())
                .any(|(k, v)| k == "__clerk_hs_reason" && v == reason.as_str()));
            "redirect"
        }
    }
}

/// The harness's production and development instances (handshake.md §13).
fn handshake_instance(production: bool) -> &'static crate::handshake::Instance {
    use crate::handshake::{Instance, PublishableKey};
    static PROD: OnceLock<Instance> = OnceLock::new();
    static DEV: OnceLock<Instance> = OnceLock::new();
    let (cell, key) = if production {
        (&PROD, "pk_live_Y2xlcmsuZXhhbXBsZS5jb20k")
    } else {
        (&DEV, "pk_test_Zm9vLWJhci0xMy5jbGVyay5hY2NvdW50cy5kZXYk")
    };
    cell.get_or_init(|| {
        Instance::new(
            PublishableKey::parse(key).expect("the harness's keys parse"),
            None,
        )
    })
}

/// Whether [`session_token`]'s verifier accepts `data` (for the seed checks).
pub fn accepts_session_token(data: &[u8]) -> bool {
    std::str::from_utf8(data).is_ok_and(|token| {
        verifier()
            .verify_session_at(token, &published_keys(), fuzz_now())
            .is_ok()
    })
}

/// Whether [`machine_answer`] turns `data` into an accepted machine token.
pub fn accepts_machine_answer(data: &[u8]) -> bool {
    let Some((&selector, body)) = data.split_first() else {
        return false;
    };
    let token_type = [
        TokenType::ApiKey,
        TokenType::M2mToken,
        TokenType::OAuthToken,
    ][usize::from(selector & 3) % 3];
    machine::verdict_for_fuzzing(token_type, 200, body, FUZZ_NOW_SECS * 1000).is_ok()
}
