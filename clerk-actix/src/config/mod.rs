//! Configuration: [`Clerk::builder`] (setters never fail; `build()` returns the first error)
//! and [`Clerk::from_env`].

use std::{
    any::{Any, TypeId},
    collections::HashMap,
    fmt,
    sync::{atomic::AtomicUsize, Arc},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::{
    base::api::{ApiError, BackendApi, SecretKey},
    base::events::{ClerkEvent, EventListener, Events},
    base::user::ClerkUserData,
    handshake::{self, PublishableKey},
    machine::{MachinePolicy, Machines},
    mirror::replication::{self, FeedHandle, Targets},
    mirror::sync::{
        CachedUsers, ChangeFeed, DeletedUserPolicy, StorePing, SyncError, SyncedUser, UserStore,
        UserSync, Users, DEFAULT_USER_CACHE_CAPACITY,
    },
    mirror::webhooks::{WebhookVerifier, Webhooks},
    tokens::cache::{TokenCache, DEFAULT_TOKEN_CACHE_CAPACITY, DEFAULT_TOKEN_CACHE_MAX_BYTES},
    tokens::jwks::{JwksPolicy, RemoteJwks},
    tokens::keys::{KeyError, VerificationKeys},
    tokens::revocation::Revocations,
    tokens::session::Sessions,
    tokens::verify::{TokenVerifier, VerifyOptions, DEFAULT_CLOCK_SKEW},
};

mod builder;
mod from_env;
pub(crate) mod health;

pub use builder::ClerkBuilder;

/// Clerk's Backend API.
pub const DEFAULT_API_URL: &str = "https://api.clerk.com/v1";
/// Default lifetime of a synced user in the user cache (the Django SDK's `REDIS_CACHE_TIMEOUT`).
pub const DEFAULT_USER_CACHE_TTL: Duration = Duration::from_secs(3600);

/// A configuration mistake, reported by [`ClerkBuilder::build`] / [`Clerk::from_env`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Neither a secret key nor a JWT key was given.
    #[error("no key source: set CLERK_SECRET_KEY (Backend API, JWKS) or CLERK_JWT_KEY (PEM public key, networkless verification)")]
    NoKeySource,
    /// The JWT key is not an RSA public key.
    #[error("CLERK_JWT_KEY is not an RSA public key in PEM form: {0}")]
    InvalidJwtKey(KeyError),
    /// A publishable key (`pk_...`) was given where the secret key (`sk_...`) belongs.
    #[error("the secret key looks like a publishable key (pk_...): use the secret key (sk_...) from Clerk's dashboard")]
    PublishableKeyAsSecret,
    /// The API URL is not an absolute http(s) URL.
    #[error("the Clerk API URL must be an absolute http:// or https:// URL")]
    InvalidApiUrl,
    /// The webhook signing secret is not a `whsec_` base64 secret.
    #[error("CLERK_WEBHOOK_SIGNING_SECRET is not a valid whsec_... secret")]
    InvalidWebhookSecret,
    /// `.accept_session_cookie(true)` without authorized parties: a `__session` cookie set by
    /// any subdomain (or a sibling app on the same site) would be accepted.
    #[error("reading the __session cookie needs authorized parties (CLERK_AUTHORIZED_PARTIES / .authorized_parties([...])): without an azp check a cookie from another subdomain would be accepted")]
    CookieWithoutAuthorizedParties,
    /// The API URL is `http://` to a host that is not loopback: the secret key would travel in
    /// clear.
    #[error("the Clerk API URL must use https:// (http:// only to a loopback host such as 127.0.0.1 or localhost): the secret key would travel in clear")]
    InsecureApiUrl,
    /// A thread the handle needs (the change feed's) could not be started.
    #[error("could not start the change feed's thread: {detail}")]
    Runtime {
        /// The operating system's error.
        detail: String,
    },
    /// The publishable key is not `pk_test_…` / `pk_live_…` as Clerk's dashboard shows it.
    #[error("CLERK_PUBLISHABLE_KEY is not a Clerk publishable key: expected pk_test_… or pk_live_… as Clerk's dashboard shows it")]
    InvalidPublishableKey,
    /// A secret key (`sk_...`) was given where the publishable key (`pk_...`) belongs.
    #[error("the publishable key looks like a secret key (sk_...): use the publishable key (pk_...), and keep the secret key out of anything sent to browsers")]
    SecretKeyAsPublishable,
    /// The proxy URL is not an absolute http(s) URL.
    #[error("CLERK_PROXY_URL must be an absolute http:// or https:// URL, e.g. https://app.example.com/__clerk")]
    InvalidProxyUrl,
    /// An environment variable could not be parsed.
    #[error("environment variable {var} is invalid: {expected}")]
    InvalidEnv {
        /// The variable.
        var: &'static str,
        /// What was expected.
        expected: &'static str,
    },
}

/// The actix adapters' error hook (`actix::response::ErrorHook`), held opaque so this layer names
/// no actix type: set by `ClerkBuilder::error_response` and read back by `Clerk::error_response`,
/// both in `actix::response`.
pub(crate) type AdapterHook = Arc<dyn Any + Send + Sync>;

/// The configured Clerk integration. Build it once, outside `HttpServer::new`, and clone it into
/// each worker (an `Arc` inside; `Send + Sync`).
///
/// ```
/// use clerk_actix::Clerk;
/// let clerk = Clerk::builder()
///     .secret_key("sk_test_...")
///     .authorized_parties(["http://localhost:3000"])
///     .build()
///     .unwrap();
/// assert!(!format!("{clerk:?}").contains("sk_test_..."));
/// ```
#[derive(Clone)]
pub struct Clerk {
    pub(crate) inner: Arc<ClerkInner>,
}

/// What a [`Clerk`] handle is made of: services, each in its own module, and the settings of the
/// actix adapters.
pub(crate) struct ClerkInner {
    pub(crate) secret_key: Option<SecretKey>,
    pub(crate) api_url: String,
    /// Session tokens: keys, verification, the verified-token cache (`session`).
    pub(crate) sessions: Sessions,
    /// Machine tokens: API keys, M2M and OAuth tokens (`machine`).
    pub(crate) machines: Machines,
    /// Users: the Backend API and a user sync per registered model (`sync`).
    pub(crate) users: Users,
    /// Users whose tokens are refused (banned, deleted); shared with the services.
    pub(crate) revoked: Arc<Revocations>,
    pub(crate) events: Events,
    pub(crate) webhooks: Option<Webhooks>,
    /// The change feeds this handle listens to (replicas sharing a PostgreSQL database); their
    /// threads stop with the handle.
    pub(crate) feeds: Vec<FeedHandle>,
    /// The instance of the handshake mode for server-rendered pages, when a publishable key
    /// is configured (`handshake`).
    pub(crate) handshake: Option<handshake::Instance>,
    /// How the actix adapters read requests and answer errors.
    pub(crate) http: HttpSettings,
}

/// Settings of the actix adapters (middleware, extractors, error responses).
pub(crate) struct HttpSettings {
    pub(crate) accept_cookie: bool,
    pub(crate) treat_pending_as_signed_out: bool,
    pub(crate) error_hook: Option<AdapterHook>,
    pub(crate) expose_error_details: bool,
    /// Build a handshake's `redirect_url` from `X-Forwarded-Host` / `X-Forwarded-Proto`.
    pub(crate) trust_forwarded_headers: bool,
}

impl fmt::Debug for Clerk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Clerk")
            .field("secret_key", &i.secret_key)
            .field("jwt_key", &i.sessions.static_keys.as_ref().map(|_| "[set]"))
            .field("api_url", &i.api_url)
            .field("verify", i.sessions.verifier.options())
            .field("token_cache", &i.sessions.cache)
            .field("events", &i.events)
            .field("accept_cookie", &i.http.accept_cookie)
            .field(
                "treat_pending_as_signed_out",
                &i.http.treat_pending_as_signed_out,
            )
            .field("user_cache_ttl", &i.users.cache_ttl)
            .finish_non_exhaustive()
    }
}

impl Clerk {
    /// A builder with Clerk's defaults.
    pub fn builder() -> ClerkBuilder {
        ClerkBuilder::default()
    }

    /// Builds from the environment; see [`ClerkBuilder::from_env`] for the variables.
    pub fn from_env() -> Result<Self, ConfigError> {
        ClerkBuilder::from_env().build()
    }

    /// The verification options in force.
    pub fn verify_options(&self) -> &VerifyOptions {
        self.inner.sessions.verifier.options()
    }

    /// The Backend API base URL.
    pub fn api_url(&self) -> &str {
        &self.inner.api_url
    }

    /// How long a synced user stays cached.
    pub fn user_cache_ttl(&self) -> Duration {
        self.inner.users.cache_ttl
    }

    /// Number of tokens in the verified-token cache.
    pub fn cached_tokens(&self) -> u64 {
        self.inner.sessions.cache.len()
    }

    /// Estimated bytes held by the verified-token cache (bounded by
    /// [`ClerkBuilder::token_cache_max_bytes`]).
    pub fn cached_token_bytes(&self) -> u64 {
        self.inner.sessions.cache.weighted_bytes()
    }

    /// Whether response bodies may describe the server's configuration.
    pub(crate) fn exposes_error_details(&self) -> bool {
        self.inner.http.expose_error_details
    }

    pub(crate) fn emit(&self, event: ClerkEvent) {
        self.inner.events.emit(event);
    }

    pub(crate) fn events(&self) -> &Events {
        &self.inner.events
    }

    /// The sync service for user type `U`, if a store for it was registered.
    pub(crate) fn user_sync<U: SyncedUser>(&self) -> Option<&UserSync<U>> {
        self.inner.users.sync::<U>()
    }

    /// Fetches a user from the Backend API (`GET /users/{id}`), with bounded retries of
    /// transient failures. `ApiError::NotFound` when Clerk has no such user.
    pub async fn get_user_details(&self, user_id: &str) -> Result<ClerkUserData, ApiError> {
        self.inner.users.get_user_details(user_id).await
    }

    /// Upserts Clerk's user data through the store registered for `U` and refreshes the user
    /// cache (the Django SDK's `sync_django_user`).
    pub async fn sync_user<U: SyncedUser>(&self, data: &ClerkUserData) -> Result<U, SyncError> {
        self.user_sync::<U>()
            .ok_or(SyncError::NoStore)?
            .sync(data)
            .await
    }

    /// Refuses every token of this user issued up to now (for 10 minutes, longer than a Clerk
    /// session token lives), as a ban reported by a webhook does. A deleted user's tokens are
    /// refused for good; see [`apply_webhook`](Self::apply_webhook).
    pub fn revoke_user(&self, user_id: &str) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        // By hand: stands until lifted by hand (no webhook's version is newer).
        self.inner.revoked.revoke(user_id, now, i64::MAX);
    }

    /// Lifts [`revoke_user`](Self::revoke_user) or a webhook's ban (the user was unbanned). A
    /// deleted user's revocation is never lifted.
    pub fn unrevoke_user(&self, user_id: &str) {
        self.inner.revoked.lift(user_id, i64::MAX);
    }

    /// Number of users of type `U` in the user cache.
    pub async fn cached_users<U: SyncedUser>(&self) -> u64 {
        match self.user_sync::<U>() {
            Some(sync) => sync.len().await,
            None => 0,
        }
    }

    /// Drops a user from the user cache, so the next request loads it again (e.g. after you
    /// changed the user through the Backend API).
    pub async fn invalidate_user<U: SyncedUser>(&self, user_id: &str) {
        if let Some(sync) = self.user_sync::<U>() {
            sync.invalidate(user_id).await;
        }
    }

    /// The local user for a Clerk user id: user cache, else Backend API + upsert (coalesced),
    /// else the stored row when Clerk is unreachable.
    pub async fn user<U: SyncedUser>(&self, user_id: &str) -> Result<U, SyncError> {
        let sync = self.user_sync::<U>().ok_or(SyncError::NoStore)?;
        sync.user(user_id)
            .await
            .map(|(u, _)| Arc::unwrap_or_clone(u))
    }
}
