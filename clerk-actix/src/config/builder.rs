//! [`ClerkBuilder`]: setters that never fail, and `build()`, which checks the settings and
//! composes the handle's services (sessions, users, machine tokens, webhooks, change feeds).

use super::*;

/// What a registered user store needs to become a [`UserSync`].
struct SyncSetup {
    api: Option<BackendApi>,
    ttl: Duration,
    fallback_ttl: Duration,
    capacity: u64,
    events: Events,
    revoked: Arc<Revocations>,
}

/// A registered store made into its sync: the sync (by model type), its ping, its user cache
/// for the change feeds, and its store's change feed (if it has one).
struct Registered {
    type_id: TypeId,
    sync: Arc<dyn Any + Send + Sync>,
    ping: (&'static str, StorePing),
    cache: Arc<dyn CachedUsers>,
    feed: Option<Arc<dyn ChangeFeed>>,
}

type SyncFactory = Box<dyn FnOnce(&SyncSetup) -> Registered>;

/// Builder for [`Clerk`]. Setters never fail; [`build`](Self::build) reports the first mistake.
#[must_use]
pub struct ClerkBuilder {
    secret_key: Option<String>,
    machine_secret_key: Option<String>,
    jwt_key: Option<String>,
    api_url: String,
    verify: VerifyOptions,
    clock_skew: Duration,
    clock: crate::base::clock::Clock,
    jwks: JwksPolicy,
    token_cache_capacity: u64,
    token_cache_max_bytes: u64,
    listeners: Vec<Arc<dyn EventListener>>,
    pub(crate) error_hook: Option<AdapterHook>,
    expose_error_details: bool,
    accept_cookie: Option<bool>,
    treat_pending_as_signed_out: bool,
    user_cache_ttl: Duration,
    user_fallback_ttl: Duration,
    user_cache_capacity: u64,
    api_timeout: Duration,
    user_stores: Vec<SyncFactory>,
    webhook_secret: Option<String>,
    deleted_policy: DeletedUserPolicy,
    machine_policy: MachinePolicy,
    publishable_key: Option<String>,
    proxy_url: Option<String>,
    trust_forwarded_headers: bool,
    deferred: Option<ConfigError>,
}

impl Default for ClerkBuilder {
    fn default() -> Self {
        Self {
            secret_key: None,
            jwt_key: None,
            api_url: DEFAULT_API_URL.to_owned(),
            verify: VerifyOptions::default(),
            clock_skew: DEFAULT_CLOCK_SKEW,
            clock: crate::base::clock::Clock::default(),
            jwks: JwksPolicy::default(),
            token_cache_capacity: DEFAULT_TOKEN_CACHE_CAPACITY,
            token_cache_max_bytes: DEFAULT_TOKEN_CACHE_MAX_BYTES,
            listeners: Vec::new(),
            error_hook: None,
            expose_error_details: cfg!(debug_assertions),
            accept_cookie: None,
            treat_pending_as_signed_out: true,
            user_cache_ttl: DEFAULT_USER_CACHE_TTL,
            user_fallback_ttl: crate::mirror::sync::DEFAULT_FALLBACK_TTL,
            user_cache_capacity: DEFAULT_USER_CACHE_CAPACITY,
            api_timeout: Duration::from_secs(5),
            user_stores: Vec::new(),
            webhook_secret: None,
            deleted_policy: DeletedUserPolicy::default(),
            machine_policy: MachinePolicy::default(),
            machine_secret_key: None,
            publishable_key: None,
            proxy_url: None,
            trust_forwarded_headers: false,
            deferred: None,
        }
    }
}

impl fmt::Debug for ClerkBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClerkBuilder")
            .field(
                "secret_key",
                &self
                    .secret_key
                    .as_ref()
                    .map(|k| SecretKey::new(k.clone()).redacted()),
            )
            .field("jwt_key", &self.jwt_key.as_ref().map(|_| "[set]"))
            .field(
                "machine_secret_key",
                &self.machine_secret_key.as_ref().map(|_| "[set]"),
            )
            .field("api_url", &self.api_url)
            .finish_non_exhaustive()
    }
}

impl ClerkBuilder {
    pub(super) fn defer(&mut self, err: ConfigError) {
        self.deferred.get_or_insert(err);
    }

    /// The Backend API secret key (`sk_test_...` / `sk_live_...`): used to fetch the JWKS and,
    /// with user sync, users.
    pub fn secret_key(mut self, key: impl Into<String>) -> Self {
        self.secret_key = Some(key.into().trim().to_owned()).filter(|k| !k.is_empty());
        self
    }

    /// This service's machine secret key (Clerk's `machineSecretKey`, from the machine's page in
    /// the dashboard; `CLERK_MACHINE_SECRET_KEY`): opaque M2M tokens (`mt_…`) are then verified
    /// with it instead of the instance secret key, and Clerk accepts only tokens granted access
    /// to this machine, so a token minted for another machine of the instance is refused (401
    /// `token-invalid`). M2M tokens in JWT form are verified locally, with the instance's keys:
    /// check their scopes (the machine ids they may reach) with
    /// `#[clerk_protected(scope = "mch_…")]` or [`MachineAuth::has_scope`](crate::machine::MachineAuth::has_scope).
    pub fn machine_secret_key(mut self, key: impl Into<String>) -> Self {
        self.machine_secret_key = Some(key.into().trim().to_owned()).filter(|k| !k.is_empty());
        self
    }

    /// The instance's PEM public key ("JWKS Public Key" in the dashboard, `CLERK_JWT_KEY`):
    /// verification then needs no network. Wins over the JWKS when both are set.
    pub fn jwt_key(mut self, pem: impl Into<String>) -> Self {
        self.jwt_key = Some(pem.into()).filter(|k| !k.trim().is_empty());
        self
    }

    /// Backend API base URL, default `https://api.clerk.com/v1`.
    pub fn api_url(mut self, url: impl Into<String>) -> Self {
        self.api_url = url.into().trim().trim_end_matches('/').to_owned();
        self
    }

    /// Allowed `azp` origins (exact match); when set, tokens without `azp` are refused.
    pub fn authorized_parties<I, S>(mut self, parties: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.verify = self.verify.authorized_parties(parties);
        self
    }

    /// Accepted `aud` values (checked when the token has one), for session tokens and, as in
    /// Clerk's SDK, machine JWTs (an M2M JWT's `aud` lists the machines it may reach).
    pub fn audience<I, S>(mut self, audience: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.verify = self.verify.audience(audience);
        self
    }

    /// Require this exact `iss`.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.verify = self.verify.issuer(issuer);
        self
    }

    /// Tolerance for `exp`, `nbf`, `iat` (default 5 s; zero is honoured).
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// The clock tokens are verified against, instead of the system's (testing kit: a test
    /// crosses a token's expiry, or a cached machine-token answer's TTL, without sleeping; see
    /// [`TestClock`](crate::testing::TestClock)). The other caches keep their own monotonic
    /// timers.
    #[cfg(feature = "testing")]
    pub fn clock(mut self, now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = crate::base::clock::Clock::from_fn(now);
        self
    }

    /// Largest token accepted, in bytes (default 8 KiB, [`DEFAULT_MAX_TOKEN_LEN`]: twice what
    /// a browser cookie can hold, which is where Clerk keeps session tokens). Larger tokens are
    /// refused (`token-invalid`) before any decoding or cache lookup.
    ///
    /// [`DEFAULT_MAX_TOKEN_LEN`]: crate::verify::DEFAULT_MAX_TOKEN_LEN
    pub fn max_token_len(mut self, len: usize) -> Self {
        self.verify = self.verify.max_token_len(len);
        self
    }

    /// How many verified tokens to keep (default 10 000; 0 disables the cache).
    pub fn token_cache_capacity(mut self, capacity: u64) -> Self {
        self.token_cache_capacity = capacity;
        self
    }

    /// How many bytes the verified-token cache may hold (default 32 MiB; estimated per entry
    /// from the token's size). With [`token_cache_capacity`](Self::token_cache_capacity), the
    /// tighter bound wins.
    pub fn token_cache_max_bytes(mut self, bytes: u64) -> Self {
        self.token_cache_max_bytes = bytes;
        self
    }

    /// JWKS cache timings (TTL, unknown-kid refresh interval, back-off, timeout).
    pub fn jwks_policy(mut self, policy: JwksPolicy) -> Self {
        self.jwks = policy;
        self
    }

    /// How long a synced user stays cached (default 3600 s).
    pub fn user_cache_ttl(mut self, ttl: Duration) -> Self {
        self.user_cache_ttl = ttl;
        self
    }

    /// How long a stored row served while Clerk is down (source `database`) stays cached before
    /// Clerk is asked again (default 30 s; never longer than [`user_cache_ttl`](Self::user_cache_ttl)).
    pub fn user_fallback_ttl(mut self, ttl: Duration) -> Self {
        self.user_fallback_ttl = ttl;
        self
    }

    /// How many synced users to keep in the user cache (default 10 000).
    pub fn user_cache_capacity(mut self, capacity: u64) -> Self {
        self.user_cache_capacity = capacity;
        self
    }

    /// Timeout of one Backend API call for users (default 5 s; transient failures are retried
    /// twice with jittered back-off).
    pub fn api_timeout(mut self, timeout: Duration) -> Self {
        self.api_timeout = timeout;
        self
    }

    /// Keeps users of type `S::User` in sync through `store` (e.g.
    /// [`DieselUserStore`](crate::store::DieselUserStore)), for the
    /// [`ClerkUser<U>`](struct@crate::ClerkUser) extractor and [`Clerk::sync_user`]. One store per user
    /// type; a later registration for the same type replaces the earlier one.
    pub fn user_store<S: UserStore>(mut self, store: S) -> Self {
        let store: Arc<dyn UserStore<User = S::User>> = Arc::new(store);
        self.user_stores.push(Box::new(move |setup: &SyncSetup| {
            let pinged = store.clone();
            let ping: StorePing = Arc::new(move || {
                let store = pinged.clone();
                Box::pin(async move { store.ping().await })
            });
            let feed = store.change_feed();
            let sync = Arc::new(UserSync::new(
                store,
                setup.api.clone(),
                (setup.ttl, setup.fallback_ttl),
                setup.capacity,
                setup.events.clone(),
                setup.revoked.clone(),
            ));
            Registered {
                type_id: TypeId::of::<S::User>(),
                sync: sync.clone() as Arc<dyn Any + Send + Sync>,
                ping: (std::any::type_name::<S::User>(), ping),
                cache: sync as Arc<dyn CachedUsers>,
                feed,
            }
        }));
        self
    }

    /// The webhook endpoint's signing secret (`whsec_...`, `CLERK_WEBHOOK_SIGNING_SECRET`), for
    /// [`webhooks::resource`](crate::webhooks::resource).
    pub fn webhook_signing_secret(mut self, secret: impl Into<String>) -> Self {
        self.webhook_secret = Some(secret.into()).filter(|s| !s.trim().is_empty());
        self
    }

    /// What a `user.deleted` webhook does to the local row (default: deactivate).
    pub fn on_user_deleted(mut self, policy: DeletedUserPolicy) -> Self {
        self.deleted_policy = policy;
        self
    }

    /// Whether the `__session` cookie is read when there is no `Authorization` header.
    ///
    /// Default: read it when [authorized parties](Self::authorized_parties) are configured,
    /// ignore it (with one warning at [`build`](Self::build)) when not. Clerk requires an `azp`
    /// check for cookie authentication: the cookie can be set by any subdomain of the site.
    /// `true` without authorized parties is a [`ConfigError::CookieWithoutAuthorizedParties`].
    pub fn accept_session_cookie(mut self, accept: bool) -> Self {
        self.accept_cookie = Some(accept);
        self
    }

    /// Whether sessions with `sts: "pending"` count as signed out (default true, as in Clerk's
    /// SDKs). When false, pending sessions reach handlers; check
    /// [`ClerkClaims::is_pending`](crate::ClerkClaims::is_pending).
    pub fn treat_pending_as_signed_out(mut self, yes: bool) -> Self {
        self.treat_pending_as_signed_out = yes;
        self
    }

    /// Registers a closure called for every [`ClerkEvent`].
    pub fn on_event(self, listener: impl Fn(&ClerkEvent) + Send + Sync + 'static) -> Self {
        self.event_listener(listener)
    }

    /// Registers an [`EventListener`].
    pub fn event_listener(mut self, listener: impl EventListener) -> Self {
        self.listeners.push(Arc::new(listener));
        self
    }

    /// Whether 500 responses for a misconfigured server carry the `fix` (e.g. "set
    /// CLERK_WEBHOOK_SIGNING_SECRET") in their body. Default: in debug builds only; release
    /// builds answer with the reason code and log the fix.
    pub fn expose_error_details(mut self, expose: bool) -> Self {
        self.expose_error_details = expose;
        self
    }

    /// How machine tokens (API keys, M2M, OAuth) are verified and cached: cache times and the
    /// verify budget for unknown tokens ([`MachinePolicy`]). Which routes accept them is
    /// [`ClerkMiddleware::accepts_token`](crate::ClerkMiddleware::accepts_token).
    pub fn machine_tokens(mut self, policy: MachinePolicy) -> Self {
        self.machine_policy = policy;
        self
    }

    /// The instance's publishable key (`pk_test_…` / `pk_live_…`, as Clerk's dashboard shows
    /// it), which the handshake mode for server-rendered pages needs
    /// ([`ClerkMiddleware::handshake`](crate::ClerkMiddleware::handshake)): it names the Frontend
    /// API that handshakes go to, the instance type, and the suffix of multi-app cookies
    /// (`__session_<suffix>`). `CLERK_PUBLISHABLE_KEY` in [`from_env`](Self::from_env).
    pub fn publishable_key(mut self, key: impl Into<String>) -> Self {
        self.publishable_key = Some(key.into());
        self
    }

    /// Where browsers reach the Frontend API when the application proxies it (Clerk's
    /// `proxyUrl`): an absolute URL such as `https://app.example.com/__clerk`, used instead of
    /// the publishable key's host for handshakes. `CLERK_PROXY_URL` in
    /// [`from_env`](Self::from_env).
    pub fn proxy_url(mut self, url: impl Into<String>) -> Self {
        self.proxy_url = Some(url.into());
        self
    }

    /// Build the URL a handshake returns to (its `redirect_url`) from `X-Forwarded-Host` and
    /// `X-Forwarded-Proto`, as Clerk's SDKs do, for an application behind a reverse proxy that
    /// sets them. Off by default: the `Host` header and the listener's scheme are used, because
    /// a client could otherwise choose the host it is sent back to.
    pub fn trust_forwarded_headers(mut self, trust: bool) -> Self {
        self.trust_forwarded_headers = trust;
        self
    }

    /// Checks the configuration and builds the [`Clerk`] handle.
    pub fn build(self) -> Result<Clerk, ConfigError> {
        if let Some(err) = self.deferred {
            return Err(err);
        }
        if self
            .secret_key
            .as_deref()
            .is_some_and(|k| k.starts_with("pk_"))
        {
            return Err(ConfigError::PublishableKeyAsSecret);
        }
        check_api_url(&self.api_url)?;
        let handshake = match &self.publishable_key {
            None => None,
            Some(pk) if pk.starts_with("sk_") => return Err(ConfigError::SecretKeyAsPublishable),
            Some(pk) => {
                let key = PublishableKey::parse(pk.trim())
                    .map_err(|_| ConfigError::InvalidPublishableKey)?;
                if let Some(url) = &self.proxy_url {
                    if !(url.starts_with("https://") || url.starts_with("http://")) {
                        return Err(ConfigError::InvalidProxyUrl);
                    }
                }
                Some(handshake::Instance::new(key, self.proxy_url.clone()))
            }
        };
        let has_parties = !self.verify.get_authorized_parties().is_empty();
        let accept_cookie = match self.accept_cookie {
            Some(true) if !has_parties => return Err(ConfigError::CookieWithoutAuthorizedParties),
            Some(accept) => accept,
            None => {
                if !has_parties {
                    tracing::warn!(
                        target: crate::base::events::TRACING_TARGET,
                        "__session cookies are ignored: no authorized parties are configured \
                         (set CLERK_AUTHORIZED_PARTIES or ClerkBuilder::authorized_parties); \
                         only Authorization: Bearer tokens are read"
                    );
                }
                has_parties
            }
        };
        let webhooks = match &self.webhook_secret {
            Some(secret) => Some(Webhooks::new(
                WebhookVerifier::new(secret).map_err(|_| ConfigError::InvalidWebhookSecret)?,
                self.deleted_policy,
            )),
            None => None,
        };
        let static_keys = match &self.jwt_key {
            Some(pem) => Some(Arc::new(
                VerificationKeys::from_pem(pem).map_err(ConfigError::InvalidJwtKey)?,
            )),
            None => None,
        };
        let secret_key = self.secret_key.map(SecretKey::new);
        if static_keys.is_none() && secret_key.is_none() {
            return Err(ConfigError::NoKeySource);
        }
        let jwks = match (&static_keys, &secret_key) {
            (None, Some(sk)) => Some(Arc::new(RemoteJwks::new(
                &self.api_url,
                sk.clone(),
                self.jwks,
            ))),
            _ => None,
        };
        let verify = self.verify.clock_skew(self.clock_skew);
        let events = Events::new(self.listeners);
        let api = secret_key.as_ref().map(|sk| BackendApi {
            api_url: self.api_url.clone(),
            secret_key: sk.clone(),
            timeout: self.api_timeout,
            attempts: 3,
            status: Arc::default(),
        });
        // Opaque M2M tokens verified with this machine's key, when it has one.
        let machine_api = self.machine_secret_key.map(|key| BackendApi {
            api_url: self.api_url.clone(),
            secret_key: SecretKey::new(key),
            timeout: self.api_timeout,
            attempts: 3,
            status: api
                .as_ref()
                .map_or_else(Arc::default, |api| api.status.clone()),
        });
        let revoked = Arc::new(Revocations::default());
        let setup = SyncSetup {
            api: api.clone(),
            ttl: self.user_cache_ttl,
            fallback_ttl: self.user_fallback_ttl,
            capacity: self.user_cache_capacity,
            events: events.clone(),
            revoked: revoked.clone(),
        };
        let mut user_syncs = HashMap::new();
        let mut pings = Vec::new();
        let mut registered = HashMap::new();
        for factory in self.user_stores {
            let r = factory(&setup);
            // A later registration for the same type replaces the earlier one.
            if user_syncs.insert(r.type_id, r.sync).is_some() {
                pings.retain(|(name, _): &(&'static str, StorePing)| *name != r.ping.0);
            }
            pings.push(r.ping);
            registered.insert(r.type_id, (r.cache, r.feed));
        }
        let feeds = start_feeds(registered.into_values().collect(), &revoked, &events)?;
        Ok(Clerk {
            inner: Arc::new(ClerkInner {
                secret_key,
                api_url: self.api_url,
                machines: Machines::new(
                    api.clone(),
                    machine_api,
                    TokenVerifier::new(verify.clone()),
                    static_keys.clone(),
                    jwks.clone(),
                    events.clone(),
                    self.machine_policy,
                )
                .with_clock(self.clock.clone()),
                sessions: Sessions {
                    verifier: TokenVerifier::new(verify),
                    static_keys,
                    jwks,
                    cache: TokenCache::new(
                        self.token_cache_capacity,
                        self.token_cache_max_bytes,
                        self.clock_skew,
                    ),
                    events: events.clone(),
                    revoked: revoked.clone(),
                    clock: self.clock,
                },
                users: Users {
                    api,
                    syncs: user_syncs,
                    pings,
                    cache_ttl: self.user_cache_ttl,
                },
                revoked,
                events,
                webhooks,
                feeds,
                handshake,
                http: HttpSettings {
                    accept_cookie,
                    treat_pending_as_signed_out: self.treat_pending_as_signed_out,
                    error_hook: self.error_hook,
                    expose_error_details: self.expose_error_details,
                    trust_forwarded_headers: self.trust_forwarded_headers,
                },
            }),
        })
    }
}

/// A registered model's user cache, and its store's change feed.
type CacheAndFeed = (Arc<dyn CachedUsers>, Option<Arc<dyn ChangeFeed>>);

/// Starts listening to the change feed of every store that has one, applying changes to every
/// registered user cache; until each has loaded its start-up revocations, tokens wait.
fn start_feeds(
    registered: Vec<CacheAndFeed>,
    revoked: &Arc<Revocations>,
    events: &Events,
) -> Result<Vec<FeedHandle>, ConfigError> {
    let (caches, feeds): (Vec<_>, Vec<_>) = registered.into_iter().unzip();
    let feeds: Vec<_> = feeds.into_iter().flatten().collect();
    if feeds.is_empty() {
        return Ok(Vec::new());
    }
    revoked.start_loading();
    let targets = Arc::new(Targets {
        revoked: revoked.clone(),
        caches,
        events: events.clone(),
        starting: AtomicUsize::new(feeds.len()),
    });
    feeds
        .into_iter()
        .map(|feed| {
            replication::start(feed, targets.clone()).map_err(|e| ConfigError::Runtime {
                detail: e.to_string(),
            })
        })
        .collect()
}

/// The Backend API URL must be absolute http(s), and https unless the host is loopback.
fn check_api_url(url: &str) -> Result<(), ConfigError> {
    let uri = url
        .parse::<http::Uri>()
        .map_err(|_| ConfigError::InvalidApiUrl)?;
    let host = uri.host().ok_or(ConfigError::InvalidApiUrl)?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        Some("http") => Err(ConfigError::InsecureApiUrl),
        _ => Err(ConfigError::InvalidApiUrl),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_api_url_is_refused_unless_loopback() {
        let build = |url: &str| {
            Clerk::builder()
                .secret_key("sk_test_x")
                .api_url(url)
                .build()
        };
        for ok in [
            "https://api.clerk.com/v1",
            "http://127.0.0.1:8080/v1",
            "http://localhost/v1",
            "http://[::1]:9/v1",
            "http://127.8.9.10/v1",
        ] {
            assert!(build(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://api.clerk.com/v1",
            "http://10.0.0.1/v1",
            "http://localhost.evil.example/v1",
        ] {
            assert_eq!(
                build(bad).unwrap_err(),
                ConfigError::InsecureApiUrl,
                "{bad}"
            );
        }
    }

    #[test]
    fn cookies_need_authorized_parties() {
        let base = || Clerk::builder().secret_key("sk_test_x");
        // Default: read only with parties.
        assert!(!base().build().unwrap().inner.http.accept_cookie);
        assert!(
            base()
                .authorized_parties(["https://app.example.com"])
                .build()
                .unwrap()
                .inner
                .http
                .accept_cookie
        );
        // Explicitly on without parties: a configuration error.
        assert_eq!(
            base().accept_session_cookie(true).build().unwrap_err(),
            ConfigError::CookieWithoutAuthorizedParties
        );
        // Explicitly off stays off.
        assert!(
            !base()
                .authorized_parties(["https://app.example.com"])
                .accept_session_cookie(false)
                .build()
                .unwrap()
                .inner
                .http
                .accept_cookie
        );
    }

    #[test]
    fn no_key_source_is_a_config_error() {
        assert_eq!(
            Clerk::builder().build().unwrap_err(),
            ConfigError::NoKeySource
        );
        assert_eq!(
            Clerk::builder().secret_key("  ").build().unwrap_err(),
            ConfigError::NoKeySource
        );
    }

    #[test]
    fn deferred_errors_surface_at_build() {
        assert_eq!(
            Clerk::builder()
                .secret_key("pk_test_abc")
                .build()
                .unwrap_err(),
            ConfigError::PublishableKeyAsSecret
        );
        assert_eq!(
            Clerk::builder()
                .secret_key("sk_test_x")
                .api_url("not a url")
                .build()
                .unwrap_err(),
            ConfigError::InvalidApiUrl
        );
        assert!(matches!(
            Clerk::builder().jwt_key("garbage").build().unwrap_err(),
            ConfigError::InvalidJwtKey(_)
        ));
    }

    #[test]
    fn debug_never_prints_secrets() {
        let clerk = Clerk::builder()
            .secret_key("sk_live_TOPSECRETVALUE")
            .build()
            .unwrap();
        let shown = format!("{clerk:?}");
        assert!(!shown.contains("TOPSECRETVALUE"), "{shown}");
        assert!(shown.contains("sk_live_[redacted]"));
        let builder = format!("{:?}", Clerk::builder().secret_key("sk_test_HIDDEN"));
        assert!(!builder.contains("HIDDEN"), "{builder}");
    }

    #[test]
    fn explicit_zero_skew_stays_zero() {
        let clerk = Clerk::builder()
            .secret_key("sk_test_x")
            .clock_skew(Duration::ZERO)
            .build()
            .unwrap();
        assert_eq!(clerk.verify_options().get_clock_skew(), Duration::ZERO);
        let clerk = Clerk::builder().secret_key("sk_test_x").build().unwrap();
        assert_eq!(
            clerk.verify_options().get_clock_skew(),
            Duration::from_secs(5)
        );
    }
}
