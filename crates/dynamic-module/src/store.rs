//! The learned taskId -> contextId pairs of one Envoy process, in native
//! memory shared by every worker thread.
//!
//! The store is split into shards, each a `Mutex` around a hash map, so that
//! workers learning and looking up different tasks rarely wait for each
//! other. A task's shard is picked by one randomly keyed hash, and each
//! shard's map hashes with its own random keys (`ahash::RandomState::new()`):
//! task ids come from clients and agents, and ids chosen to collide cannot
//! pile up in one shard or one bucket chain without knowing the keys.
//!
//! Capacity is `task_capacity` entries in total, divided between the shards
//! (each holds `capacity / shards`, the first `capacity % shards` one more).
//! A shard holds at least [`MIN_SHARD`] entries: stores under twice that
//! are one shard, and the default (262,144) is 32 shards of 8,192.
//! A full shard overwrites its own entry that expires first: the choice is
//! per shard, not over the whole store, so with a full store an entry can
//! go while an entry of another shard that expires a little sooner stays.
//! Since a task lands in a shard by a uniform hash, the shards fill evenly.
//!
//! Expired entries are dropped when a lookup meets them and are the first
//! overwritten when a shard is full; an overwrite counts as an eviction only
//! when the entry it replaces was still live.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use a2a_affinity_core::store::{Learned, Lookup, TaskStore};

/// Shards of a large store: well above the worker count of a large Envoy,
/// so that lock contention stays low.
pub const SHARDS: usize = 32;

/// Entries a shard holds at least, so that the per-shard choice of the entry
/// to overwrite stays close to a choice over the whole store.
pub const MIN_SHARD: usize = 1024;

/// One learned task.
struct Entry {
    context: Box<str>,
    /// Seconds since the Unix epoch after which the entry is not used.
    expires: u64,
    /// Its key in the shard's expiry index.
    seq: u64,
}

/// One shard: the map, and the same entries ordered by expiry so that a
/// full shard finds the entry to overwrite without scanning.
struct Shard {
    map: HashMap<Arc<str>, Entry, ahash::RandomState>,
    /// (expires, seq) -> task id, one per entry of `map`.
    by_expiry: BTreeMap<(u64, u64), Arc<str>>,
    capacity: usize,
    next_seq: u64,
}

impl Shard {
    fn new(capacity: usize) -> Self {
        Shard {
            map: HashMap::with_hasher(ahash::RandomState::new()),
            by_expiry: BTreeMap::new(),
            capacity,
            next_seq: 0,
        }
    }

    fn lookup(&mut self, task_id: &str, now: u64) -> Lookup {
        match self.map.get(task_id) {
            Some(entry) if entry.expires > now => Lookup::Found(entry.context.to_string()),
            Some(_) => {
                self.remove(task_id);
                Lookup::Unknown
            }
            None => Lookup::Unknown,
        }
    }

    fn learn(&mut self, task_id: &str, context_id: &str, now: u64, ttl: u64) -> Learned {
        let expires = now.saturating_add(ttl);
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        if let Some(entry) = self.map.get_mut(task_id) {
            // Already known and not about to expire: nothing to write (the
            // same rule as the Wasm filter's shared-data store).
            if &*entry.context == context_id && entry.expires > now.saturating_add(ttl / 2) {
                return Learned::Unchanged;
            }
            let old = (entry.expires, entry.seq);
            entry.context = context_id.into();
            entry.expires = expires;
            entry.seq = seq;
            if let Some(key) = self.by_expiry.remove(&old) {
                self.by_expiry.insert((expires, seq), key);
            }
            return Learned::Stored;
        }
        if self.capacity == 0 {
            return Learned::NotStored;
        }
        let mut evicted = false;
        while self.map.len() >= self.capacity {
            // The entry that expires first goes; it was live if it had not
            // expired yet.
            let Some(((first_expiry, _), key)) = self.by_expiry.pop_first() else {
                break;
            };
            if self.map.remove(&*key).is_some() && first_expiry > now {
                evicted = true;
            }
        }
        let key: Arc<str> = Arc::from(task_id);
        self.by_expiry.insert((expires, seq), Arc::clone(&key));
        self.map.insert(
            key,
            Entry {
                context: context_id.into(),
                expires,
                seq,
            },
        );
        if evicted {
            Learned::Evicted
        } else {
            Learned::Stored
        }
    }

    fn remove(&mut self, task_id: &str) {
        if let Some(entry) = self.map.remove(task_id) {
            self.by_expiry.remove(&(entry.expires, entry.seq));
        }
    }
}

/// The store every worker thread of the process shares (one per distinct
/// `task_capacity`/`task_ttl_secs`, see [`shared`]).
pub struct ShardedStore {
    shards: Box<[Mutex<Shard>]>,
    /// Picks a task's shard; randomly keyed like the maps.
    pick: ahash::RandomState,
    ttl_secs: u64,
    capacity: usize,
}

impl ShardedStore {
    /// A store of `capacity` entries (at least one) kept `ttl_secs` each.
    pub fn new(capacity: u32, ttl_secs: u64) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX).max(1);
        let shards = (capacity / MIN_SHARD).clamp(1, SHARDS);
        let base = capacity / shards;
        let extra = capacity % shards;
        ShardedStore {
            shards: (0..shards)
                .map(|i| Mutex::new(Shard::new(base + usize::from(i < extra))))
                .collect(),
            pick: ahash::RandomState::new(),
            ttl_secs,
            capacity,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// Entries held now, live or expired but not yet dropped.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).map.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, task_id: &str) -> Option<MutexGuard<'_, Shard>> {
        let hash = self.pick.hash_one(task_id);
        let count = u64::try_from(self.shards.len()).ok()?;
        let index = usize::try_from(hash % count.max(1)).ok()?;
        self.shards.get(index).map(lock)
    }

    /// The context of a live learned task.
    pub fn lookup(&self, task_id: &str, now_secs: u64) -> Lookup {
        self.shard(task_id)
            .map_or(Lookup::Unknown, |mut shard| shard.lookup(task_id, now_secs))
    }

    /// Remembers `task_id` -> `context_id` for the store's time to live.
    pub fn learn(&self, task_id: &str, context_id: &str, now_secs: u64) -> Learned {
        let ttl = self.ttl_secs;
        self.shard(task_id).map_or(Learned::NotStored, |mut shard| {
            shard.learn(task_id, context_id, now_secs, ttl)
        })
    }
}

/// A poisoned lock (a thread panicked while holding it) still guards a
/// consistent map: every mutation above completes or leaves the entry
/// absent, so the store keeps serving rather than failing every request.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The core's view of a shared store for one callback.
pub struct StoreRef<'a>(pub &'a ShardedStore);

impl TaskStore for StoreRef<'_> {
    fn lookup(&mut self, task_id: &str, now_secs: u64) -> Lookup {
        self.0.lookup(task_id, now_secs)
    }

    fn learn(&mut self, task_id: &str, context_id: &str, now_secs: u64) -> Learned {
        self.0.learn(task_id, context_id, now_secs)
    }
}

/// Stores alive in this process, by (capacity, ttl).
static STORES: Mutex<Vec<(u32, u64, Weak<ShardedStore>)>> = Mutex::new(Vec::new());

/// The process's store for this geometry: the one a live filter
/// configuration already uses, or a new one. A configuration pushed again
/// (LDS update, hot reload of the listener) is created while the old one is
/// still alive, so the learned tasks carry over; two filter instances with
/// the same settings share what they learn, as the Wasm filter's instances
/// share Envoy's shared data.
pub fn shared(capacity: u32, ttl_secs: u64) -> Arc<ShardedStore> {
    let mut stores = STORES.lock().unwrap_or_else(PoisonError::into_inner);
    stores.retain(|(_, _, weak)| weak.strong_count() > 0);
    let existing = stores
        .iter()
        .find(|(c, t, _)| *c == capacity && *t == ttl_secs)
        .and_then(|(_, _, weak)| weak.upgrade());
    if let Some(store) = existing {
        return store;
    }
    let store = Arc::new(ShardedStore::new(capacity, ttl_secs));
    stores.push((capacity, ttl_secs, Arc::downgrade(&store)));
    store
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000;

    #[test]
    fn learns_looks_up_and_expires() {
        let store = ShardedStore::new(100, 60);
        assert_eq!(store.learn("t1", "c1", NOW), Learned::Stored);
        assert_eq!(store.lookup("t1", NOW), Lookup::Found("c1".into()));
        assert_eq!(store.lookup("t1", NOW + 59), Lookup::Found("c1".into()));
        assert_eq!(store.lookup("t1", NOW + 60), Lookup::Unknown);
        // The expired entry was dropped by that lookup.
        assert!(store.is_empty());
        assert_eq!(store.lookup("t2", NOW), Lookup::Unknown);
    }

    #[test]
    fn relearning_refreshes_only_when_needed() {
        let store = ShardedStore::new(100, 60);
        assert_eq!(store.learn("t", "c", NOW), Learned::Stored);
        // Same pair, more than half the TTL left: nothing written.
        assert_eq!(store.learn("t", "c", NOW + 10), Learned::Unchanged);
        // Less than half left: refreshed.
        assert_eq!(store.learn("t", "c", NOW + 40), Learned::Stored);
        assert_eq!(store.lookup("t", NOW + 99), Lookup::Found("c".into()));
        // A new context for a known task replaces the old one.
        assert_eq!(store.learn("t", "d", NOW + 41), Learned::Stored);
        assert_eq!(store.lookup("t", NOW + 41), Lookup::Found("d".into()));
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn capacity_is_exact_and_split_over_the_shards() {
        for (capacity, shards) in [
            (1u32, 1),
            (2, 1),
            (33, 1),
            (2047, 1),
            (2048, 2),
            (10_000, 9),
            (40_000, 32),
            (262_144, 32),
        ] {
            let store = ShardedStore::new(capacity, 3600);
            assert_eq!(store.shards.len(), shards, "capacity {capacity}");
            let total: usize = store.shards.iter().map(|s| lock(s).capacity).sum();
            assert_eq!(total, capacity as usize);
            if shards > 1 {
                assert!(store.shards.iter().all(|s| lock(s).capacity >= MIN_SHARD));
            }
            if capacity > 50_000 {
                continue;
            }
            // Enough ids that every shard overflows.
            let ids = if capacity > 5000 {
                capacity * 4
            } else {
                capacity * 40
            };
            for i in 0..ids {
                store.learn(&format!("task-{i}"), "c", NOW + u64::from(i));
            }
            assert_eq!(store.len(), capacity as usize, "capacity {capacity}");
        }
    }

    #[test]
    fn a_full_shard_overwrites_the_entry_that_expires_first() {
        // One shard of three entries.
        let store = ShardedStore::new(3, 100);
        assert_eq!(store.learn("a", "1", NOW), Learned::Stored);
        assert_eq!(store.learn("b", "2", NOW + 5), Learned::Stored);
        assert_eq!(store.learn("c", "3", NOW + 1), Learned::Stored);
        // "a" expires first: it goes, and it was live.
        assert_eq!(store.learn("d", "4", NOW + 6), Learned::Evicted);
        assert_eq!(store.lookup("a", NOW + 6), Lookup::Unknown);
        for (t, c) in [("b", "2"), ("c", "3"), ("d", "4")] {
            assert_eq!(store.lookup(t, NOW + 6), Lookup::Found(c.into()));
        }
        // A refresh moves "c" to the back: "b" goes next.
        assert_eq!(store.learn("c", "3", NOW + 60), Learned::Stored);
        assert_eq!(store.learn("e", "5", NOW + 61), Learned::Evicted);
        assert_eq!(store.lookup("b", NOW + 61), Lookup::Unknown);
        assert_eq!(store.lookup("c", NOW + 61), Lookup::Found("3".into()));
        // Overwriting an entry that has expired is not an eviction.
        assert_eq!(store.learn("f", "6", NOW + 500), Learned::Stored);
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn shards_fill_evenly_and_hash_keys_differ_per_store() {
        let store = ShardedStore::new(32 * 1024, 3600);
        assert_eq!(store.shards.len(), 32);
        for i in 0..32 * 500 {
            store.learn(&format!("{i:08}"), "c", NOW);
        }
        let sizes: Vec<usize> = store.shards.iter().map(|s| lock(s).map.len()).collect();
        let max = sizes.iter().copied().max().unwrap_or(0);
        let min = sizes.iter().copied().min().unwrap_or(0);
        assert!(min > 350 && max < 650, "{sizes:?}");
        // Two stores place the same ids differently: the keys are random.
        let other = ShardedStore::new(32 * 1024, 3600);
        let same = (0..200)
            .filter(|i| {
                let id = format!("{i:08}");
                store.pick.hash_one(&id) % 32 == other.pick.hash_one(&id) % 32
            })
            .count();
        assert!(same < 40, "{same} of 200 ids in the same shard");
    }

    #[test]
    fn shared_stores_are_reused_while_alive() {
        let a = shared(1234, 77);
        let b = shared(1234, 77);
        assert!(Arc::ptr_eq(&a, &b));
        let c = shared(1234, 78);
        assert!(!Arc::ptr_eq(&a, &c));
        a.learn("t", "c", NOW);
        drop((a, b));
        // The last owner is gone: a new configuration gets a fresh store.
        let d = shared(1234, 77);
        assert!(d.is_empty());
    }

    #[test]
    fn many_threads_share_one_store() {
        let store = Arc::new(ShardedStore::new(10_000, 3600));
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        let task = format!("w{w}-t{i}");
                        store.learn(&task, &format!("ctx-{w}"), NOW);
                        assert_eq!(store.lookup(&task, NOW), Lookup::Found(format!("ctx-{w}")));
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(store.len(), 8000);
        assert_eq!(store.lookup("w3-t1999", NOW), Lookup::Found("ctx-3".into()));
    }
}
