//! Events for every success, failure and cache miss (the Django SDK's signals), delivered to
//! listeners registered on the builder and mirrored as `tracing` events under the target
//! [`TRACING_TARGET`]. No event carries a token or a secret: tokens appear only as
//! [`token_hash`] prefixes.

use std::{
    any::Any,
    fmt,
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use sha2::{Digest, Sha256};

use crate::{base::claims::ClerkClaims, base::error::AuthErrorReason};

/// The `tracing` target of every event this crate emits.
pub const TRACING_TARGET: &str = "clerk_actix";

/// Where a token was found in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenCarrier {
    /// `Authorization: Bearer ...`.
    Header,
    /// The `__session` cookie.
    Cookie,
}

impl TokenCarrier {
    /// `"header"` or `"cookie"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Header => "header",
            Self::Cookie => "cookie",
        }
    }
}

/// How a successful authentication was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthSource {
    /// The token was in the verified-token cache: no RSA, no network.
    Cache,
    /// The token was verified now (signature and claims).
    Verified,
}

impl AuthSource {
    /// `"cache"` or `"verified"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Cache => "cache",
            Self::Verified => "verified",
        }
    }
}

/// Where a request's user came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UserSource {
    /// The user cache: no Backend API call, no SQL.
    Cache,
    /// Fetched from the Backend API and upserted now.
    Api,
    /// Clerk was unreachable; the stored row was served.
    Database,
}

impl UserSource {
    /// `"cache"`, `"api"` or `"database"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Cache => "cache",
            Self::Api => "api",
            Self::Database => "database",
        }
    }
}

/// What a change announced between replicas did to a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UserChangeKind {
    /// The row was written from Clerk's data (created, updated, synced).
    Updated,
    /// The user was deleted (tombstoned): final.
    Deleted,
}

impl UserChangeKind {
    /// `"updated"` or `"deleted"`, as stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Updated => "updated",
            Self::Deleted => "deleted",
        }
    }

    /// The kind for its stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "updated" => Some(Self::Updated),
            "deleted" => Some(Self::Deleted),
            _ => None,
        }
    }
}

/// A user, type-erased, as carried by
/// [`ClerkEvent::UserAuthenticated`]; downcast with
/// [`get`](Self::get).
#[derive(Clone)]
pub struct AnyUser(Arc<dyn Any + Send + Sync>);

impl AnyUser {
    pub(crate) fn new(user: Arc<dyn Any + Send + Sync>) -> Self {
        Self(user)
    }

    /// The user as `U`, if it is one.
    pub fn get<U: 'static>(&self) -> Option<&U> {
        self.0.downcast_ref()
    }
}

impl fmt::Debug for AnyUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AnyUser(..)")
    }
}

/// How a verified delivery was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebhookOutcome {
    /// The user table was updated (an out-of-date update leaves the newer row as it is).
    Applied,
    /// This `svix-id` was already applied: nothing changed.
    Duplicate,
    /// Not a user event, or an event for a deleted user (deletion is final): acknowledged,
    /// nothing changed.
    Ignored,
}

impl WebhookOutcome {
    /// `"applied"`, `"duplicate"` or `"ignored"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Ignored => "ignored",
        }
    }
}

/// How a handshake's return leg ended ([`ClerkEvent::HandshakeResolved`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HandshakeOutcome {
    /// The Frontend API's cookies carried a valid session token: signed in.
    SignedIn,
    /// The cookies cleared the session (signed out at Clerk): signed out.
    SignedOut,
    /// The Backend API did not know the nonce (expired, used, forged) or sent no usable
    /// payload: signed out, and the stale nonce cookie cleared.
    NonceRefused,
    /// The new session token failed verification: the request's own cookies decide, as in
    /// Clerk's SDK.
    FellThrough,
    /// Not exchanged: too many nonces Clerk refused lately, from this client or from all (a
    /// flood of made-up nonces). Signed out, the nonce cookie kept; no Backend API call.
    NotExchanged,
}

impl HandshakeOutcome {
    /// `"signed-in"`, `"signed-out"`, `"nonce-refused"`, `"fell-through"` or
    /// `"not-exchanged"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SignedIn => "signed-in",
            Self::SignedOut => "signed-out",
            Self::NonceRefused => "nonce-refused",
            Self::FellThrough => "fell-through",
            Self::NotExchanged => "not-exchanged",
        }
    }
}

/// Why the JWKS was fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwksRefreshCause {
    /// No keys were loaded yet.
    Initial,
    /// The cached key set reached its TTL.
    Expired,
    /// A token carried a `kid` the cached set does not have (key rotation).
    UnknownKid,
}

/// Something that happened while authenticating. Listeners receive `&ClerkEvent`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClerkEvent {
    /// A request was authenticated (the seed's `clerk_auth_success`).
    AuthSucceeded {
        /// The verified claims.
        claims: Arc<ClerkClaims>,
        /// Cache hit or fresh verification.
        source: AuthSource,
        /// Header or cookie.
        carrier: TokenCarrier,
    },
    /// A presented token was refused, or Clerk could not be reached (the seed's
    /// `clerk_auth_failed`).
    AuthFailed {
        /// The stable reason code.
        reason: AuthErrorReason,
        /// A short SHA-256 prefix of the token, never the token itself.
        token_hash: String,
    },
    /// A machine token (API key, M2M, OAuth) was accepted. Its failures are
    /// [`AuthFailed`](Self::AuthFailed), like session tokens'.
    MachineAuthenticated {
        /// `api_key`, `m2m_token` or `oauth_token`.
        token_type: &'static str,
        /// The token's id (`ak_…`, `mt_…`, `oat_…`), never the token.
        id: String,
        /// Who it acts for (`user_…`, `org_…`, `mch_…`).
        subject: String,
        /// Cached answer or a fresh verification.
        source: AuthSource,
    },
    /// A token was not in the verified-token cache (the seed's `clerk_cache_miss`).
    TokenCacheMiss {
        /// A short SHA-256 prefix of the token.
        token_hash: String,
    },
    /// The JWKS was fetched successfully.
    JwksRefreshed {
        /// Why it was fetched.
        cause: JwksRefreshCause,
        /// The key ids now known.
        kids: Vec<String>,
    },
    /// `ClerkUser<U>` resolved the local user (the seed's `clerk_auth_success` with its `user`
    /// and `source`).
    UserAuthenticated {
        /// The Clerk user id.
        user_id: String,
        /// Cache, Backend API, or (Clerk unreachable) the database.
        source: UserSource,
        /// The local user; `user.get::<U>()` downcasts it.
        user: AnyUser,
    },
    /// `ClerkUser<U>` could not serve the user of a valid session (deleted, inactive, or Clerk /
    /// the database unavailable).
    UserRefused {
        /// The Clerk user id.
        user_id: String,
        /// Why.
        reason: AuthErrorReason,
    },
    /// A user was not in the user cache.
    UserCacheMiss {
        /// The Clerk user id.
        user_id: String,
    },
    /// A user was fetched from Clerk (or given to `sync_user`) and upserted.
    UserSynced {
        /// The Clerk user id.
        user_id: String,
    },
    /// A webhook delivery passed signature verification.
    WebhookReceived {
        /// The Svix message id.
        svix_id: String,
        /// e.g. `user.updated`.
        event_type: String,
    },
    /// A webhook delivery was refused (bad signature, stale timestamp, not JSON, ...).
    WebhookRejected {
        /// The [`WebhookError`](crate::webhooks::WebhookError) reason code.
        reason: &'static str,
    },
    /// A verified webhook was handled.
    WebhookProcessed {
        /// The Svix message id.
        svix_id: String,
        /// e.g. `user.updated`.
        event_type: String,
        /// Applied, duplicate or ignored.
        outcome: WebhookOutcome,
        /// The user it concerned, for user events.
        user_id: Option<String>,
    },
    /// The change feed (PostgreSQL `LISTEN`) is connected and has caught up with what was
    /// recorded while it was not.
    ChangeFeedConnected {
        /// Changes applied from the database's log on connecting (missed ones, or at start-up
        /// the revocations that can still matter).
        caught_up: usize,
        /// Whether this is a reconnection (after a lost connection).
        reconnected: bool,
    },
    /// The change feed lost its connection (or could not connect). The process keeps serving
    /// from its caches and reconnects with back-off, then catches up.
    ChangeFeedDisconnected {
        /// What failed (no secret: connection errors name no password).
        error: String,
        /// When the next attempt is made.
        retry_in: Duration,
    },
    /// The change feed's notifications do not arrive (its probe was not heard back within 2 s,
    /// e.g. through a transaction-mode pooler, where `LISTEN` hears nothing): it now reads the
    /// change log every `every` instead. Give the feed a direct connection for push latency.
    ChangeFeedPolling {
        /// How often the log is read.
        every: Duration,
    },
    /// The change feed's notifications arrive again (a probe was heard): back from polling to
    /// reading the log when woken.
    ChangeFeedListening,
    /// A change made by a process sharing the database (or this one) was applied to the user
    /// cache and the revocations.
    UserChangeReceived {
        /// The Clerk user id.
        user_id: String,
        /// Updated or deleted.
        kind: UserChangeKind,
        /// Whether the stored user may sign in.
        active: bool,
    },
    /// A document request was answered with Clerk's handshake: a 307 to the Frontend API, which
    /// sends the browser back with fresh session cookies
    /// ([`ClerkMiddleware::handshake`](crate::ClerkMiddleware::handshake)).
    HandshakeRedirected {
        /// Clerk's reason code, e.g. `session-token-expired-refresh-non-eligible-no-refresh-cookie`.
        reason: String,
    },
    /// A handshake came back and its nonce was exchanged with the Backend API.
    HandshakeResolved {
        /// Signed in, signed out, nonce refused, or fell through to the request's cookies.
        outcome: HandshakeOutcome,
    },
    /// The redirect-loop guard stopped a handshake (three in a row within seconds): the
    /// request goes on signed out instead of being redirected again.
    HandshakeLoopStopped {
        /// The reason the handshake was wanted.
        reason: String,
    },
    /// Fetching the JWKS failed; known keys (if any) stay in use.
    JwksRefreshFailed {
        /// Why it was fetched.
        cause: JwksRefreshCause,
        /// The failure class.
        reason: AuthErrorReason,
        /// Failures in a row.
        consecutive_failures: u32,
        /// How long until the next attempt.
        retry_after: Duration,
    },
}

/// Receives [`ClerkEvent`]s. Implemented for every `Fn(&ClerkEvent) + Send + Sync`.
///
/// Listeners run inline on the request path: keep them quick (count, log, send to a channel).
pub trait EventListener: Send + Sync + 'static {
    /// Called once per event.
    fn on_event(&self, event: &ClerkEvent);
}

impl<F> EventListener for F
where
    F: Fn(&ClerkEvent) + Send + Sync + 'static,
{
    fn on_event(&self, event: &ClerkEvent) {
        self(event)
    }
}

/// The registered listeners, and the budget of per-failure log lines.
#[derive(Clone, Default)]
pub(crate) struct Events {
    listeners: Arc<[Arc<dyn EventListener>]>,
    /// Lines for refused requests (anyone can cause them, for free).
    failure_logs: Arc<LogBudget>,
    /// Lines for server-side failures: a budget of their own, so a flood of bad tokens cannot
    /// hide an outage or a misconfiguration from the operator.
    server_logs: Arc<LogBudget>,
}

/// Per-failure log lines allowed per window; listeners still get every event.
const LOG_LINES_PER_WINDOW: u32 = 20;
/// The window of the log budget, in seconds.
const LOG_WINDOW_SECS: u64 = 10;

/// A flood of bad tokens or webhooks must not flood the logs: at most
/// [`LOG_LINES_PER_WINDOW`] failure lines per [`LOG_WINDOW_SECS`]; the rest are counted and
/// reported in one line when the next window opens. Lock-free; approximate under races.
#[derive(Debug, Default)]
pub(crate) struct LogBudget {
    window: AtomicU64,
    used: AtomicU32,
    suppressed: AtomicU64,
}

impl LogBudget {
    /// An unused budget (`const`, for a `static`).
    pub(crate) const fn new() -> Self {
        Self {
            window: AtomicU64::new(0),
            used: AtomicU32::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// [`admit`](Self::admit) at the current time.
    pub(crate) fn admit_now(&self) -> Option<u64> {
        self.admit(unix_secs())
    }

    /// Whether a line may be logged at `now_secs`; `Some(n)` also reports the `n` lines
    /// suppressed in the windows before (0 if none).
    pub(crate) fn admit(&self, now_secs: u64) -> Option<u64> {
        let window = now_secs / LOG_WINDOW_SECS;
        let current = self.window.load(Ordering::Relaxed);
        let mut dropped = 0;
        if current != window
            && self
                .window
                .compare_exchange(current, window, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.used.store(0, Ordering::Relaxed);
            dropped = self.suppressed.swap(0, Ordering::Relaxed);
        }
        if self.used.fetch_add(1, Ordering::Relaxed) < LOG_LINES_PER_WINDOW {
            Some(dropped)
        } else {
            self.suppressed.fetch_add(1 + dropped, Ordering::Relaxed);
            None
        }
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Events({} listeners)", self.listeners.len())
    }
}

impl Events {
    pub(crate) fn new(listeners: Vec<Arc<dyn EventListener>>) -> Self {
        Self {
            listeners: listeners.into(),
            failure_logs: Arc::default(),
            server_logs: Arc::default(),
        }
    }

    /// True when someone listens; lets callers skip building an event.
    pub(crate) fn has_listeners(&self) -> bool {
        !self.listeners.is_empty()
    }

    /// True when a debug-level event would reach anyone: a listener, or a `tracing` subscriber
    /// recording this crate's debug events. Lets the hot path skip building per-request events
    /// nobody sees, without hiding them from either.
    pub(crate) fn wants_debug(&self) -> bool {
        self.has_listeners() || tracing::enabled!(target: TRACING_TARGET, tracing::Level::DEBUG)
    }

    pub(crate) fn emit(&self, event: ClerkEvent) {
        self.trace_event(&event);
        for listener in self.listeners.iter() {
            listener.on_event(&event);
        }
    }

    /// Logs a server-side failure (5xx) with the detail callers do not see, within the budget.
    pub(crate) fn log_server_error(&self, reason: &str, detail: &str) {
        if let Some(suppressed) = self.server_logs.admit(unix_secs()) {
            tracing::error!(
                target: TRACING_TARGET,
                reason,
                detail,
                suppressed,
                "clerk request failed on the server side"
            );
        }
    }

    /// `Some(lines suppressed before)` when a per-failure line may be logged now.
    fn admit_failure_line(&self) -> Option<u64> {
        self.failure_logs.admit(unix_secs())
    }

    fn trace_event(&self, event: &ClerkEvent) {
        let per_failure = matches!(
            event,
            ClerkEvent::AuthFailed { .. }
                | ClerkEvent::UserRefused { .. }
                | ClerkEvent::WebhookRejected { .. }
        );
        if !per_failure {
            return trace_event(event, 0);
        }
        // Only lines a subscriber would record use up the budget.
        let recorded = match event {
            ClerkEvent::WebhookRejected { .. } => {
                tracing::enabled!(target: TRACING_TARGET, tracing::Level::WARN)
            }
            _ => tracing::enabled!(target: TRACING_TARGET, tracing::Level::INFO),
        };
        if recorded {
            if let Some(suppressed) = self.admit_failure_line() {
                trace_event(event, suppressed);
            }
        }
    }
}

/// Mirrors an event as a `tracing` event; `suppressed` counts the failure lines the budget
/// dropped before this one.
fn trace_event(event: &ClerkEvent, suppressed: u64) {
    match event {
        ClerkEvent::HandshakeRedirected { reason } => tracing::debug!(
            target: TRACING_TARGET,
            reason = reason.as_str(),
            "clerk handshake redirect"
        ),
        ClerkEvent::HandshakeResolved { outcome } => tracing::debug!(
            target: TRACING_TARGET,
            outcome = outcome.as_str(),
            "clerk handshake resolved"
        ),
        ClerkEvent::HandshakeLoopStopped { reason } => tracing::warn!(
            target: TRACING_TARGET,
            reason = reason.as_str(),
            "clerk handshake stopped by the redirect-loop guard (is the Frontend API reachable, \
             and does it set the session cookie on this host?)"
        ),
        ClerkEvent::AuthSucceeded {
            claims,
            source,
            carrier,
        } => tracing::debug!(
            target: TRACING_TARGET,
            user_id = claims.user_id(),
            source = source.as_str(),
            carrier = ?carrier,
            "clerk auth succeeded"
        ),
        ClerkEvent::AuthFailed { reason, token_hash } => tracing::info!(
            target: TRACING_TARGET,
            reason = reason.as_str(),
            token_hash = token_hash.as_str(),
            suppressed,
            "clerk auth failed"
        ),
        ClerkEvent::MachineAuthenticated {
            token_type,
            id,
            subject,
            source,
        } => tracing::debug!(
            target: TRACING_TARGET,
            token_type = *token_type,
            id = id.as_str(),
            subject = subject.as_str(),
            source = source.as_str(),
            "clerk machine authenticated"
        ),
        ClerkEvent::TokenCacheMiss { token_hash } => tracing::trace!(
            target: TRACING_TARGET,
            token_hash = token_hash.as_str(),
            "clerk token cache miss"
        ),
        ClerkEvent::UserAuthenticated {
            user_id, source, ..
        } => tracing::debug!(
            target: TRACING_TARGET,
            user_id = user_id.as_str(),
            source = source.as_str(),
            "clerk user authenticated"
        ),
        ClerkEvent::UserRefused { user_id, reason } => tracing::info!(
            target: TRACING_TARGET,
            user_id = user_id.as_str(),
            reason = reason.as_str(),
            suppressed,
            "clerk user refused"
        ),
        ClerkEvent::UserCacheMiss { user_id } => tracing::trace!(
            target: TRACING_TARGET,
            user_id = user_id.as_str(),
            "clerk user cache miss"
        ),
        ClerkEvent::UserSynced { user_id } => tracing::debug!(
            target: TRACING_TARGET,
            user_id = user_id.as_str(),
            "clerk user synced"
        ),
        ClerkEvent::WebhookReceived {
            svix_id,
            event_type,
        } => tracing::debug!(
            target: TRACING_TARGET,
            svix_id = svix_id.as_str(),
            event_type = event_type.as_str(),
            "clerk webhook received"
        ),
        ClerkEvent::WebhookRejected { reason } => tracing::warn!(
            target: TRACING_TARGET,
            reason = *reason,
            suppressed,
            "clerk webhook rejected"
        ),
        ClerkEvent::WebhookProcessed {
            svix_id,
            event_type,
            outcome,
            user_id,
        } => tracing::info!(
            target: TRACING_TARGET,
            svix_id = svix_id.as_str(),
            event_type = event_type.as_str(),
            outcome = outcome.as_str(),
            user_id = user_id.as_deref().unwrap_or(""),
            "clerk webhook processed"
        ),
        ClerkEvent::JwksRefreshed { cause, kids } => tracing::info!(
            target: TRACING_TARGET,
            cause = ?cause,
            kids = ?kids,
            "clerk JWKS refreshed"
        ),
        ClerkEvent::ChangeFeedConnected {
            caught_up,
            reconnected,
        } => tracing::info!(
            target: TRACING_TARGET,
            caught_up,
            reconnected,
            "clerk change feed connected"
        ),
        ClerkEvent::ChangeFeedDisconnected { error, retry_in } => tracing::warn!(
            target: TRACING_TARGET,
            error = error.as_str(),
            retry_in_ms = retry_in.as_millis() as u64,
            "clerk change feed disconnected; serving from caches"
        ),
        ClerkEvent::ChangeFeedPolling { every } => tracing::warn!(
            target: TRACING_TARGET,
            every_ms = every.as_millis() as u64,
            "clerk change feed hears no notifications (a transaction-mode pooler?); polling the \
             change log"
        ),
        ClerkEvent::ChangeFeedListening => tracing::info!(
            target: TRACING_TARGET,
            "clerk change feed hears notifications again"
        ),
        ClerkEvent::UserChangeReceived {
            user_id,
            kind,
            active,
        } => tracing::debug!(
            target: TRACING_TARGET,
            user_id = user_id.as_str(),
            kind = kind.as_str(),
            active,
            "clerk user change received"
        ),
        ClerkEvent::JwksRefreshFailed {
            cause,
            reason,
            consecutive_failures,
            retry_after,
        } => tracing::warn!(
            target: TRACING_TARGET,
            cause = ?cause,
            reason = reason.as_str(),
            consecutive_failures,
            retry_after_ms = retry_after.as_millis() as u64,
            "clerk JWKS refresh failed"
        ),
    }
}

/// A short, non-reversible fingerprint of a token for logs and events: the first 8 bytes of its
/// SHA-256, hex (16 characters).
///
/// ```
/// let h = clerk_actix::events::token_hash("a.b.c");
/// assert_eq!(h.len(), 16);
/// assert!(!h.contains('.'));
/// ```
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_budget_caps_lines_per_window_and_reports_the_rest() {
        let budget = LogBudget::default();
        let t0 = 1_000 * LOG_WINDOW_SECS;
        let admitted = (0..1_000).filter(|_| budget.admit(t0).is_some()).count();
        assert_eq!(admitted, LOG_LINES_PER_WINDOW as usize);
        // The next window opens with one line that reports what was dropped.
        assert_eq!(
            budget.admit(t0 + LOG_WINDOW_SECS),
            Some(1_000 - u64::from(LOG_LINES_PER_WINDOW))
        );
        assert_eq!(budget.admit(t0 + LOG_WINDOW_SECS), Some(0));
    }
}
