//! Authentication errors and their stable reason codes. How each maps to HTTP (status,
//! challenge, body) is the actix adapter's business: [`response`](crate::response).
//!
//! The reason strings are Clerk's own (`TokenVerificationErrorReason` in `@clerk/backend`), so
//! logs, events and response bodies read the same as in Clerk's SDKs. A few codes that Clerk's
//! SDKs do not have are marked as such.

use std::{fmt, time::Duration};

/// Why a request could not be authenticated. `as_str()` gives the stable wire code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthErrorReason {
    /// `token-expired`: `exp` is in the past (beyond the clock skew).
    TokenExpired,
    /// `token-invalid`: not a well-formed Clerk JWT (segments, base64, JSON, `typ`, size, category).
    TokenInvalid,
    /// `token-invalid-algorithm`: `alg` is not RS256.
    TokenInvalidAlgorithm,
    /// `token-invalid-authorized-parties`: `azp` missing or not one of the authorized parties.
    TokenInvalidAuthorizedParties,
    /// `token-invalid-signature`: the RS256 signature does not match.
    TokenInvalidSignature,
    /// `token-not-active-yet`: `nbf` is in the future (beyond the clock skew).
    TokenNotActiveYet,
    /// `token-iat-in-the-future`: `iat` is in the future (beyond the clock skew).
    TokenIatInTheFuture,
    /// `token-verification-failed`: a required claim is missing or of the wrong type, or `aud` /
    /// `iss` do not match.
    TokenVerificationFailed,
    /// `token-type-mismatch`: a machine token (M2M, OAuth, API key) or a JWT-template token was
    /// presented where a session token is required.
    TokenTypeMismatch,
    /// `token-revoked` (not a Clerk code): Clerk answered that the machine token (API key, M2M,
    /// OAuth) was revoked.
    TokenRevoked,
    /// `secret-key-invalid`: the Backend API refused the secret key.
    InvalidSecretKey,
    /// `machine-verify-unavailable` (not a Clerk code): an opaque machine token could not be
    /// verified (the Backend API is down or rate-limited, or unknown tokens are arriving faster
    /// than the verify budget).
    MachineVerifyUnavailable,
    /// `jwk-remote-failed-to-load`: the JWKS could not be fetched (network, timeout, 5xx, 429).
    RemoteJwkFailedToLoad,
    /// `jwk-remote-invalid`: the JWKS response was not a usable key set.
    RemoteJwkInvalid,
    /// `jwk-failed-to-resolve`: no key source is configured.
    JwkFailedToResolve,
    /// `jwk-kid-mismatch`: no key with the token's `kid`, even after refreshing the JWKS.
    JwkKidMismatch,
    /// `session-token-missing`: no token in the `Authorization` header or `__session` cookie.
    SessionTokenMissing,
    /// `session-pending` (not a Clerk code): the session has pending tasks (`sts: "pending"`) and
    /// pending sessions are treated as signed out.
    SessionPending,
    /// `insufficient-scope` (not a Clerk code): authenticated, but lacking a role, permission,
    /// feature or plan.
    InsufficientScope,
    /// `middleware-missing` (not a Clerk code): an extractor ran on a route without
    /// [`ClerkMiddleware`](crate::ClerkMiddleware).
    MiddlewareMissing,
    /// `user-not-found` (not a Clerk code): the token is valid but Clerk has no such user
    /// (deleted).
    UserNotFound,
    /// `user-inactive` (not a Clerk code): the local user is banned, locked or deactivated.
    UserInactive,
    /// `user-sync-failed` (not a Clerk code): the Backend API could not be reached (or rate
    /// limited) and the user is stored nowhere locally.
    UserSyncFailed,
    /// `user-store-unavailable` (not a Clerk code): the user database failed.
    UserStoreUnavailable,
    /// `user-store-missing` (not a Clerk code): `ClerkUser<U>` was used but no store for `U` was
    /// registered with [`ClerkBuilder::user_store`](crate::ClerkBuilder::user_store).
    UserStoreMissing,
    /// `handshake-unavailable` (not a Clerk code): a handshake came back, but the Backend API
    /// could not be asked for its cookies (down, timing out or rate-limited).
    HandshakeUnavailable,
}

impl AuthErrorReason {
    /// The stable wire code, e.g. `"token-expired"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::TokenExpired => "token-expired",
            Self::TokenInvalid => "token-invalid",
            Self::TokenInvalidAlgorithm => "token-invalid-algorithm",
            Self::TokenInvalidAuthorizedParties => "token-invalid-authorized-parties",
            Self::TokenInvalidSignature => "token-invalid-signature",
            Self::TokenNotActiveYet => "token-not-active-yet",
            Self::TokenIatInTheFuture => "token-iat-in-the-future",
            Self::TokenVerificationFailed => "token-verification-failed",
            Self::TokenTypeMismatch => "token-type-mismatch",
            Self::TokenRevoked => "token-revoked",
            Self::InvalidSecretKey => "secret-key-invalid",
            Self::MachineVerifyUnavailable => "machine-verify-unavailable",
            Self::RemoteJwkFailedToLoad => "jwk-remote-failed-to-load",
            Self::RemoteJwkInvalid => "jwk-remote-invalid",
            Self::JwkFailedToResolve => "jwk-failed-to-resolve",
            Self::JwkKidMismatch => "jwk-kid-mismatch",
            Self::SessionTokenMissing => "session-token-missing",
            Self::SessionPending => "session-pending",
            Self::InsufficientScope => "insufficient-scope",
            Self::MiddlewareMissing => "middleware-missing",
            Self::UserNotFound => "user-not-found",
            Self::UserInactive => "user-inactive",
            Self::UserSyncFailed => "user-sync-failed",
            Self::UserStoreUnavailable => "user-store-unavailable",
            Self::UserStoreMissing => "user-store-missing",
            Self::HandshakeUnavailable => "handshake-unavailable",
        }
    }

    /// What kind of failure this is, which decides the HTTP status.
    pub const fn kind(self) -> AuthErrorKind {
        match self {
            Self::SessionTokenMissing | Self::SessionPending => AuthErrorKind::Unauthenticated,
            Self::InsufficientScope => AuthErrorKind::Forbidden,
            Self::RemoteJwkFailedToLoad
            | Self::RemoteJwkInvalid
            | Self::UserSyncFailed
            | Self::MachineVerifyUnavailable
            | Self::HandshakeUnavailable
            | Self::UserStoreUnavailable => AuthErrorKind::Unavailable,
            Self::InvalidSecretKey
            | Self::JwkFailedToResolve
            | Self::MiddlewareMissing
            | Self::UserStoreMissing => AuthErrorKind::Misconfigured,
            _ => AuthErrorKind::InvalidToken,
        }
    }
}

impl fmt::Display for AuthErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The class of an [`AuthError`]; each owns its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthErrorKind {
    /// No credentials (or a pending session): 401 with a bare `Bearer` challenge.
    Unauthenticated,
    /// A token was presented and refused: 401 with `error="invalid_token"`.
    InvalidToken,
    /// Authenticated but not authorized: 403 with `error="insufficient_scope"`.
    Forbidden,
    /// Clerk could not be reached and nothing usable is cached: 503 with `Retry-After`.
    Unavailable,
    /// The server is set up wrongly (bad secret key, middleware missing): 500 naming the fix.
    Misconfigured,
}

/// An authentication failure: a stable [`reason`](Self::reason), a short static explanation, and
/// for outages a retry hint. It never contains a token or a secret.
///
/// ```
/// use clerk_actix::{AuthError, AuthErrorReason};
/// let err = AuthError::new(AuthErrorReason::TokenExpired, "exp is in the past");
/// assert_eq!(err.reason().as_str(), "token-expired");
/// assert_eq!(err.status().as_u16(), 401);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct AuthError {
    reason: AuthErrorReason,
    detail: &'static str,
    retry_after: Option<Duration>,
}

impl AuthError {
    /// An error with a reason and a short, static explanation.
    pub const fn new(reason: AuthErrorReason, detail: &'static str) -> Self {
        Self {
            reason,
            detail,
            retry_after: None,
        }
    }

    /// Clerk or a dependency is unavailable; clients may retry after `retry_after`.
    pub const fn unavailable(
        reason: AuthErrorReason,
        detail: &'static str,
        retry_after: Duration,
    ) -> Self {
        Self {
            reason,
            detail,
            retry_after: Some(retry_after),
        }
    }

    /// No token was presented.
    pub const fn missing() -> Self {
        Self::new(
            AuthErrorReason::SessionTokenMissing,
            "no session token in the Authorization header or __session cookie",
        )
    }

    /// The stable reason code.
    pub const fn reason(&self) -> AuthErrorReason {
        self.reason
    }

    /// The class of failure.
    pub const fn kind(&self) -> AuthErrorKind {
        self.reason.kind()
    }

    /// A short static explanation (safe to log; never contains a token or secret).
    pub const fn detail(&self) -> &'static str {
        self.detail
    }

    /// For outages: when the client may retry.
    pub const fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}
