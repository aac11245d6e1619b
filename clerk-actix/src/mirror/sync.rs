//! User sync: the [`UserStore`] seam, and the user cache in front of it. A cached user costs no
//! Backend API call and no SQL; concurrent first requests for one user coalesce into one
//! Backend API call and one upsert.

use std::{
    any::{Any, TypeId},
    collections::HashMap,
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::{future::BoxFuture, FutureExt as _};
use moka::{
    future::Cache,
    notification::RemovalCause,
    ops::compute::{CompResult, Op},
};
use tracing::Instrument as _;

pub use crate::base::events::{AnyUser, UserChangeKind, UserSource};
use crate::{
    base::api::{ApiError, BackendApi},
    base::error::{AuthError, AuthErrorReason as R},
    base::events::{ClerkEvent, Events},
    base::slots::Slots,
    base::telemetry,
    base::user::ClerkUserData,
    tokens::revocation::Revocations,
};

/// Default number of users kept in the user cache.
pub const DEFAULT_USER_CACHE_CAPACITY: u64 = 10_000;

/// A local user model kept in sync with Clerk.
pub trait SyncedUser: Clone + Send + Sync + 'static {
    /// The Clerk user id (`user_...`) this row mirrors.
    fn clerk_user_id(&self) -> &str;
    /// Whether the user may sign in (`!banned && !locked`, and not deactivated).
    fn is_active(&self) -> bool;
    /// Clerk's `updated_at` (Unix ms) of the data this row holds, when the model keeps it.
    /// Orders writes into the user cache (an older version never replaces a newer one).
    fn updated_at(&self) -> Option<i64> {
        None
    }
    /// When the row was last written from Clerk's data (Unix ms), when the model keeps it
    /// (`#[clerk(synced_at)]`). A user-cache miss serves a row synced within the user-cache TTL
    /// without asking Clerk: replicas sharing one database share their Backend API calls.
    fn synced_at(&self) -> Option<i64> {
        None
    }
}

/// The result of a write made for a webhook delivery: applied, or already applied for that
/// delivery (`svix-id`), in which case nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered<T> {
    /// Written now.
    Applied(T),
    /// This delivery was applied before (by this process or another sharing the database).
    Duplicate,
}

/// A change to a user, as recorded in the change log every process sharing a store's database
/// reads (PostgreSQL's `clerk_user_changes`, written in the change's transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserChange {
    /// The change's position in the database's log.
    pub seq: i64,
    /// The Clerk user id.
    pub user_id: String,
    /// Updated (created, updated, synced) or deleted.
    pub kind: UserChangeKind,
    /// Whether the stored user may sign in after the change.
    pub active: bool,
    /// Clerk's `updated_at` (Unix ms) the stored row holds after the change.
    pub version: i64,
    /// When the change was recorded, by the database's clock (Unix ms).
    pub recorded_at: i64,
}

impl UserChange {
    /// The notification payload earlier versions applied: tab-separated fields, the user id
    /// last. Still sent (a rolling upgrade keeps older replicas informed); this version reads
    /// the change log instead and trusts no payload.
    pub fn to_payload(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            self.seq,
            self.kind.as_str(),
            u8::from(self.active),
            self.version,
            self.recorded_at,
            self.user_id
        )
    }

    /// Parses [`to_payload`](Self::to_payload)'s form; `None` for anything else. (Not used to
    /// apply anything: a payload is not evidence of a change.)
    pub fn from_payload(payload: &str) -> Option<Self> {
        let mut parts = payload.splitn(6, '\t');
        let seq = parts.next()?.parse().ok()?;
        let kind = UserChangeKind::parse(parts.next()?)?;
        let active = match parts.next()? {
            "1" => true,
            "0" => false,
            _ => return None,
        };
        let version = parts.next()?.parse().ok()?;
        let recorded_at = parts.next()?.parse().ok()?;
        let user_id = parts.next()?;
        if user_id.is_empty() {
            return None;
        }
        Some(Self {
            seq,
            kind,
            active,
            version,
            recorded_at,
            user_id: user_id.to_owned(),
        })
    }
}

/// What a [`ChangeSubscription`] yields while it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedItem {
    /// A notification on the change channel: a wake-up to read the log. Its payload is not
    /// trusted (any role that can connect may `NOTIFY`); it is only compared with the probe the
    /// subscription sent.
    Notified {
        /// The notification's payload.
        payload: String,
    },
    /// Nothing arrived within the wait.
    Idle,
}

/// Where a store announces its users' changes to the other processes sharing its database:
/// [`DieselUserStore`](crate::store::DieselUserStore) on PostgreSQL (`LISTEN`/`NOTIFY` as a
/// wake-up, the change log as the data).
pub trait ChangeFeed: Send + Sync + 'static {
    /// Opens one listening session (a connection of its own). Nothing committed after this
    /// returns is missed by the subscription.
    fn subscribe(&self) -> BoxFuture<'_, Result<Box<dyn ChangeSubscription>, StoreError>>;
}

/// One listening session of a [`ChangeFeed`]. Dropping it closes its connections.
pub trait ChangeSubscription: Send {
    /// The changes recorded after `after_seq` in the log, in order, and the last `seq` read
    /// (`after_seq` itself when there is none). With `None` (a process starting): the
    /// revocations that can still matter — deletions, and every change of users deactivated,
    /// within `window` — and the log's last `seq`. Changes commit in `seq` order, so reading
    /// "after n" misses nothing.
    fn catch_up(
        &mut self,
        after_seq: Option<i64>,
        window: Duration,
    ) -> BoxFuture<'_, Result<(Vec<UserChange>, i64), StoreError>>;

    /// Waits up to `wait` for a notification on the change channel; [`FeedItem::Idle`] when
    /// none came (with a zero `wait`: at once, unless one is already here). An error means
    /// the session is over.
    fn next(&mut self, wait: Duration) -> BoxFuture<'_, Result<FeedItem, StoreError>>;

    /// Sends `payload` on the change channel from a connection other than the listening one:
    /// whether it comes back through [`next`](Self::next) tells whether this subscription hears
    /// other processes (through a transaction-mode pooler, `LISTEN` hears nothing).
    fn probe<'a>(&'a mut self, payload: &'a str) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Deletes changes recorded before `changes_before_ms` and deliveries received before
    /// `deliveries_before_ms` (retention); rows deleted.
    fn sweep(
        &mut self,
        changes_before_ms: i64,
        deliveries_before_ms: i64,
    ) -> BoxFuture<'_, Result<u64, StoreError>>;
}

/// What a `user.deleted` webhook does to the local row. Either way the deletion is final: a
/// durable tombstone (the id and Clerk's deletion time) makes every later event or Backend API
/// answer for the id a no-op, since Clerk never reuses a deleted id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeletedUserPolicy {
    /// Keep the row, mark it inactive (default: your own rows that reference it stay valid).
    #[default]
    Deactivate,
    /// Delete the row: the personal data is gone, only the tombstone stays.
    Delete,
}

/// A storage failure (database unreachable, query error). Its text never contains a secret.
#[derive(Debug, Clone, thiserror::Error)]
#[error("user store error: {message}")]
pub struct StoreError {
    message: String,
}

impl StoreError {
    /// A store error with a message (keep secrets out of it).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// Where users are kept, keyed by Clerk user id: `upsert`, `find`, and deletion with a durable
/// tombstone. [`DieselUserStore`](crate::store::DieselUserStore) implements it for PostgreSQL
/// and SQLite.
///
/// The contract an implementation keeps: deletion is final. Once
/// [`mark_deleted`](Self::mark_deleted) has returned, `upsert` for that id writes nothing and
/// returns `None`, whatever the data says; the check and the write are atomic with respect to
/// `mark_deleted` (one transaction, serialized per id).
pub trait UserStore: Send + Sync + 'static {
    /// The local user type.
    type User: SyncedUser;

    /// Inserts or updates the row for `user.id` in one statement and returns the stored row. An
    /// update older than the stored one (by Clerk's `updated_at`) changes nothing and returns
    /// the stored row. `None` when the id was deleted (tombstoned): nothing is written.
    fn upsert<'a>(
        &'a self,
        user: &'a ClerkUserData,
    ) -> BoxFuture<'a, Result<Option<Self::User>, StoreError>>;

    /// The stored row for a Clerk user id.
    fn find<'a>(
        &'a self,
        clerk_user_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Self::User>, StoreError>>;

    /// Records the deletion of a user, in one transaction: a tombstone with Clerk's deletion
    /// time (Unix ms), and the row deactivated or deleted per `policy`. Idempotent; `true` when
    /// this call created the tombstone.
    fn mark_deleted<'a>(
        &'a self,
        clerk_user_id: &'a str,
        deleted_at: i64,
        policy: DeletedUserPolicy,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Clerk's deletion time (Unix ms) of a tombstoned id, `None` if the id was never deleted.
    fn deleted_at<'a>(
        &'a self,
        clerk_user_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<i64>, StoreError>>;

    /// Whether the store answers (for the health report): a trivial query. The default says
    /// yes without asking.
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }

    /// [`upsert`](Self::upsert) for a webhook delivery: the delivery's `svix-id` is recorded in
    /// the same transaction, and a delivery already recorded writes nothing
    /// ([`Delivered::Duplicate`]), whichever process applied it. The default records nothing
    /// (the process's own memory of `svix-id`s still catches its replays).
    fn upsert_delivered<'a>(
        &'a self,
        user: &'a ClerkUserData,
        svix_id: &'a str,
    ) -> BoxFuture<'a, Result<Delivered<Option<Self::User>>, StoreError>> {
        let _ = svix_id;
        Box::pin(async move { self.upsert(user).await.map(Delivered::Applied) })
    }

    /// [`mark_deleted`](Self::mark_deleted) for a webhook delivery, recorded as in
    /// [`upsert_delivered`](Self::upsert_delivered).
    fn mark_deleted_delivered<'a>(
        &'a self,
        clerk_user_id: &'a str,
        deleted_at: i64,
        policy: DeletedUserPolicy,
        svix_id: &'a str,
    ) -> BoxFuture<'a, Result<Delivered<bool>, StoreError>> {
        let _ = svix_id;
        Box::pin(async move {
            self.mark_deleted(clerk_user_id, deleted_at, policy)
                .await
                .map(Delivered::Applied)
        })
    }

    /// Where other processes sharing this store's database announce their changes, if they do
    /// (PostgreSQL). Each [`Clerk`](crate::Clerk) handle listens to it, so a change made by any
    /// replica reaches every replica's user cache and revocations.
    fn change_feed(&self) -> Option<Arc<dyn ChangeFeed>> {
        None
    }
}

impl<S: UserStore> UserStore for Arc<S> {
    type User = S::User;
    fn upsert<'a>(
        &'a self,
        user: &'a ClerkUserData,
    ) -> BoxFuture<'a, Result<Option<S::User>, StoreError>> {
        (**self).upsert(user)
    }
    fn find<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<S::User>, StoreError>> {
        (**self).find(id)
    }
    fn mark_deleted<'a>(
        &'a self,
        id: &'a str,
        deleted_at: i64,
        policy: DeletedUserPolicy,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        (**self).mark_deleted(id, deleted_at, policy)
    }
    fn deleted_at<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<i64>, StoreError>> {
        (**self).deleted_at(id)
    }
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        (**self).ping()
    }
    fn upsert_delivered<'a>(
        &'a self,
        user: &'a ClerkUserData,
        svix_id: &'a str,
    ) -> BoxFuture<'a, Result<Delivered<Option<S::User>>, StoreError>> {
        (**self).upsert_delivered(user, svix_id)
    }
    fn mark_deleted_delivered<'a>(
        &'a self,
        id: &'a str,
        deleted_at: i64,
        policy: DeletedUserPolicy,
        svix_id: &'a str,
    ) -> BoxFuture<'a, Result<Delivered<bool>, StoreError>> {
        (**self).mark_deleted_delivered(id, deleted_at, policy, svix_id)
    }
    fn change_feed(&self) -> Option<Arc<dyn ChangeFeed>> {
        (**self).change_feed()
    }
}

/// Why a user could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// Clerk has no such user, or it was deleted (a tombstoned id: deletion is final); without
    /// a secret key: no stored row.
    #[error("the user does not exist in Clerk")]
    NotFound,
    /// The Backend API failed and nothing is stored locally.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No [`UserStore`] for this user type was registered on the builder.
    #[error("no user store registered for this user type: use ClerkBuilder::user_store")]
    NoStore,
}

impl SyncError {
    /// The HTTP-facing error: 401 for a user that no longer exists, 503 for outages.
    pub fn to_auth_error(&self) -> AuthError {
        match self {
            Self::NotFound => AuthError::new(R::UserNotFound, "the user no longer exists in Clerk"),
            Self::Api(ApiError::RateLimited { retry_after }) => AuthError::unavailable(
                R::UserSyncFailed,
                "Clerk's Backend API is rate limiting user lookups",
                *retry_after,
            ),
            Self::Api(e) if e.is_invalid_secret_key() => AuthError::new(
                R::InvalidSecretKey,
                "Clerk refused the secret key: check CLERK_SECRET_KEY",
            ),
            Self::Api(_) => AuthError::unavailable(
                R::UserSyncFailed,
                "Clerk's Backend API is unavailable",
                Duration::from_secs(5),
            ),
            Self::NoStore => AuthError::new(
                R::UserStoreMissing,
                "register a user store with ClerkBuilder::user_store(DieselUserStore::connect(url))",
            ),
            Self::Store(_) => AuthError::unavailable(
                R::UserStoreUnavailable,
                "the user database is unavailable",
                Duration::from_secs(5),
            ),
        }
    }
}

/// The users side of a [`Clerk`](crate::Clerk) handle: the Backend API, and a [`UserSync`] per
/// registered model (keyed by its type).
pub(crate) struct Users {
    pub(crate) api: Option<BackendApi>,
    pub(crate) syncs: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    /// Each registered store's ping, by model type name (for the health report).
    pub(crate) pings: Vec<(&'static str, StorePing)>,
    pub(crate) cache_ttl: Duration,
}

/// Asks one registered store whether it answers.
pub(crate) type StorePing =
    Arc<dyn Fn() -> BoxFuture<'static, Result<(), StoreError>> + Send + Sync>;

impl Users {
    /// The sync service for user type `U`, if a store for it was registered.
    pub(crate) fn sync<U: SyncedUser>(&self) -> Option<&UserSync<U>> {
        self.syncs
            .get(&TypeId::of::<U>())
            .and_then(|s| s.downcast_ref::<UserSync<U>>())
    }

    /// `GET /users/{id}` with bounded retries; `NoSecretKey` without a secret key.
    pub(crate) async fn get_user_details(&self, user_id: &str) -> Result<ClerkUserData, ApiError> {
        match &self.api {
            Some(api) => api.get_user(user_id).await,
            None => Err(ApiError::NoSecretKey),
        }
    }
}

/// The user cache and sync for one user type.
pub(crate) struct UserSync<U: SyncedUser> {
    store: Arc<dyn UserStore<User = U>>,
    cache: Cache<Arc<str>, Cached<U>, foldhash::fast::RandomState>,
    /// Read slots in front of the cache (see `slots`): a cached user's request skips moka's
    /// read bookkeeping. Every write to `cache` is followed by `slots.forget`.
    slots: Arc<Slots<Cached<U>>>,
    /// Loads that failed, and when: requests that were queued behind a failed load get its
    /// error instead of asking Clerk again (an outage or a 429 must not turn into one call per
    /// waiter); a request that arrives afterwards tries again.
    failures: moka::sync::Cache<Arc<str>, (SyncError, Instant), foldhash::fast::RandomState>,
    ttl: Duration,
    /// How long a row served while Clerk is down stays cached (at most `ttl`).
    fallback_ttl: Duration,
    api: Option<BackendApi>,
    events: Events,
    revoked: Arc<Revocations>,
}

impl<U: SyncedUser> fmt::Debug for UserSync<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserSync")
            .field("cached_users", &self.cache.entry_count())
            .finish_non_exhaustive()
    }
}

/// How long a row served from the database during a Clerk outage stays cached, by default
/// ([`ClerkBuilder::user_fallback_ttl`](crate::ClerkBuilder::user_fallback_ttl)).
pub(crate) const DEFAULT_FALLBACK_TTL: Duration = Duration::from_secs(30);
/// How long a failed load is remembered for the requests that were queued behind it (a bound on
/// memory; a request is queued at most as long as one load takes).
const FAILURE_TTL: Duration = Duration::from_secs(60);

/// A cache entry, its own lifetime, and the Clerk `updated_at` it holds.
#[derive(Clone)]
struct Cached<U> {
    user: Arc<U>,
    ttl: Duration,
    version: i64,
    /// When the entry was made (a little before moka's own creation time): the slots serve it
    /// until `cached_at + ttl`, never past moka's expiry.
    cached_at: Instant,
}

/// The Clerk `updated_at` a stored row holds: the model's own when it keeps one (an upsert may
/// return a newer stored row than the data written), else the data's.
fn version_of<U: SyncedUser>(user: &U, data_updated_at: i64) -> i64 {
    user.updated_at().unwrap_or(data_updated_at)
}

struct PerEntryTtl;

impl<U> moka::Expiry<Arc<str>, Cached<U>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &Arc<str>,
        value: &Cached<U>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &Arc<str>,
        value: &Cached<U>,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

impl<U: SyncedUser> UserSync<U> {
    pub(crate) fn new(
        store: Arc<dyn UserStore<User = U>>,
        api: Option<BackendApi>,
        (ttl, fallback_ttl): (Duration, Duration),
        capacity: u64,
        events: Events,
        revoked: Arc<Revocations>,
    ) -> Self {
        let slots = Arc::new(Slots::for_capacity(capacity));
        let removed = slots.clone();
        let cache = Cache::builder()
            .max_capacity(capacity)
            .expire_after(PerEntryTtl)
            .eviction_listener(move |key: Arc<Arc<str>>, _: Cached<U>, _: RemovalCause| {
                removed.remove(&key);
            })
            // Keys are user ids from verified tokens: a fast hasher instead of SipHash.
            .build_with_hasher(foldhash::fast::RandomState::default());
        let failures = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .time_to_live(FAILURE_TTL)
            .build_with_hasher(foldhash::fast::RandomState::default());
        Self {
            store,
            cache,
            slots,
            failures,
            ttl,
            fallback_ttl,
            api,
            events,
            revoked,
        }
    }

    /// The warm path: the cached user, when the cache answers without waiting (reported as
    /// [`user`](Self::user) reports a hit); `None` otherwise, for `user` to decide.
    pub(crate) fn cached(&self, user_id: &str) -> Option<Arc<U>> {
        let now = Instant::now();
        if let Some((hit, read_through)) = self.slots.get(user_id, |c| now < c.cached_at + c.ttl) {
            if read_through {
                let _ = self.cache.get(user_id).now_or_never();
            }
            telemetry::user_synced(UserSource::Cache, 0);
            return Some(hit.user);
        }
        let generation = self.slots.generation();
        let hit = self.cache.get(user_id).now_or_never()??;
        self.slots
            .put(user_id, || (Arc::from(user_id), hit.clone()), generation);
        telemetry::user_synced(UserSource::Cache, 0);
        Some(hit.user)
    }

    /// The local user for a Clerk user id: cache, else Backend API + upsert (coalesced per user),
    /// else — when Clerk is unreachable — the stored row.
    ///
    /// Every cache write goes through moka's per-key compute, which runs one at a time per key:
    /// concurrent misses wait for the first load and reuse it, and a webhook's write (or a
    /// deletion) made while a load was in flight is ordered after it, so a load that fetched
    /// an older version can never overwrite a newer one.
    ///
    /// A miss runs in a `clerk.user` span (debug level) with `source` or `error`.
    pub(crate) async fn user(&self, user_id: &str) -> Result<(Arc<U>, UserSource), SyncError> {
        if let Some(hit) = self.cache.get(user_id).await {
            telemetry::user_synced(UserSource::Cache, 0);
            return Ok((hit.user, UserSource::Cache));
        }
        let span = tracing::debug_span!(
            target: crate::base::events::TRACING_TARGET,
            "clerk.user",
            source = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        let result = self.load_cached(user_id).instrument(span.clone()).await;
        if !span.is_disabled() {
            match &result {
                Ok((_, source)) => span.record("source", source.as_str()),
                Err(err) => span.record("error", err.to_auth_error().reason().as_str()),
            };
        }
        result
    }

    /// A user-cache miss: load (coalesced, ordered) and cache.
    async fn load_cached(&self, user_id: &str) -> Result<(Arc<U>, UserSource), SyncError> {
        self.events.emit(ClerkEvent::UserCacheMiss {
            user_id: user_id.to_owned(),
        });
        let mut origin = UserSource::Cache;
        let origin_out = &mut origin;
        let queued_at = Instant::now();
        let computed = self
            .cache
            .entry(Arc::from(user_id))
            .and_try_compute_with(|existing| {
                // Another request loaded it while this one waited: a cache hit for this one.
                let loaded_meanwhile = existing.is_some();
                async move {
                    if loaded_meanwhile {
                        return Ok(Op::Nop);
                    }
                    match self.failures.get(user_id) {
                        // The load this request queued behind failed: share its answer.
                        Some((err, failed_at)) if failed_at >= queued_at => return Err(err),
                        _ => {}
                    }
                    let (user, from, version, ttl) =
                        self.load(user_id).await.inspect_err(|err| {
                            self.failures
                                .insert(Arc::from(user_id), (err.clone(), Instant::now()));
                        })?;
                    *origin_out = from;
                    Ok::<_, SyncError>(Op::Put(Cached {
                        user: Arc::new(user),
                        ttl,
                        version,
                        cached_at: Instant::now(),
                    }))
                }
            })
            .await;
        self.slots.forget(user_id);
        let computed = computed?;
        match computed {
            CompResult::Inserted(e) | CompResult::ReplacedWith(e) | CompResult::Unchanged(e) => {
                telemetry::user_synced(origin, self.cache.entry_count());
                Ok((e.into_value().user, origin))
            }
            // Not produced by the closure above (it puts or fails); treated as gone.
            CompResult::StillNone(_) | CompResult::Removed(_) => Err(SyncError::NotFound),
        }
    }

    /// Loads a user: a row synced within the cache TTL (by this process or another sharing the
    /// database), else Backend API + upsert, else the stored row when Clerk is unreachable.
    /// Returns the user, where it came from, the Clerk `updated_at` it holds and how long to
    /// cache it.
    async fn load(&self, user_id: &str) -> Result<(U, UserSource, i64, Duration), SyncError> {
        let Some(api) = &self.api else {
            // No secret key: serve what webhooks or `sync_user` stored.
            return match self.store.find(user_id).await? {
                Some(u) => {
                    let version = version_of(&u, i64::MIN);
                    Ok((
                        u,
                        UserSource::Database,
                        version,
                        self.ttl.min(self.fallback_ttl),
                    ))
                }
                None => Err(SyncError::NotFound),
            };
        };
        // The database as the shared cache: a row written from Clerk's data within the TTL is
        // as good as a Backend API answer (webhooks and the change feed keep it current), and
        // is cached only for what is left of its freshness.
        // A database that cannot be read cannot store Clerk's answer either: 503 now, without
        // spending the instance's Backend API rate limit on answers that would be thrown away.
        if let Some(fresh) = self.fresh_row(user_id).await? {
            return Ok(fresh);
        }
        match api.get_user(user_id).await {
            Ok(data) => {
                // A tombstoned id (deleted in Clerk; the answer raced the deletion): not stored.
                let Some(user) = self.store_upsert(&data).await? else {
                    return Err(self.deleted(user_id));
                };
                self.events.emit(ClerkEvent::UserSynced {
                    user_id: user_id.to_owned(),
                });
                let version = version_of(&user, data.updated_at);
                Ok((user, UserSource::Api, version, self.ttl))
            }
            Err(ApiError::NotFound) => Err(SyncError::NotFound),
            Err(e) if e.is_invalid_secret_key() => Err(SyncError::Api(e)),
            Err(e) => {
                // Clerk is down or rate limiting: a stored row is better than a 503, and a
                // tombstone is an answer too.
                match self.store.find(user_id).await {
                    Ok(Some(user)) => {
                        let version = version_of(&user, i64::MIN);
                        // It may be stale: kept briefly, so Clerk is asked again soon after
                        // it recovers.
                        Ok((
                            user,
                            UserSource::Database,
                            version,
                            self.ttl.min(self.fallback_ttl),
                        ))
                    }
                    Ok(None) => match self.store.deleted_at(user_id).await {
                        Ok(Some(_)) => Err(self.deleted(user_id)),
                        Ok(None) => Err(SyncError::Api(e)),
                        Err(store) => Err(SyncError::Store(store)),
                    },
                    Err(store) => Err(SyncError::Store(store)),
                }
            }
        }
    }

    /// The stored row, if the model records when it was synced and that was within the TTL.
    async fn fresh_row(
        &self,
        user_id: &str,
    ) -> Result<Option<(U, UserSource, i64, Duration)>, SyncError> {
        let Some(user) = self.store.find(user_id).await? else {
            return Ok(None);
        };
        let fresh = || {
            let age_ms = crate::base::clock::unix_ms().checked_sub(user.synced_at()?)?;
            let left = self
                .ttl
                .checked_sub(Duration::from_millis(u64::try_from(age_ms).ok()?))?;
            (!left.is_zero()).then_some(left)
        };
        Ok(fresh().map(|left| {
            let version = version_of(&user, i64::MIN);
            (user, UserSource::Database, version, left)
        }))
    }

    /// Upserts Clerk's data and refreshes the cache entry, unless the cache holds a newer
    /// version. `NotFound` when the id is tombstoned (nothing written).
    ///
    /// The upsert runs inside the entry's compute, so it is ordered with a load in flight for
    /// the user and with a deletion's cache removal: a deletion that lands meanwhile either
    /// refuses the upsert (tombstone) or removes the entry after it.
    pub(crate) async fn sync(&self, data: &ClerkUserData) -> Result<U, SyncError> {
        match self.sync_delivered(data, None).await? {
            Delivered::Applied(user) => Ok(user),
            Delivered::Duplicate => Err(SyncError::NotFound),
        }
    }

    /// [`sync`](Self::sync) for a webhook delivery (`svix_id`), recorded with the write: a
    /// delivery applied before (by any process sharing the store) writes nothing.
    pub(crate) async fn sync_delivered(
        &self,
        data: &ClerkUserData,
        svix_id: Option<&str>,
    ) -> Result<Delivered<U>, SyncError> {
        let mut stored = None;
        let stored_out = &mut stored;
        let written = self
            .cache
            .entry(Arc::from(data.id.as_str()))
            .and_try_compute_with(|existing| {
                let cached_version = existing.map(|e| e.value().version);
                async move {
                    let written = match svix_id {
                        Some(svix_id) => self.store_upsert_delivered(data, svix_id).await?,
                        None => Delivered::Applied(self.store_upsert(data).await?),
                    };
                    let user = match written {
                        Delivered::Applied(Some(user)) => user,
                        Delivered::Applied(None) => return Err(self.deleted(&data.id)),
                        Delivered::Duplicate => {
                            *stored_out = Some(Delivered::Duplicate);
                            return Ok(Op::Nop);
                        }
                    };
                    let version = version_of(&user, data.updated_at);
                    let user = Arc::new(user);
                    *stored_out = Some(Delivered::Applied(user.clone()));
                    Ok::<_, SyncError>(if cached_version.is_some_and(|v| v > version) {
                        Op::Nop
                    } else {
                        Op::Put(Cached {
                            user,
                            ttl: self.ttl,
                            version,
                            cached_at: Instant::now(),
                        })
                    })
                }
            })
            .await;
        self.slots.forget(&data.id);
        written?;
        match stored.ok_or(SyncError::NotFound)? {
            Delivered::Duplicate => Ok(Delivered::Duplicate),
            Delivered::Applied(user) => {
                self.failures.invalidate(data.id.as_str());
                self.events.emit(ClerkEvent::UserSynced {
                    user_id: data.id.clone(),
                });
                Ok(Delivered::Applied(Arc::unwrap_or_clone(user)))
            }
        }
    }

    async fn store_upsert_delivered(
        &self,
        data: &ClerkUserData,
        svix_id: &str,
    ) -> Result<Delivered<Option<U>>, SyncError> {
        self.store
            .upsert_delivered(data, svix_id)
            .await
            .map_err(|err| self.store_failed(err))
    }

    fn store_failed(&self, err: StoreError) -> SyncError {
        self.events
            .log_server_error("user-store-unavailable", &err.to_string());
        SyncError::Store(err)
    }

    /// The store's upsert, with a failure's detail logged (the HTTP answer only says 503).
    async fn store_upsert(&self, data: &ClerkUserData) -> Result<Option<U>, SyncError> {
        self.store
            .upsert(data)
            .await
            .map_err(|err| self.store_failed(err))
    }

    /// A tombstoned id seen again (a late event, a stale Backend API answer, a restarted
    /// process): its tokens are refused here too, and the answer is `NotFound`.
    fn deleted(&self, user_id: &str) -> SyncError {
        self.revoked.revoke_deleted(user_id);
        SyncError::NotFound
    }

    /// Records a deletion in the store (tombstone + policy) and drops the cached user, after any
    /// load in flight for it (so that load cannot put the user back). With `svix_id`, the
    /// delivery is recorded with the write (a duplicate writes nothing).
    pub(crate) async fn mark_deleted(
        &self,
        user_id: &str,
        deleted_at: i64,
        policy: DeletedUserPolicy,
        svix_id: Option<&str>,
    ) -> Result<Delivered<bool>, SyncError> {
        // Refused first: if the store is down (a 503, so Svix retries), the user's tokens are
        // refused meanwhile (fail closed).
        self.revoked.revoke_deleted(user_id);
        let written = match svix_id {
            Some(svix_id) => {
                self.store
                    .mark_deleted_delivered(user_id, deleted_at, policy, svix_id)
                    .await
            }
            None => self
                .store
                .mark_deleted(user_id, deleted_at, policy)
                .await
                .map(Delivered::Applied),
        }
        .map_err(|err| self.store_failed(err))?;
        self.failures.invalidate(user_id);
        self.invalidate(user_id).await;
        Ok(written)
    }

    /// Cached users (after pending maintenance has run).
    pub(crate) async fn len(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.entry_count()
    }

    /// Forgets a cached user, after any load in flight for it (which would otherwise put it
    /// back).
    pub(crate) async fn invalidate(&self, user_id: &str) {
        self.cache
            .entry(Arc::from(user_id))
            .and_compute_with(|_| std::future::ready(Op::Remove))
            .await;
        self.slots.forget(user_id);
    }

    pub(crate) fn any_user(user: &Arc<U>) -> AnyUser {
        AnyUser::new(user.clone())
    }
}

/// The user cache of one model, type-erased, for changes announced by other processes.
pub(crate) trait CachedUsers: Send + Sync {
    /// Drops the cached user unless it already holds Clerk version `version` (ms) or newer,
    /// after any load in flight for it.
    fn forget_older<'a>(&'a self, user_id: &'a str, version: i64) -> BoxFuture<'a, ()>;
}

impl<U: SyncedUser> CachedUsers for UserSync<U> {
    fn forget_older<'a>(&'a self, user_id: &'a str, version: i64) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.failures.invalidate(user_id);
            self.cache
                .entry(Arc::from(user_id))
                .and_compute_with(|existing| {
                    std::future::ready(match existing {
                        Some(e) if e.value().version >= version => Op::Nop,
                        Some(_) => Op::Remove,
                        None => Op::Nop,
                    })
                })
                .await;
            self.slots.forget(user_id);
        })
    }
}
