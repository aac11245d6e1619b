//! Revoked users: tokens of a user banned or deleted in Clerk are refused before they expire.
//!
//! A ban revokes the tokens issued up to Clerk's time of the ban, for 10 minutes (longer than a
//! Clerk session token lives) and is lifted when the user is active again. A deletion is final:
//! its revocation covers every token of the id and is never lifted (Clerk never reuses an id).
//! Lookups are lock-free and skipped entirely until the first revocation.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use moka::{ops::compute::Op, sync::Cache, Expiry};

/// How long a ban's revocation lasts: longer than any session token it must refuse.
const BAN_TTL: Duration = Duration::from_secs(600);
/// Revoked users remembered at most (the oldest bans are dropped first).
const CAPACITY: u64 = 100_000;

#[derive(Debug, Clone, Copy)]
struct Revocation {
    /// Tokens issued at or before this Unix second are refused.
    issued_up_to: i64,
    /// A deletion: never expires, never lifted.
    permanent: bool,
}

struct ByKind;

impl Expiry<String, Revocation> for ByKind {
    fn expire_after_create(&self, _: &String, value: &Revocation, _: Instant) -> Option<Duration> {
        (!value.permanent).then_some(BAN_TTL)
    }

    fn expire_after_update(
        &self,
        _: &String,
        value: &Revocation,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        (!value.permanent).then_some(BAN_TTL)
    }
}

/// The revoked users of one [`Clerk`](crate::Clerk) handle.
pub(crate) struct Revocations {
    entries: Cache<String, Revocation>,
    any: AtomicBool,
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
                .expire_after(ByKind)
                .build(),
            any: AtomicBool::new(false),
        }
    }
}

impl Revocations {
    /// Refuses the user's tokens issued up to `issued_up_to` (Unix seconds). A deletion's
    /// revocation is kept as it is.
    pub(crate) fn revoke(&self, user_id: &str, issued_up_to: i64) {
        self.put(user_id, issued_up_to, false);
    }

    /// Refuses every token of a deleted user, for good.
    pub(crate) fn revoke_deleted(&self, user_id: &str) {
        self.put(user_id, i64::MAX, true);
    }

    fn put(&self, user_id: &str, issued_up_to: i64, permanent: bool) {
        self.any.store(true, Ordering::Release);
        self.entries.entry_by_ref(user_id).and_compute_with(|old| {
            if old.is_some_and(|e| e.value().permanent) {
                return Op::Nop;
            }
            Op::Put(Revocation {
                issued_up_to,
                permanent,
            })
        });
    }

    /// Lifts a ban (the user is active again); a deletion's revocation stays.
    pub(crate) fn lift(&self, user_id: &str) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        self.entries
            .entry_by_ref(user_id)
            .and_compute_with(|old| match old {
                Some(e) if !e.value().permanent => Op::Remove,
                _ => Op::Nop,
            });
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
        r.revoke("user_a", 100);
        assert_eq!(r.issued_up_to("user_a"), Some(100));
        r.lift("user_a");
        assert_eq!(r.issued_up_to("user_a"), None);

        r.revoke_deleted("user_a");
        r.lift("user_a");
        r.revoke("user_a", 5);
        assert_eq!(r.issued_up_to("user_a"), Some(i64::MAX));
    }
}
