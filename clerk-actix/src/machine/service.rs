//! The machine-token service (`Machines`): the shape check, the Backend API's verify call with
//! its budgets for unknown tokens, the short answer cache (negative answers too, never past the
//! token's expiration) with its read slots, and the JWT forms with the instance keys.

use std::{
    fmt,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use futures_util::FutureExt as _;
use moka::{future::Cache, notification::RemovalCause, Expiry};
use serde::Deserialize;
use serde_json::{Map, Value};
use tracing::Instrument as _;

use crate::{
    base::api::{self, ApiError, BackendApi},
    base::budget::{ClientBudget, Rate},
    base::error::{AuthError, AuthErrorReason as R},
    base::events::{AuthSource, ClerkEvent, Events, TRACING_TARGET},
    base::slots::Slots,
    base::telemetry,
    tokens::jwks::{resolve_keys, RemoteJwks},
    tokens::keys::VerificationKeys,
    tokens::verify::{DecodedToken, TokenVerifier},
};

use super::*;

/// A cached answer and how long it may be reused.
#[derive(Clone)]
struct Answer {
    result: Result<MachineAuth, AuthError>,
    ttl: Duration,
    /// `ttl` on the handle's clock: the answer stands until then (moka's timer runs on the
    /// monotonic clock, which a test's clock does not move).
    until: SystemTime,
}

struct AnswerExpiry;

impl Expiry<Arc<str>, Answer> for AnswerExpiry {
    fn expire_after_create(&self, _: &Arc<str>, value: &Answer, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// The shape of an opaque token: its prefix, then 8–256 characters of `[A-Za-z0-9_-]`.
/// Anything else is refused before any call.
fn well_formed(token: &str, prefix_len: usize) -> bool {
    let rest = &token.as_bytes()[prefix_len..];
    (8..=256).contains(&rest.len())
        && rest
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
}

fn unix_ms(now: SystemTime) -> i64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What the verify endpoints answer (OAS; unknown fields ignored).
#[derive(Debug, Deserialize)]
struct VerifyAnswer {
    #[serde(default)]
    id: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    claims: Option<Value>,
    #[serde(default)]
    revoked: bool,
    #[serde(default)]
    expired: bool,
    #[serde(default)]
    expiration: Option<i64>,
    /// `{"active": false}`: an OAuth JWT that is no longer active.
    #[serde(default)]
    active: Option<bool>,
}

fn unavailable(detail: &'static str, retry_after: Duration) -> AuthError {
    AuthError::unavailable(R::MachineVerifyUnavailable, detail, retry_after)
}

/// [`verdict`] on a Backend API answer given by its status and body, as the transport
/// classifies it (for the fuzz target of the verify answers).
#[cfg(feature = "fuzzing")]
pub(crate) fn verdict_for_fuzzing(
    token_type: TokenType,
    status: u16,
    body: &[u8],
    now_ms: i64,
) -> Result<MachineAuth, AuthError> {
    let status =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let answer = crate::base::api::answer(status, Some("3"), Bytes::copy_from_slice(body));
    verdict(token_type, answer, now_ms)
}

/// Clerk's answer to a verify call, as an auth result (spec §5.1 error mapping, with outages
/// as 503 instead of `unexpected-error`).
fn verdict(
    token_type: TokenType,
    answer: Result<Bytes, ApiError>,
    now_ms: i64,
) -> Result<MachineAuth, AuthError> {
    let body =
        match answer {
            Ok(body) => body,
            Err(ApiError::NotFound) => {
                return Err(AuthError::new(
                    R::TokenInvalid,
                    "Clerk does not know this token",
                ))
            }
            Err(e) if e.is_invalid_secret_key() => {
                return Err(AuthError::new(
                    R::InvalidSecretKey,
                    "the Backend API refused the secret key (CLERK_SECRET_KEY)",
                ))
            }
            Err(ApiError::RateLimited { retry_after }) => {
                return Err(unavailable(
                    "the Backend API rate-limited token verification",
                    retry_after,
                ))
            }
            Err(ApiError::Status { status, .. }) if status.is_client_error() => {
                return Err(AuthError::new(R::TokenInvalid, "Clerk refused this token"))
            }
            Err(ApiError::NoSecretKey) => return Err(AuthError::new(
                R::InvalidSecretKey,
                "opaque machine tokens are verified through the Backend API: set CLERK_SECRET_KEY",
            )),
            Err(_) => {
                return Err(unavailable(
                    "the Backend API could not verify the token",
                    Duration::from_secs(5),
                ))
            }
        };
    let Ok(answer) = serde_json::from_slice::<VerifyAnswer>(&body) else {
        return Err(unavailable(
            "the Backend API sent an unexpected verify answer",
            Duration::from_secs(5),
        ));
    };
    if answer.active == Some(false) {
        return Err(AuthError::new(R::TokenExpired, "the token has expired"));
    }
    if answer.revoked {
        return Err(AuthError::new(R::TokenRevoked, "the token was revoked"));
    }
    if answer.expired || answer.expiration.is_some_and(|e| e <= now_ms) {
        return Err(AuthError::new(R::TokenExpired, "the token has expired"));
    }
    if answer.id.is_empty() || answer.subject.is_empty() {
        return Err(unavailable(
            "the Backend API sent an unexpected verify answer",
            Duration::from_secs(5),
        ));
    }
    Ok(MachineAuth(Arc::new(MachineInner {
        token_type,
        id: answer.id,
        subject: answer.subject,
        scopes: answer.scopes,
        name: answer.name,
        client_id: answer.client_id,
        claims: answer.claims,
        expiration: answer.expiration,
    })))
}

/// Scopes of a JWT-form token: `scopes` / `scope` (space-separated), else `scp` or `aud`.
fn jwt_scopes(payload: &Map<String, Value>) -> Vec<String> {
    let words = |v: &str| {
        v.split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let list = |v: &Vec<Value>| {
        v.iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    };
    for name in ["scopes", "scope", "scp", "aud"] {
        match payload.get(name) {
            Some(Value::String(s)) if name != "aud" => return words(s),
            Some(Value::Array(a)) => return list(a),
            _ => {}
        }
    }
    Vec::new()
}

/// Verifies machine tokens for one [`Clerk`](crate::Clerk) handle.
pub(crate) struct Machines {
    /// The handle's clock (a test's, with the testing kit): token times and answers' TTLs.
    clock: crate::base::clock::Clock,
    pub(crate) api: Option<BackendApi>,
    /// The Backend API with this service's machine secret key: opaque M2M tokens.
    machine_api: Option<BackendApi>,
    pub(crate) verifier: TokenVerifier,
    pub(crate) static_keys: Option<Arc<VerificationKeys>>,
    pub(crate) jwks: Option<Arc<RemoteJwks>>,
    pub(crate) events: Events,
    policy: MachinePolicy,
    answers: Cache<Arc<str>, Answer>,
    /// Read slots in front of `answers` (see `slots`): a cached token's request skips moka's
    /// read bookkeeping. `answers`' removals clear them.
    slots: Arc<Slots<Answer>>,
    /// Hashes of tokens that verified within the last hour: never held back by the budget.
    known: moka::sync::Cache<u64, ()>,
    /// Verify calls for tokens not known, per client and in all.
    budget: ClientBudget,
}

impl fmt::Debug for Machines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Machines")
            .field("policy", &self.policy)
            .field("cached", &self.answers.entry_count())
            .finish_non_exhaustive()
    }
}

impl Machines {
    pub(crate) fn new(
        api: Option<BackendApi>,
        machine_api: Option<BackendApi>,
        verifier: TokenVerifier,
        static_keys: Option<Arc<VerificationKeys>>,
        jwks: Option<Arc<RemoteJwks>>,
        events: Events,
        policy: MachinePolicy,
    ) -> Self {
        let slots = Arc::new(Slots::for_capacity(policy.capacity));
        let removed = slots.clone();
        Self {
            clock: crate::base::clock::Clock::default(),
            slots,
            api,
            machine_api,
            verifier,
            static_keys,
            jwks,
            events,
            policy,
            answers: Cache::builder()
                .max_capacity(policy.capacity)
                .expire_after(AnswerExpiry)
                .eviction_listener(move |key: Arc<Arc<str>>, _: Answer, _: RemovalCause| {
                    removed.remove(&key);
                })
                .build(),
            known: moka::sync::Cache::builder()
                .max_capacity(policy.capacity)
                .time_to_live(Duration::from_secs(3600))
                .build(),
            budget: ClientBudget::new(
                Rate::new(f64::from(policy.verify_rate), policy.verify_burst),
                Rate::new(f64::from(policy.client_rate), policy.client_burst),
            ),
        }
    }

    /// The same, on `clock` (the handle's) instead of the system's.
    pub(crate) fn with_clock(mut self, clock: crate::base::clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The type of an opaque machine token (by prefix), if it is one.
    pub(crate) fn opaque_type(token: &str) -> Option<TokenType> {
        TokenType::opaque(token)
    }

    /// The type of a decoded JWT: OAuth (`at+jwt`), M2M (category or `mch_` subject), else a
    /// session token (JWT templates included, refused by the session rules).
    pub(crate) fn jwt_type(decoded: &DecodedToken<'_>) -> TokenType {
        if decoded.is_oauth_jwt() {
            TokenType::OAuthToken
        } else if decoded.is_m2m_jwt() {
            TokenType::M2mToken
        } else {
            TokenType::SessionToken
        }
    }

    /// Verifies an opaque machine token of type `token_type` at the current time.
    pub(crate) async fn verify_opaque(
        &self,
        token: &str,
        token_type: TokenType,
        client: Option<IpAddr>,
    ) -> Result<MachineAuth, AuthError> {
        let span = machine_span(token_type, "opaque");
        let prefix = if token.starts_with("m2m_") {
            4
        } else {
            token.find('_').map_or(0, |i| i + 1)
        };
        if !well_formed(token, prefix) {
            let err = AuthError::new(R::TokenInvalid, "not a well-formed machine token");
            return self.finish(&span, Err(err), AuthSource::Verified, token);
        }
        let key: Arc<str> = Arc::from(token);
        let now = self.clock.now();
        let mut source = AuthSource::Cache;
        let mut answer = self
            .answers
            .get_with(key.clone(), async {
                source = AuthSource::Verified;
                self.ask_clerk(token, token_type, client, now).await
            })
            .instrument(span.clone())
            .await;
        if source == AuthSource::Cache && answer.until <= now {
            // Past its TTL on the handle's clock: asked again.
            self.answers.invalidate(&key).await;
            self.slots.forget(token);
            answer = self
                .answers
                .get_with(key, async {
                    source = AuthSource::Verified;
                    self.ask_clerk(token, token_type, client, now).await
                })
                .instrument(span.clone())
                .await;
        }
        self.finish(&span, answer.result, source, token)
    }

    /// The warm path: the caller of an opaque token whose accepted answer is cached and still
    /// stands, reported as [`verify_opaque`](Self::verify_opaque) reports a cache hit; `None`
    /// for everything else (a miss, a refused token, an answer past its TTL), and when a
    /// subscriber listens to the `clerk.authenticate_machine` span, for `verify_opaque` to
    /// decide and report.
    pub(crate) fn cached_opaque(&self, token: &str) -> Option<MachineAuth> {
        if tracing::enabled!(target: TRACING_TARGET, tracing::Level::DEBUG) {
            return None;
        }
        let now = self.clock.now();
        let stands = |a: &Answer| a.until > now && a.result.is_ok();
        let answer = match self.slots.get(token, stands) {
            Some((answer, read_through)) => {
                if read_through {
                    let _ = self.answers.get(token).now_or_never();
                }
                answer
            }
            None => {
                let generation = self.slots.generation();
                let answer = self.answers.get(token).now_or_never()??;
                if !stands(&answer) {
                    return None;
                }
                self.slots
                    .put(token, || (Arc::from(token), answer.clone()), generation);
                answer
            }
        };
        let auth = answer.result.ok()?;
        self.succeeded(&auth, AuthSource::Cache);
        Some(auth)
    }

    /// One verify call (if the budget allows), as a cacheable answer.
    async fn ask_clerk(
        &self,
        token: &str,
        token_type: TokenType,
        client: Option<IpAddr>,
        now: SystemTime,
    ) -> Answer {
        let hash = fxhash(token);
        let transient = |err| Answer {
            result: Err(err),
            ttl: Duration::ZERO,
            until: now,
        };
        let reservation = if self.known.contains_key(&hash) {
            None
        } else {
            match self.budget.reserve(client) {
                Some(reservation) => Some(reservation),
                None => {
                    return transient(unavailable(
                        "too many unknown machine tokens: verification is rate-bounded",
                        Duration::from_secs(1),
                    ))
                }
            }
        };
        let api = match token_type {
            TokenType::M2mToken => self.machine_api.as_ref().or(self.api.as_ref()),
            _ => self.api.as_ref(),
        };
        let Some(api) = api else {
            return Answer {
                result: verdict(token_type, Err(ApiError::NoSecretKey), unix_ms(now)),
                ttl: Duration::ZERO,
                until: now,
            };
        };
        let (endpoint, path, field) = token_type.endpoint();
        let body = serde_json::to_vec(&serde_json::json!({ field: token }))
            .map(Bytes::from)
            .unwrap_or_default();
        let url = format!("{}{path}", api.api_url);
        let answer = match api.held() {
            // Clerk rate-limited the instance: not asked again before its Retry-After.
            Some(held) => Err(held),
            None => {
                let answer = api::post_json(
                    endpoint,
                    &url,
                    body,
                    &api.secret_key,
                    api.timeout,
                    64 * 1024,
                )
                .await;
                api.hold_on_rate_limit(&answer);
                answer
            }
        };
        let result = verdict(token_type, answer, unix_ms(now));
        let ttl = match &result {
            Ok(auth) => {
                // A genuine token: the call was worth making.
                if let Some(reservation) = reservation {
                    reservation.refund();
                }
                self.known.insert(hash, ());
                let left = auth.expiration_ms().map_or(self.policy.cache_ttl, |e| {
                    Duration::from_millis(u64::try_from(e - unix_ms(now)).unwrap_or(0))
                });
                self.policy.cache_ttl.min(left)
            }
            Err(e) if e.kind() == crate::AuthErrorKind::InvalidToken => self.policy.negative_ttl,
            Err(_) => Duration::ZERO,
        };
        Answer {
            result,
            ttl,
            until: now + ttl,
        }
    }

    /// Verifies a JWT-form M2M or OAuth token (already decoded) with the instance keys.
    pub(crate) async fn verify_jwt(
        &self,
        token: &str,
        decoded: DecodedToken<'_>,
        token_type: TokenType,
    ) -> Result<MachineAuth, AuthError> {
        let span = machine_span(token_type, "jwt");
        let result = self
            .verify_jwt_inner(decoded, token_type)
            .instrument(span.clone())
            .await;
        self.finish(&span, result, AuthSource::Verified, token)
    }

    /// Reports the outcome (event, metrics, span fields) and hands it back.
    fn finish(
        &self,
        span: &tracing::Span,
        result: Result<MachineAuth, AuthError>,
        source: AuthSource,
        token: &str,
    ) -> Result<MachineAuth, AuthError> {
        match result {
            Ok(auth) => {
                if !span.is_disabled() {
                    span.record("source", source.as_str());
                    span.record("id", auth.id());
                }
                self.succeeded(&auth, source);
                Ok(auth)
            }
            Err(err) => {
                if !span.is_disabled() {
                    span.record("reason", err.reason().as_str());
                }
                Err(self.failed(err, token))
            }
        }
    }

    async fn verify_jwt_inner(
        &self,
        decoded: DecodedToken<'_>,
        token_type: TokenType,
    ) -> Result<MachineAuth, AuthError> {
        let keys = resolve_keys(
            self.static_keys.as_ref(),
            self.jwks.as_ref(),
            decoded.kid(),
            &self.events,
        )
        .await?;
        let oauth = token_type == TokenType::OAuthToken;
        let payload = self
            .verifier
            .verify_machine_jwt(decoded, oauth, &keys, self.clock.now())?;
        let text = |name: &str| payload.get(name).and_then(Value::as_str).map(str::to_owned);
        if token_type == TokenType::M2mToken && !text("sub").is_some_and(|s| s.starts_with("mch_"))
        {
            return Err(AuthError::new(
                R::TokenVerificationFailed,
                "an M2M token's subject is a machine (mch_…)",
            ));
        }
        let expiration = payload
            .get("exp")
            .and_then(Value::as_f64)
            .map(|s| (s.trunc() * 1000.0) as i64);
        Ok(MachineAuth(Arc::new(MachineInner {
            token_type,
            id: text("jti").unwrap_or_default(),
            subject: text("sub").unwrap_or_default(),
            scopes: jwt_scopes(&payload),
            name: None,
            client_id: text("client_id"),
            claims: None,
            expiration,
        })))
    }

    /// Reports a refused token and hands the error back.
    pub(crate) fn failed(&self, err: AuthError, token: &str) -> AuthError {
        telemetry::refused(&self.events, err, token)
    }

    fn succeeded(&self, auth: &MachineAuth, source: AuthSource) {
        telemetry::auth_succeeded(source);
        if self.events.wants_debug() {
            self.events.emit(ClerkEvent::MachineAuthenticated {
                token_type: auth.token_type().as_str(),
                id: auth.id().to_owned(),
                subject: auth.subject().to_owned(),
                source,
            });
        }
    }
}

/// The `clerk.authenticate_machine` span (debug level, target `clerk_actix`): `token_type`,
/// `form` (`opaque` / `jwt`), then `source` and `id`, or `reason`; never the token.
fn machine_span(token_type: TokenType, form: &'static str) -> tracing::Span {
    tracing::debug_span!(
        target: TRACING_TARGET,
        "clerk.authenticate_machine",
        token_type = token_type.as_str(),
        form,
        source = tracing::field::Empty,
        id = tracing::field::Empty,
        reason = tracing::field::Empty,
    )
}

/// A cheap, process-local hash for the "verified lately" set (never logged or sent).
fn fxhash(token: &str) -> u64 {
    use std::hash::BuildHasher;
    static STATE: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    STATE.get_or_init(Default::default).hash_one(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_and_types() {
        assert_eq!(TokenType::opaque("ak_abc"), Some(TokenType::ApiKey));
        assert_eq!(TokenType::opaque("m2m_abc"), Some(TokenType::M2mToken));
        assert_eq!(TokenType::opaque("oat_abc"), Some(TokenType::OAuthToken));
        assert_eq!(TokenType::opaque("eyJhbGciOi"), None);
        assert!(well_formed("ak_0123456789abcdef", 3));
        assert!(!well_formed("ak_short", 3));
        assert!(!well_formed("ak_0123456789abcdef!", 3));
        assert!(!well_formed(&format!("ak_{}", "a".repeat(257)), 3));
        assert_eq!(TokenType::parse("m2m_token"), Some(TokenType::M2mToken));
        assert_eq!(
            format!("{:?}", TokenTypes::API_KEY | TokenTypes::M2M),
            "TokenTypes(api_key | m2m_token)"
        );
    }

    #[test]
    fn verdicts_follow_the_answer_not_the_status() {
        let now = 1_700_000_000_000;
        let ok = |v: Value| verdict(TokenType::ApiKey, Ok(Bytes::from(v.to_string())), now);
        let base = serde_json::json!({"id": "ak_1", "subject": "user_1", "scopes": ["a"], "revoked": false, "expired": false, "expiration": null});
        assert_eq!(ok(base.clone()).unwrap().subject(), "user_1");
        let mut revoked = base.clone();
        revoked["revoked"] = true.into();
        assert_eq!(ok(revoked).unwrap_err().reason(), R::TokenRevoked);
        let mut expired = base.clone();
        expired["expiration"] = (now - 1).into();
        assert_eq!(ok(expired).unwrap_err().reason(), R::TokenExpired);
        assert_eq!(
            ok(serde_json::json!({"active": false}))
                .unwrap_err()
                .reason(),
            R::TokenExpired
        );
        assert_eq!(
            ok(serde_json::json!({"weird": 1})).unwrap_err().reason(),
            R::MachineVerifyUnavailable
        );
        let err = verdict(TokenType::ApiKey, Err(ApiError::NotFound), now).unwrap_err();
        assert_eq!(err.reason(), R::TokenInvalid);
        let err = verdict(
            TokenType::ApiKey,
            Err(ApiError::RateLimited {
                retry_after: Duration::from_secs(7),
            }),
            now,
        )
        .unwrap_err();
        assert_eq!(
            (err.reason(), err.retry_after()),
            (R::MachineVerifyUnavailable, Some(Duration::from_secs(7)))
        );
    }

    #[test]
    fn jwt_scopes_forms() {
        let p = |v: Value| jwt_scopes(v.as_object().unwrap());
        assert_eq!(
            p(serde_json::json!({"scopes": "mch_1 mch_2"})),
            ["mch_1", "mch_2"]
        );
        assert_eq!(
            p(serde_json::json!({"scope": "read:foo write:bar"})),
            ["read:foo", "write:bar"]
        );
        assert_eq!(p(serde_json::json!({"scp": ["a", "b"]})), ["a", "b"]);
        assert_eq!(p(serde_json::json!({"aud": ["mch_9"]})), ["mch_9"]);
        assert!(p(serde_json::json!({"aud": "x"})).is_empty());
    }
}
