//! The response learners on any bytes in any chunking: JSON documents, SSE
//! event streams and gRPC frames. Checked: no panic; the pairs learned do
//! not depend on the chunking; every id learned is usable (non-empty, within the limit);
//! on a JSON document serde_json accepts (without repeated member names)
//! a pair is learned exactly when the document names a task and its
//! context at one of the response paths, and it is one of those pairs; an
//! event stream learns the first pair its events learn as JSON documents.
#![no_main]

use a2a_affinity_core::a2a::{Operation, Version};
use a2a_affinity_core::grpc::{self, Call};
use a2a_affinity_core::json::response::{Framing, ResponseLearner};
use a2a_affinity_core::verdict::usable_value;
use a2a_affinity_fuzz::{chunks, cuts, json_without_duplicates, Control};
use serde_json::Value;

type Pairs = Vec<(String, String)>;

/// The task -> context path pairs of every A2A response shape.
const PAIRS: &[(&[&str], &[&str])] = &[
    (&["result", "id"], &["result", "contextId"]),
    (&["result", "taskId"], &["result", "contextId"]),
    (&["result", "task", "id"], &["result", "task", "contextId"]),
    (
        &["result", "message", "taskId"],
        &["result", "message", "contextId"],
    ),
    (
        &["result", "statusUpdate", "taskId"],
        &["result", "statusUpdate", "contextId"],
    ),
    (
        &["result", "artifactUpdate", "taskId"],
        &["result", "artifactUpdate", "contextId"],
    ),
    (&["task", "id"], &["task", "contextId"]),
    (&["message", "taskId"], &["message", "contextId"]),
    (&["statusUpdate", "taskId"], &["statusUpdate", "contextId"]),
    (
        &["artifactUpdate", "taskId"],
        &["artifactUpdate", "contextId"],
    ),
    (&["id"], &["contextId"]),
    (&["taskId"], &["contextId"]),
];

const CALLS: &[Call] = &[
    Call {
        version: Version::V0,
        operation: Operation::Send,
    },
    Call {
        version: Version::V1,
        operation: Operation::Stream,
    },
    Call {
        version: Version::V1,
        operation: Operation::Resubscribe,
    },
    Call {
        version: Version::V0,
        operation: Operation::GetTask,
    },
];

fn learn_json(framing: Framing, max: usize, pieces: &[&[u8]]) -> Pairs {
    let mut learner = ResponseLearner::new(framing, max);
    let mut pairs = Pairs::new();
    for piece in pieces {
        if learner.finished() {
            break;
        }
        learner.feed(piece, &mut |t, c| pairs.push((t.to_owned(), c.to_owned())));
    }
    pairs
}

fn learn_grpc(call: Call, max: usize, pieces: &[&[u8]]) -> Pairs {
    let mut pairs = Pairs::new();
    if let Some(mut learner) = grpc::ResponseLearner::new(call, max) {
        for piece in pieces {
            learner.feed(piece, &mut |t, c| pairs.push((t.to_owned(), c.to_owned())));
        }
    }
    pairs
}

fn at<'v>(value: &'v Value, path: &[&str]) -> Option<&'v str> {
    path.iter()
        .try_fold(value, |v, key| v.as_object()?.get(*key))?
        .as_str()
}

/// The data of each event of an event stream (WHATWG HTML "server-sent
/// events": lines end in CRLF, LF or CR; `data:` lines, one leading space
/// dropped, joined with LF; a blank line ends the event). The last event
/// counts even without its blank line, since the learner reads events as
/// they arrive. A `data` line without a colon is not read as data here,
/// as the learner does not read it (it would only add a line feed).
fn sse_events(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut events = Vec::new();
    let mut data: Option<Vec<u8>> = None;
    let mut rest = stream;
    while !rest.is_empty() {
        let end = rest.iter().position(|&b| b == b'\n' || b == b'\r');
        let line = &rest[..end.unwrap_or(rest.len())];
        rest = match end {
            Some(e) if rest[e] == b'\r' && rest.get(e + 1) == Some(&b'\n') => &rest[e + 2..],
            Some(e) => &rest[e + 1..],
            None => &[],
        };
        if line.is_empty() && end.is_some() {
            events.extend(data.take());
        } else if let Some(value) = line.strip_prefix(b"data:") {
            let value = value.strip_prefix(b" ").unwrap_or(value);
            match &mut data {
                Some(d) => {
                    d.push(b'\n');
                    d.extend_from_slice(value);
                }
                None => data = Some(value.to_vec()),
            }
        }
    }
    events.extend(data);
    events
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut control = Control::new(data);
    let kind = control.byte();
    let max = [1usize, 8, 36, 256][usize::from(control.byte() % 4)];
    let count = usize::from(control.byte() % 12);
    let seed = u32::from(control.u16());
    let body = control.rest();
    let pieces = chunks(body, &cuts(body.len(), count, seed));
    let pairs = match kind % 3 {
        0 => {
            let pairs = learn_json(Framing::Json, max, &pieces);
            assert_eq!(pairs, learn_json(Framing::Json, max, &[body]));
            assert!(pairs.len() <= 1);
            if json_without_duplicates(body) {
                let value: Value = serde_json::from_slice(body).unwrap_or_else(|e| panic!("{e}"));
                let named: Pairs = PAIRS
                    .iter()
                    .filter_map(|(t, c)| Some((at(&value, t)?, at(&value, c)?)))
                    .filter(|(t, c)| usable_value(t, max) && usable_value(c, max))
                    .map(|(t, c)| (t.to_owned(), c.to_owned()))
                    .collect();
                assert_eq!(pairs.is_empty(), named.is_empty(), "{pairs:?} vs {named:?}");
                assert!(
                    pairs.iter().all(|p| named.contains(p)),
                    "{pairs:?} vs {named:?}"
                );
            }
            pairs
        }
        1 => {
            let pairs = learn_json(Framing::Sse, max, &pieces);
            assert_eq!(pairs, learn_json(Framing::Sse, max, &[body]));
            // The stream names one task: it learns the first pair any of
            // its events learns as a JSON document, and reads no further.
            let first: Pairs = sse_events(body)
                .iter()
                .flat_map(|event| learn_json(Framing::Json, max, &[event]))
                .take(1)
                .collect();
            assert_eq!(pairs, first, "SSE framing differs from its events");
            pairs
        }
        _ => {
            let call = CALLS[usize::from(kind / 3) % CALLS.len()];
            let pairs = learn_grpc(call, max, &pieces);
            assert_eq!(pairs, learn_grpc(call, max, &[body]));
            pairs
        }
    };
    // Ids are kept as the agent wrote them; `field_value` makes any of
    // them a header value.
    for (task, context) in &pairs {
        assert!(usable_value(task, max) && usable_value(context, max));
    }
});
