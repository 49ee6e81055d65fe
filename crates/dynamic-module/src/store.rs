//! The learned taskId -> contextId pairs of one Envoy process, in native
//! memory shared by every worker thread.
//!
//! The store is split into shards, each a `Mutex` around a table, so that
//! workers learning and looking up different tasks rarely wait for each
//! other. A task id is hashed once, with the store's random keys
//! (`ahash::RandomState::new()`): bits 40 to 55 of the hash pick its shard,
//! and the whole hash places it in the shard's table, whose bucket index
//! takes the low bits and whose tag the top seven. Task ids come from
//! clients and agents, and ids chosen to collide cannot pile up in one
//! shard or one bucket chain without knowing the keys.
//!
//! Capacity is `task_capacity` entries in total, divided between the shards
//! (each holds `capacity / shards`, the first `capacity % shards` one more).
//! A shard holds at least [`MIN_SHARD`] entries: stores under twice that
//! are one shard, and the default (262,144) is 32 shards of 8,192.
//! A full shard overwrites its own entry that was learned or refreshed
//! longest ago. Every entry lives the same time to live from its last
//! write, and time in a shard never goes back (a worker whose clock read a
//! second earlier than another's but that took the lock after it, like a
//! system clock stepped back, gets the latest time the shard has seen; a
//! clock stepped back stands still in the shard until it catches up), so
//! that is the entry that expires first. The choice is
//! per shard, not over the whole store, so with a full store an entry can
//! go while an entry of another shard that expires a little sooner stays.
//! Since a task lands in a shard by a uniform hash, the shards fill evenly.
//!
//! Expired entries are dropped when a lookup meets them and are the first
//! overwritten when a shard is full; an overwrite counts as an eviction only
//! when the entry it replaces was still live.
//!
//! A shard allocates nothing per request once it is full, and nothing for
//! one entry alone while it fills if its ids are of the usual length (the
//! vector of slots grows by doubling): each entry is a slot of that
//! vector, holding its hash and, in the slot itself, the task id and the
//! context id (up to [`INLINE_IDS`] bytes together; longer ones spill to a
//! buffer of their own), linked into the shard's write order by slot
//! numbers; the table holds only slot numbers. An overwrite reuses the
//! slot, and a refresh moves the slot to the newest end of the order in
//! place.
//!
//! Configurations with the same capacity and time to live share a store;
//! one with other settings gets a new store that takes over what the store
//! before it learned, and what that store goes on learning until it goes;
//! every store alive looks up in the others what it lacks ([`shared`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use a2a_affinity_core::store::{Learned, Lookup, TaskStore};
use hashbrown::HashTable;
use smallvec::SmallVec;

use crate::padded::Padded;

/// Shards of a large store: well above the worker count of a large Envoy,
/// so that lock contention stays low.
pub const SHARDS: usize = 32;

/// Entries a shard holds at least, so that the per-shard choice of the entry
/// to overwrite stays close to a choice over the whole store.
pub const MIN_SHARD: usize = 1024;

/// Seconds a worker's clock may lag the clock a takeover read (it read the
/// clock before it took a shard's lock): what the old store learns after a
/// takeover is told apart by its expiry, `now - CLOCK_SLACK_SECS` plus its
/// time to live or later, so a little of what came just before is offered
/// again (and left, as already held).
const CLOCK_SLACK_SECS: u64 = 2;

/// No slot: the end of the write order.
const NIL: u32 = u32::MAX;

/// Bytes of ids a slot holds in itself: a UUID task id and a UUID context
/// id (72 bytes) fit, in a slot of 120 bytes. (A slot padded to 128 and
/// aligned to its two cache lines was no faster, and took 8 bytes more a
/// task.)
pub const INLINE_IDS: usize = 80;

/// One learned task.
struct Slot {
    /// The hash of the task id (the store's keys).
    hash: u64,
    /// Seconds since the Unix epoch after which the entry is not used.
    expires: u64,
    /// The slot written just before this one, or [`NIL`].
    older: u32,
    /// The slot written just after this one, or [`NIL`].
    newer: u32,
    /// Where the task id ends in `ids`.
    split: usize,
    /// The task id, then the context id.
    ids: SmallVec<[u8; INLINE_IDS]>,
}

impl Slot {
    fn task(&self) -> &[u8] {
        self.ids.get(..self.split).unwrap_or_default()
    }

    fn context(&self) -> &[u8] {
        self.ids.get(self.split..).unwrap_or_default()
    }

    fn write(&mut self, task_id: &str, context_id: &str, hash: u64, expires: u64) {
        self.ids.clear();
        // Ids that fit stay in the slot. Longer ones take one allocation
        // (two appends would grow it twice), or none when the slot's
        // spilled buffer already fits.
        self.ids
            .reserve_exact(task_id.len().saturating_add(context_id.len()));
        self.ids.extend_from_slice(task_id.as_bytes());
        self.ids.extend_from_slice(context_id.as_bytes());
        self.split = task_id.len();
        self.hash = hash;
        self.expires = expires;
    }
}

/// One shard: the entries in slots, a table from task id to slot, and the
/// write order (oldest first), which is the expiry order.
struct Shard {
    /// Slot numbers, placed by the hash their slot holds.
    table: HashTable<u32>,
    /// Never longer than `capacity`.
    slots: Vec<Slot>,
    /// Slots whose entry was dropped, to be used again.
    free: Vec<u32>,
    oldest: u32,
    newest: u32,
    capacity: usize,
    /// The latest time, in seconds since the Unix epoch, a lookup or a
    /// write in this shard has used: its time never goes back, so the write
    /// order stays the expiry order.
    clock: u64,
}

impl Shard {
    fn new(capacity: usize) -> Self {
        Shard {
            table: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            oldest: NIL,
            newest: NIL,
            capacity,
            clock: 0,
        }
    }

    /// `now`, or the shard's latest time if `now` is earlier.
    fn time(&mut self, now: u64) -> u64 {
        self.clock = self.clock.max(now);
        self.clock
    }

    fn len(&self) -> usize {
        self.table.len()
    }

    fn slot(&self, at: u32) -> Option<&Slot> {
        self.slots.get(usize::try_from(at).ok()?)
    }

    fn slot_mut(&mut self, at: u32) -> Option<&mut Slot> {
        self.slots.get_mut(usize::try_from(at).ok()?)
    }

    /// The slot holding `task_id`, whose hash is `hash`.
    fn find(&self, task_id: &str, hash: u64) -> Option<u32> {
        let slots = &self.slots;
        self.table
            .find(hash, |&at| {
                usize::try_from(at)
                    .ok()
                    .and_then(|i| slots.get(i))
                    .is_some_and(|slot| slot.hash == hash && slot.task() == task_id.as_bytes())
            })
            .copied()
    }

    /// Takes slot `at` out of the write order.
    fn unlink(&mut self, at: u32) {
        let Some(slot) = self.slot(at) else { return };
        let (older, newer) = (slot.older, slot.newer);
        match self.slot_mut(older) {
            Some(o) => o.newer = newer,
            None => self.oldest = newer,
        }
        match self.slot_mut(newer) {
            Some(n) => n.older = older,
            None => self.newest = older,
        }
    }

    /// Puts slot `at` at the newest end of the write order.
    fn push_newest(&mut self, at: u32) {
        self.link_after(at, self.newest);
    }

    /// Puts slot `at`, which is in no order, just after slot `after` (first
    /// after [`NIL`]).
    fn link_after(&mut self, at: u32, after: u32) {
        let next = self.slot(after).map_or(self.oldest, |slot| slot.newer);
        if let Some(slot) = self.slot_mut(at) {
            slot.older = after;
            slot.newer = next;
        }
        match self.slot_mut(after) {
            Some(prev) => prev.newer = at,
            None => self.oldest = at,
        }
        match self.slot_mut(next) {
            Some(n) => n.older = at,
            None => self.newest = at,
        }
    }

    /// Drops the entry of slot `at` from the table and the order; the slot
    /// stays for the next entry.
    fn drop_entry(&mut self, at: u32) {
        let Some(hash) = self.slot(at).map(|slot| slot.hash) else {
            return;
        };
        if let Ok(entry) = self.table.find_entry(hash, |&s| s == at) {
            entry.remove();
        }
        self.unlink(at);
    }

    fn lookup(&mut self, task_id: &str, hash: u64, now: u64) -> Lookup {
        let now = self.time(now);
        let Some(at) = self.find(task_id, hash) else {
            return Lookup::Unknown;
        };
        match self.slot(at) {
            Some(slot) if slot.expires > now => std::str::from_utf8(slot.context())
                .map_or(Lookup::Unknown, |context| Lookup::Found(context.to_owned())),
            _ => {
                self.drop_entry(at);
                self.free.push(at);
                Lookup::Unknown
            }
        }
    }

    fn learn(&mut self, task_id: &str, context_id: &str, hash: u64, now: u64, ttl: u64) -> Learned {
        let now = self.time(now);
        let expires = now.saturating_add(ttl);
        if let Some(at) = self.find(task_id, hash) {
            let Some(slot) = self.slot_mut(at) else {
                return Learned::NotStored;
            };
            // Already known and not about to expire: nothing to write (the
            // same rule as the Wasm filter's shared-data store).
            if slot.context() == context_id.as_bytes() && slot.expires > now.saturating_add(ttl / 2)
            {
                return Learned::Unchanged;
            }
            slot.write(task_id, context_id, hash, expires);
            self.unlink(at);
            self.push_newest(at);
            return Learned::Stored;
        }
        if self.capacity == 0 {
            return Learned::NotStored;
        }
        let mut evicted = false;
        let at = if self.len() >= self.capacity {
            // Full: the oldest entry goes; it was live if it had not expired.
            let at = self.oldest;
            let Some(slot) = self.slot(at) else {
                return Learned::NotStored;
            };
            evicted = slot.expires > now;
            self.drop_entry(at);
            at
        } else {
            let Some(at) = self.spare_slot() else {
                return Learned::NotStored;
            };
            at
        };
        if !self.place(at, (task_id, context_id, hash, expires), self.newest) {
            return Learned::NotStored;
        }
        if evicted {
            Learned::Evicted
        } else {
            Learned::Stored
        }
    }

    /// A slot for a new entry when the shard is not full: one an entry left,
    /// or a new one at the end of the vector.
    fn spare_slot(&mut self) -> Option<u32> {
        if let Some(at) = self.free.pop() {
            return Some(at);
        }
        let at = u32::try_from(self.slots.len()).ok()?;
        self.slots.push(Slot {
            hash: 0,
            expires: 0,
            older: NIL,
            newer: NIL,
            split: 0,
            ids: SmallVec::new(),
        });
        Some(at)
    }

    /// Writes an entry into slot `at`, which holds none, links it just after
    /// slot `after` in the order (or first, after [`NIL`]) and enters it in
    /// the table.
    fn place(
        &mut self,
        at: u32,
        (task_id, context_id, hash, expires): (&str, &str, u64, u64),
        after: u32,
    ) -> bool {
        let Some(slot) = self.slot_mut(at) else {
            return false;
        };
        slot.write(task_id, context_id, hash, expires);
        self.link_after(at, after);
        let Shard { table, slots, .. } = self;
        // Should the table grow, it moves each entry by the hash its slot
        // keeps: no task id is hashed again.
        table.insert_unique(hash, at, |&s| {
            usize::try_from(s)
                .ok()
                .and_then(|i| slots.get(i))
                .map_or(0, |slot| slot.hash)
        });
        true
    }

    /// Adds entries of another store to the shard, into room it has and no
    /// further: entries here that have expired are dropped first, nothing
    /// live here is pushed out, and should there be less room than entries,
    /// those that expire last are taken (into a new store, as many as its
    /// capacity). `incoming`
    /// (task id, context id, hash, expiry) is in expiry order; each expiry
    /// is cut to this store's time to live from now, and each entry goes to
    /// its place in the order, so none lives longer than it would have.
    /// A task already here with the same context takes the incoming expiry
    /// if that is later: it was learned again in the other store since this
    /// one took it. (With another context, the one here stands: an expiry
    /// cut to a time to live does not tell which write came last.) Returns
    /// how many were added or so renewed.
    fn carry_spare(&mut self, (now, ttl): (u64, u64), incoming: &[Incoming<'_>]) -> usize {
        let now = self.time(now);
        while let Some(slot) = self.slot(self.oldest) {
            if slot.expires > now {
                break;
            }
            let at = self.oldest;
            self.drop_entry(at);
            self.free.push(at);
        }
        let mut renewed = 0;
        // Where the last renewed entry went: the incoming expiries rise, so
        // each renewed entry's place is found walking on from there.
        let mut last = NIL;
        // The live entries this shard does not hold, in expiry order: the
        // candidates for its room.
        let mut fresh = Vec::new();
        for entry in incoming {
            let &(task_id, context_id, hash, expires) = entry;
            let Some(at) = self.find(task_id, hash) else {
                if expires > now {
                    fresh.push(entry);
                }
                continue;
            };
            let expires = expires.min(now.saturating_add(ttl));
            if self.slot(at).is_none_or(|slot| {
                slot.expires >= expires || slot.context() != context_id.as_bytes()
            }) {
                continue;
            }
            self.unlink(at);
            let mut after = last;
            loop {
                let next = self.slot(after).map_or(self.oldest, |slot| slot.newer);
                match self.slot(next) {
                    Some(slot) if slot.expires <= expires => after = next,
                    _ => break,
                }
            }
            if let Some(slot) = self.slot_mut(at) {
                slot.expires = expires;
            }
            self.link_after(at, after);
            last = at;
            renewed += 1;
        }
        let room = self.capacity.saturating_sub(self.len());
        let mut after = self.newest;
        let mut added = 0;
        // Those that expire last, newest first: the walk back along the
        // order below then only ever goes one way.
        for &&(task_id, context_id, hash, expires) in fresh.iter().rev().take(room) {
            let expires = expires.min(now.saturating_add(ttl));
            while let Some(slot) = self.slot(after) {
                if slot.expires <= expires {
                    break;
                }
                after = slot.older;
            }
            let Some(at) = self.spare_slot() else { break };
            if !self.place(at, (task_id, context_id, hash, expires), after) {
                break;
            }
            added += 1;
        }
        added + renewed
    }
}

/// An entry carried from another store: task id, context id, its hash
/// under the receiving store's keys, expiry.
type Incoming<'a> = (&'a str, &'a str, u64, u64);

/// The store every worker thread of the process shares (one per distinct
/// `task_capacity`/`task_ttl_secs`, see [`shared`]).
pub struct ShardedStore {
    /// Each on its own cache lines, so that workers locking different
    /// shards do not slow each other.
    shards: Box<[Padded<Mutex<Shard>>]>,
    /// Hashes task ids, for the shard and the table alike.
    keys: ahash::RandomState,
    ttl_secs: u64,
    capacity: usize,
    /// The other stores of the process, of other settings, alive when this
    /// one or they were made (see [`shared`]): a task this one does not hold
    /// is looked up in those still alive.
    peers: Mutex<Vec<Weak<ShardedStore>>>,
    /// Whether `peers` may hold a store alive: false once a lookup has found
    /// them all gone, and from then on a lookup that misses reads only this.
    has_peers: AtomicBool,
    /// This store's place in the chain of stores that took over from one
    /// another, which outlives it while an older store points at it.
    link: Arc<Link>,
}

/// A store's place in the chain of takeovers: the store, the link of the
/// store that took over from it, and from when (an expiry) what it learned
/// is to be handed over. Links, unlike stores, stay while an older store's
/// link points at them, so a store that goes finds past a successor that has
/// gone, or is going on another thread at the same moment, the store that
/// took over from that one.
struct Link(Mutex<LinkState>);

struct LinkState {
    store: Weak<ShardedStore>,
    next: Option<Arc<Link>>,
    /// Entries that expire at this or later are handed over.
    since: u64,
}

/// How many links a store that goes follows at most. The chain has no
/// cycles (a store that comes back drops its link onward), and each store
/// made points the stores alive past the links of stores gone
/// ([`Link::skip_gone`]), so a walk meets few; the bound only makes its end
/// plain.
const MAX_LINKS: usize = 64;

/// Where a walk along the links ends.
enum Reached {
    /// The first link whose store is alive, and that store.
    Alive(Arc<Link>, Arc<ShardedStore>),
    /// The chain's end: every store past the start is gone.
    End,
    /// [`MAX_LINKS`] links of stores gone.
    Bound,
}

impl Link {
    /// Walks from `next` on to the first link whose store is alive.
    fn first_alive(mut next: Option<Arc<Link>>) -> Reached {
        for _ in 0..MAX_LINKS {
            let Some(link) = next else {
                return Reached::End;
            };
            let (store, onward) = {
                let state = lock(&link.0);
                (state.store.upgrade(), state.next.clone())
            };
            if let Some(store) = store {
                return Reached::Alive(link, store);
            }
            next = onward;
        }
        Reached::Bound
    }

    /// Points this link past the links onward whose stores are gone (what
    /// a walk from here would skip), so that those links go too.
    fn skip_gone(&self) {
        let first = lock(&self.0).next.clone();
        let next = match Link::first_alive(first.clone()) {
            Reached::Alive(link, _) => Some(link),
            Reached::End => None,
            Reached::Bound => return,
        };
        let mut state = lock(&self.0);
        let unchanged = match (&state.next, &first) {
            (Some(now), Some(then)) => Arc::ptr_eq(now, then),
            (None, None) => true,
            _ => false,
        };
        if unchanged {
            state.next = next;
        }
    }
}

impl Drop for ShardedStore {
    /// Hands what this store learned after another took over from it to
    /// that one, if it is still alive, where it fits without pushing out a
    /// live entry there: what streams begun under the old configuration
    /// learned after the change is not lost with it. Only those entries are
    /// read (they are the newest end of each shard's order), so the work is
    /// theirs, not the store's size. The time is the latest this store has
    /// seen (no clock is read here), so an entry carried may have expired
    /// since, and is then dropped by the first lookup that meets it.
    ///
    /// The receiving store passes them on in turn when it goes, should a
    /// store have taken over from it in the meantime; and should the store
    /// that took over from this one be gone, or going on another thread,
    /// they go to the first store alive along the chain of links past it.
    /// So of pushes X, Y, Z inside one drain, what X learned after Y was
    /// made reaches Z whichever of X and Y goes first, or both at once.
    fn drop(&mut self) {
        let (next, since) = {
            let state = lock(&self.link.0);
            (state.next.clone(), state.since)
        };
        let Reached::Alive(_, to) = Link::first_alive(next) else {
            return;
        };
        let latest = self.shards.iter().map(|s| lock(s).clock).max().unwrap_or(0);
        if to.carry_from(self, (latest, since)) > 0 {
            // Each entry carried expires at `since` or later, or at the
            // receiver's time to live from `latest` if that is sooner (its
            // shards' time is `latest` or later).
            to.hand_over_from(since.min(latest.saturating_add(to.ttl_secs)));
        }
    }
}

/// A live entry of a store, its ids at `ids[start..split]` and
/// `ids[split..end]` of the [`Snapshot`].
struct Held {
    expires: u64,
    start: usize,
    split: usize,
    end: usize,
}

/// The live entries of a store, in expiry order.
struct Snapshot {
    ids: Vec<u8>,
    held: Vec<Held>,
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
                .map(|i| Padded(Mutex::new(Shard::new(base + usize::from(i < extra)))))
                .collect(),
            keys: ahash::RandomState::new(),
            ttl_secs,
            capacity,
            peers: Mutex::new(Vec::new()),
            has_peers: AtomicBool::new(false),
            link: Arc::new(Link(Mutex::new(LinkState {
                store: Weak::new(),
                next: None,
                since: u64::MAX,
            }))),
        }
    }

    /// The entries that have not expired at `now` and expire at `since` or
    /// later, each shard read under its lock in turn, from its newest entry
    /// back to the first that expires before `since`.
    fn snapshot(&self, now: u64, since: u64) -> Snapshot {
        let mut ids = Vec::new();
        let mut held = Vec::new();
        for shard in self.shards.iter() {
            let shard = lock(shard);
            let now = shard.clock.max(now);
            let first = held.len();
            let mut at = shard.newest;
            // The order holds each slot once; the bound only makes that plain.
            for _ in 0..shard.slots.len() {
                let Some(slot) = shard.slot(at) else { break };
                if slot.expires <= now || slot.expires < since {
                    break;
                }
                let start = ids.len();
                ids.extend_from_slice(&slot.ids);
                held.push(Held {
                    expires: slot.expires,
                    start,
                    split: start.saturating_add(slot.split),
                    end: ids.len(),
                });
                at = slot.older;
            }
            // Back in write order, which the sort below keeps among entries
            // that expire in the same second.
            if let Some(from_this_shard) = held.get_mut(first..) {
                from_this_shard.reverse();
            }
        }
        held.sort_by_key(|h| h.expires);
        Snapshot { ids, held }
    }

    /// Copies the entries of `from` live at `now` that expire at `since` or
    /// later into the room this store has (`Shard::carry_spare`). Returns
    /// how many it took.
    fn carry_from(&self, from: &ShardedStore, (now, since): (u64, u64)) -> usize {
        let Snapshot { ids, held } = from.snapshot(now, since);
        let incoming = held.iter().filter_map(|h| {
            let task = std::str::from_utf8(ids.get(h.start..h.split)?).ok()?;
            let context = std::str::from_utf8(ids.get(h.split..h.end)?).ok()?;
            Some((task, context, self.hash(task), h.expires))
        });
        // Each shard's share, still in expiry order, added under one lock.
        let mut by_shard: Vec<Vec<Incoming<'_>>> = vec![Vec::new(); self.shards.len()];
        for entry in incoming {
            if let Some(share) = by_shard.get_mut(self.shard_index(entry.2)) {
                share.push(entry);
            }
        }
        let limits = (now, self.ttl_secs);
        self.shards
            .iter()
            .zip(&by_shard)
            .filter(|(_, share)| !share.is_empty())
            .map(|(shard, share)| lock(shard).carry_spare(limits, share))
            .sum()
    }

    /// Adds `peer` to the stores this one looks up what it lacks in.
    fn add_peer(&self, peer: &Arc<ShardedStore>) {
        let mut peers = lock(&self.peers);
        peers.retain(|p| p.strong_count() > 0);
        if !peers
            .iter()
            .any(|p| std::ptr::eq(p.as_ptr(), Arc::as_ptr(peer)))
        {
            peers.push(Arc::downgrade(peer));
        }
        self.has_peers.store(true, Ordering::Relaxed);
    }

    /// The peers alive; forgets those gone.
    fn live_peers(&self) -> SmallVec<[Arc<ShardedStore>; 4]> {
        let mut peers = lock(&self.peers);
        peers.retain(|p| p.strong_count() > 0);
        if peers.is_empty() {
            self.has_peers.store(false, Ordering::Relaxed);
        }
        peers.iter().filter_map(Weak::upgrade).collect()
    }

    /// `store` took over from this one at `now`: it takes over what this
    /// one learns from then on when this one goes. That expires at `now`
    /// plus this store's time to live or later (a shard's time never goes
    /// back), give or take a lagging worker's clock.
    fn set_successor(&self, store: &Arc<ShardedStore>, now: u64) {
        let since = now
            .saturating_sub(CLOCK_SLACK_SECS)
            .saturating_add(self.ttl_secs);
        let mut state = lock(&self.link.0);
        state.next = Some(Arc::clone(&store.link));
        state.since = since;
    }

    /// Another store handed this one its entries that expire at `since` or
    /// later: this one hands them on when it goes.
    fn hand_over_from(&self, since: u64) {
        let mut state = lock(&self.link.0);
        state.since = state.since.min(since);
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// Entries held now, live or expired but not yet dropped.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The hash of a task id.
    fn hash(&self, task_id: &str) -> u64 {
        self.keys.hash_one(task_id.as_bytes())
    }

    /// The shard of a hash: bits 40 to 55, which neither the table's
    /// bucket index (the low bits) nor its tag (the top seven) uses.
    fn shard_index(&self, hash: u64) -> usize {
        let bits = usize::try_from((hash >> 40) & 0xffff).unwrap_or(0);
        bits % self.shards.len().max(1)
    }

    fn shard(&self, hash: u64) -> Option<MutexGuard<'_, Shard>> {
        self.shards
            .get(self.shard_index(hash))
            .map(|shard| lock(shard))
    }

    /// The context of a live learned task. A task this store does not hold
    /// is looked up in the other stores alive (those of the configurations
    /// this one replaced or was replaced by: streams on the connections of
    /// each learn in its own store until its listener has drained). It is not
    /// copied here: a copy would take a slot, pushing out the entry that
    /// expires first, which may be held nowhere else, and would outlive the
    /// entry it was copied from. What a store learns after another took
    /// over from it is handed to that one when it goes (see [`shared`]).
    pub fn lookup(&self, task_id: &str, now_secs: u64) -> Lookup {
        let found = self.lookup_here(task_id, now_secs);
        if found != Lookup::Unknown || !self.has_peers.load(Ordering::Relaxed) {
            return found;
        }
        self.live_peers()
            .iter()
            .map(|peer| peer.lookup_here(task_id, now_secs))
            .find(|there| matches!(there, Lookup::Found(_)))
            .unwrap_or(found)
    }

    /// The context of a live task this store holds.
    fn lookup_here(&self, task_id: &str, now_secs: u64) -> Lookup {
        let hash = self.hash(task_id);
        self.shard(hash).map_or(Lookup::Unknown, |mut shard| {
            shard.lookup(task_id, hash, now_secs)
        })
    }

    /// Remembers `task_id` -> `context_id` for the store's time to live.
    pub fn learn(&self, task_id: &str, context_id: &str, now_secs: u64) -> Learned {
        let ttl = self.ttl_secs;
        let hash = self.hash(task_id);
        self.shard(hash).map_or(Learned::NotStored, |mut shard| {
            shard.learn(task_id, context_id, hash, now_secs, ttl)
        })
    }
}

/// A poisoned lock (a thread panicked while holding it) is used as it is:
/// nothing above panics between two of its writes (slots are read with `get`,
/// and an allocation that fails aborts), so the shard (or list of peers) it
/// guards is consistent, and the store keeps serving rather than failing every
/// request.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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

/// Stores alive, by (capacity, ttl), oldest first.
type Stores = Vec<(u32, u64, Weak<ShardedStore>)>;

/// The stores alive in this process.
#[cfg(not(test))]
fn with_stores<R>(f: impl FnOnce(&mut Stores) -> R) -> R {
    static STORES: Mutex<Stores> = Mutex::new(Vec::new());
    f(&mut STORES.lock().unwrap_or_else(PoisonError::into_inner))
}

/// The stores the configurations of this thread made: the host tests run
/// in parallel threads, and each test's configurations stand for one
/// Envoy's, apart from every other test's.
#[cfg(test)]
fn with_stores<R>(f: impl FnOnce(&mut Stores) -> R) -> R {
    thread_local! {
        static STORES: std::cell::RefCell<Stores> = const { std::cell::RefCell::new(Vec::new()) };
    }
    STORES.with_borrow_mut(f)
}

/// What a store took over from a store of other settings.
#[derive(Debug, PartialEq, Eq)]
pub struct Carried {
    pub capacity: u32,
    pub ttl_secs: u64,
    /// How many of its entries it took (or renewed, for tasks it held).
    pub tasks: usize,
}

/// The process's store for these settings: the one a live filter
/// configuration already uses, or a new one. A configuration pushed again
/// (LDS update, hot reload of the listener) is created while the old one is
/// still alive, so with the same `task_capacity` and `task_ttl_secs` the
/// learned tasks stay where they are; two filter instances with the same
/// settings share what they learn, as the Wasm filter's instances share
/// Envoy's shared data.
///
/// A configuration whose settings no live store has gets a new store, which
/// takes over the live entries of the newest store alive (each kept until it
/// would have expired, or this store's time to live from `now` if that is
/// sooner; should the new store be smaller, those that expire first are left
/// out); when that store goes, it hands over what it learned after the change
/// (passed on again, should a newer store have taken over from this one by
/// then). Every store alive looks up in the others the tasks it does not
/// hold (the old configuration's listener drains, and streams on its
/// connections still learn in the old store). So changing either setting keeps
/// what was learned, and a task learned on a connection of one configuration is
/// found on the connections of any other. Settings that come back while their
/// store lives (a push and its rollback, or a push of one of two listeners
/// whose settings differ) find that store, which takes over from the newest
/// store of other settings into the room it has (nothing live of its own is
/// pushed out), and is the newest from then on.
pub fn shared(capacity: u32, ttl_secs: u64, now: u64) -> (Arc<ShardedStore>, Option<Carried>) {
    with_stores(|stores| store_for(stores, capacity, ttl_secs, now))
}

fn store_for(
    stores: &mut Stores,
    capacity: u32,
    ttl_secs: u64,
    now: u64,
) -> (Arc<ShardedStore>, Option<Carried>) {
    stores.retain(|(_, _, weak)| weak.strong_count() > 0);
    for store in stores.iter().filter_map(|(_, _, weak)| weak.upgrade()) {
        store.link.skip_gone();
    }
    let same = stores
        .iter()
        .enumerate()
        .find(|(_, (c, t, _))| *c == capacity && *t == ttl_secs)
        .and_then(|(at, (_, _, weak))| Some((at, weak.upgrade()?)));
    if let Some((at, store)) = same {
        // A store of other settings made since (a push and its rollback
        // while the first configuration still lives): this one takes over
        // what that one learned, and what it learns until it goes, and is
        // the newest from now on.
        let Some((from_capacity, from_ttl, from)) =
            newest(stores.get(at + 1..).unwrap_or_default())
        else {
            return (store, None);
        };
        // Its link onward pointed at an older store now: dropped, so that
        // the chain has no cycle.
        lock(&store.link.0).next = None;
        let carried = take_over(&store, (from_capacity, from_ttl, &from), stores, now);
        let entry = stores.remove(at);
        stores.push(entry);
        return (store, Some(carried));
    }
    let store = Arc::new(ShardedStore::new(capacity, ttl_secs));
    lock(&store.link.0).store = Arc::downgrade(&store);
    let Some((from_capacity, from_ttl, from)) = newest(stores) else {
        stores.push((capacity, ttl_secs, Arc::downgrade(&store)));
        return (store, None);
    };
    let carried = take_over(&store, (from_capacity, from_ttl, &from), stores, now);
    stores.push((capacity, ttl_secs, Arc::downgrade(&store)));
    (store, Some(carried))
}

/// `store` takes over from `from` (of those settings) at `now`: `from` is to
/// hand it what it learns from then on, `store` copies what `from` holds,
/// and `store` and every other store alive look up in each other what they
/// lack. The successor is set before the copy, so that what a store going
/// meanwhile hands to `from` is either copied or passed on.
fn take_over(
    store: &Arc<ShardedStore>,
    (capacity, ttl_secs, from): (u32, u64, &Arc<ShardedStore>),
    stores: &[(u32, u64, Weak<ShardedStore>)],
    now: u64,
) -> Carried {
    from.set_successor(store, now);
    let tasks = store.carry_from(from, (now, 0));
    link_to_all(store, stores);
    Carried {
        capacity,
        ttl_secs,
        tasks,
    }
}

/// `store` and every other store alive look up in each other what they
/// lack, while both live.
fn link_to_all(store: &Arc<ShardedStore>, stores: &[(u32, u64, Weak<ShardedStore>)]) {
    for other in stores.iter().filter_map(|(_, _, weak)| weak.upgrade()) {
        if !Arc::ptr_eq(&other, store) {
            store.add_peer(&other);
            other.add_peer(store);
        }
    }
}

/// The newest store alive of `stores`, with its settings.
fn newest(stores: &[(u32, u64, Weak<ShardedStore>)]) -> Option<(u32, u64, Arc<ShardedStore>)> {
    stores
        .iter()
        .rev()
        .find_map(|(c, t, weak)| Some((*c, *t, weak.upgrade()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000;

    /// The hash the shard tests give a task id: fixed keys, so that a
    /// failure repeats.
    fn h(task: &str) -> u64 {
        ahash::RandomState::with_seeds(1, 2, 3, 4).hash_one(task.as_bytes())
    }

    impl Shard {
        fn learn_id(&mut self, task: &str, context: &str, now: u64, ttl: u64) -> Learned {
            self.learn(task, context, h(task), now, ttl)
        }

        fn lookup_id(&mut self, task: &str, now: u64) -> Lookup {
            self.lookup(task, h(task), now)
        }
    }

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
    fn a_lagging_clock_cannot_make_a_live_entry_go_before_an_expired_one() {
        // One shard of two entries. "b" is written by a worker whose clock
        // read a second earlier than the one that wrote "a" before it: in
        // the shard, its time is "a"'s, so the two expire together.
        let store = ShardedStore::new(2, 100);
        assert_eq!(store.learn("a", "1", NOW), Learned::Stored);
        assert_eq!(store.learn("b", "2", NOW - 1), Learned::Stored);
        // A second before both expire, "a" goes, live, and "b" stays.
        assert_eq!(store.learn("c", "3", NOW + 99), Learned::Evicted);
        assert_eq!(store.lookup("b", NOW + 99), Lookup::Found("2".into()));
        // Then "b" has expired: overwriting it is no eviction.
        assert_eq!(store.learn("d", "4", NOW + 100), Learned::Stored);
        assert_eq!(store.lookup("b", NOW + 100), Lookup::Unknown);
        assert_eq!(store.lookup("c", NOW + 100), Lookup::Found("3".into()));
        // A clock stepped back stands still in the shard: "c" is not
        // younger for it, and "d" was written at NOW + 100, not earlier.
        assert_eq!(store.lookup("c", NOW), Lookup::Found("3".into()));
        assert_eq!(store.lookup("d", NOW + 199), Lookup::Found("4".into()));
        assert_eq!(store.lookup("d", NOW + 200), Lookup::Unknown);
    }

    /// The shard's links, table and free slots agree: walking the write
    /// order from either end meets every entry once, each is in the table,
    /// and every slot is either an entry or free.
    fn check_shard(shard: &Shard) {
        check_shard_hashed(shard, h);
    }

    /// [`check_shard`] for a shard whose ids hash with `hash`.
    fn check_shard_hashed(shard: &Shard, hash: impl Fn(&str) -> u64) {
        // The slots met from `at` on, following `next`.
        let walk = |mut at: u32, next: fn(&Slot) -> u32| {
            let mut met = Vec::new();
            while let Some(slot) = shard.slot(at) {
                met.push(at);
                assert!(met.len() <= shard.slots.len(), "a cycle");
                at = next(slot);
            }
            met
        };
        let forward = walk(shard.oldest, |slot| slot.newer);
        let mut backward = walk(shard.newest, |slot| slot.older);
        backward.reverse();
        assert_eq!(forward, backward);
        assert_eq!(forward.len(), shard.len());
        for &at in &forward {
            let slot = shard.slot(at).unwrap();
            let task = std::str::from_utf8(slot.task()).unwrap();
            assert_eq!(slot.hash, hash(task));
            assert_eq!(shard.find(task, slot.hash), Some(at));
        }
        // The order is the expiry order.
        let expiries: Vec<u64> = forward
            .iter()
            .map(|&at| shard.slot(at).unwrap().expires)
            .collect();
        assert!(expiries.is_sorted(), "{expiries:?}");
        assert_eq!(forward.len() + shard.free.len(), shard.slots.len());
        assert!(shard.slots.len() <= shard.capacity);
    }

    #[test]
    fn one_shard_behaves_as_a_list_in_write_order() {
        // A model of the rules, not of the mechanism: a full shard
        // overwrites the entry that expires first (of two that expire
        // together, the one written first), and time never goes back.
        struct Model {
            entries: Vec<(String, String, u64)>,
            capacity: usize,
            ttl: u64,
            clock: u64,
        }
        impl Model {
            fn learn(&mut self, task: &str, context: &str, now: u64) -> Learned {
                self.clock = self.clock.max(now);
                let now = self.clock;
                if let Some(i) = self.entries.iter().position(|e| e.0 == task) {
                    let e = &self.entries[i];
                    if e.1 == context && e.2 > now + self.ttl / 2 {
                        return Learned::Unchanged;
                    }
                    self.entries.remove(i);
                    self.entries
                        .push((task.into(), context.into(), now + self.ttl));
                    return Learned::Stored;
                }
                let mut evicted = false;
                if self.entries.len() >= self.capacity {
                    let first = (0..self.entries.len())
                        .min_by_key(|&i| (self.entries[i].2, i))
                        .unwrap();
                    evicted = self.entries.remove(first).2 > now;
                }
                self.entries
                    .push((task.into(), context.into(), now + self.ttl));
                if evicted {
                    Learned::Evicted
                } else {
                    Learned::Stored
                }
            }
            fn lookup(&mut self, task: &str, now: u64) -> Lookup {
                self.clock = self.clock.max(now);
                let now = self.clock;
                let Some(i) = self.entries.iter().position(|e| e.0 == task) else {
                    return Lookup::Unknown;
                };
                if self.entries[i].2 > now {
                    Lookup::Found(self.entries[i].1.clone())
                } else {
                    self.entries.remove(i);
                    Lookup::Unknown
                }
            }
        }

        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        // Ids of different lengths, so that a reused buffer grows and shrinks.
        let tasks: Vec<String> = (0..14).map(|i| format!("t{}", "x".repeat(i * 3))).collect();
        let contexts: Vec<String> = (0..4).map(|i| "c".repeat(1 + i * 20)).collect();
        for capacity in [1usize, 2, 5, 9] {
            let ttl = 60;
            let mut shard = Shard::new(capacity);
            let mut model = Model {
                entries: Vec::new(),
                capacity,
                ttl,
                clock: 0,
            };
            let mut now = NOW;
            for step in 0..20_000 {
                // Mostly forward, sometimes a second back (two workers'
                // clocks), sometimes far forward (everything expires).
                now = match next(50) {
                    0 => now - 1,
                    1 => now + 200,
                    _ => now + next(4),
                };
                let task = &tasks[next(tasks.len() as u64) as usize];
                if next(2) == 0 {
                    let context = &contexts[next(contexts.len() as u64) as usize];
                    assert_eq!(
                        shard.learn_id(task, context, now, ttl),
                        model.learn(task, context, now),
                        "capacity {capacity}, step {step}: learn {task}"
                    );
                } else {
                    assert_eq!(
                        shard.lookup_id(task, now),
                        model.lookup(task, now),
                        "capacity {capacity}, step {step}: lookup {task}"
                    );
                }
                assert_eq!(shard.len(), model.entries.len());
                if step % 97 == 0 {
                    check_shard(&shard);
                }
            }
            check_shard(&shard);
        }
    }

    #[test]
    fn a_full_shard_reuses_its_slots_and_buffers() {
        // UUID-length ids (72 bytes together) stay in their slot; longer
        // ones spill to a buffer of their own, which an overwrite with ids
        // of the same length reuses.
        for width in [36usize, 60] {
            let mut shard = Shard::new(64);
            let id = |i: u32| format!("{i:0width$}");
            for i in 0..64 {
                shard.learn_id(&id(i), &id(i + 1_000_000), NOW, 3600);
            }
            let spilled = 2 * width > INLINE_IDS;
            assert!(shard.slots.iter().all(|s| s.ids.spilled() == spilled));
            let buffers: Vec<*const u8> = shard.slots.iter().map(|s| s.ids.as_ptr()).collect();
            for i in 64..10_000 {
                assert_eq!(
                    shard.learn_id(&id(i), &id(i + 1_000_000), NOW, 3600),
                    Learned::Evicted
                );
            }
            check_shard(&shard);
            assert_eq!(shard.slots.len(), 64);
            // Every overwrite wrote where the slot's ids already were.
            let after: Vec<*const u8> = shard.slots.iter().map(|s| s.ids.as_ptr()).collect();
            assert_eq!(buffers, after);
            // A slot a lookup frees is used again before the vector grows.
            assert_eq!(shard.lookup_id(&id(9_999), NOW + 3600), Lookup::Unknown);
            assert_eq!(shard.len(), 63);
            assert_eq!(shard.free.len(), 1);
            assert_eq!(shard.learn_id("new", "ctx", NOW, 3600), Learned::Stored);
            assert_eq!(shard.slots.len(), 64);
            assert!(shard.free.is_empty());
            check_shard(&shard);
        }
    }

    #[test]
    fn a_slot_holds_its_ids_in_120_bytes() {
        // The ids, their length and spill pointer, the hash, the expiry,
        // two links and the split: the 120 bytes the memory figures of the
        // crate README count.
        assert_eq!(std::mem::size_of::<Slot>(), 120);
    }

    #[test]
    fn the_shard_and_the_bucket_come_from_different_bits() {
        // The ids of one shard still spread over the low bits of the hash,
        // which place them in the shard's table: were the shard picked from
        // those bits, every id of a shard would share them.
        let store = ShardedStore::new(32 * 1024, 3600);
        let mut low = std::collections::HashSet::new();
        let mut in_shard = 0;
        // About 6,000 ids land in shard 0, so each of the 64 low values is
        // missed with odds of about e^-98. With 20,000 ids in all (about
        // 600 in the shard) it was e^-10 each, and with the store's random
        // keys the test failed in about one run in 300.
        for i in 0..200_000 {
            let hash = store.hash(&format!("task-{i}"));
            if store.shard_index(hash) == 0 {
                in_shard += 1;
                low.insert(hash & 0x3f);
            }
        }
        assert!(in_shard > 5000, "{in_shard}");
        assert_eq!(low.len(), 64);
    }

    #[test]
    fn shards_fill_evenly_and_hash_keys_differ_per_store() {
        let store = ShardedStore::new(32 * 1024, 3600);
        assert_eq!(store.shards.len(), 32);
        for i in 0..32 * 500 {
            store.learn(&format!("{i:08}"), "c", NOW);
        }
        let sizes: Vec<usize> = store.shards.iter().map(|s| lock(s).len()).collect();
        let max = sizes.iter().copied().max().unwrap_or(0);
        let min = sizes.iter().copied().min().unwrap_or(0);
        assert!(min > 350 && max < 650, "{sizes:?}");
        // Two stores place the same ids differently: the keys are random.
        let other = ShardedStore::new(32 * 1024, 3600);
        let same = (0..200)
            .filter(|i| {
                let id = format!("{i:08}");
                store.shard_index(store.hash(&id)) == other.shard_index(other.hash(&id))
            })
            .count();
        assert!(same < 40, "{same} of 200 ids in the same shard");
    }

    #[test]
    fn shared_stores_are_reused_while_alive() {
        let (a, none) = shared(1234, 77, NOW);
        assert!(none.is_none());
        let (b, none) = shared(1234, 77, NOW);
        assert!(none.is_none());
        assert!(Arc::ptr_eq(&a, &b));
        a.learn("t", "c", NOW);
        let (c, carried) = shared(1234, 78, NOW);
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(
            carried,
            Some(Carried {
                capacity: 1234,
                ttl_secs: 77,
                tasks: 1
            })
        );
        drop((a, b, c));
        // The last owners are gone: a new configuration gets a fresh store,
        // and has none to take over from.
        let (d, none) = shared(1234, 77, NOW);
        assert!(none.is_none());
        assert!(d.is_empty());
    }

    #[test]
    fn new_settings_take_over_the_live_tasks_until_they_would_expire() {
        let (old, _) = shared(5000, 100, NOW);
        old.learn("gone", "c0", NOW - 100);
        old.learn("soon", "c1", NOW);
        old.learn("late", "c2", NOW + 50);
        // A longer time to live: each entry keeps the expiry it had.
        let (longer, carried) = shared(5000, 1000, NOW + 10);
        assert_eq!(carried.map(|c| c.tasks), Some(2));
        assert_eq!(longer.lookup_here("gone", NOW + 10), Lookup::Unknown);
        // A shorter one cuts them to it: 20 seconds from when it was made.
        let (shorter, carried) = shared(5000, 20, NOW + 10);
        assert_eq!(carried.map(|c| (c.ttl_secs, c.tasks)), Some((1000, 2)));
        assert_eq!(
            shorter.lookup_here("late", NOW + 29),
            Lookup::Found("c2".into())
        );
        assert_eq!(shorter.lookup_here("late", NOW + 30), Lookup::Unknown);
        assert_eq!(
            longer.lookup_here("soon", NOW + 99),
            Lookup::Found("c1".into())
        );
        assert_eq!(longer.lookup_here("soon", NOW + 100), Lookup::Unknown);
        assert_eq!(
            longer.lookup_here("late", NOW + 149),
            Lookup::Found("c2".into())
        );
        assert_eq!(longer.lookup_here("late", NOW + 150), Lookup::Unknown);
    }

    #[test]
    fn a_smaller_store_takes_over_the_tasks_that_expire_last() {
        // Three shards of the old store, one of the new: the 1,024 tasks
        // learned last are the ones kept, wherever they were.
        let (old, _) = shared(3 * 1024, 100_000, NOW);
        for i in 0..3000u64 {
            old.learn(&format!("task-{i}"), &format!("ctx-{i}"), NOW + i);
        }
        let (small, carried) = shared(1024, 100_000, NOW + 3000);
        assert_eq!(carried.map(|c| c.tasks), Some(1024));
        for i in 0..3000u64 {
            let held = small.lookup_here(&format!("task-{i}"), NOW + 3000);
            if i >= 3000 - 1024 {
                assert_eq!(held, Lookup::Found(format!("ctx-{i}")), "task-{i}");
            } else {
                assert_eq!(held, Lookup::Unknown, "task-{i}");
            }
        }
        // Still in expiry order: the next task pushes out the oldest kept.
        assert_eq!(small.learn("new", "c", NOW + 3000), Learned::Evicted);
        assert_eq!(
            small.lookup_here(&format!("task-{}", 3000 - 1024), NOW + 3000),
            Lookup::Unknown
        );
        check_shard_hashed(&lock(&small.shards[0]), |t| small.hash(t));
    }

    #[test]
    fn tasks_the_old_configuration_learns_after_the_change_are_not_lost() {
        let (old, _) = shared(2000, 3600, NOW);
        let (new, _) = shared(2000, 1800, NOW);
        // A stream that began before the change learns in the old store.
        old.learn("gone", "e", NOW - 3600);
        old.learn("t", "c", NOW + 1);
        assert_eq!(new.lookup_here("t", NOW + 2), Lookup::Unknown);
        // Found there, and left there until the old store goes.
        assert_eq!(new.lookup("t", NOW + 2), Lookup::Found("c".into()));
        assert_eq!(new.lookup_here("t", NOW + 2), Lookup::Unknown);
        // What the old store holds when it goes is handed over, under the
        // new time to live; what expired in it is not.
        old.learn("u", "d", NOW + 1);
        new.learn("v", "f", NOW + 2);
        drop(old);
        assert_eq!(new.len(), 3);
        for (task, context) in [("t", "c"), ("u", "d"), ("v", "f")] {
            assert_eq!(
                new.lookup_here(task, NOW + 3),
                Lookup::Found(context.into())
            );
        }
        // A store takes over from the newest store alive only, and hands
        // over to the newest made after it.
        let (newer, carried) = shared(2000, 900, NOW + 3);
        assert_eq!(carried.map(|c| (c.ttl_secs, c.tasks)), Some((1800, 3)));
        new.learn("w", "g", NOW + 4);
        drop(new);
        assert_eq!(newer.len(), 4);
        assert_eq!(newer.lookup_here("w", NOW + 4), Lookup::Found("g".into()));
        // Kept 900 seconds from the change for those carried then, from the
        // latest time "new" had seen for the one it handed over, and each
        // shard is still in expiry order. "t" and "u", written in "new"
        // within the takeover's two seconds of slack, are offered again
        // then, and kept 900 seconds from then.
        for shard in newer.shards.iter() {
            check_shard_hashed(&lock(shard), |t| newer.hash(t));
        }
        for (task, context) in [("t", "c"), ("u", "d"), ("w", "g")] {
            assert_eq!(
                newer.lookup_here(task, NOW + 903),
                Lookup::Found(context.into())
            );
        }
        for task in ["t", "u", "w"] {
            assert_eq!(newer.lookup_here(task, NOW + 904), Lookup::Unknown);
        }
        for shard in newer.shards.iter() {
            check_shard_hashed(&lock(shard), |t| newer.hash(t));
        }
    }

    #[test]
    fn each_store_finds_what_the_others_learn_while_they_live() {
        // Full, one shard of one slot: a copy would push out its task.
        let (old, _) = shared(1, 3600, NOW);
        old.learn("own", "o", NOW + 1);
        let (new, _) = shared(2000, 1800, NOW);
        // A stream on a new connection learns in the new store; one on a
        // connection of the old configuration, still draining, looks the
        // task up in the old store, which finds it in the new one. Nothing
        // is copied: the old store keeps its own task, and what it finds
        // lives no longer than where it was learned.
        new.learn("t", "c", NOW + 1);
        assert_eq!(old.lookup("t", NOW + 2), Lookup::Found("c".into()));
        assert_eq!(old.lookup_here("t", NOW + 2), Lookup::Unknown);
        assert_eq!(old.lookup_here("own", NOW + 2), Lookup::Found("o".into()));
        assert_eq!(old.lookup("t", NOW + 1801), Lookup::Unknown);
        assert_eq!(old.lookup("nowhere", NOW + 2), Lookup::Unknown);
        // A second push inside the drain: the first store finds what the
        // third learns, and the third what the first learns, though the
        // third took over from the second only.
        let (third, _) = shared(2000, 900, NOW + 2);
        third.learn("u", "d", NOW + 3);
        assert_eq!(old.lookup("u", NOW + 3), Lookup::Found("d".into()));
        old.learn("v", "e", NOW + 3);
        assert_eq!(third.lookup_here("v", NOW + 3), Lookup::Unknown);
        assert_eq!(third.lookup("v", NOW + 3), Lookup::Found("e".into()));
        assert!(old.has_peers.load(Ordering::Relaxed));
        // With the others gone, a miss forgets them, and the next reads only
        // the flag.
        drop((new, third));
        assert_eq!(old.lookup("nowhere", NOW + 4), Lookup::Unknown);
        assert!(!old.has_peers.load(Ordering::Relaxed));
        assert!(lock(&old.peers).is_empty());
    }

    type Carrying = (Arc<ShardedStore>, Option<Carried>);

    /// Pushes X, then Y (of capacity `y`), then, after X learned `task`
    /// (context "c"), Z (of capacity `z`) while X's listener still drains.
    fn three_pushes(
        task: &str,
        (y, z): (u32, u32),
    ) -> (Arc<ShardedStore>, Arc<ShardedStore>, Carrying) {
        let (x, _) = shared(2000, 3600, NOW);
        let (y, _) = shared(y, 3600, NOW);
        x.learn(task, "c", NOW + 10);
        (x, y, shared(z, 3600, NOW + 20))
    }

    #[test]
    fn two_pushes_in_one_drain_keep_what_the_first_store_learned_between_them() {
        // Learned under X after Y took over: neither Y nor Z took it over.
        // X goes first.
        let (x, y, (z, carried)) = three_pushes("t", (3000, 4000));
        assert_eq!(carried.map(|c| c.tasks), Some(0));
        assert_eq!(z.lookup("t", NOW + 20), Lookup::Found("c".into()));
        // X hands it to Y, which passes it on to Z.
        drop(x);
        assert_eq!(y.lookup_here("t", NOW + 21), Lookup::Found("c".into()));
        assert_eq!(z.lookup("t", NOW + 21), Lookup::Found("c".into()));
        drop(y);
        assert_eq!(z.lookup_here("t", NOW + 22), Lookup::Found("c".into()));
        // Y going first hands X over to Z.
        drop(z);
        let (x, y, (z, _)) = three_pushes("t", (3000, 4000));
        drop(y);
        drop(x);
        assert_eq!(z.lookup_here("t", NOW + 22), Lookup::Found("c".into()));
    }

    #[test]
    fn the_older_two_going_at_once_on_two_threads_keep_what_the_first_learned() {
        let (x, y, (z, _)) = three_pushes("x-late", (100_000, 200_000));
        // Y has much to hand over, so that X goes while Y is going.
        for i in 0..60_000u64 {
            y.learn(&format!("y-{i}"), "d", NOW + 21);
        }
        let gone = Arc::downgrade(&y);
        std::thread::scope(|scope| {
            scope.spawn(move || drop(y));
            scope.spawn(move || {
                while gone.strong_count() > 0 {
                    std::hint::spin_loop();
                }
                drop(x);
            });
        });
        assert_eq!(z.lookup_here("x-late", NOW + 22), Lookup::Found("c".into()));
        assert_eq!(
            z.lookup_here("y-59999", NOW + 22),
            Lookup::Found("d".into())
        );
    }

    #[test]
    fn a_long_lived_store_hands_over_past_many_stores_gone() {
        // Listener 1 keeps A; listener 2 is pushed a hundred times, each
        // store draining before the next push.
        let (a, _) = shared(2000, 3600, NOW);
        let (mut b, _) = shared(3000, 3600, NOW);
        a.learn("t", "c", NOW + 1);
        let first = Arc::downgrade(&b.link);
        for i in 0..100u32 {
            let (next, _) = shared(3001 + i, 3600, NOW + 2);
            b = next;
        }
        // The links of the stores gone went with them.
        assert_eq!(first.strong_count(), 0);
        drop(a);
        assert_eq!(b.lookup_here("t", NOW + 3), Lookup::Found("c".into()));
    }

    #[test]
    fn a_task_learned_again_in_the_old_store_keeps_its_new_expiry() {
        let (x, _) = shared(2000, 3600, NOW);
        x.learn("t", "c", NOW);
        x.learn("u", "d", NOW);
        // Y takes both over, each expiring at NOW + 3600.
        let (y, _) = shared(3000, 3600, NOW + 3000);
        // Learned again under X: it now expires at NOW + 6700 there.
        assert_eq!(x.learn("t", "c", NOW + 3100), Learned::Stored);
        drop(x);
        assert_eq!(y.lookup_here("t", NOW + 3700), Lookup::Found("c".into()));
        assert_eq!(y.lookup_here("t", NOW + 6700), Lookup::Unknown);
        assert_eq!(y.lookup_here("u", NOW + 3600), Lookup::Unknown);
        for shard in y.shards.iter() {
            check_shard_hashed(&lock(shard), |t| y.hash(t));
        }
    }

    #[test]
    fn a_store_that_hands_over_nothing_leaves_the_next_handing_over_as_it_was() {
        // Pushes X, Y, Z; X, never used, goes: Y's point stays where the
        // takeover put it, so Y's handing over reads only what it learned
        // since.
        let (x, _) = shared(2000, 3600, NOW);
        let (y, _) = shared(3000, 3600, NOW + 10);
        let (_z, _) = shared(4000, 3600, NOW + 20);
        let before = lock(&y.link.0).since;
        drop(x);
        assert_eq!(lock(&y.link.0).since, before);
        assert_eq!(before, NOW + 18 + 3600);
    }

    #[test]
    fn the_links_of_a_rollback_go_with_their_stores() {
        let (x, _) = shared(2000, 3600, NOW);
        let (y, _) = shared(3000, 3600, NOW + 1);
        let (x_again, _) = shared(2000, 3600, NOW + 2);
        let links = [Arc::downgrade(&x.link), Arc::downgrade(&y.link)];
        drop((x, y, x_again));
        assert_eq!(links.map(|l| l.strong_count()), [0, 0]);
    }

    #[test]
    fn a_push_of_one_listener_leaves_the_other_listeners_handing_over_alone() {
        // Listener 1 uses A; listener 2 used B, then (a push) B2.
        let (a, _) = shared(1, 3600, NOW);
        a.learn("a-task", "1", NOW);
        let (b, _) = shared(3000, 3600, NOW);
        let (b2, _) = shared(4000, 3600, NOW + 1);
        // A push of listener 1 with its settings unchanged: A is found
        // again (and takes over from B2 into its room).
        let (a_again, _) = shared(1, 3600, NOW + 2);
        assert!(Arc::ptr_eq(&a, &a_again));
        // What B's draining connections learn still goes to B2, not into
        // A's one slot.
        b.learn("t", "c", NOW + 3);
        drop(b);
        assert_eq!(b2.lookup_here("t", NOW + 4), Lookup::Found("c".into()));
        assert_eq!(a.lookup_here("t", NOW + 4), Lookup::Unknown);
    }

    #[test]
    fn handing_over_pushes_out_nothing_live() {
        let (old, _) = shared(2000, 3600, NOW);
        // Full of live tasks learned under the new settings.
        let (new, _) = shared(3, 10, NOW);
        for task in ["a", "b", "c"] {
            new.learn(task, "new", NOW);
        }
        old.learn("x", "old", NOW + 1);
        old.learn("y", "old", NOW + 2);
        drop(old);
        assert_eq!(new.len(), 3);
        for task in ["a", "b", "c"] {
            assert_eq!(new.lookup_here(task, NOW + 9), Lookup::Found("new".into()));
        }
        // With "a" expired, one handed over takes its slot.
        drop(new);
        let (old, _) = shared(2000, 3600, NOW + 9);
        let (new, _) = shared(3, 10, NOW + 9);
        new.learn("a", "new", NOW + 9);
        new.learn("b", "new", NOW + 15);
        new.learn("c", "new", NOW + 15);
        old.learn("x", "old", NOW + 20);
        old.learn("y", "old", NOW + 20);
        drop(old);
        assert_eq!(new.lookup_here("a", NOW + 20), Lookup::Unknown);
        assert_eq!(new.len(), 3);
        let handed = ["x", "y"]
            .iter()
            .filter(|t| new.lookup_here(t, NOW + 20) == Lookup::Found("old".into()))
            .count();
        assert_eq!(handed, 1);
    }

    #[test]
    fn only_what_was_learned_after_the_change_is_handed_over() {
        let (old, _) = shared(2000, 3600, NOW);
        old.learn("a", "1", NOW);
        old.learn("b", "2", NOW);
        // One slot, five seconds: "b" is taken over (it was written last),
        // for five seconds from the change.
        let (new, carried) = shared(1, 5, NOW + 1);
        assert_eq!(carried.map(|c| c.tasks), Some(1));
        assert_eq!(new.lookup_here("b", NOW + 5), Lookup::Found("2".into()));
        old.learn("c", "3", NOW + 2);
        // "b" has expired here; its slot is free for the handing over, which
        // offers "c" alone: "a", left out at the change, is not offered again.
        assert_eq!(new.lookup_here("b", NOW + 10), Lookup::Unknown);
        drop(old);
        assert_eq!(new.lookup_here("c", NOW + 10), Lookup::Found("3".into()));
        assert_eq!(new.lookup_here("a", NOW + 10), Lookup::Unknown);
    }

    #[test]
    fn a_rollback_while_the_first_configuration_lives_keeps_both_stores_tasks() {
        // X, then Y, then X again before X's first configuration is gone.
        let (x, _) = shared(2000, 3600, NOW);
        x.learn("before", "1", NOW);
        let (y, _) = shared(2000, 1800, NOW + 1);
        y.learn("under-y", "2", NOW + 2);
        let (x_again, carried) = shared(2000, 3600, NOW + 3);
        assert!(Arc::ptr_eq(&x, &x_again));
        // It takes what it lacks: the task learned under Y.
        assert_eq!(
            carried,
            Some(Carried {
                capacity: 2000,
                ttl_secs: 1800,
                tasks: 1
            })
        );
        for (task, context) in [("before", "1"), ("under-y", "2")] {
            assert_eq!(x.lookup_here(task, NOW + 3), Lookup::Found(context.into()));
        }
        y.learn("late-y", "3", NOW + 4);
        // While Y lives, X finds there what Y's streams learn.
        y.learn("looked-up", "4", NOW + 4);
        assert_eq!(x.lookup("looked-up", NOW + 4), Lookup::Found("4".into()));
        assert_eq!(x.lookup_here("looked-up", NOW + 4), Lookup::Unknown);
        // X is the newest store again: new settings take over from it (its
        // own task and the one it took from Y), not from Y.
        let (z, carried) = shared(2000, 900, NOW + 5);
        assert_eq!(carried.map(|c| (c.ttl_secs, c.tasks)), Some((3600, 2)));
        // What Y's streams learned until Y went is handed over to X, where Z
        // finds it, and which passes it on to Z when it goes.
        drop(y);
        assert_eq!(x.lookup_here("late-y", NOW + 5), Lookup::Found("3".into()));
        assert_eq!(z.lookup_here("late-y", NOW + 5), Lookup::Unknown);
        assert_eq!(z.lookup("late-y", NOW + 5), Lookup::Found("3".into()));
        drop((x, x_again));
        assert_eq!(z.lookup_here("late-y", NOW + 6), Lookup::Found("3".into()));
    }

    #[test]
    fn a_store_in_use_that_takes_over_keeps_every_live_entry_of_its_own() {
        // Two listeners whose settings differ, or a push and its rollback:
        // X, full of live tasks, comes back after Y, also full.
        let (x, _) = shared(1024, 3600, NOW);
        for i in 0..1024 {
            x.learn(&format!("x-{i}"), "x", NOW + 3000);
        }
        let (y, _) = shared(1024, 60, NOW + 3000);
        for i in 0..1024 {
            y.learn(&format!("y-{i}"), "y", NOW + 3001);
        }
        let (x_again, carried) = shared(1024, 3600, NOW + 3002);
        assert!(Arc::ptr_eq(&x, &x_again));
        // No room: nothing of Y's is taken, and X keeps all of its own.
        assert_eq!(carried.map(|c| c.tasks), Some(0));
        assert_eq!(x.len(), 1024);
        for i in 0..1024 {
            let found = x.lookup_here(&format!("x-{i}"), NOW + 3002);
            assert_eq!(found, Lookup::Found("x".into()), "x-{i}");
        }
        // Nor when Y goes.
        drop(y);
        assert_eq!(x.len(), 1024);
        assert_eq!(x.lookup_here("x-0", NOW + 3002), Lookup::Found("x".into()));
        check_shard_hashed(&lock(&x.shards[0]), |t| x.hash(t));
    }

    #[test]
    fn entries_carried_into_a_shard_go_to_their_place_in_the_order() {
        // A shard of six holding four live entries (expiring at +10, +20,
        // +30, +40) and one expired.
        let mut shard = Shard::new(6);
        shard.learn_id("gone", "0", NOW - 100, 50);
        for (i, task) in ["a", "b", "c", "d"].iter().enumerate() {
            shard.learn_id(task, "own", NOW, 10 * (i as u64 + 1));
        }
        // Five offered, in expiry order: one already here (expiring later
        // than here: learned again there), one expired, and three for two
        // slots (the expired entry's and the free one).
        let incoming = [
            ("x", "in", h("x"), NOW + 5),
            ("y", "in", h("y"), NOW + 25),
            ("b", "own", h("b"), NOW + 26),
            ("z", "in", h("z"), NOW + 45),
            ("old", "in", h("old"), NOW - 1),
        ];
        let mut sorted = incoming;
        sorted.sort_by_key(|e| e.3);
        assert_eq!(shard.carry_spare((NOW, 1000), &sorted), 3);
        assert_eq!(shard.len(), 6);
        check_shard(&shard);
        // The two that expire last came in; the one that expires first did
        // not; nothing here went, and "b" took the later expiry, moved to its
        // place in the order.
        for task in ["a", "b", "c", "d"] {
            assert_eq!(shard.lookup_id(task, NOW), Lookup::Found("own".into()));
        }
        // An entry offered again that expires no later, or with another
        // context, changes nothing.
        let again = [
            ("c", "own", h("c"), NOW + 30),
            ("d", "other", h("d"), NOW + 50),
        ];
        assert_eq!(shard.carry_spare((NOW, 1000), &again), 0);
        assert_eq!(shard.lookup_id("d", NOW), Lookup::Found("own".into()));
        check_shard(&shard);
        assert_eq!(shard.lookup_id("x", NOW), Lookup::Unknown);
        // Each keeps its own expiry: "y" is gone at +25, "z" at +45.
        assert_eq!(shard.lookup_id("y", NOW + 24), Lookup::Found("in".into()));
        assert_eq!(shard.lookup_id("y", NOW + 25), Lookup::Unknown);
        assert_eq!(shard.lookup_id("b", NOW + 25), Lookup::Found("own".into()));
        assert_eq!(shard.lookup_id("b", NOW + 26), Lookup::Unknown);
        assert_eq!(shard.lookup_id("z", NOW + 44), Lookup::Found("in".into()));
        assert_eq!(shard.lookup_id("z", NOW + 45), Lookup::Unknown);
        // A full shard takes nothing.
        let mut full = Shard::new(2);
        full.learn_id("a", "own", NOW, 10);
        full.learn_id("b", "own", NOW, 10);
        assert_eq!(
            full.carry_spare((NOW, 1000), &[("x", "in", h("x"), NOW + 99)]),
            0
        );
        // Cut to this store's time to live.
        let mut short = Shard::new(2);
        assert_eq!(
            short.carry_spare((NOW, 5), &[("x", "in", h("x"), NOW + 99)]),
            1
        );
        assert_eq!(short.lookup_id("x", NOW + 5), Lookup::Unknown);
    }

    #[test]
    fn random_merges_keep_the_order_and_renew_only_later_writes() {
        // xorshift64: the same cases on every run.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let contexts = ["c0", "c1", "a context long enough to spill out of its slot"];
        for _ in 0..2000 {
            let mut shard = Shard::new(1 + next(12) as usize);
            let own_ttl = 1 + next(40);
            for _ in 0..next(20) {
                let task = format!("t{}", next(16));
                let context = contexts[next(3) as usize];
                shard.learn_id(&task, context, NOW + next(20), own_ttl);
            }
            check_shard_hashed(&shard, h);
            // The shard's time never goes back.
            let now = (NOW + next(25)).max(shard.clock);
            let ttl = 1 + next(50);
            let before: Vec<(String, Vec<u8>, u64)> = (0..16)
                .filter_map(|i| {
                    let task = format!("t{i}");
                    let slot = shard.slot(shard.find(&task, h(&task))?)?;
                    (slot.expires > now).then(|| (task, slot.context().to_vec(), slot.expires))
                })
                .collect();
            let tasks: Vec<String> = (0..next(12)).map(|_| format!("t{}", next(24))).collect();
            let mut offered: Vec<Incoming<'_>> = Vec::new();
            for task in &tasks {
                if offered.iter().all(|e| e.0 != task) {
                    let context = contexts[next(3) as usize];
                    offered.push((task, context, h(task), now - 5 + next(60)));
                }
            }
            offered.sort_by_key(|e| e.3);
            shard.carry_spare((now, ttl), &offered);
            check_shard_hashed(&shard, h);
            // Every live task held before is still held, with its context,
            // and expires at the later of its own expiry and that offered
            // with the same context (cut to the time to live).
            for (task, context, expires) in before {
                let at = shard.find(&task, h(&task)).expect("a live task kept");
                let slot = shard.slot(at).unwrap();
                assert_eq!(slot.context(), context.as_slice());
                let renewed = offered
                    .iter()
                    .find(|e| e.0 == task && e.1.as_bytes() == context.as_slice())
                    .map_or(0, |e| e.3.min(now + ttl));
                assert_eq!(slot.expires, expires.max(renewed), "{task}");
            }
        }
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
