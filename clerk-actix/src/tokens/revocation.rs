//! Revoked users: tokens of a user banned or deleted in Clerk are refused before they expire.
//!
//! A ban revokes the tokens issued up to the ban, for 10 minutes (longer than a Clerk session
//! token lives), and is lifted when the user is active again — by a change at least as recent
//! as the ban (Clerk's `updated_at`), so a late, stale "active" delivery cannot lift a newer ban.
//! A deletion covers every token of the id, is never lifted, and lasts 24 hours, far beyond any
//! token issued before it (the durable record is the store's tombstone, which re-applies it
//! whenever the id is seen again). Lookups are lock-free and skipped entirely until the first
//! revocation; the list is bounded with least-recently-used eviction (moka's default admission
//! policy could refuse a new entry when full, which a revocation list must not).

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use tokio::sync::Notify;

use moka::{ops::compute::Op, policy::EvictionPolicy, sync::Cache, Expiry};

/// How long a ban's revocation lasts: longer than any session token it must refuse.
const BAN_TTL: Duration = Duration::from_secs(600);
/// How long a deletion's revocation lasts in memory.
const DELETION_TTL: Duration = Duration::from_secs(24 * 3600);
/// Revoked users remembered at most (least recently used dropped first).
const CAPACITY: u64 = 100_000;

#[derive(Debug, Clone, Copy)]
struct Revocation {
    /// Tokens issued at or before this Unix second are refused.
    issued_up_to: i64,
    /// A deletion: never lifted.
    permanent: bool,
    /// Clerk's `updated_at` (ms) of the change that revoked; older changes cannot lift it.
    version: i64,
}

struct ByKind;

impl ByKind {
    fn ttl(value: &Revocation) -> Option<Duration> {
        Some(if value.permanent {
            DELETION_TTL
        } else {
            BAN_TTL
        })
    }
}

impl Expiry<String, Revocation> for ByKind {
    fn expire_after_create(&self, _: &String, value: &Revocation, _: Instant) -> Option<Duration> {
        Self::ttl(value)
    }

    fn expire_after_update(
        &self,
        _: &String,
        value: &Revocation,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Self::ttl(value)
    }
}

/// The revoked users of one [`Clerk`](crate::Clerk) handle.
pub(crate) struct Revocations {
    entries: Cache<String, Revocation>,
    any: AtomicBool,
    /// Set while the revocations recorded by other replicas are still being loaded (a process
    /// starting next to others on PostgreSQL): tokens wait for them instead of being admitted.
    loading: AtomicBool,
    loaded: Notify,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations")
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

impl Default for Revocations {
    fn default() -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(CAPACITY)
                .eviction_policy(EvictionPolicy::lru())
                .expire_after(ByKind)
                .build(),
            any: AtomicBool::new(false),
            loading: AtomicBool::new(false),
            loaded: Notify::new(),
        }
    }
}

impl Revocations {
    /// Refuses the user's tokens issued up to `issued_up_to` (Unix seconds), for a change of
    /// Clerk version `version` (ms). A deletion, or a ban from a newer change, is kept as it is.
    pub(crate) fn revoke(&self, user_id: &str, issued_up_to: i64, version: i64) {
        self.put(
            user_id,
            Revocation {
                issued_up_to,
                permanent: false,
                version,
            },
        );
    }

    /// Refuses every token of a deleted user; nothing lifts it.
    pub(crate) fn revoke_deleted(&self, user_id: &str) {
        self.put(
            user_id,
            Revocation {
                issued_up_to: i64::MAX,
                permanent: true,
                version: i64::MAX,
            },
        );
    }

    fn put(&self, user_id: &str, new: Revocation) {
        self.any.store(true, Ordering::Release);
        self.entries
            .entry_by_ref(user_id)
            .and_compute_with(|old| match old.map(|e| *e.value()) {
                Some(old) if old.permanent || old.version > new.version => Op::Nop,
                _ => Op::Put(new),
            });
    }

    /// Lifts a ban: the user is active again as of Clerk version `version` (ms). A deletion, or
    /// a ban from a newer change, stays.
    pub(crate) fn lift(&self, user_id: &str, version: i64) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        self.entries
            .entry_by_ref(user_id)
            .and_compute_with(|old| match old.map(|e| *e.value()) {
                Some(old) if !old.permanent && old.version <= version => Op::Remove,
                _ => Op::Nop,
            });
    }

    /// From now on, tokens wait for [`loaded`](Self::loaded) (a change feed is starting).
    pub(crate) fn start_loading(&self) {
        self.loading.store(true, Ordering::Release);
    }

    /// The shared revocations are loaded: waiting tokens go on.
    pub(crate) fn loaded(&self) {
        self.loading.store(false, Ordering::Release);
        self.loaded.notify_waiters();
    }

    /// Whether tokens must wait for the shared revocations (one atomic load).
    pub(crate) fn is_loading(&self) -> bool {
        self.loading.load(Ordering::Acquire)
    }

    /// Waits until the shared revocations are loaded, at most `timeout`; whether they are.
    pub(crate) async fn wait_loaded(&self, timeout: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.loaded.notified();
                if !self.is_loading() {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    /// The Unix second up to which the user's tokens are refused, if any.
    pub(crate) fn issued_up_to(&self, user_id: &str) -> Option<i64> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        self.entries.get(user_id).map(|r| r.issued_up_to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deletion_is_never_lifted_nor_narrowed() {
        let r = Revocations::default();
        assert_eq!(r.issued_up_to("user_a"), None);
        r.revoke("user_a", 100, 1_000);
        assert_eq!(r.issued_up_to("user_a"), Some(100));
        r.lift("user_a", 2_000);
        assert_eq!(r.issued_up_to("user_a"), None);

        r.revoke_deleted("user_a");
        r.lift("user_a", i64::MAX);
        r.revoke("user_a", 5, i64::MAX);
        assert_eq!(r.issued_up_to("user_a"), Some(i64::MAX));
    }

    #[test]
    fn a_stale_change_neither_lifts_nor_replaces_a_newer_ban() {
        let r = Revocations::default();
        r.revoke("user_b", 100, 2_000);
        // A late "active" delivery from before the ban.
        r.lift("user_b", 1_000);
        assert_eq!(r.issued_up_to("user_b"), Some(100));
        // A late ban from before this one does not narrow it.
        r.revoke("user_b", 50, 1_500);
        assert_eq!(r.issued_up_to("user_b"), Some(100));
        r.lift("user_b", 2_000);
        assert_eq!(r.issued_up_to("user_b"), None);
    }
}
