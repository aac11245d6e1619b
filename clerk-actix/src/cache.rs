//! The verified-token cache: a bounded moka cache from token to claims whose entries never
//! outlive the token's `exp` + clock skew, so a repeated token costs a hash lookup, not RSA.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use moka::{sync::Cache, Expiry};

use crate::claims::ClerkClaims;

/// Default number of verified tokens kept.
pub const DEFAULT_TOKEN_CACHE_CAPACITY: u64 = 10_000;

#[derive(Clone)]
struct Entry {
    claims: Arc<ClerkClaims>,
    /// Unix seconds after which the token is no longer accepted (`exp` + skew).
    valid_until: f64,
}

struct UntilExpiry;

impl Expiry<Arc<str>, Entry> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &Arc<str>,
        value: &Entry,
        _created_at: Instant,
    ) -> Option<Duration> {
        let now = unix_now(SystemTime::now());
        Some(Duration::from_secs_f64(
            (value.valid_until - now).clamp(0.0, 86_400.0),
        ))
    }
}

fn unix_now(now: SystemTime) -> f64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Verified tokens.
#[derive(Clone)]
pub(crate) struct TokenCache {
    cache: Option<Cache<Arc<str>, Entry, foldhash::fast::RandomState>>,
    skew: Duration,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.cache.as_ref().map(Cache::entry_count))
            .finish()
    }
}

impl TokenCache {
    /// A cache of at most `capacity` tokens (0 disables caching).
    pub(crate) fn new(capacity: u64, skew: Duration) -> Self {
        let cache = (capacity > 0).then(|| {
            // Keys are tokens that verified (an attacker cannot choose them freely), ~1 KB each:
            // a fast hasher instead of SipHash.
            Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilExpiry)
                .build_with_hasher(foldhash::fast::RandomState::default())
        });
        Self { cache, skew }
    }

    /// Claims for a token verified earlier and still within `exp` + skew at `now`.
    pub(crate) fn get(&self, token: &str, now: SystemTime) -> Option<Arc<ClerkClaims>> {
        let entry = self.cache.as_ref()?.get(token)?;
        // moka's expiry is driven by a monotonic clock; the wall clock has the last word.
        (unix_now(now) < entry.valid_until).then_some(entry.claims)
    }

    pub(crate) fn insert(&self, token: &str, claims: Arc<ClerkClaims>) {
        let Some(cache) = &self.cache else { return };
        // Mirrors the verifier: expired iff exp*1000 <= now_ms - skew.
        let valid_until = claims.expires_at() as f64 + self.skew.as_secs_f64();
        cache.insert(
            Arc::from(token),
            Entry {
                claims,
                valid_until,
            },
        );
    }

    /// Number of cached tokens (approximate until pending work runs).
    pub(crate) fn len(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| {
            c.run_pending_tasks();
            c.entry_count()
        })
    }
}
