//! The learned-task store of the Wasm shell: Envoy shared data, which every
//! worker thread of one Envoy process sees.

use a2a_affinity_core::store::{Learned, Lookup, TaskStore};
use log::warn;

use crate::host::Host;

/// How many ways each set of the task store has: a task may sit in any of
/// them, so two tasks whose ids hash alike do not evict each other while
/// the set has room.
const WAYS: u64 = 4;

/// The geometry of the learned taskId -> contextId pairs in Envoy shared
/// data: a fixed
/// number of keys (`capacity` rounded up to whole sets), each holding one
/// `expiry \t taskId \t contextId` record. Shared data has no delete, so
/// memory stays bounded by never creating more keys than that; a full set
/// overwrites its entry that expires first.
pub struct SharedStore {
    sets: u64,
    ttl_secs: u64,
}

impl SharedStore {
    pub fn new(capacity: u32, ttl_secs: u64) -> Self {
        SharedStore {
            sets: u64::from(capacity).div_ceil(WAYS).max(1),
            ttl_secs,
        }
    }

    fn keys(&self, task_id: &str) -> impl Iterator<Item = String> {
        let set = fnv1a(task_id.as_bytes()) % self.sets;
        (0..WAYS).map(move |way| format!("a2a_affinity.task.{}", set * WAYS + way))
    }

    /// The store as the core sees it, for one host call.
    pub fn with<'a>(&'a self, host: &'a mut dyn Host) -> SharedTasks<'a> {
        SharedTasks { store: self, host }
    }
}

/// The shared-data store bound to the host of one callback.
pub struct SharedTasks<'a> {
    store: &'a SharedStore,
    pub host: &'a mut dyn Host,
}

impl TaskStore for SharedTasks<'_> {
    /// Remembers a task's context; reports an eviction when a live entry of
    /// another task had to go.
    fn learn(&mut self, task_id: &str, context_id: &str, now: u64) -> Learned {
        let ttl_secs = self.store.ttl_secs;
        let mut same = None;
        let mut free = None;
        let mut oldest: Option<(String, u64)> = None;
        for key in self.store.keys(task_id) {
            let record = self.host.shared_get(&key);
            match record.as_deref().and_then(parse_record) {
                Some((expiry, t, c)) if t == task_id => {
                    // Already known and not about to expire: nothing to write.
                    if c == context_id && expiry > now.saturating_add(ttl_secs / 2) {
                        return Learned::Unchanged;
                    }
                    same = Some(key);
                    break;
                }
                Some((expiry, _, _)) if expiry > now => {
                    if oldest.as_ref().is_none_or(|(_, e)| expiry < *e) {
                        oldest = Some((key, expiry));
                    }
                }
                _ => {
                    if free.is_none() {
                        free = Some(key);
                    }
                }
            }
        }
        let (key, evicts) = match (same, free, oldest) {
            (Some(key), _, _) | (None, Some(key), _) => (key, false),
            (None, None, Some((key, _))) => (key, true),
            (None, None, None) => return Learned::NotStored,
        };
        let record = format!(
            "{}\t{}\t{}",
            now.saturating_add(ttl_secs),
            task_id,
            context_id
        );
        if let Err(e) = self.host.shared_set(&key, record.as_bytes()) {
            warn!("storing a learned task failed ({})", e.0);
            return Learned::NotStored;
        }
        if evicts {
            Learned::Evicted
        } else {
            Learned::Stored
        }
    }

    /// The context of a live learned task.
    fn lookup(&mut self, task_id: &str, now: u64) -> Lookup {
        let host = &*self.host;
        self.store
            .keys(task_id)
            .find_map(|key| {
                let record = host.shared_get(&key)?;
                let (expiry, t, c) = parse_record(&record)?;
                (t == task_id && expiry > now).then(|| c.to_string())
            })
            .map_or(Lookup::Unknown, Lookup::Found)
    }
}

fn parse_record(record: &[u8]) -> Option<(u64, &str, &str)> {
    let text = std::str::from_utf8(record).ok()?;
    let mut parts = text.splitn(3, '\t');
    let expiry = parts.next()?.parse().ok()?;
    Some((expiry, parts.next()?, parts.next()?))
}

/// FNV-1a, 64 bits: spreads task ids over the store's sets.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
