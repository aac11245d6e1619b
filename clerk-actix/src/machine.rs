//! Machine tokens (spec §5): API keys (`ak_…`), machine-to-machine tokens (`mt_…` or a JWT) and
//! OAuth access tokens (`oat_…` or an RFC 9068 JWT). [`TokenTypes`] says which a route
//! accepts; [`MachineAuth`] is a verified machine caller; the service (`Machines`) verifies
//! opaque tokens through the Backend API and JWT forms with the instance keys.
//!
//! Opaque tokens are shape-checked before any call, their answers (negative ones included) are
//! cached briefly and never past the token's expiration, concurrent checks of one token share
//! one call, and calls for tokens not seen to verify recently are rate-bounded, so random
//! `ak_…` strings cannot spend the instance's Backend API quota.

use std::{
    fmt,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use actix_web::web::Bytes;
use futures_util::FutureExt as _;
use moka::{future::Cache, notification::RemovalCause, Expiry};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::Instrument as _;

use crate::{
    api::{self, ApiError, BackendApi},
    budget::{ClientBudget, Rate},
    error::{AuthError, AuthErrorReason as R},
    events::{AuthSource, ClerkEvent, Events, TRACING_TARGET},
    jwks::{resolve_keys, RemoteJwks},
    keys::VerificationKeys,
    slots::Slots,
    telemetry,
    verify::{DecodedToken, TokenVerifier},
};

/// The kind of a Clerk token, as Clerk's SDKs name it (`TokenType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenType {
    /// A session token (`session_token`): a user signed in through Clerk's frontend.
    SessionToken,
    /// An API key (`api_key`, `ak_…`), always opaque.
    ApiKey,
    /// A machine-to-machine token (`m2m_token`, `mt_…` or a JWT with a `mch_` subject).
    M2mToken,
    /// An OAuth access token issued by Clerk as an identity provider (`oauth_token`, `oat_…`
    /// or an `at+jwt` JWT).
    OAuthToken,
}

impl TokenType {
    /// Clerk's name: `session_token`, `api_key`, `m2m_token`, `oauth_token`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SessionToken => "session_token",
            Self::ApiKey => "api_key",
            Self::M2mToken => "m2m_token",
            Self::OAuthToken => "oauth_token",
        }
    }

    /// Parses Clerk's name.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::SessionToken,
            Self::ApiKey,
            Self::M2mToken,
            Self::OAuthToken,
        ]
        .into_iter()
        .find(|t| t.as_str() == name)
    }

    const fn bit(self) -> u8 {
        match self {
            Self::SessionToken => 1,
            Self::ApiKey => 2,
            Self::M2mToken => 4,
            Self::OAuthToken => 8,
        }
    }

    /// The opaque form's prefix (`m2m_` is M2M's legacy prefix), and the verify endpoint, its
    /// path and the body field the token goes in (OAS bodies).
    fn opaque(token: &str) -> Option<Self> {
        if token.starts_with("ak_") {
            Some(Self::ApiKey)
        } else if token.starts_with("mt_") || token.starts_with("m2m_") {
            Some(Self::M2mToken)
        } else if token.starts_with("oat_") {
            Some(Self::OAuthToken)
        } else {
            None
        }
    }

    fn endpoint(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::ApiKey => ("api_keys_verify", "/api_keys/verify", "secret"),
            Self::M2mToken => ("m2m_tokens_verify", "/m2m_tokens/verify", "token"),
            _ => (
                "oauth_access_tokens_verify",
                "/oauth_applications/access_tokens/verify",
                "access_token",
            ),
        }
    }
}

impl Serialize for TokenType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for TokenType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The token types a route accepts (Clerk's `acceptsToken`): a set built in `const` context.
/// The default everywhere is [`SESSION`](Self::SESSION).
///
/// ```
/// use clerk_actix::machine::{TokenType, TokenTypes};
/// const API: TokenTypes = TokenTypes::API_KEY.with(TokenTypes::M2M);
/// assert!(API.accepts(TokenType::ApiKey) && !API.accepts(TokenType::SessionToken));
/// assert!(TokenTypes::ANY.accepts(TokenType::OAuthToken));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenTypes(u8);

impl TokenTypes {
    /// Session tokens only (the default).
    pub const SESSION: Self = Self(1);
    /// API keys.
    pub const API_KEY: Self = Self(2);
    /// M2M tokens, opaque or JWT.
    pub const M2M: Self = Self(4);
    /// OAuth access tokens, opaque or JWT.
    pub const OAUTH: Self = Self(8);
    /// Every machine token type, no session tokens.
    pub const MACHINE: Self = Self(2 | 4 | 8);
    /// Every token type (`"any"`).
    pub const ANY: Self = Self(1 | 2 | 4 | 8);

    /// One type.
    pub const fn only(token_type: TokenType) -> Self {
        Self(token_type.bit())
    }

    /// Both sets.
    #[must_use]
    pub const fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Whether `token_type` is in the set.
    pub const fn accepts(self, token_type: TokenType) -> bool {
        self.0 & token_type.bit() != 0
    }

    /// Whether any machine type is in the set.
    pub const fn accepts_machines(self) -> bool {
        self.0 & Self::MACHINE.0 != 0
    }

    /// The machine types of the set (sessions removed).
    pub const fn machines_only(self) -> Self {
        Self(self.0 & Self::MACHINE.0)
    }

    /// Whether a JWT-form machine type (M2M, OAuth) is in the set.
    pub(crate) const fn accepts_machine_jwts(self) -> bool {
        self.0 & (Self::M2M.0 | Self::OAUTH.0) != 0
    }
}

impl Default for TokenTypes {
    fn default() -> Self {
        Self::SESSION
    }
}

impl std::ops::BitOr for TokenTypes {
    type Output = Self;
    fn bitor(self, other: Self) -> Self {
        self.with(other)
    }
}

impl fmt::Debug for TokenTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = [
            TokenType::SessionToken,
            TokenType::ApiKey,
            TokenType::M2mToken,
            TokenType::OAuthToken,
        ]
        .into_iter()
        .filter(|t| self.accepts(*t))
        .map(TokenType::as_str)
        .collect();
        write!(f, "TokenTypes({})", names.join(" | "))
    }
}

/// A verified machine caller: an API key, M2M token or OAuth access token. Cheap to clone
/// (an `Arc` inside). `Serialize` gives `{"token_type", "id", "subject", "scopes", "name",
/// "client_id"}`, never the token.
#[derive(Clone, PartialEq)]
pub struct MachineAuth(Arc<MachineInner>);

#[derive(Debug, PartialEq)]
struct MachineInner {
    token_type: TokenType,
    id: String,
    subject: String,
    scopes: Vec<String>,
    name: Option<String>,
    client_id: Option<String>,
    claims: Option<Value>,
    /// Unix milliseconds; `None` when the token does not expire.
    expiration: Option<i64>,
}

impl fmt::Debug for MachineAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MachineAuth")
            .field("token_type", &self.0.token_type)
            .field("id", &self.0.id)
            .field("subject", &self.0.subject)
            .field("scopes", &self.0.scopes)
            .finish_non_exhaustive()
    }
}

impl MachineAuth {
    /// API key, M2M or OAuth.
    pub fn token_type(&self) -> TokenType {
        self.0.token_type
    }
    /// The token's id (`ak_…`, `mt_…`, `oat_…`; a JWT's `jti`), safe to log.
    pub fn id(&self) -> &str {
        &self.0.id
    }
    /// Who the token acts for: `user_…` or `org_…` (API keys, OAuth), `mch_…` (machines).
    pub fn subject(&self) -> &str {
        &self.0.subject
    }
    /// The granted scopes (M2M: the machines this one may call).
    pub fn scopes(&self) -> &[String] {
        &self.0.scopes
    }
    /// Whether `scope` was granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.0.scopes.iter().any(|s| s == scope)
    }
    /// Whether every scope in `scopes` was granted.
    pub fn has_scopes(&self, scopes: &[&str]) -> bool {
        scopes.iter().all(|s| self.has_scope(s))
    }
    /// An API key's name.
    pub fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }
    /// An OAuth token's client (application) id.
    pub fn client_id(&self) -> Option<&str> {
        self.0.client_id.as_deref()
    }
    /// Custom claims attached to the key or token, when any.
    pub fn claims(&self) -> Option<&Value> {
        self.0.claims.as_ref()
    }
    /// When the token expires, in Unix milliseconds (`None`: it does not).
    pub fn expiration_ms(&self) -> Option<i64> {
        self.0.expiration
    }
}

impl Serialize for MachineAuth {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shown<'a> {
            token_type: TokenType,
            id: &'a str,
            subject: &'a str,
            scopes: &'a [String],
            #[serde(skip_serializing_if = "Option::is_none")]
            name: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            client_id: Option<&'a str>,
        }
        Shown {
            token_type: self.0.token_type,
            id: &self.0.id,
            subject: &self.0.subject,
            scopes: &self.0.scopes,
            name: self.0.name.as_deref(),
            client_id: self.0.client_id.as_deref(),
        }
        .serialize(s)
    }
}

/// How machine tokens are verified and cached (see [`ClerkBuilder::machine_tokens`](crate::ClerkBuilder::machine_tokens)).
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct MachinePolicy {
    cache_ttl: Duration,
    negative_ttl: Duration,
    capacity: u64,
    verify_rate: u32,
    verify_burst: u32,
    client_rate: u32,
    client_burst: u32,
}

impl Default for MachinePolicy {
    fn default() -> Self {
        Self {
            cache_ttl: Duration::from_secs(10),
            negative_ttl: Duration::from_secs(60),
            capacity: 10_000,
            verify_rate: 10,
            verify_burst: 20,
            client_rate: 1,
            client_burst: 5,
        }
    }
}

impl MachinePolicy {
    /// How long a verified opaque token is trusted without asking Clerk again (default 10 s,
    /// never past its expiration): a revoked key stops working within this time.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = ttl;
        self
    }
    /// How long a refused opaque token (unknown, revoked, expired) is refused without asking
    /// Clerk again (default 60 s).
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }
    /// Entries of the machine-token cache (default 10 000).
    pub fn cache_capacity(mut self, capacity: u64) -> Self {
        self.capacity = capacity;
        self
    }
    /// Verify calls per second, for all clients together, for tokens that have not verified
    /// lately (default 10, bursts of 20): the ceiling under Clerk's rate limit, which the whole
    /// instance shares. Past it, such a token gets 503 `machine-verify-unavailable` with
    /// `Retry-After: 1` and no call; tokens that verified within the last hour are never held
    /// back. A call that verifies a genuine token costs nothing: only refused tokens (unknown,
    /// revoked, expired) are charged.
    pub fn unknown_token_rate(mut self, per_second: u32, burst: u32) -> Self {
        self.verify_rate = per_second.max(1);
        self.verify_burst = burst.max(1);
        self
    }
    /// The same budget per client address (default 1 per second, bursts of 5): a client
    /// sending made-up tokens spends its own budget and then no more of the global one, so it
    /// cannot keep other clients' genuine first-time tokens from being verified. The address
    /// is the peer's, or with [`trust_forwarded_headers`](crate::ClerkBuilder::trust_forwarded_headers)
    /// the last `X-Forwarded-For` entry (the one your proxy appended).
    pub fn unknown_token_rate_per_client(mut self, per_second: u32, burst: u32) -> Self {
        self.client_rate = per_second.max(1);
        self.client_burst = burst.max(1);
        self
    }
}

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
    let status = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    let answer = crate::api::answer(status, Some("3"), Bytes::copy_from_slice(body));
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
    clock: crate::clock::Clock,
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
            clock: crate::clock::Clock::default(),
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
    pub(crate) fn with_clock(mut self, clock: crate::clock::Clock) -> Self {
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
