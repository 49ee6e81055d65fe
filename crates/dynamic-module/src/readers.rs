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
//! reader, or drops the finished one. Each shard keeps at most
//! [`SPARE_READERS`] of each kind, so the memory kept is bounded whatever
//! the traffic.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use a2a_affinity_core::json::request::{BodyKind, Extractor};
use a2a_affinity_core::json::response::{Framing, ResponseLearner};

/// Readers of each kind a shard keeps: more than the streams a worker
/// usually has open at once.
pub const SPARE_READERS: usize = 64;

/// Shards: one per worker thread up to this many workers; more workers
/// share them.
pub const READER_SHARDS: usize = 16;

/// Readers of one shard, by kind.
// Boxed: a reader moves between a stream and this list as one pointer.
#[allow(clippy::vec_box)]
#[derive(Default)]
struct Spare {
    json_rpc: Vec<Box<Extractor>>,
    rest_send: Vec<Box<Extractor>>,
    json: Vec<Box<ResponseLearner>>,
    sse: Vec<Box<ResponseLearner>>,
}

#[allow(clippy::vec_box)]
impl Spare {
    fn extractors(&mut self, kind: BodyKind) -> &mut Vec<Box<Extractor>> {
        match kind {
            BodyKind::JsonRpc => &mut self.json_rpc,
            BodyKind::RestSend => &mut self.rest_send,
        }
    }

    fn learners(&mut self, framing: Framing) -> &mut Vec<Box<ResponseLearner>> {
        match framing {
            Framing::Json => &mut self.json,
            Framing::Sse => &mut self.sse,
        }
    }
}

/// The kept readers of one filter configuration.
pub struct Readers {
    shards: Box<[Mutex<Spare>]>,
}

impl Default for Readers {
    fn default() -> Self {
        Readers {
            shards: (0..READER_SHARDS)
                .map(|_| Mutex::new(Spare::default()))
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
    fn with_shard<R>(&self, f: impl FnOnce(&mut Spare) -> R) -> Option<R> {
        let shard = self.shards.get(thread_slot())?;
        let mut spare = shard.try_lock().ok()?;
        Some(f(&mut spare))
    }

    /// A request reader as new: a kept one (reset when it was kept) or a new one.
    pub fn extractor(&self, kind: BodyKind, max_value_bytes: usize) -> Box<Extractor> {
        self.with_shard(|spare| {
            let kept = spare.extractors(kind);
            let at = kept
                .iter()
                .rposition(|e| e.max_value_bytes() == max_value_bytes)?;
            Some(kept.swap_remove(at))
        })
        .flatten()
        .unwrap_or_else(|| Box::new(Extractor::new(kind, max_value_bytes)))
    }

    /// Keeps a request reader the stream no longer needs, reset.
    pub fn keep_extractor(&self, mut extractor: Box<Extractor>) {
        let kind = extractor.kind();
        self.with_shard(|spare| {
            let kept = spare.extractors(kind);
            if kept.len() < SPARE_READERS {
                extractor.reset();
                kept.push(extractor);
            }
        });
    }

    /// A response reader as new (see [`Readers::extractor`]).
    pub fn learner(&self, framing: Framing, max_value_bytes: usize) -> Box<ResponseLearner> {
        self.with_shard(|spare| {
            let kept = spare.learners(framing);
            let at = kept
                .iter()
                .rposition(|l| l.max_value_bytes() == max_value_bytes)?;
            Some(kept.swap_remove(at))
        })
        .flatten()
        .unwrap_or_else(|| Box::new(ResponseLearner::new(framing, max_value_bytes)))
    }

    /// Keeps a response reader the stream no longer needs, reset.
    pub fn keep_learner(&self, mut learner: Box<ResponseLearner>) {
        let framing = learner.framing();
        self.with_shard(|spare| {
            let kept = spare.learners(framing);
            if kept.len() < SPARE_READERS {
                learner.reset();
                kept.push(learner);
            }
        });
    }

    /// Readers kept in this thread's shard (tests).
    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.with_shard(|s| s.json_rpc.len() + s.rest_send.len() + s.json.len() + s.sse.len())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use a2a_affinity_core::verdict::{Step, Verdict};

    fn context_of(extractor: &mut Extractor, body: &[u8]) -> Option<String> {
        match extractor.feed(body) {
            Step::NeedMore => {}
            other => return Some(format!("{other:?}")),
        }
        match extractor.finish() {
            Step::Decided(Verdict::Context(c)) => Some(c),
            other => Some(format!("{other:?}")),
        }
    }

    const DOC: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"contextId":"ctx-2","parts":[]}}}"#;

    #[test]
    fn a_kept_reader_is_reused_and_starts_as_new() {
        let readers = Readers::default();
        let mut first = readers.extractor(BodyKind::JsonRpc, 256);
        // Left in the middle of a document, inside a string.
        let _ = first.feed(
            br#"{"jsonrpc":"2.0","method":"message/send","params":{"message":{"contextId":"ctx-1"#,
        );
        let address = &*first as *const Extractor;
        readers.keep_extractor(first);
        assert_eq!(readers.kept(), 1);
        let mut again = readers.extractor(BodyKind::JsonRpc, 256);
        assert_eq!(&*again as *const Extractor, address, "the kept reader");
        assert_eq!(readers.kept(), 0);
        assert_eq!(context_of(&mut again, DOC).as_deref(), Some("ctx-2"));
    }

    #[test]
    fn readers_are_kept_by_kind_and_value_limit() {
        let readers = Readers::default();
        readers.keep_extractor(readers.extractor(BodyKind::RestSend, 256));
        readers.keep_learner(readers.learner(Framing::Sse, 256));
        // Another kind, or another limit: a new reader.
        let rpc = readers.extractor(BodyKind::JsonRpc, 256);
        assert_eq!(rpc.kind(), BodyKind::JsonRpc);
        let other_limit = readers.extractor(BodyKind::RestSend, 64);
        assert_eq!(other_limit.max_value_bytes(), 64);
        let json = readers.learner(Framing::Json, 256);
        assert_eq!(json.framing(), Framing::Json);
        assert_eq!(readers.kept(), 2);
        assert_eq!(
            readers.extractor(BodyKind::RestSend, 256).kind(),
            BodyKind::RestSend
        );
        assert_eq!(readers.learner(Framing::Sse, 256).framing(), Framing::Sse);
        assert_eq!(readers.kept(), 0);
    }

    #[test]
    fn a_shard_keeps_a_bounded_number() {
        let readers = Readers::default();
        let many: Vec<_> = (0..SPARE_READERS + 10)
            .map(|_| readers.extractor(BodyKind::JsonRpc, 256))
            .collect();
        for reader in many {
            readers.keep_extractor(reader);
        }
        assert_eq!(readers.kept(), SPARE_READERS);
    }
}
