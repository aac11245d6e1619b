//! Read slots in front of a moka cache: the warm path's lookups without moka's read
//! bookkeeping.
//!
//! A moka read costs a clock read, the expiry policy, a read-log entry and its housekeeping —
//! about 200 ns per cache on the warm path, measured by `httpab` (BENCHMARKS.md). The slots are
//! a direct-mapped array of recently read entries: a repeated key costs a hash, one
//! uncontended lock and a compare. They hold only what the cache holds:
//!
//! - the cache's removals (evicted, expired, replaced, invalidated) clear the key's slot (the
//!   owner calls [`Slots::remove`] from moka's eviction listener), so the cache's bounds hold;
//! - a write to the cache is followed by [`Slots::forget`], which also makes any read that
//!   started before it unable to store what it read ([`Slots::put`] checks the write
//!   generation under the slot's lock): a slot never serves a value older than the cache's;
//! - every [`READ_THROUGH_EVERY`]th hit of a slot tells the owner to read through the cache
//!   too, so its eviction policy sees the key as used;
//! - the owner checks each value's own validity (expiry) on every hit.

use std::{
    hash::BuildHasher as _,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
};

/// Slot hits between two reads through the cache for one slot's key.
pub(crate) const READ_THROUGH_EVERY: u32 = 32;

/// Reads of other keys that land on a slot, with no hit of its own key between them, before
/// the slot is given to one of them: keys that share a slot and are read in turn do not
/// replace each other on every read (each replacement costs more than the miss).
const REPLACE_AFTER_MISSES: u32 = 16;

/// The most slots in front of one cache.
const MAX_SLOTS: usize = 8_192;

struct Hot<V> {
    /// The key's hash: a read of another key is told apart without touching the key's memory.
    hash: u64,
    key: Arc<str>,
    value: V,
    /// Hits since the last read through the cache.
    hits: u32,
    /// Reads of other keys since the last hit (see [`REPLACE_AFTER_MISSES`]).
    misses: u32,
}

/// A direct-mapped array of recently read cache entries (see the module docs).
pub(crate) struct Slots<V> {
    slots: Box<[Mutex<Option<Hot<V>>>]>,
    hasher: foldhash::fast::RandomState,
    /// Bumped by every [`forget`](Self::forget).
    generation: AtomicU64,
}

impl<V> std::fmt::Debug for Slots<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slots")
            .field("slots", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl<V: Clone> Slots<V> {
    /// Slots for a cache of `capacity` entries: half as many (a power of two, at most
    /// 8,192), so 1,000 rotating keys mostly get a slot of their own under the default bounds.
    pub(crate) fn for_capacity(capacity: u64) -> Self {
        let count = usize::try_from(capacity / 2)
            .unwrap_or(MAX_SLOTS)
            .clamp(1, MAX_SLOTS)
            .next_power_of_two();
        Self {
            slots: (0..count).map(|_| Mutex::new(None)).collect(),
            hasher: foldhash::fast::RandomState::default(),
            generation: AtomicU64::new(0),
        }
    }

    /// The key's hash and its slot, locked.
    fn lock(&self, key: &str) -> (u64, MutexGuard<'_, Option<Hot<V>>>) {
        let hash = self.hasher.hash_one(key);
        let slot = match self.slots[hash as usize & (self.slots.len() - 1)].lock() {
            Ok(slot) => slot,
            Err(poisoned) => poisoned.into_inner(),
        };
        (hash, slot)
    }

    /// The slot's value for `key` when `valid` accepts it, and whether the owner should read
    /// through the cache this time.
    pub(crate) fn get(&self, key: &str, valid: impl FnOnce(&V) -> bool) -> Option<(V, bool)> {
        let (hash, mut slot) = self.lock(key);
        let hot = slot
            .as_mut()
            .filter(|hot| hot.hash == hash && &*hot.key == key)?;
        if !valid(&hot.value) {
            return None;
        }
        hot.hits += 1;
        hot.misses = 0;
        let read_through = hot.hits >= READ_THROUGH_EVERY;
        if read_through {
            hot.hits = 0;
        }
        Some((hot.value.clone(), read_through))
    }

    /// The write generation, read before a cache read whose result may be [`put`](Self::put).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Keeps what the cache answered for `key` (`entry` makes the shared key and the value,
    /// called only when they are kept), unless the cache was written since `generation` was
    /// read (the value may then be older than the cache's), or the slot holds another key
    /// that was read since fewer than [`REPLACE_AFTER_MISSES`] other reads landed on it.
    pub(crate) fn put(&self, key: &str, entry: impl FnOnce() -> (Arc<str>, V), generation: u64) {
        let (hash, mut slot) = self.lock(key);
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        if let Some(hot) = slot
            .as_mut()
            .filter(|hot| hot.hash != hash || &*hot.key != key)
        {
            hot.misses += 1;
            if hot.misses < REPLACE_AFTER_MISSES {
                return;
            }
        }
        let (key, value) = entry();
        *slot = Some(Hot {
            hash,
            key,
            value,
            hits: 0,
            misses: 0,
        });
    }

    /// The cache removed `key`'s entry: its slot lets it go too.
    pub(crate) fn remove(&self, key: &str) {
        let (hash, mut slot) = self.lock(key);
        if slot
            .as_ref()
            .is_some_and(|hot| hot.hash == hash && &*hot.key == key)
        {
            *slot = None;
        }
    }

    /// The cache's entry for `key` was written (or removed): reads under way store nothing,
    /// and the slot lets the old value go. Call after the write.
    pub(crate) fn forget(&self, key: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_serves_what_was_put_until_removed_or_invalid() {
        let slots = Slots::<u32>::for_capacity(16);
        assert!(slots.get("a", |_| true).is_none());
        slots.put("a", || (Arc::from("a"), 1), slots.generation());
        assert_eq!(slots.get("a", |_| true), Some((1, false)));
        assert!(
            slots.get("a", |_| false).is_none(),
            "validity is the owner's"
        );
        assert!(slots.get("b", |_| true).is_none());
        slots.remove("a");
        assert!(slots.get("a", |_| true).is_none());
    }

    #[test]
    fn a_read_that_started_before_a_write_stores_nothing() {
        let slots = Slots::<u32>::for_capacity(16);
        // A reader reads the generation, then the cache (the old value, 1) ...
        let seen = slots.generation();
        // ... a writer writes 2 to the cache and forgets the key ...
        slots.forget("a");
        // ... and the reader's put of the old value is refused.
        slots.put("a", || (Arc::from("a"), 1), seen);
        assert!(slots.get("a", |_| true).is_none());
        // Stored before the write: the writer's forget clears it.
        let seen = slots.generation();
        slots.put("a", || (Arc::from("a"), 1), seen);
        slots.forget("a");
        assert!(slots.get("a", |_| true).is_none());
        // A read after the write stores the new value.
        slots.put("a", || (Arc::from("a"), 2), slots.generation());
        assert_eq!(slots.get("a", |_| true).map(|(v, _)| v), Some(2));
    }

    #[test]
    fn keys_sharing_a_slot_take_it_after_sixteen_misses_without_a_hit() {
        // One slot: every key shares it.
        let slots = Slots::<u32>::for_capacity(1);
        slots.put("a", || (Arc::from("a"), 1), slots.generation());
        for _ in 0..15 {
            slots.put("b", || panic!("kept too early"), slots.generation());
        }
        // A hit of "a" starts the count again.
        assert_eq!(slots.get("a", |_| true).map(|(v, _)| v), Some(1));
        for _ in 0..15 {
            slots.put("b", || panic!("kept too early"), slots.generation());
        }
        assert!(slots.get("b", |_| true).is_none());
        // The sixteenth miss in a row gives the slot to "b".
        slots.put("b", || (Arc::from("b"), 2), slots.generation());
        assert_eq!(slots.get("b", |_| true).map(|(v, _)| v), Some(2));
        assert!(slots.get("a", |_| true).is_none());
    }

    #[test]
    fn a_new_value_for_the_same_key_replaces_the_slot_at_once() {
        let slots = Slots::<u32>::for_capacity(1);
        slots.put("a", || (Arc::from("a"), 1), slots.generation());
        // The slot's value no longer valid (say, expired): the cache's newer one takes its
        // place at the first put, not after the misses another key would need.
        assert!(slots.get("a", |v| *v != 1).is_none());
        slots.put("a", || (Arc::from("a"), 2), slots.generation());
        assert_eq!(slots.get("a", |_| true).map(|(v, _)| v), Some(2));
    }

    #[test]
    fn every_32nd_hit_reads_through() {
        let slots = Slots::<u32>::for_capacity(16);
        slots.put("a", || (Arc::from("a"), 1), slots.generation());
        let through: Vec<bool> = (0..64)
            .map(|_| slots.get("a", |_| true).unwrap().1)
            .collect();
        assert_eq!(through.iter().filter(|t| **t).count(), 2);
        assert!(through[31] && through[63]);
    }

    #[test]
    fn slot_count_is_half_the_capacity_bounded() {
        assert_eq!(Slots::<u32>::for_capacity(10_000).slots.len(), 8_192);
        assert_eq!(Slots::<u32>::for_capacity(1_000).slots.len(), 512);
        assert_eq!(Slots::<u32>::for_capacity(1).slots.len(), 1);
        assert_eq!(Slots::<u32>::for_capacity(u64::MAX).slots.len(), 8_192);
    }
}
