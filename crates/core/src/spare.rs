//! The JSON readers of finished streams, kept so that the next stream
//! reuses their scanner state instead of allocating it: what a host keeps
//! behind [`Env::take_extractor`](crate::stream::Env::take_extractor) and
//! its siblings. A reader is reset when it is kept and starts the next
//! stream exactly as a new one. Where the kept readers live (one per Wasm
//! VM, shards per worker thread) is the host's.

use crate::json::request::{BodyKind, Extractor};
use crate::json::response::{Framing, ResponseLearner};

/// Readers kept per kind, at most this many each: enough for the streams
/// one worker has in flight at a time, bounded so that a burst does not
/// hold its peak memory for ever.
pub const SPARE_READERS: usize = 64;

/// Kept readers, by kind.
// Boxed: a reader moves between a stream and this list as one pointer.
#[allow(clippy::vec_box)]
#[derive(Default)]
pub struct SpareReaders {
    json_rpc: Vec<Box<Extractor>>,
    rest_send: Vec<Box<Extractor>>,
    json: Vec<Box<ResponseLearner>>,
    sse: Vec<Box<ResponseLearner>>,
}

#[allow(clippy::vec_box)]
impl SpareReaders {
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

    /// A kept request reader of this kind made with this value limit.
    pub fn take_extractor(
        &mut self,
        kind: BodyKind,
        max_value_bytes: usize,
    ) -> Option<Box<Extractor>> {
        take(self.extractors(kind), max_value_bytes)
    }

    /// Keeps a request reader, reset, unless its list is full.
    pub fn keep_extractor(&mut self, extractor: Box<Extractor>) {
        let kind = extractor.kind();
        keep(self.extractors(kind), extractor);
    }

    /// A kept response reader of this framing made with this value limit.
    pub fn take_learner(
        &mut self,
        framing: Framing,
        max_value_bytes: usize,
    ) -> Option<Box<ResponseLearner>> {
        take(self.learners(framing), max_value_bytes)
    }

    /// Keeps a response reader, reset, unless its list is full.
    pub fn keep_learner(&mut self, learner: Box<ResponseLearner>) {
        let framing = learner.framing();
        keep(self.learners(framing), learner);
    }

    /// Readers kept, of every kind.
    pub fn len(&self) -> usize {
        self.json_rpc.len() + self.rest_send.len() + self.json.len() + self.sse.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the lists need of a reader: the value limit it was made with, and
/// a reset to "as new".
trait Reader {
    fn max_value_bytes(&self) -> usize;
    fn reset(&mut self);
}

impl Reader for Extractor {
    fn max_value_bytes(&self) -> usize {
        Extractor::max_value_bytes(self)
    }

    fn reset(&mut self) {
        Extractor::reset(self);
    }
}

impl Reader for ResponseLearner {
    fn max_value_bytes(&self) -> usize {
        ResponseLearner::max_value_bytes(self)
    }

    fn reset(&mut self) {
        ResponseLearner::reset(self);
    }
}

/// The most recently kept reader of `kept` made with this value limit.
#[allow(clippy::vec_box)]
fn take<R: Reader>(kept: &mut Vec<Box<R>>, max_value_bytes: usize) -> Option<Box<R>> {
    let at = kept
        .iter()
        .rposition(|r| r.max_value_bytes() == max_value_bytes)?;
    Some(kept.swap_remove(at))
}

/// Keeps `reader` in `kept`, reset, unless `kept` is full.
#[allow(clippy::vec_box)]
fn keep<R: Reader>(kept: &mut Vec<Box<R>>, mut reader: Box<R>) {
    if kept.len() < SPARE_READERS {
        reader.reset();
        kept.push(reader);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{Step, Verdict};

    const DOC: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"contextId":"ctx-2","parts":[]}}}"#;

    #[test]
    fn a_kept_reader_is_reused_and_starts_as_new() {
        let mut spare = SpareReaders::default();
        let mut first = Box::new(Extractor::new(BodyKind::JsonRpc, 256));
        // Left in the middle of a document, inside a string.
        let _ = first.feed(
            br#"{"jsonrpc":"2.0","method":"message/send","params":{"message":{"contextId":"ctx-1"#,
        );
        let address = &*first as *const Extractor;
        spare.keep_extractor(first);
        assert_eq!(spare.len(), 1);
        let mut again = spare.take_extractor(BodyKind::JsonRpc, 256).expect("kept");
        assert_eq!(&*again as *const Extractor, address, "the kept reader");
        assert!(spare.is_empty());
        assert_eq!(again.feed(DOC), Step::NeedMore);
        assert_eq!(
            again.finish(),
            Step::Decided(Verdict::Context("ctx-2".into()))
        );
    }

    #[test]
    fn readers_are_kept_by_kind_and_value_limit() {
        let mut spare = SpareReaders::default();
        spare.keep_extractor(Box::new(Extractor::new(BodyKind::RestSend, 256)));
        spare.keep_learner(Box::new(ResponseLearner::new(Framing::Sse, 256)));
        assert!(spare.take_extractor(BodyKind::JsonRpc, 256).is_none());
        assert!(spare.take_extractor(BodyKind::RestSend, 64).is_none());
        assert!(spare.take_learner(Framing::Json, 256).is_none());
        assert_eq!(spare.len(), 2);
        let rest = spare.take_extractor(BodyKind::RestSend, 256).expect("kept");
        assert_eq!(rest.kind(), BodyKind::RestSend);
        let sse = spare.take_learner(Framing::Sse, 256).expect("kept");
        assert_eq!(sse.framing(), Framing::Sse);
        assert!(spare.is_empty());
    }

    #[test]
    fn at_most_spare_readers_of_a_kind_are_kept() {
        let mut spare = SpareReaders::default();
        for _ in 0..SPARE_READERS + 10 {
            spare.keep_extractor(Box::new(Extractor::new(BodyKind::JsonRpc, 256)));
            spare.keep_learner(Box::new(ResponseLearner::new(Framing::Json, 256)));
        }
        assert_eq!(spare.len(), 2 * SPARE_READERS);
    }
}
