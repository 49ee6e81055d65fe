//! The incremental JSON scanner against serde_json, as the property test
//! `crates/core/tests/scan_differential.rs` checks it, on any bytes in any
//! chunking: it fails exactly when serde_json fails (for UTF-8 input whose
//! numbers fit an f64 and that nests at most 128 levels: the documented
//! differences), and on a valid
//! document whose objects repeat no member name it reports, for every
//! watched path, what serde_json's `Value` holds there.
#![no_main]

use a2a_affinity_core::json::scan::{Event, Flow, Limits, Progress, Scalar, Scanner};
use a2a_affinity_fuzz::{beyond_serde_json, chunks, cuts, json_without_duplicates, Control};
use serde_json::Value;

const PATHS: &[&[&str]] = &[
    &["params", "message", "contextId"],
    &["params", "message", "context_id"],
    &["params", "message"],
    &["params"],
    &["message", "contextId"],
    &["params", "contextId"],
    &["contextId"],
    &["params", "message", "parts"],
    &["params", "message", "metadata", "contextId"],
    &["params", ""],
    &["method"],
    &["result", "task", "id"],
];

#[derive(Clone, Debug, PartialEq)]
enum Seen {
    Open { offset: u64, object: bool },
    Close { offset: u64 },
    Str(String, u64),
    TooLong(u64),
    Null(u64),
    Other(u64),
}

fn scan(chunks: &[&[u8]], limits: Limits) -> (Vec<Vec<Seen>>, Progress) {
    let mut scanner = Scanner::new(PATHS, limits);
    let mut seen = vec![Vec::new(); PATHS.len()];
    let mut sink = |event: Event<'_>| {
        let (path, what) = match event {
            Event::Open {
                path,
                offset,
                object,
            } => (path, Seen::Open { offset, object }),
            Event::Close { path, offset, .. } => (path, Seen::Close { offset }),
            Event::Scalar { path, value, end } => (
                path,
                match value {
                    Scalar::Str(s) => Seen::Str(s.to_owned(), end),
                    Scalar::TooLong => Seen::TooLong(end),
                    Scalar::Null => Seen::Null(end),
                    Scalar::Other => Seen::Other(end),
                },
            ),
        };
        seen[path].push(what);
        Flow::Continue
    };
    for chunk in chunks {
        let progress = scanner.feed(chunk, &mut sink);
        assert_ne!(progress, Progress::Stopped);
        if matches!(progress, Progress::Failed(_)) {
            return (seen, progress);
        }
    }
    (seen, scanner.finish())
}

fn at_path<'v>(value: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter()
        .try_fold(value, |v, key| v.as_object()?.get(*key))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut control = Control::new(data);
    let max_value_len = [0usize, 1, 4, 16, 36, 256][usize::from(control.byte()) % 6];
    let count = usize::from(control.byte() % 12);
    let seed = u32::from(control.u16());
    let doc = control.rest();
    let limits = Limits {
        max_value_len,
        ..Limits::default()
    };
    let (seen, progress) = scan(&chunks(doc, &cuts(doc.len(), count, seed)), limits);
    // Any chunking gives the same answer as the whole document.
    let whole = scan(&[doc], limits);
    assert_eq!((&seen, progress), (&whole.0, whole.1));

    let parsed = serde_json::from_slice::<Value>(doc);
    let beyond = matches!(&parsed, Err(e) if beyond_serde_json(e));
    if std::str::from_utf8(doc).is_err() || beyond {
        return;
    }
    let value = match parsed {
        Ok(value) => value,
        Err(e) => {
            assert!(
                matches!(progress, Progress::Failed(_)),
                "serde_json rejects ({e}), the scanner accepts: {progress:?}"
            );
            return;
        }
    };
    assert_eq!(
        progress,
        Progress::Done,
        "serde_json accepts, the scanner does not"
    );
    if !json_without_duplicates(doc) {
        return;
    }
    for (index, path) in PATHS.iter().enumerate() {
        let events = &seen[index];
        match at_path(&value, path) {
            None => assert!(events.is_empty(), "{path:?}: {events:?}"),
            Some(Value::String(s)) => {
                // `end` is just past the closing quote.
                let end = match events.as_slice() {
                    [Seen::Str(_, end) | Seen::TooLong(end)] => *end as usize,
                    other => panic!("{path:?}: {other:?}"),
                };
                assert_eq!(doc.get(end.wrapping_sub(1)), Some(&b'"'), "{path:?}");
                let want = if s.len() > max_value_len {
                    Seen::TooLong(end as u64)
                } else {
                    Seen::Str(s.clone(), end as u64)
                };
                assert_eq!(events, &vec![want], "{path:?}");
            }
            Some(Value::Null) => match events.as_slice() {
                [Seen::Null(end)] => {
                    let end = *end as usize;
                    assert_eq!(doc.get(end.wrapping_sub(4)..end), Some(&b"null"[..]));
                }
                other => panic!("{path:?}: {other:?}"),
            },
            Some(inner @ (Value::Object(_) | Value::Array(_))) => match events.as_slice() {
                [Seen::Open {
                    offset: open,
                    object,
                }, Seen::Close { offset: close }] => {
                    let (open, close) = (*open as usize, *close as usize);
                    assert_eq!(*object, inner.is_object());
                    assert!(open >= 1 && close >= open && close < doc.len());
                    let span: Value = serde_json::from_slice(&doc[open - 1..=close])
                        .unwrap_or_else(|e| panic!("{path:?}: span is not the value: {e}"));
                    assert_eq!(&span, inner, "{path:?}");
                }
                other => panic!("{path:?}: {other:?}"),
            },
            Some(_) => match events.as_slice() {
                [Seen::Other(end)] => {
                    let end = *end as usize;
                    assert!(end <= doc.len(), "{path:?}");
                    let last = doc.get(end.wrapping_sub(1)).copied().unwrap_or(0);
                    assert!(last.is_ascii_alphanumeric(), "{path:?}: ends at {last:?}");
                }
                other => panic!("{path:?}: {other:?}"),
            },
        }
    }
});
