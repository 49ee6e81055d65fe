//! The JSON readers of finished streams, kept so that the next stream on the
//! same worker reuses their scanner state instead of allocating it (a
//! request reader and a response reader are otherwise made, with their
//! buffers and key tables, for every A2A stream).
//!
//! A reader is reset when it is put back and starts the next stream exactly
//! as a new one. The kept readers are split into shards, each behind a
//! `Mutex`; a worker thread always uses the same shard (its number is given
//! out once per thread), so workers do not wait for each other, and a lock
//! that is taken anyway is never waited for: the stream then makes a new
//! reader, or drops the finished one. Each shard is the core's
//! [`SpareReaders`], which keeps a bounded number of each kind, so the
//! memory kept is bounded whatever the traffic.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use a2a_affinity_core::json::request::{BodyKind, Extractor};
use a2a_affinity_core::json::response::{Framing, ResponseLearner};
use a2a_affinity_core::spare::SpareReaders;

use crate::padded::Padded;

/// Shards: one per worker thread up to this many workers; more workers
/// share them.
pub const READER_SHARDS: usize = 16;

/// The kept readers of one filter configuration.
pub struct Readers {
    /// Each on its own cache lines: neighbouring shards are different
    /// workers'.
    shards: Box<[Padded<Mutex<SpareReaders>>]>,
}

impl Default for Readers {
    fn default() -> Self {
        Readers {
            shards: (0..READER_SHARDS)
                .map(|_| Padded(Mutex::new(SpareReaders::default())))
                .collect(),
        }
    }
}

thread_local! {
    /// The thread's shard number (`usize::MAX` until first asked). A
    /// constant initialiser and a type without `Drop`: nothing is registered
    /// to run when the thread exits.
    static THREAD_SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
}
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

fn thread_slot() -> usize {
    THREAD_SLOT.with(|slot| {
        if slot.get() == usize::MAX {
            slot.set(NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % READER_SHARDS);
        }
        slot.get()
    })
}

impl Readers {
    /// This thread's shard, unless another thread holds it right now.
    fn with_shard<R>(&self, f: impl FnOnce(&mut SpareReaders) -> R) -> Option<R> {
        let shard = self.shards.get(thread_slot())?;
        let mut spare = shard.try_lock().ok()?;
        Some(f(&mut spare))
    }

    /// A request reader as new: a kept one (reset when it was kept) or a new one.
    pub fn extractor(&self, kind: BodyKind, max_value_bytes: usize) -> Box<Extractor> {
        self.with_shard(|spare| spare.take_extractor(kind, max_value_bytes))
            .flatten()
            .unwrap_or_else(|| Box::new(Extractor::new(kind, max_value_bytes)))
    }

    /// Keeps a request reader the stream no longer needs, reset.
    pub fn keep_extractor(&self, extractor: Box<Extractor>) {
        self.with_shard(|spare| spare.keep_extractor(extractor));
    }

    /// A response reader as new (see [`Readers::extractor`]).
    pub fn learner(&self, framing: Framing, max_value_bytes: usize) -> Box<ResponseLearner> {
        self.with_shard(|spare| spare.take_learner(framing, max_value_bytes))
            .flatten()
            .unwrap_or_else(|| Box::new(ResponseLearner::new(framing, max_value_bytes)))
    }

    /// Keeps a response reader the stream no longer needs, reset.
    pub fn keep_learner(&self, learner: Box<ResponseLearner>) {
        self.with_shard(|spare| spare.keep_learner(learner));
    }

    /// Readers kept in this thread's shard (tests).
    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.with_shard(|s| s.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use a2a_affinity_core::spare::SPARE_READERS;

    #[test]
    fn a_thread_keeps_and_reuses_its_readers() {
        let readers = Readers::default();
        let first = readers.extractor(BodyKind::JsonRpc, 256);
        let address = &*first as *const Extractor;
        readers.keep_extractor(first);
        readers.keep_learner(readers.learner(Framing::Json, 256));
        assert_eq!(readers.kept(), 2);
        let again = readers.extractor(BodyKind::JsonRpc, 256);
        assert_eq!(&*again as *const Extractor, address, "the kept reader");
        assert_eq!(readers.learner(Framing::Json, 256).framing(), Framing::Json);
        assert_eq!(readers.kept(), 0);
    }

    #[test]
    fn a_busy_shard_makes_new_readers_and_drops_finished_ones() {
        let readers = Readers::default();
        readers.keep_extractor(readers.extractor(BodyKind::JsonRpc, 256));
        let shard = readers.shards.get(thread_slot()).unwrap();
        let held = shard.lock().unwrap();
        // Neither call waits for the lock.
        let fresh = readers.extractor(BodyKind::JsonRpc, 256);
        readers.keep_extractor(fresh);
        assert_eq!(held.len(), 1);
        drop(held);
        assert_eq!(readers.kept(), 1);
    }

    #[test]
    fn readers_kept_by_many_threads_stay_bounded() {
        let readers = Readers::default();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..SPARE_READERS + 5 {
                        readers.keep_extractor(readers.extractor(BodyKind::RestSend, 256));
                    }
                });
            }
        });
        let total: usize = readers.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!((1..=4).contains(&total), "{total} kept");
    }
}
