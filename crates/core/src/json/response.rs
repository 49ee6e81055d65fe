//! Learning taskId -> contextId from JSON responses (one document, or one
//! per SSE event).
//!
//! Task-only calls (`tasks/get`, `CancelTask`, REST `GET /tasks/{id}`, ...)
//! carry no contextId. Every A2A response that names a task also names its
//! context, so the filter reads responses as they stream past (JSON bodies
//! and each SSE `data:` event) and hands each pair to the host's task store
//! (`store::TaskStore`).

use super::scan::{Event, Flow, Limits, Progress, Scalar, Scanner};
use crate::verdict::usable_value;

/// Response paths that name a task and its context, in pairs: path `2i` is
/// a task id and path `2i + 1` the context id beside it. They cover every
/// A2A response shape: 0.x JSON-RPC `result` is a Task (`id`) or a
/// Message/event (`taskId`); 1.0 JSON-RPC nests the object under
/// `result.task|message|statusUpdate|artifactUpdate`; REST puts the same
/// objects at the top level, and `GET /tasks/{id}` answers a bare Task.
const PATHS: &[&[&str]] = &[
    &["result", "id"],
    &["result", "contextId"],
    &["result", "taskId"],
    &["result", "contextId"],
    &["result", "task", "id"],
    &["result", "task", "contextId"],
    &["result", "message", "taskId"],
    &["result", "message", "contextId"],
    &["result", "statusUpdate", "taskId"],
    &["result", "statusUpdate", "contextId"],
    &["result", "artifactUpdate", "taskId"],
    &["result", "artifactUpdate", "contextId"],
    &["task", "id"],
    &["task", "contextId"],
    &["message", "taskId"],
    &["message", "contextId"],
    &["statusUpdate", "taskId"],
    &["statusUpdate", "contextId"],
    &["artifactUpdate", "taskId"],
    &["artifactUpdate", "contextId"],
    &["id"],
    &["contextId"],
    &["taskId"],
    &["contextId"],
];

/// How the response body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// One JSON document.
    Json,
    /// `text/event-stream`: one JSON document per event's `data:` lines.
    Sse,
}

impl Framing {
    /// The framing of a response content type, if it is one the filter reads.
    pub fn of(content_type: &str) -> Option<Framing> {
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case("text/event-stream") {
            Some(Framing::Sse)
        } else if essence.eq_ignore_ascii_case("application/json")
            || essence.eq_ignore_ascii_case("application/a2a+json")
        {
            Some(Framing::Json)
        } else {
            None
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SseState {
    /// At the start of a line; `n` bytes of `data:` matched so far.
    LineStart(u8),
    /// After `data:`; the optional single space not yet seen.
    DataColon,
    /// Inside a data line: bytes go to the scanner.
    Data,
    /// Inside a line that is not data (comment, `event:`, `id:`...).
    Skip,
}

/// Reads one response as it streams past and yields the (taskId,
/// contextId) pairs it names. It never holds the response back: the caller
/// passes each chunk on at once.
pub struct ResponseLearner {
    scanner: Scanner<'static>,
    framing: Framing,
    sse: SseState,
    /// A data line was fed in the current event (so the next one needs a
    /// '\n' separator, as the SSE spec joins data lines).
    event_has_data: bool,
    /// This document yielded its pair or failed: skip the rest of it.
    document_done: bool,
    /// A pair was learned from this response. An event stream answers one
    /// call about one task (a streamed send or a resubscribe), and every
    /// later event names that same task, so nothing after it is read.
    learned_pair: bool,
    /// The last line ended with CR: a following LF belongs to it.
    skip_lf: bool,
    /// The value read at each path of `PATHS`, valid where `filled` has
    /// the path's bit; cleared, not freed, between documents.
    values: Vec<String>,
    /// Paths read in the current document, one bit each.
    filled: u32,
    /// Paths whose value was written since the learner was made or reset:
    /// the only values `reset` needs to look at.
    written: u32,
    max_value: usize,
}

// One bit per path in `filled` and `written`.
const _: () = assert!(PATHS.len() <= 32);

/// Capacity a reset learner keeps for each value: room for the ids agents
/// use (a UUID is 36 bytes) and then some.
const KEPT_VALUE_BYTES: usize = 64;

/// The bit of path `path` in a set of paths (none for a path past the 32nd).
fn bit(path: usize) -> u32 {
    u32::try_from(path)
        .ok()
        .and_then(|p| 1u32.checked_shl(p))
        .unwrap_or(0)
}

impl ResponseLearner {
    pub fn new(framing: Framing, max_value_bytes: usize) -> Self {
        let limits = Limits {
            max_value_len: max_value_bytes,
            ..Limits::default()
        };
        ResponseLearner {
            scanner: Scanner::new(PATHS, limits),
            framing,
            sse: SseState::LineStart(0),
            event_has_data: false,
            document_done: false,
            learned_pair: false,
            skip_lf: false,
            values: vec![String::new(); PATHS.len()],
            filled: 0,
            written: 0,
            max_value: max_value_bytes,
        }
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The `max_value_bytes` it was made with.
    pub fn max_value_bytes(&self) -> usize {
        self.max_value
    }

    /// Ready for the next response, as if new. Allocations are kept, but
    /// not one grown by an unusually long id: a kept learner holds about
    /// what a new one does.
    pub fn reset(&mut self) {
        self.end_document();
        self.learned_pair = false;
        self.sse = SseState::LineStart(0);
        self.skip_lf = false;
        let mut written = self.written;
        while written != 0 {
            let path = written.trailing_zeros() as usize;
            written &= written - 1;
            if let Some(value) = self.values.get_mut(path) {
                if value.capacity() > KEPT_VALUE_BYTES {
                    *value = String::new();
                }
            }
        }
        self.written = 0;
    }

    /// The rest of the response need not be read: a JSON response whose
    /// pair is learned or that cannot yield one, or an event stream that
    /// has named its task (its later events can only name the same one).
    pub fn finished(&self) -> bool {
        match self.framing {
            Framing::Json => self.document_done,
            Framing::Sse => self.learned_pair,
        }
    }

    /// Feeds the next response bytes; `learned` receives each pair found.
    pub fn feed(&mut self, chunk: &[u8], learned: &mut dyn FnMut(&str, &str)) {
        match self.framing {
            Framing::Json => self.feed_document(chunk, learned),
            Framing::Sse => self.feed_sse(chunk, learned),
        }
    }

    fn feed_document(&mut self, bytes: &[u8], learned: &mut dyn FnMut(&str, &str)) {
        if self.document_done || bytes.is_empty() {
            return;
        }
        let values = &mut self.values;
        let filled = &mut self.filled;
        let written = &mut self.written;
        let max = self.max_value;
        let mut pair = None;
        let progress = self.scanner.feed(bytes, &mut |event| {
            if let Event::Scalar {
                path,
                value: Scalar::Str(s),
                ..
            } = event
            {
                if usable_value(s, max) {
                    let at = bit(path);
                    if *filled & at == 0 {
                        if let Some(value) = values.get_mut(path) {
                            *filled |= at;
                            *written |= at;
                            value.clear();
                            value.push_str(s);
                        }
                    }
                    let task = path / 2 * 2;
                    let both = bit(task) | bit(task + 1);
                    if both != 0 && *filled & both == both {
                        pair = Some(task);
                        return Flow::Stop;
                    }
                }
            }
            Flow::Continue
        });
        if let Some(task) = pair {
            if let (Some(task), Some(context)) = (self.values.get(task), self.values.get(task + 1))
            {
                learned(task, context);
                self.learned_pair = true;
            }
            self.document_done = true;
        } else if matches!(
            progress,
            Progress::Failed(_) | Progress::Done | Progress::Stopped
        ) {
            self.document_done = true;
        }
    }

    fn end_document(&mut self) {
        self.scanner.reset();
        self.filled = 0;
        self.document_done = false;
        self.event_has_data = false;
    }

    fn feed_sse(&mut self, chunk: &[u8], learned: &mut dyn FnMut(&str, &str)) {
        const DATA: &[u8] = b"data:";
        let mut i = 0;
        while i < chunk.len() && !self.learned_pair {
            if self.skip_lf {
                // The LF of a CR LF line ending.
                self.skip_lf = false;
                if chunk.get(i) == Some(&b'\n') {
                    i += 1;
                    continue;
                }
            }
            match self.sse {
                SseState::Data | SseState::Skip => {
                    let rest = chunk.get(i..).unwrap_or(&[]);
                    let end = memchr::memchr2(b'\n', b'\r', rest);
                    let line = rest.get(..end.unwrap_or(rest.len())).unwrap_or(&[]);
                    if self.sse == SseState::Data {
                        self.feed_document(line, learned);
                    }
                    match end {
                        Some(end) => {
                            self.skip_lf = rest.get(end) == Some(&b'\r');
                            self.sse = SseState::LineStart(0);
                            i += end + 1;
                        }
                        None => i = chunk.len(),
                    }
                }
                SseState::DataColon => {
                    // One space after the colon is not part of the data.
                    if chunk.get(i) == Some(&b' ') {
                        i += 1;
                    }
                    if self.event_has_data {
                        // Data lines of one event are joined with LF.
                        self.feed_document(b"\n", learned);
                    }
                    self.event_has_data = true;
                    self.sse = SseState::Data;
                }
                SseState::LineStart(n) => {
                    let b = chunk.get(i).copied().unwrap_or(0);
                    i += 1;
                    if b == b'\n' || b == b'\r' {
                        self.skip_lf = b == b'\r';
                        if n == 0 {
                            // A blank line ends the event.
                            self.end_document();
                        }
                        self.sse = SseState::LineStart(0);
                    } else if DATA.get(usize::from(n)) == Some(&b) {
                        self.sse = if usize::from(n) + 1 == DATA.len() {
                            SseState::DataColon
                        } else {
                            SseState::LineStart(n + 1)
                        };
                    } else {
                        self.sse = SseState::Skip;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn a_reset_learner_gives_back_what_long_ids_grew() {
        let mut learner = ResponseLearner::new(Framing::Json, 8192);
        let long = "t".repeat(5000);
        let body = format!(r#"{{"result":{{"id":"{long}","contextId":"{long}"}}}}"#);
        let mut pairs = Vec::new();
        learner.feed(body.as_bytes(), &mut |t, c| pairs.push((t.len(), c.len())));
        assert_eq!(pairs, vec![(5000, 5000)]);
        learner.reset();
        assert_eq!((learner.filled, learner.written), (0, 0));
        assert!(learner
            .values
            .iter()
            .all(|v| v.capacity() <= KEPT_VALUE_BYTES));
        // And it reads the next response as a new learner would.
        let mut pairs = Vec::new();
        learner.feed(
            br#"{"result":{"id":"t-2","contextId":"c-2"}}"#,
            &mut |t, c| pairs.push((t.to_string(), c.to_string())),
        );
        assert_eq!(pairs, vec![("t-2".to_string(), "c-2".to_string())]);
    }

    #[test]
    fn a_reset_gives_back_what_an_earlier_event_of_the_stream_grew() {
        let mut learner = ResponseLearner::new(Framing::Sse, 8192);
        let long = "t".repeat(5000);
        // The first event names a long task id and no context; the second
        // names the pair. The first event's value is not in the document
        // the learner last read, but it was written since the reset.
        let stream = format!(
            "data: {{\"result\":{{\"id\":\"{long}\"}}}}\n\n\
             data: {{\"result\":{{\"taskId\":\"t-1\",\"contextId\":\"c-1\"}}}}\n\n"
        );
        let mut pairs = Vec::new();
        learner.feed(stream.as_bytes(), &mut |t, c| {
            pairs.push((t.to_string(), c.to_string()))
        });
        assert_eq!(pairs, vec![("t-1".to_string(), "c-1".to_string())]);
        assert!(learner.values.iter().any(|v| v.capacity() >= 5000));
        learner.reset();
        assert!(learner
            .values
            .iter()
            .all(|v| v.capacity() <= KEPT_VALUE_BYTES));
    }
}
