//! Where learned task -> context pairs live: an interface each host
//! provides, because the right store depends on the host (Envoy shared data
//! for the proxy-wasm module, a native map for the dynamic module, memory or
//! Redis for the ext_proc server). The core passes the current time in; it
//! never reads a clock.

/// What a lookup found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The context of a live learned task.
    Found(String),
    /// Never learned here, expired, or evicted.
    Unknown,
    /// The store answers later (a remote store): the core returns
    /// `Next::LookupTask` and the host calls `Stream::task_resolved`.
    Deferred,
}

/// What storing a pair did, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// Stored; nothing else had to go.
    Stored,
    /// Stored in place of a live entry of another task.
    Evicted,
    /// Already known, with time to live left: nothing written.
    Unchanged,
    /// Not stored (the store failed, or will tell later).
    NotStored,
}

/// The learned-task store of one host.
pub trait TaskStore {
    /// The context of `task_id` if it was learned and has not expired at
    /// `now_secs` (seconds since the Unix epoch).
    fn lookup(&mut self, task_id: &str, now_secs: u64) -> Lookup;
    /// Remembers that `task_id` belongs to `context_id`, from `now_secs`
    /// for the store's time to live.
    fn learn(&mut self, task_id: &str, context_id: &str, now_secs: u64) -> Learned;
}

/// A store that keeps nothing: every task is unknown.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoStore;

impl TaskStore for NoStore {
    fn lookup(&mut self, _: &str, _: u64) -> Lookup {
        Lookup::Unknown
    }

    fn learn(&mut self, _: &str, _: &str, _: u64) -> Learned {
        Learned::NotStored
    }
}
