//! User sync: the [`UserStore`] seam, and the user cache in front of it. A cached user costs no
//! Backend API call and no SQL; concurrent first requests for one user coalesce into one
//! Backend API call and one upsert.

use std::{
    any::Any,
    fmt,
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc,
    },
    time::Duration,
};

use futures_util::future::BoxFuture;
use moka::future::Cache;

use crate::{
    api::{ApiError, BackendApi},
    error::{AuthError, AuthErrorReason as R},
    events::{ClerkEvent, Events},
    user::ClerkUserData,
};

/// Default number of users kept in the user cache.
pub const DEFAULT_USER_CACHE_CAPACITY: u64 = 10_000;

/// A local user model kept in sync with Clerk.
pub trait SyncedUser: Clone + Send + Sync + 'static {
    /// The Clerk user id (`user_...`) this row mirrors.
    fn clerk_user_id(&self) -> &str;
    /// Whether the user may sign in (`!banned && !locked`, and not deactivated).
    fn is_active(&self) -> bool;
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

/// Where users are kept: `upsert`, `find`, `deactivate`, `delete`, all keyed by Clerk user id.
/// [`DieselUserStore`](crate::store::DieselUserStore) implements it for PostgreSQL and SQLite.
pub trait UserStore: Send + Sync + 'static {
    /// The local user type.
    type User: SyncedUser;

    /// Inserts or updates the row for `user.id` in one statement and returns the stored row. An
    /// update older than the stored one (by Clerk's `updated_at`) changes nothing and returns
    /// the stored row.
    fn upsert<'a>(
        &'a self,
        user: &'a ClerkUserData,
    ) -> BoxFuture<'a, Result<Self::User, StoreError>>;

    /// The stored row for a Clerk user id.
    fn find<'a>(
        &'a self,
        clerk_user_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Self::User>, StoreError>>;

    /// Marks the user inactive; `true` if a row changed.
    fn deactivate<'a>(&'a self, clerk_user_id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Deletes the user's row; `true` if a row was deleted.
    fn delete<'a>(&'a self, clerk_user_id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>>;
}

impl<S: UserStore> UserStore for Arc<S> {
    type User = S::User;
    fn upsert<'a>(&'a self, user: &'a ClerkUserData) -> BoxFuture<'a, Result<S::User, StoreError>> {
        (**self).upsert(user)
    }
    fn find<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<S::User>, StoreError>> {
        (**self).find(id)
    }
    fn deactivate<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        (**self).deactivate(id)
    }
    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, StoreError>> {
        (**self).delete(id)
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

/// A user, type-erased, as carried by
/// [`ClerkEvent::UserAuthenticated`](crate::ClerkEvent::UserAuthenticated); downcast with
/// [`get`](Self::get).
#[derive(Clone)]
pub struct AnyUser(Arc<dyn Any + Send + Sync>);

impl AnyUser {
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

/// Why a user could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// Clerk has no such user (deleted); without a secret key: no stored row.
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

/// The user cache and sync for one user type.
pub(crate) struct UserSync<U: SyncedUser> {
    store: Arc<dyn UserStore<User = U>>,
    cache: Cache<Arc<str>, Cached<U>, foldhash::fast::RandomState>,
    ttl: Duration,
    api: Option<BackendApi>,
    events: Events,
}

impl<U: SyncedUser> fmt::Debug for UserSync<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserSync")
            .field("cached_users", &self.cache.entry_count())
            .finish_non_exhaustive()
    }
}

/// How long a row served from the database during a Clerk outage stays cached.
const STALE_TTL: Duration = Duration::from_secs(30);

/// A cache entry and its own lifetime.
#[derive(Clone)]
struct Cached<U> {
    user: Arc<U>,
    ttl: Duration,
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

const FROM_API: u8 = 1;
const FROM_DB: u8 = 2;

impl<U: SyncedUser> UserSync<U> {
    pub(crate) fn new(
        store: Arc<dyn UserStore<User = U>>,
        api: Option<BackendApi>,
        ttl: Duration,
        capacity: u64,
        events: Events,
    ) -> Self {
        let cache = Cache::builder()
            .max_capacity(capacity)
            .expire_after(PerEntryTtl)
            // Keys are user ids from verified tokens: a fast hasher instead of SipHash.
            .build_with_hasher(foldhash::fast::RandomState::default());
        Self {
            store,
            cache,
            ttl,
            api,
            events,
        }
    }

    /// The local user for a Clerk user id: cache, else Backend API + upsert (coalesced per user),
    /// else — when Clerk is unreachable — the stored row.
    pub(crate) async fn user(&self, user_id: &str) -> Result<(Arc<U>, UserSource), SyncError> {
        if let Some(hit) = self.cache.get(user_id).await {
            return Ok((hit.user, UserSource::Cache));
        }
        self.events.emit(ClerkEvent::UserCacheMiss {
            user_id: user_id.to_owned(),
        });
        let origin = Arc::new(AtomicU8::new(0));
        let init = {
            let origin = origin.clone();
            async move {
                let (user, from) = self.load(user_id).await?;
                origin.store(from, Ordering::Relaxed);
                // A row served because Clerk was unreachable may be stale: keep it briefly, so
                // Clerk is asked again soon after it recovers.
                let ttl = if from == FROM_DB {
                    self.ttl.min(STALE_TTL)
                } else {
                    self.ttl
                };
                Ok::<Cached<U>, SyncError>(Cached {
                    user: Arc::new(user),
                    ttl,
                })
            }
        };
        let user = self
            .cache
            .try_get_with(Arc::from(user_id), init)
            .await
            .map_err(|e| (*e).clone())?
            .user;
        let source = match origin.load(Ordering::Relaxed) {
            FROM_API => UserSource::Api,
            FROM_DB => UserSource::Database,
            // Another request loaded it while this one waited: a cache hit for this one.
            _ => UserSource::Cache,
        };
        Ok((user, source))
    }

    async fn load(&self, user_id: &str) -> Result<(U, u8), SyncError> {
        let Some(api) = &self.api else {
            // No secret key: serve what webhooks or `sync_user` stored.
            return match self.store.find(user_id).await? {
                Some(u) => Ok((u, FROM_DB)),
                None => Err(SyncError::NotFound),
            };
        };
        match api.get_user(user_id).await {
            Ok(data) => {
                let user = self.store.upsert(&data).await?;
                self.events.emit(ClerkEvent::UserSynced {
                    user_id: user_id.to_owned(),
                });
                Ok((user, FROM_API))
            }
            Err(ApiError::NotFound) => Err(SyncError::NotFound),
            Err(e) if e.is_invalid_secret_key() => Err(SyncError::Api(e)),
            Err(e) => {
                // Clerk is down or rate limiting: a stored row is better than a 503.
                match self.store.find(user_id).await {
                    Ok(Some(user)) => Ok((user, FROM_DB)),
                    Ok(None) => Err(SyncError::Api(e)),
                    Err(store) => Err(SyncError::Store(store)),
                }
            }
        }
    }

    /// Upserts Clerk's data and refreshes the cache entry.
    pub(crate) async fn sync(&self, data: &ClerkUserData) -> Result<U, SyncError> {
        let user = self.store.upsert(data).await?;
        let cached = Cached {
            user: Arc::new(user.clone()),
            ttl: self.ttl,
        };
        self.cache.insert(Arc::from(data.id.as_str()), cached).await;
        self.events.emit(ClerkEvent::UserSynced {
            user_id: data.id.clone(),
        });
        Ok(user)
    }

    pub(crate) fn store_ref(&self) -> &Arc<dyn UserStore<User = U>> {
        &self.store
    }

    /// Cached users (after pending maintenance has run).
    pub(crate) async fn len(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.entry_count()
    }

    /// Forgets a cached user (after a webhook changed it).
    pub(crate) async fn invalidate(&self, user_id: &str) {
        self.cache.invalidate(user_id).await;
    }

    pub(crate) fn any_user(user: &Arc<U>) -> AnyUser {
        AnyUser(user.clone())
    }
}
