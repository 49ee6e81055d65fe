//! Where learned taskId -> contextId pairs live in the ext_proc server.
//!
//! - `memory` (default): one map in the process, shared by every gRPC
//!   stream: sharded so that streams on different threads rarely wait for
//!   each other, bounded to `task_capacity` entries, each kept
//!   `task_ttl_secs`.
//! - `redis://HOST:PORT`: Redis or Valkey, shared by every server instance
//!   that points at it, so a task learned through one gateway replica routes
//!   a call through another. Lookups are asynchronous: the core is told
//!   `Lookup::Deferred` and the stream awaits the GET, bounded by
//!   `--redis-timeout-ms`. Writes are fire-and-forget.
//!
//! Either way a store failure only costs affinity: the request goes on as if
//! the task were unknown, and `a2a_affinity_ext_proc_store_errors_total`
//! counts it.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use a2a_affinity_core::store::{Learned, Lookup, TaskStore};
use log::{debug, warn};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Semaphore;

use crate::metrics::Metrics;

/// Shards of the in-memory store, at most. Each shard evicts on its own, so
/// a small store gets fewer shards (at least `MIN_SHARD_CAPACITY` entries
/// each) to keep eviction close to global expiry order.
const SHARDS: usize = 64;
const MIN_SHARD_CAPACITY: usize = 64;

/// The in-memory store: `task_capacity` entries at most, spread over
/// shards by a hash of the task id. Each shard evicts in expiry order:
/// every entry lives `ttl` from its last write, so the order of writes is
/// the order of expiry, and a queue of writes finds the next entry to go
/// in constant time.
pub struct MemoryStore {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    ttl_secs: u64,
}

struct Entry {
    context: Box<str>,
    expiry: u64,
}

struct Shard {
    capacity: usize,
    map: HashMap<Arc<str>, Entry>,
    /// Writes in order, with the expiry each one set. A queued write whose
    /// expiry no longer matches its entry is stale (the entry was written
    /// again, or removed) and is skipped.
    order: VecDeque<(Arc<str>, u64)>,
}

impl MemoryStore {
    pub fn new(capacity: u32, ttl_secs: u64) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX).max(1);
        let shards = (capacity / MIN_SHARD_CAPACITY).clamp(1, SHARDS);
        let (base, extra) = (capacity / shards, capacity % shards);
        let shards = (0..shards)
            .map(|i| {
                Mutex::new(Shard {
                    capacity: base + usize::from(i < extra),
                    map: HashMap::new(),
                    order: VecDeque::new(),
                })
            })
            .collect();
        MemoryStore {
            shards,
            hasher: RandomState::new(),
            ttl_secs,
        }
    }

    fn shard(&self, task_id: &str) -> Option<&Mutex<Shard>> {
        let n = self.shards.len() as u64;
        let i = usize::try_from(self.hasher.hash_one(task_id) % n.max(1)).ok()?;
        self.shards.get(i)
    }

    pub fn lookup(&self, task_id: &str, now: u64) -> Lookup {
        let Some(shard) = self.shard(task_id) else {
            return Lookup::Unknown;
        };
        // A panic while a shard was locked cannot leave it inconsistent in a
        // way that matters more than losing affinity, so a poisoned lock is
        // used as it is.
        let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        match shard.map.get(task_id) {
            Some(entry) if entry.expiry > now => Lookup::Found(entry.context.to_string()),
            _ => Lookup::Unknown,
        }
    }

    pub fn learn(&self, task_id: &str, context_id: &str, now: u64) -> Learned {
        let Some(shard) = self.shard(task_id) else {
            return Learned::NotStored;
        };
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        shard.learn(task_id, context_id, now, self.ttl_secs)
    }

    /// Entries held now, live or expired but not yet pushed out.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).map.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Shard {
    fn learn(&mut self, task_id: &str, context_id: &str, now: u64, ttl: u64) -> Learned {
        let expiry = now.saturating_add(ttl);
        if let Some((key, entry)) = self.map.get_key_value(task_id) {
            // Already known and far from expiring: no write, so an SSE
            // stream naming its task in every event costs one lookup each.
            if entry.expiry > now.saturating_add(ttl / 2) && &*entry.context == context_id {
                return Learned::Unchanged;
            }
            let key = Arc::clone(key);
            if let Some(entry) = self.map.get_mut(task_id) {
                entry.context = context_id.into();
                entry.expiry = expiry;
            }
            self.order.push_back((key, expiry));
            self.compact();
            return Learned::Stored;
        }
        let mut evicted = false;
        while self.map.len() >= self.capacity {
            let Some((key, queued_expiry)) = self.order.pop_front() else {
                // Cannot happen (every entry has a queued write); refuse
                // rather than grow past the capacity.
                return Learned::NotStored;
            };
            if self
                .map
                .get(&key)
                .is_some_and(|entry| entry.expiry == queued_expiry)
            {
                self.map.remove(&key);
                evicted |= queued_expiry > now;
            }
        }
        // Expired entries at the front go now too, so that memory holds live
        // entries rather than waiting for the shard to fill.
        while let Some((key, queued_expiry)) = self.order.front() {
            let stale = self
                .map
                .get(key)
                .is_none_or(|entry| entry.expiry != *queued_expiry);
            if !stale && *queued_expiry > now {
                break;
            }
            if !stale {
                self.map.remove(key);
            }
            self.order.pop_front();
        }
        let key: Arc<str> = task_id.into();
        self.map.insert(
            Arc::clone(&key),
            Entry {
                context: context_id.into(),
                expiry,
            },
        );
        self.order.push_back((key, expiry));
        if evicted {
            Learned::Evicted
        } else {
            Learned::Stored
        }
    }

    /// Rewrites remain rare (an entry is rewritten only past half its time
    /// to live), but each leaves a stale queued write behind: rebuild the
    /// queue from the map when they outnumber the entries.
    fn compact(&mut self) {
        if self.order.len() <= 2 * self.capacity + 16 {
            return;
        }
        let mut order: Vec<(Arc<str>, u64)> = self
            .map
            .iter()
            .map(|(key, entry)| (Arc::clone(key), entry.expiry))
            .collect();
        order.sort_by_key(|(_, expiry)| *expiry);
        self.order = order.into();
    }
}

/// Settings of the Redis store.
#[derive(Clone, Debug)]
pub struct RedisSettings {
    /// `redis://HOST:PORT` (a database number, user and password as the
    /// `redis` crate's URL syntax allows).
    pub url: String,
    pub key_prefix: String,
    /// Bound on a lookup, from the request's point of view.
    pub timeout: Duration,
}

/// Bound on a fire-and-forget write: it delays nothing, so it may take
/// longer than a lookup, but it must end.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Writes in flight at most; past that a write is dropped (and counted as a
/// store error) instead of queueing behind a slow Redis without bound.
const MAX_WRITES_IN_FLIGHT: usize = 1024;

/// Learned tasks in Redis: `SET <prefix><taskId> <contextId> EX <ttl>`.
///
/// Capacity is Redis's own: every key carries a TTL, so `maxmemory` with
/// `maxmemory-policy volatile-ttl` bounds it the way the in-memory store is
/// bounded (the entries closest to expiry go first).
pub struct RedisStore {
    connection: ConnectionManager,
    key_prefix: String,
    timeout: Duration,
    ttl_secs: u64,
    writes: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl RedisStore {
    /// Sets the store up without connecting: the first command connects, so
    /// the server starts (and fails open) while Redis is down.
    pub fn new(
        settings: &RedisSettings,
        ttl_secs: u64,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let client = redis::Client::open(settings.url.as_str())
            .map_err(|e| format!("--task-store {}: {e}", settings.url))?;
        // Reconnection is the manager's; a connection attempt is bounded so
        // that a black-holed address fails (and is retried) instead of
        // hanging every command behind it. Retries are few and short: each
        // command is bounded by the caller anyway, and the next command
        // after a failure starts a new attempt.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(WRITE_TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| format!("--task-store {}: {e}", settings.url))?;
        Ok(RedisStore {
            connection,
            key_prefix: settings.key_prefix.clone(),
            timeout: settings.timeout,
            ttl_secs,
            writes: Arc::new(Semaphore::new(MAX_WRITES_IN_FLIGHT)),
            metrics,
        })
    }

    fn key(&self, task_id: &str) -> String {
        format!("{}{task_id}", self.key_prefix)
    }

    /// The context of a learned task; `None` when Redis does not have it,
    /// or did not answer within the bound (counted as a store error).
    pub async fn lookup(&self, task_id: &str) -> Option<String> {
        let mut connection = self.connection.clone();
        let mut get = redis::cmd("GET");
        get.arg(self.key(task_id));
        match tokio::time::timeout(
            self.timeout,
            get.query_async::<Option<String>>(&mut connection),
        )
        .await
        {
            Ok(Ok(context)) => context,
            Ok(Err(e)) => {
                self.metrics.store_error();
                warn!("task store: GET failed ({e}); task-only call routed as unknown");
                None
            }
            Err(_) => {
                self.metrics.store_error();
                warn!(
                    "task store: no answer within {} ms; task-only call routed as unknown",
                    self.timeout.as_millis()
                );
                None
            }
        }
    }

    /// Starts writing a pair and returns at once; the write counts
    /// `task_learned` when Redis confirms it, or a store error.
    fn learn_in_background(&self, task_id: &str, context_id: &str) {
        let Ok(permit) = Arc::clone(&self.writes).try_acquire_owned() else {
            self.metrics.store_error();
            warn!("task store: {MAX_WRITES_IN_FLIGHT} writes already in flight; a learned task was dropped");
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.metrics.store_error();
            return;
        };
        let mut connection = self.connection.clone();
        let mut set = redis::cmd("SET");
        set.arg(self.key(task_id))
            .arg(context_id)
            .arg("EX")
            .arg(self.ttl_secs);
        let metrics = Arc::clone(&self.metrics);
        runtime.spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(WRITE_TIMEOUT, set.query_async::<()>(&mut connection)).await
            {
                Ok(Ok(())) => metrics.count(a2a_affinity_core::stats::Counter::TaskLearned),
                Ok(Err(e)) => {
                    metrics.store_error();
                    warn!("task store: SET failed ({e}); a learned task was not stored");
                }
                Err(_) => {
                    metrics.store_error();
                    warn!("task store: SET timed out; a learned task was not stored");
                }
            }
        });
    }
}

/// The configured store, shared by every stream.
#[derive(Clone)]
pub enum Store {
    Memory(Arc<MemoryStore>),
    Redis(Arc<RedisStore>),
}

impl Store {
    /// The store as one stream's core sees it.
    pub fn view(&self) -> StoreView {
        match self {
            Store::Memory(store) => StoreView::Memory(Arc::clone(store)),
            Store::Redis(store) => StoreView::Redis {
                store: Arc::clone(store),
                written: HashSet::new(),
            },
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Store::Memory(_) => "memory".to_string(),
            Store::Redis(store) => format!(
                "redis (key prefix {:?}, lookup timeout {} ms)",
                store.key_prefix,
                store.timeout.as_millis()
            ),
        }
    }
}

/// One stream's handle on the store (the core's `TaskStore`).
pub enum StoreView {
    Memory(Arc<MemoryStore>),
    Redis {
        store: Arc<RedisStore>,
        /// Pairs this stream already wrote: an SSE stream names its task in
        /// every event, and one write per stream is enough.
        written: HashSet<(String, String)>,
    },
}

impl StoreView {
    /// The Redis store, which answers deferred lookups.
    pub fn redis_handle(&self) -> Option<Arc<RedisStore>> {
        match self {
            StoreView::Redis { store, .. } => Some(Arc::clone(store)),
            StoreView::Memory(_) => None,
        }
    }
}

impl TaskStore for StoreView {
    fn lookup(&mut self, task_id: &str, now_secs: u64) -> Lookup {
        match self {
            StoreView::Memory(store) => store.lookup(task_id, now_secs),
            // Redis answers over the network: the stream awaits it and calls
            // `Stream::task_resolved`.
            StoreView::Redis { .. } => Lookup::Deferred,
        }
    }

    fn learn(&mut self, task_id: &str, context_id: &str, now_secs: u64) -> Learned {
        match self {
            StoreView::Memory(store) => store.learn(task_id, context_id, now_secs),
            StoreView::Redis { store, written } => {
                let pair = (task_id.to_string(), context_id.to_string());
                if written.contains(&pair) {
                    return Learned::Unchanged;
                }
                debug!("task store: writing task {task_id}");
                store.learn_in_background(task_id, context_id);
                written.insert(pair);
                // Counted by the write itself when Redis confirms it.
                Learned::NotStored
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_looks_up_and_expires() {
        let store = MemoryStore::new(16, 10);
        assert_eq!(store.learn("t1", "c1", 100), Learned::Stored);
        assert_eq!(store.lookup("t1", 105), Lookup::Found("c1".into()));
        assert_eq!(store.lookup("t1", 110), Lookup::Unknown);
        assert_eq!(store.lookup("t2", 100), Lookup::Unknown);
    }

    #[test]
    fn a_known_pair_is_not_rewritten_until_half_its_ttl_is_gone() {
        let store = MemoryStore::new(16, 10);
        assert_eq!(store.learn("t1", "c1", 100), Learned::Stored);
        assert_eq!(store.learn("t1", "c1", 104), Learned::Unchanged);
        assert_eq!(store.learn("t1", "c1", 106), Learned::Stored);
        assert_eq!(store.lookup("t1", 115), Lookup::Found("c1".into()));
        assert_eq!(store.learn("t1", "c2", 107), Learned::Stored);
        assert_eq!(store.lookup("t1", 107), Lookup::Found("c2".into()));
    }

    #[test]
    fn a_full_store_evicts_the_entry_closest_to_expiry() {
        // One shard: a small capacity.
        let store = MemoryStore::new(2, 100);
        assert_eq!(store.learn("a", "ca", 1), Learned::Stored);
        assert_eq!(store.learn("b", "cb", 2), Learned::Stored);
        assert_eq!(store.learn("c", "cc", 3), Learned::Evicted);
        assert_eq!(store.lookup("a", 3), Lookup::Unknown);
        assert_eq!(store.lookup("b", 3), Lookup::Found("cb".into()));
        assert_eq!(store.lookup("c", 3), Lookup::Found("cc".into()));
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn expired_entries_make_room_without_counting_an_eviction() {
        let store = MemoryStore::new(2, 10);
        assert_eq!(store.learn("a", "ca", 1), Learned::Stored);
        assert_eq!(store.learn("b", "cb", 2), Learned::Stored);
        assert_eq!(store.learn("c", "cc", 50), Learned::Stored);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn capacity_holds_across_shards_and_rewrites() {
        let store = MemoryStore::new(1000, 1_000_000);
        for round in 0..3u64 {
            for i in 0..5000 {
                let _ = store.learn(&format!("t{i}"), "c", round * 600_000 + i);
            }
        }
        assert!(store.len() <= 1000, "{}", store.len());
        for shard in store.shards.iter() {
            let shard = shard.lock().unwrap();
            assert!(shard.order.len() <= 2 * shard.capacity + 16);
        }
    }
}
