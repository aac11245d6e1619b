//! Session tokens: [`ClerkSession`] (a verified token, its claims and where it came from) and
//! the service that authenticates one — the verified-token cache in front of key resolution
//! (PEM or the remote JWKS) and Clerk's rules, then revocation, with an event at each step. No
//! HTTP types: the actix adapters (`auth`, the middleware, the extractors) find the token in a
//! request and hand it here.

use std::{
    ops::Deref,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use serde::Serialize;
use tracing::Instrument as _;

use crate::{
    base::claims::ClerkClaims,
    base::error::{AuthError, AuthErrorReason as R},
    base::events::{token_hash, AuthSource, ClerkEvent, Events, TokenCarrier, TRACING_TARGET},
    base::telemetry,
    tokens::cache::TokenCache,
    tokens::jwks::{resolve_keys, RemoteJwks},
    tokens::keys::VerificationKeys,
    tokens::revocation::Revocations,
    tokens::verify::TokenVerifier,
};

/// An authenticated Clerk session: the verified claims plus where the token came from.
/// Derefs to [`ClerkClaims`]. Cheap to clone.
///
/// As an extractor it answers 401 (`WWW-Authenticate: Bearer`) when the request is anonymous;
/// [`ClerkMiddleware`](crate::ClerkMiddleware) must wrap the route.
///
/// ```no_run
/// use actix_web::{get, HttpResponse, Responder};
/// use clerk_actix::ClerkSession;
///
/// #[get("/me")]
/// async fn me(session: ClerkSession) -> impl Responder {
///     HttpResponse::Ok().json(serde_json::json!({ "user_id": session.user_id() }))
/// }
/// ```
#[derive(Clone)]
pub struct ClerkSession {
    claims: Arc<ClerkClaims>,
    source: AuthSource,
    carrier: TokenCarrier,
    token: Arc<str>,
}

impl std::fmt::Debug for ClerkSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClerkSession")
            .field("claims", &self.claims)
            .field("source", &self.source)
            .field("carrier", &self.carrier)
            .field("token", &"[redacted]")
            .finish()
    }
}

impl ClerkSession {
    pub(crate) fn new(
        claims: Arc<ClerkClaims>,
        source: AuthSource,
        carrier: TokenCarrier,
        token: Arc<str>,
    ) -> Self {
        Self {
            claims,
            source,
            carrier,
            token,
        }
    }

    /// The session token itself, to forward to another service that verifies Clerk tokens
    /// (`Authorization: Bearer <token>`). It is a credential: never log it. (Trailing `=`
    /// padding, which Clerk ignores, is not included.) `Debug` and `Serialize` leave it out.
    ///
    /// ```no_run
    /// use clerk_actix::ClerkSession;
    /// async fn call_billing(session: ClerkSession) {
    ///     let _header = format!("Bearer {}", session.token()); // to awc / reqwest
    /// }
    /// ```
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The verified claims.
    pub fn claims(&self) -> &Arc<ClerkClaims> {
        &self.claims
    }

    /// Whether the token came from the verified-token cache.
    pub fn source(&self) -> AuthSource {
        self.source
    }

    /// Header or cookie.
    pub fn carrier(&self) -> TokenCarrier {
        self.carrier
    }
}

impl Deref for ClerkSession {
    type Target = ClerkClaims;
    fn deref(&self) -> &ClerkClaims {
        &self.claims
    }
}

impl Serialize for ClerkSession {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.claims.serialize(s)
    }
}

/// How long a token waits, at start-up, for the revocations shared through the database.
const REVOCATIONS_WAIT: Duration = Duration::from_secs(5);

/// Authenticates session tokens for one [`Clerk`](crate::Clerk) handle.
#[derive(Debug)]
pub(crate) struct Sessions {
    pub(crate) verifier: TokenVerifier,
    pub(crate) static_keys: Option<Arc<VerificationKeys>>,
    pub(crate) jwks: Option<Arc<RemoteJwks>>,
    pub(crate) cache: TokenCache,
    pub(crate) events: Events,
    pub(crate) revoked: Arc<Revocations>,
    pub(crate) clock: crate::base::clock::Clock,
}

impl Sessions {
    /// Verifies one session token at the current time: size limit, cache (canonical key), else
    /// decode, key (PEM or JWKS), Clerk's rules; then revocation. Machine and JWT-template
    /// tokens are refused (`token-type-mismatch`). Every step reports its event.
    ///
    /// Runs in a `clerk.authenticate` span (debug level, target `clerk_actix`) with `carrier`,
    /// and `source` or `reason` once decided; never the token.
    pub(crate) async fn authenticate(
        &self,
        token: &str,
        carrier: TokenCarrier,
    ) -> Result<ClerkSession, AuthError> {
        let span = tracing::debug_span!(
            target: TRACING_TARGET,
            "clerk.authenticate",
            carrier = carrier.as_str(),
            source = tracing::field::Empty,
            reason = tracing::field::Empty,
        );
        if self.revoked.is_loading() && !self.revoked.wait_loaded(REVOCATIONS_WAIT).await {
            // Starting next to other replicas, and the revocations they recorded are not
            // loaded yet: no token is admitted before they are (fail closed).
            let err = AuthError::unavailable(
                R::UserStoreUnavailable,
                "the revocations shared by the replicas are not loaded yet: the database is unreachable",
                Duration::from_secs(5),
            );
            return Err(self.failed(err, token));
        }
        let now = self.clock.now();
        // The hot path is synchronous (size check, cache hit): no future wraps it, and the span
        // (recorded below) is not entered for it, which would cost even when nobody listens.
        let result = match self.answer_without_verifying(token, carrier, now) {
            Some(answered) => answered,
            None => {
                self.verify_and_cache(token, carrier, now)
                    .instrument(span.clone())
                    .await
            }
        };
        if !span.is_disabled() {
            match &result {
                Ok(session) => span.record("source", session.source().as_str()),
                Err(err) => span.record("reason", err.reason().as_str()),
            };
        }
        result
    }

    /// The warm path's synchronous answer: the session of a cached, unrevoked token of the
    /// right size, with nothing reported yet ([`report_cached`](Self::report_cached) does), or
    /// `None` — for every other case, which [`authenticate`](Self::authenticate) decides and
    /// reports. Also `None` while the shared revocations load, and when a subscriber listens
    /// to the `clerk.authenticate` span (the span is `authenticate`'s to record).
    pub(crate) fn peek_cached(&self, token: &str, carrier: TokenCarrier) -> Option<ClerkSession> {
        if self.revoked.is_loading()
            || self.verifier.check_len(token).is_err()
            || tracing::enabled!(target: TRACING_TARGET, tracing::Level::DEBUG)
        {
            return None;
        }
        let (claims, shared) = self.cache.get(token, self.clock.now())?;
        match self.revoked.issued_up_to(claims.user_id()) {
            Some(at) if claims.issued_at().unwrap_or(i64::MIN) <= at => None,
            _ => Some(ClerkSession::new(
                claims,
                AuthSource::Cache,
                carrier,
                shared,
            )),
        }
    }

    /// Reports a session [`peek_cached`](Self::peek_cached) answered, as `authenticate` reports
    /// a cache hit.
    pub(crate) fn report_cached(&self, session: &ClerkSession) {
        self.emit_success(session.claims(), AuthSource::Cache, session.carrier());
    }

    /// Whether `token` is in the verified-token cache (a session token, then).
    pub(crate) fn is_cached(&self, token: &str) -> bool {
        self.cache.get(token, self.clock.now()).is_some()
    }

    /// The answer without verification, when there is one: a token over the size limit (before
    /// the cache: a token the verifier would refuse never answers from it), or a cached token.
    fn answer_without_verifying(
        &self,
        token: &str,
        carrier: TokenCarrier,
        now: SystemTime,
    ) -> Option<Result<ClerkSession, AuthError>> {
        if let Err(err) = self.verifier.check_len(token) {
            return Some(Err(self.failed(err, token)));
        }
        let (claims, shared) = self.cache.get(token, now)?;
        Some(self.check_revoked(&claims, token).map(|()| {
            self.emit_success(&claims, AuthSource::Cache, carrier);
            ClerkSession::new(claims, AuthSource::Cache, carrier, shared)
        }))
    }

    /// A cache miss: decode, key, Clerk's rules, then cache and revocation.
    async fn verify_and_cache(
        &self,
        token: &str,
        carrier: TokenCarrier,
        now: SystemTime,
    ) -> Result<ClerkSession, AuthError> {
        let inner = self;
        let started = Instant::now();
        let result = self.verify_uncached(token, now).await;
        let elapsed = started.elapsed();
        match result {
            Ok(claims) => {
                let claims = Arc::new(claims);
                let shared = inner.cache.insert(token, claims.clone());
                telemetry::token_verified(elapsed, || inner.cache.len());
                self.check_revoked(&claims, token)?;
                self.emit_success(&claims, AuthSource::Verified, carrier);
                Ok(ClerkSession::new(
                    claims,
                    AuthSource::Verified,
                    carrier,
                    shared,
                ))
            }
            Err(err) => {
                telemetry::token_verified(elapsed, || inner.cache.len());
                Err(self.failed(err, token))
            }
        }
    }

    /// Reports a refused token and hands the error back.
    fn failed(&self, err: AuthError, token: &str) -> AuthError {
        // A machine token on a session route is reported by the caller, which may hand it to a
        // handler that accepts it (`#[clerk_protected(accepts_token = ...)]`).
        if err.reason() == R::TokenTypeMismatch {
            return err;
        }
        telemetry::refused(&self.events, err, token)
    }

    async fn verify_uncached(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<ClerkClaims, AuthError> {
        let inner = self;
        // A miss leads to RSA (and maybe HTTP); hashing the token for the event is noise.
        self.events.emit(ClerkEvent::TokenCacheMiss {
            token_hash: token_hash(token),
        });
        let decoded = inner.verifier.decode_session(token)?;
        let keys = resolve_keys(
            inner.static_keys.as_ref(),
            inner.jwks.as_ref(),
            decoded.kid(),
            &inner.events,
        )
        .await?;
        inner.verifier.verify_decoded(decoded, &keys, now)
    }

    /// Refuses tokens of a user revoked (deleted / banned via webhook) after they were issued.
    fn check_revoked(&self, claims: &ClerkClaims, token: &str) -> Result<(), AuthError> {
        match self.revoked.issued_up_to(claims.user_id()) {
            Some(at) if claims.issued_at().unwrap_or(i64::MIN) <= at => Err(self.failed(
                AuthError::new(
                    R::UserInactive,
                    "the user was deleted or deactivated in Clerk",
                ),
                token,
            )),
            _ => Ok(()),
        }
    }

    fn emit_success(&self, claims: &Arc<ClerkClaims>, source: AuthSource, carrier: TokenCarrier) {
        telemetry::auth_succeeded(source);
        if self.events.wants_debug() {
            self.events.emit(ClerkEvent::AuthSucceeded {
                claims: claims.clone(),
                source,
                carrier,
            });
        }
    }
}
