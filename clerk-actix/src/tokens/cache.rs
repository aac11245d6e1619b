//! The verified-token cache: a moka cache from token to claims, bounded in entries and in
//! bytes, whose entries never outlive the token's `exp` + clock skew, so a repeated token costs
//! a hash lookup, not RSA.
//!
//! Keys are the token's canonical form ([`cache_key`]): every encoding of one token that
//! verifies shares one entry, so re-encodings cannot multiply RSA work or memory.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use moka::{notification::RemovalCause, sync::Cache, Expiry};

use crate::{base::claims::ClerkClaims, base::slots::Slots};

/// Default number of verified tokens kept.
pub const DEFAULT_TOKEN_CACHE_CAPACITY: u64 = 10_000;
/// Default bound of the verified-token cache in bytes (estimated: key, claims, bookkeeping).
pub const DEFAULT_TOKEN_CACHE_MAX_BYTES: u64 = 32 * 1024 * 1024;

/// Bookkeeping of one entry beyond the key and the claims (moka's node, `Arc`s, the map).
const ENTRY_OVERHEAD: usize = 512;

#[derive(Clone)]
struct Entry {
    claims: Arc<ClerkClaims>,
    /// The token (canonical form), shared with the key: handed to the session for forwarding.
    token: Arc<str>,
    /// Unix seconds after which the token is no longer accepted (`exp` + skew).
    valid_until: f64,
    /// What the entry weighs against the cache's bounds.
    weight: u32,
}

/// The key under which a token is cached: the token without trailing `=`.
///
/// The verifier reads segments as Clerk's decoder does, ignoring trailing `=` padding; the
/// signature is the last segment and the signed input (header and payload) is taken verbatim,
/// so padding after the signature is the one re-encoding that leaves the verdict unchanged.
/// Padding inside the header or payload changes the signed input and fails verification;
/// non-zero trailing bits are refused by the decoder. Stripping trailing `=` therefore maps every
/// variant of a token with one verdict to one key, and never maps a failing token onto a
/// passing one (it removes no `.`, so the segment count is kept). O(1) for unpadded tokens.
pub(crate) fn cache_key(token: &str) -> &str {
    token.trim_end_matches('=')
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
    /// The least weight of an entry, so the entry bound holds under the byte bound.
    min_weight: u32,
    cache: Option<Cache<Arc<str>, Entry, foldhash::fast::RandomState>>,
    /// Read slots in front of the cache (see `slots`): a repeated token skips moka's read
    /// bookkeeping.
    slots: Option<Arc<Slots<Entry>>>,
    skew: Duration,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.cache.as_ref().map(Cache::entry_count))
            .field(
                "weighted_bytes",
                &self.cache.as_ref().map(Cache::weighted_size),
            )
            .finish()
    }
}

impl TokenCache {
    /// A cache of at most `capacity` tokens and about `max_bytes` bytes (either 0 disables
    /// caching).
    ///
    /// Each entry weighs its estimated size, but at least `max_bytes / capacity`: the total
    /// weight is capped at `max_bytes`, which then bounds both the bytes and the entry count.
    pub(crate) fn new(capacity: u64, max_bytes: u64, skew: Duration) -> Self {
        // Rounded up: `capacity` entries of this weight never exceed `max_bytes`.
        let min_weight = u32::try_from(max_bytes.div_ceil(capacity.max(1)))
            .unwrap_or(u32::MAX)
            .max(1);
        let enabled = capacity > 0 && max_bytes > 0;
        let slots = enabled.then(|| Arc::new(Slots::for_capacity(capacity)));
        let cache = enabled.then(|| {
            let removed = slots.clone();
            // Keys are tokens that verified (an attacker cannot choose them freely), ~1 KB each:
            // a fast hasher instead of SipHash.
            Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_key: &Arc<str>, entry: &Entry| entry.weight)
                .expire_after(UntilExpiry)
                .eviction_listener(move |key: Arc<Arc<str>>, _: Entry, _: RemovalCause| {
                    if let Some(slots) = &removed {
                        slots.remove(&key);
                    }
                })
                .build_with_hasher(foldhash::fast::RandomState::default())
        });
        Self {
            min_weight,
            cache,
            slots,
            skew,
        }
    }

    /// Claims (and the shared token) for a token verified earlier and still within `exp` +
    /// skew at `now`.
    pub(crate) fn get(&self, token: &str, now: SystemTime) -> Option<(Arc<ClerkClaims>, Arc<str>)> {
        let cache = self.cache.as_ref()?;
        let key = cache_key(token);
        let now = unix_now(now);
        if let Some(slots) = &self.slots {
            if let Some((entry, read_through)) = slots.get(key, |e| now < e.valid_until) {
                if read_through {
                    let _ = cache.get(key);
                }
                return Some((entry.claims, entry.token));
            }
        }
        let generation = self.slots.as_ref().map(|s| s.generation());
        let entry = cache.get(key)?;
        // moka's expiry is driven by a monotonic clock; the wall clock has the last word.
        if now >= entry.valid_until {
            return None;
        }
        if let (Some(slots), Some(generation)) = (&self.slots, generation) {
            slots.put(key, || (entry.token.clone(), entry.clone()), generation);
        }
        Some((entry.claims, entry.token))
    }

    /// Caches a verified token; returns it as a shared string (the cache's own key when cached).
    pub(crate) fn insert(&self, token: &str, claims: Arc<ClerkClaims>) -> Arc<str> {
        let key = cache_key(token);
        let shared: Arc<str> = Arc::from(key);
        let Some(cache) = &self.cache else {
            return shared;
        };
        // Mirrors the verifier: expired iff exp*1000 <= now_ms - skew.
        let valid_until = claims.expires_at() as f64 + self.skew.as_secs_f64();
        // The claims are parsed from the payload, about half the token: count the token twice
        // (key + claims, whose maps and strings cost more than their JSON text).
        let estimate = key.len().saturating_mul(2).saturating_add(ENTRY_OVERHEAD);
        let weight = u32::try_from(estimate)
            .unwrap_or(u32::MAX)
            .max(self.min_weight);
        cache.insert(
            shared.clone(),
            Entry {
                claims,
                token: shared.clone(),
                valid_until,
                weight,
            },
        );
        shared
    }

    /// Number of cached tokens (approximate until pending work runs).
    pub(crate) fn len(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| {
            c.run_pending_tasks();
            c.entry_count()
        })
    }

    /// The estimated bytes held (the sum of the entries' weights).
    pub(crate) fn weighted_bytes(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| {
            c.run_pending_tasks();
            c.weighted_size()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_strips_only_trailing_padding() {
        assert_eq!(cache_key("h.p.sig"), "h.p.sig");
        assert_eq!(cache_key("h.p.sig=="), "h.p.sig");
        assert_eq!(
            cache_key(&format!("h.p.sig{}", "=".repeat(8000))),
            "h.p.sig"
        );
        // Padding inside the signed input changes the verdict: it stays in the key.
        assert_eq!(cache_key("h=.p.sig"), "h=.p.sig");
        assert_eq!(cache_key("h.p=.sig="), "h.p=.sig");
        // Never removes a segment separator.
        assert_eq!(cache_key("h.p.="), "h.p.");
    }

    #[test]
    fn a_cached_token_is_served_until_exp_plus_skew_from_moka_and_from_its_slot() {
        let exp = unix_now(SystemTime::now()) as i64 + 3_600;
        let at = |secs: i64| UNIX_EPOCH + Duration::from_secs(secs as u64);
        let claims = Arc::new(ClerkClaims::from_payload(
            serde_json::Map::new(),
            "user_1".into(),
            exp,
        ));
        let cache = TokenCache::new(10, 100_000, Duration::from_secs(5));
        cache.insert("h.p.sig", claims);
        // Past exp, within the skew: served, first from moka (which fills the slot), then from
        // the slot.
        assert!(cache.get("h.p.sig", at(exp + 4)).is_some());
        assert!(cache.get("h.p.sig", at(exp + 4)).is_some());
        // At exp + skew: refused, whichever answers.
        assert!(cache.get("h.p.sig", at(exp + 5)).is_none());
        assert!(cache.get("h.p.sig", at(exp + 5)).is_none());
        // Padding after the signature shares the entry.
        assert!(cache.get("h.p.sig==", at(exp)).is_some());
    }

    #[test]
    fn entry_bound_holds_under_the_byte_bound() {
        let claims = |exp: i64| {
            Arc::new(ClerkClaims::from_payload(
                serde_json::Map::new(),
                "user_1".into(),
                exp,
            ))
        };
        let exp = unix_now(SystemTime::now()) as i64 + 3_600;
        // 10 entries of at least 1000 bytes each in a 10,000-byte budget.
        let cache = TokenCache::new(10, 10_000, Duration::ZERO);
        assert_eq!(cache.min_weight, 1000);
        // Small tokens: the entry bound decides. 50 inserted, at most 10 kept.
        for i in 0..50 {
            cache.insert(&format!("h.p.small{i}"), claims(exp));
        }
        assert!((1..=10).contains(&cache.len()), "{} entries", cache.len());
        assert!(cache.weighted_bytes() <= 10_000);
        // Each small entry weighs the least weight: the two counts agree.
        assert_eq!(cache.weighted_bytes(), cache.len() * 1000);
        // Large tokens: the byte bound decides, well below the entry bound.
        let cache = TokenCache::new(100, 10_000, Duration::ZERO);
        for i in 0..20 {
            cache.insert(&format!("h.p.{i}{}", "x".repeat(2_000)), claims(exp));
        }
        // Each weighs 2 x ~2,000 + 512 bytes: at most two fit in 10,000.
        assert!((1..=2).contains(&cache.len()), "{} entries", cache.len());
        assert!(
            cache.weighted_bytes() <= 10_000,
            "{}",
            cache.weighted_bytes()
        );
        // What is kept is served, until exp (+ skew) on the wall clock.
        let cache = TokenCache::new(10, 10_000, Duration::ZERO);
        let kept = cache.insert("h.p.kept", claims(exp));
        assert!(cache.get(&kept, SystemTime::now()).is_some());
        let later = SystemTime::now() + Duration::from_secs(3_601);
        assert!(cache.get(&kept, later).is_none());
        let cache = TokenCache::new(0, 10_000, Duration::ZERO);
        assert!(cache.cache.is_none());
        let cache = TokenCache::new(10, 0, Duration::ZERO);
        assert!(cache.cache.is_none());
    }
}
