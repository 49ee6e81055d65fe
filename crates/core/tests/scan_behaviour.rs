//! Behaviour of the streaming JSON path scanner on A2A bodies: chunk splits,
//! escapes, decoys, nesting, truncation, trailing bytes, limits and Stop.

// Helpers outside #[test] functions are test code too (clippy.toml only
// exempts the test functions themselves).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use a2a_affinity_core::json::scan::{
    Event, Flow, Limits, Progress, Scalar, ScanError, Scanner, MAX_DEPTH,
};

/// An owned copy of an [`Event`], so that events can outlive the scanner's buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Open {
        path: usize,
        offset: u64,
        object: bool,
    },
    Close {
        path: usize,
        offset: u64,
    },
    Str {
        path: usize,
        value: String,
    },
    TooLong {
        path: usize,
    },
    Null {
        path: usize,
    },
    Other {
        path: usize,
    },
}

fn own(event: Event<'_>) -> Seen {
    match event {
        Event::Open {
            path,
            offset,
            object,
        } => Seen::Open {
            path,
            offset,
            object,
        },
        Event::Close { path, offset, .. } => Seen::Close { path, offset },
        Event::Scalar {
            path,
            value: Scalar::Str(s),
            ..
        } => Seen::Str {
            path,
            value: s.to_owned(),
        },
        Event::Scalar {
            path,
            value: Scalar::TooLong,
            ..
        } => Seen::TooLong { path },
        Event::Scalar {
            path,
            value: Scalar::Null,
            ..
        } => Seen::Null { path },
        Event::Scalar {
            path,
            value: Scalar::Other,
            ..
        } => Seen::Other { path },
    }
}

const CONTEXT: &[&str] = &["params", "message", "contextId"];
const MESSAGE: &[&str] = &["params", "message"];
const METHOD: &[&str] = &["method"];
const REST_CONTEXT: &[&str] = &["message", "contextId"];
const REST03_CONTEXT: &[&str] = &["request", "context_id"];
const LIST_CONTEXT: &[&str] = &["params", "contextId"];
const PATHS: &[&[&str]] = &[
    CONTEXT,
    MESSAGE,
    METHOD,
    REST_CONTEXT,
    REST03_CONTEXT,
    LIST_CONTEXT,
];

/// Feeds `chunks` in order, then `finish`; returns the events and the last progress.
fn scan_chunks<'c>(
    paths: &[&[&str]],
    limits: Limits,
    chunks: impl IntoIterator<Item = &'c [u8]>,
) -> (Vec<Seen>, Progress) {
    let mut scanner = Scanner::new(paths, limits);
    let mut events = Vec::new();
    let mut sink = |e: Event<'_>| {
        events.push(own(e));
        Flow::Continue
    };
    let mut progress = Progress::NeedMore;
    for chunk in chunks {
        progress = scanner.feed(chunk, &mut sink);
        if matches!(progress, Progress::Failed(_) | Progress::Stopped) {
            break;
        }
    }
    if !matches!(progress, Progress::Failed(_) | Progress::Stopped) {
        progress = scanner.finish();
    }
    (events, progress)
}

fn scan(paths: &[&[&str]], body: &[u8]) -> (Vec<Seen>, Progress) {
    scan_chunks(paths, Limits::default(), [body])
}

fn context_of(events: &[Seen], path: usize) -> Option<String> {
    events.iter().find_map(|e| match e {
        Seen::Str { path: p, value } if *p == path => Some(value.clone()),
        _ => None,
    })
}

fn offset_after(body: &str, needle: &str) -> u64 {
    (body.find(needle).unwrap() + needle.len()) as u64
}

const JSONRPC_03: &str = r#"{"jsonrpc":"2.0","id":"req-1","method":"message/send","params":{"configuration":{"blocking":true,"acceptedOutputModes":["text/plain"]},"metadata":{"contextId":"meta-decoy"},"message":{"kind":"message","messageId":"m-1","parts":[{"kind":"text","text":"please quote \"contextId\":\"text-decoy\" back","contextId":"part-decoy"},{"kind":"data","data":{"contextId":"data-decoy","n":[1,2.5,-3e2,true,null]}}],"role":"user","contextId":"ctx-03","taskId":"task-9"}}}"#;

const JSONRPC_10: &str = r#"{
  "method": "SendMessage",
  "params": {
    "tenant": "acme",
    "message": {
      "messageId": "0190-aa",
      "contextId": "ctx-\u00e9t\u00E9-\ud83d\ude00-10",
      "taskId": "t-1",
      "role": "ROLE_USER",
      "parts": [ { "text": "line one\nline two \u0000? no: \\u0000 is text", "mediaType": "text/plain" } ]
    },
    "configuration": { "acceptedOutputModes": [] }
  },
  "id": 7,
  "jsonrpc": "2.0"
}
"#;

const REST_10: &str = r#"{"configuration":{},"message":{"parts":[{"text":"a\/b"}],"role":"ROLE_USER","messageId":"x","contextId":"rest-ctx-10"}}"#;

const REST_03: &str = "{\"request\":{\"message_id\":\"m\",\"context_id\":\"rest-ctx-03\",\"role\":\"ROLE_USER\",\"content\":[{\"text\":\"caf\u{e9} \u{1F600}\"}]},\"configuration\":{\"blocking\":true}}";

const LIST_TASKS: &str = r#"{"jsonrpc":"2.0","id":3,"method":"ListTasks","params":{"pageSize":50,"contextId":"list-ctx","status":"TASK_STATE_WORKING","historyLength":0}}"#;

const BODIES: &[&str] = &[JSONRPC_03, JSONRPC_10, REST_10, REST_03, LIST_TASKS];

#[test]
fn realistic_bodies_report_the_context_at_the_right_path() {
    let (events, progress) = scan(PATHS, JSONRPC_03.as_bytes());
    assert_eq!(progress, Progress::Done);
    assert_eq!(
        events,
        vec![
            Seen::Str {
                path: 2,
                value: "message/send".into()
            },
            Seen::Open {
                path: 1,
                offset: offset_after(JSONRPC_03, r#""message":{"#),
                object: true
            },
            Seen::Str {
                path: 0,
                value: "ctx-03".into()
            },
            Seen::Close {
                path: 1,
                offset: JSONRPC_03.rfind("}}}").unwrap() as u64
            },
        ]
    );

    let (events, progress) = scan(PATHS, JSONRPC_10.as_bytes());
    assert_eq!(progress, Progress::Done);
    assert_eq!(
        context_of(&events, 0).as_deref(),
        Some("ctx-\u{e9}t\u{e9}-\u{1F600}-10")
    );
    assert_eq!(context_of(&events, 2).as_deref(), Some("SendMessage"));

    let (events, progress) = scan(PATHS, REST_10.as_bytes());
    assert_eq!(progress, Progress::Done);
    assert_eq!(
        events,
        vec![Seen::Str {
            path: 3,
            value: "rest-ctx-10".into()
        }]
    );

    let (events, progress) = scan(PATHS, REST_03.as_bytes());
    assert_eq!(progress, Progress::Done);
    assert_eq!(
        events,
        vec![Seen::Str {
            path: 4,
            value: "rest-ctx-03".into()
        }]
    );

    let (events, progress) = scan(PATHS, LIST_TASKS.as_bytes());
    assert_eq!(progress, Progress::Done);
    assert_eq!(
        events,
        vec![
            Seen::Str {
                path: 2,
                value: "ListTasks".into()
            },
            Seen::Str {
                path: 5,
                value: "list-ctx".into()
            },
        ]
    );
}

#[test]
fn every_split_point_gives_the_events_of_a_single_feed() {
    for body in BODIES {
        let body = body.as_bytes();
        let whole = scan(PATHS, body);
        assert_eq!(whole.1, Progress::Done);
        for cut in 0..=body.len() {
            let split = scan_chunks(PATHS, Limits::default(), [&body[..cut], &body[cut..]]);
            assert_eq!(split, whole, "split at {cut}");
        }
        let bytewise = scan_chunks(PATHS, Limits::default(), body.chunks(1));
        assert_eq!(bytewise, whole, "1-byte feeds");
        for width in [2, 3, 5, 7, 64] {
            let chunked = scan_chunks(PATHS, Limits::default(), body.chunks(width));
            assert_eq!(chunked, whole, "{width}-byte feeds");
        }
    }
}

#[test]
fn every_prefix_is_truncated_and_reports_a_prefix_of_the_events() {
    for body in BODIES {
        let body = body.trim_end().as_bytes();
        let (all, _) = scan(PATHS, body);
        for cut in 0..body.len() {
            let (events, progress) = scan(PATHS, &body[..cut]);
            assert_eq!(
                progress,
                Progress::Failed(ScanError::Truncated),
                "prefix of {cut} bytes"
            );
            assert!(
                all.starts_with(&events),
                "prefix of {cut} bytes: {events:?}"
            );
        }
    }
}

#[test]
fn decoys_never_count() {
    let body = r#"{"contextId":"top","params":{"contextId":"params-level","metadata":{"message":{"contextId":"meta"}},
        "list":[{"message":{"contextId":"in-array"}}],"history":[["contextId","as-array-item"]],
        "note":"{\"message\":{\"contextId\":\"in-string\"}}","message":{"extra":{"contextId":"too-deep"},
        "parts":[{"text":"contextId: x","contextId":"in-parts"}],"role":"contextId"}}}"#;
    let (events, progress) = scan(&[CONTEXT], body.as_bytes());
    assert_eq!(progress, Progress::Done);
    assert_eq!(events, vec![]);

    // The same body with the real key added last is found, whatever came before.
    let real = body.replacen(
        r#""role":"contextId""#,
        r#""role":"contextId","contextId":"real""#,
        1,
    );
    let (events, progress) = scan(&[CONTEXT], real.as_bytes());
    assert_eq!(progress, Progress::Done);
    assert_eq!(
        events,
        vec![Seen::Str {
            path: 0,
            value: "real".into()
        }]
    );

    // A watched path through an array never matches, even by index-like keys.
    let (events, _) = scan(&[CONTEXT], br#"{"params":[{"message":{"contextId":"x"}}]}"#);
    assert_eq!(events, vec![]);
    // The message itself as an array: the path stops there.
    let doc = r#"{"params":{"message":[{"contextId":"x"}]}}"#;
    let (events, _) = scan(&[CONTEXT, MESSAGE], doc.as_bytes());
    let open = offset_after(doc, "[");
    let close = doc.find(']').unwrap() as u64;
    assert_eq!(
        events,
        vec![
            Seen::Open {
                path: 1,
                offset: open,
                object: false
            },
            Seen::Close {
                path: 1,
                offset: close
            }
        ]
    );
}

#[test]
fn escapes_in_keys_and_values_are_decoded() {
    let body = r#"{"\u0070arams":{"mess\u0061ge":{"\u0063ont\u0065xt\u0049d":"a\"b\\c\/d\b\f\n\r\t\u00e9\u4e2d\ud83d\ude00"}}}"#;
    let (events, progress) = scan(&[CONTEXT], body.as_bytes());
    assert_eq!(progress, Progress::Done);
    assert_eq!(
        events,
        vec![Seen::Str {
            path: 0,
            value: "a\"b\\c/d\u{8}\u{c}\n\r\t\u{e9}\u{4e2d}\u{1F600}".into()
        }]
    );
    // Keys that differ only once decoded do not match.
    let (events, _) = scan(
        &[CONTEXT],
        br#"{"params":{"message":{"contextI\u0044":"x"}}}"#,
    );
    assert_eq!(events, vec![]);
    // A key longer than any watched key, sharing its prefix, does not match.
    let long_key = format!(
        r#"{{"params":{{"message":{{"contextId{}":"x"}}}}}}"#,
        "d".repeat(5000)
    );
    let (events, progress) = scan(&[CONTEXT], long_key.as_bytes());
    assert_eq!((events, progress), (vec![], Progress::Done));
}

#[test]
fn invalid_strings_fail_like_serde_json() {
    let cases: &[&[u8]] = &[
        br#"{"a":"\x"}"#,
        br#"{"a":"\u12"}"#,
        br#"{"a":"\u12G4"}"#,
        br#"{"a":"\ud800"}"#,
        br#"{"a":"\ud800\n"}"#,
        br#"{"a":"\ud800\u0041"}"#,
        br#"{"a":"\udc00"}"#,
        br#"{"\ud800":1}"#,
        b"{\"a\":\"tab\there\"}",
        b"{\"a\x01\":1}",
        b"{\"params\":{\"message\":{\"contextId\":\"\xff\"}}}",
        b"{\"params\":{\"message\":{\"contextId\":\"\xc3\"}}}",
    ];
    for case in cases {
        assert!(serde_json::from_slice::<serde_json::Value>(case).is_err());
        let (_, progress) = scan(&[CONTEXT], case);
        assert!(
            matches!(progress, Progress::Failed(ScanError::Syntax { .. })),
            "{:?}: {progress:?}",
            String::from_utf8_lossy(case)
        );
    }
    // 0x7f and raw multi-byte UTF-8 are fine.
    let (events, progress) = scan(
        &[CONTEXT],
        "{\"params\":{\"message\":{\"contextId\":\"\u{7f}\u{e9}\u{1F600}\"}}}".as_bytes(),
    );
    assert_eq!(progress, Progress::Done);
    assert_eq!(
        events,
        vec![Seen::Str {
            path: 0,
            value: "\u{7f}\u{e9}\u{1F600}".into()
        }]
    );
}

#[test]
fn unreported_strings_are_not_checked_for_utf8() {
    // Documented trade-off: message text is skipped without UTF-8 validation.
    let body =
        b"{\"params\":{\"message\":{\"parts\":[{\"text\":\"\xff\xfe\"}],\"contextId\":\"ok\"}}}";
    let (events, progress) = scan(&[CONTEXT], body);
    assert_eq!(progress, Progress::Done);
    assert_eq!(
        events,
        vec![Seen::Str {
            path: 0,
            value: "ok".into()
        }]
    );
}

#[test]
fn grammar_errors_fail_and_offsets_point_at_the_bad_byte() {
    let cases: &[(&str, u64)] = &[
        (r#"{"a":1,}"#, 7),
        (r#"{"a" 1}"#, 5),
        (r#"{"a":01}"#, 6),
        (r#"{"a":-}"#, 6),
        (r#"{"a":1.}"#, 7),
        (r#"{"a":1e}"#, 7),
        (r#"{"a":1e+}"#, 8),
        (r#"{"a":tru}"#, 8),
        (r#"{"a":nul1}"#, 8),
        (r#"{"a":[1,]}"#, 8),
        (r#"{"a":[1}"#, 7),
        (r#"{"a":{]}"#, 6),
        (r#"{'a':1}"#, 1),
        (r#"{"a":+1}"#, 5),
        (r#"{a:1}"#, 1),
        (r#"]"#, 0),
        ("{\"a\":1}\u{feff}", 7),
    ];
    for (case, offset) in cases {
        assert!(
            serde_json::from_str::<serde_json::Value>(case).is_err(),
            "{case}"
        );
        let (_, progress) = scan(PATHS, case.as_bytes());
        assert_eq!(
            progress,
            Progress::Failed(ScanError::Syntax { offset: *offset }),
            "{case}"
        );
    }
    let valid = [
        r#"{"a":-0.5e-3}"#,
        r#"{"a":0}"#,
        r#"{"a":[ ]}"#,
        r#"{ }"#,
        r#"[1E+2,-1,0.0]"#,
        " \t\r\n{}\n",
    ];
    for case in valid {
        assert!(
            serde_json::from_str::<serde_json::Value>(case).is_ok(),
            "{case}"
        );
        assert_eq!(scan(PATHS, case.as_bytes()).1, Progress::Done, "{case}");
    }
}

#[test]
fn trailing_bytes_after_the_document() {
    let body = REST_10.as_bytes();
    let mut scanner = Scanner::new(PATHS, Limits::default());
    let mut found = Vec::new();
    let mut sink = |e: Event<'_>| {
        found.push(own(e));
        Flow::Continue
    };
    assert_eq!(scanner.feed(body, &mut sink), Progress::Done);
    assert_eq!(scanner.feed(b" \r\n\t", &mut sink), Progress::Done);
    let garbage_at = scanner.offset();
    assert_eq!(garbage_at, body.len() as u64 + 4);
    assert_eq!(
        scanner.feed(b" {}", &mut sink),
        Progress::Failed(ScanError::Syntax {
            offset: garbage_at + 1
        })
    );
    assert_eq!(
        scanner.finish(),
        Progress::Failed(ScanError::Syntax {
            offset: garbage_at + 1
        })
    );
    assert_eq!(
        found,
        vec![Seen::Str {
            path: 3,
            value: "rest-ctx-10".into()
        }]
    );

    for tail in ["x", "}", ",", "{}", "1", "\u{0}"] {
        let doc = format!("{REST_10}{tail}");
        assert!(serde_json::from_str::<serde_json::Value>(&doc).is_err());
        assert_eq!(
            scan(PATHS, doc.as_bytes()).1,
            Progress::Failed(ScanError::Syntax {
                offset: REST_10.len() as u64
            }),
            "{tail:?}"
        );
    }
}

#[test]
fn non_object_top_level_has_no_keys() {
    let cases: &[(&str, Progress)] = &[
        (
            r#"[{"params":{"message":{"contextId":"x"}}}]"#,
            Progress::Done,
        ),
        (r#""params""#, Progress::Done),
        ("42", Progress::Done),
        ("-1.5e3 ", Progress::Done),
        ("true", Progress::Done),
        ("null\n", Progress::Done),
        ("", Progress::Failed(ScanError::Truncated)),
        ("   ", Progress::Failed(ScanError::Truncated)),
        ("tru", Progress::Failed(ScanError::Truncated)),
        ("-", Progress::Failed(ScanError::Truncated)),
    ];
    for (case, expected) in cases {
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(case).is_ok(),
            *expected == Progress::Done
        );
        assert_eq!(
            scan(PATHS, case.as_bytes()),
            (vec![], *expected),
            "{case:?}"
        );
    }
    // The empty path watches the whole document.
    let (events, _) = scan(&[&[]], br#"{"a":1}"#);
    assert_eq!(
        events,
        vec![
            Seen::Open {
                path: 0,
                offset: 1,
                object: true
            },
            Seen::Close { path: 0, offset: 6 }
        ]
    );
    let (events, _) = scan(&[&[]], br#""root""#);
    assert_eq!(
        events,
        vec![Seen::Str {
            path: 0,
            value: "root".into()
        }]
    );
}

fn nested(depth: usize, open: &str, close: &str, inner: &str) -> String {
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
}

#[test]
fn nesting_is_read_to_the_limit_past_serde_json_and_python() {
    // serde_json stops at 128 levels; the agents' parsers go further
    // (Python's json to about 1000), so the scanner reads to MAX_DEPTH.
    let max = MAX_DEPTH as usize;
    for depth in [
        1usize,
        100,
        127,
        128,
        129,
        400,
        max - 1,
        max,
        max + 1,
        4 * max,
    ] {
        for (open, close, inner) in [("[", "]", "1"), (r#"{"a":"#, "}", "null")] {
            let doc = nested(depth, open, close, inner);
            let (_, progress) = scan(PATHS, doc.as_bytes());
            if depth < 128 {
                assert!(serde_json::from_str::<serde_json::Value>(&doc).is_ok());
            }
            if depth <= max {
                assert_eq!(progress, Progress::Done, "depth {depth} {open}");
            } else {
                // The error names the offset of the first bracket too many.
                let offset = (max * open.len()) as u64;
                assert_eq!(
                    progress,
                    Progress::Failed(ScanError::TooDeep { offset }),
                    "depth {depth} {open}"
                );
            }
        }
    }
    // The limit is configurable; the error points at the first bracket too many.
    let limits = Limits {
        max_depth: 3,
        ..Limits::default()
    };
    assert_eq!(
        scan_chunks(PATHS, limits, [b"[[[1]]]".as_slice()]).1,
        Progress::Done
    );
    assert_eq!(
        scan_chunks(PATHS, limits, [b"[[[[1]]]]".as_slice()]).1,
        Progress::Failed(ScanError::TooDeep { offset: 3 })
    );
    // A deep document whose context comes before the deep part is still found
    // when the sink stops at it.
    let deep = format!(
        r#"{{"params":{{"message":{{"contextId":"early","x":{}}}}}}}"#,
        nested(1000, "[", "]", "")
    );
    let mut scanner = Scanner::new(&[CONTEXT], Limits::default());
    let mut got = None;
    let progress = scanner.feed(deep.as_bytes(), &mut |e: Event<'_>| {
        got = Some(own(e));
        Flow::Stop
    });
    assert_eq!(progress, Progress::Stopped);
    assert_eq!(
        got,
        Some(Seen::Str {
            path: 0,
            value: "early".into()
        })
    );
}

#[test]
fn long_values_are_too_long_by_decoded_length() {
    let limits = Limits {
        max_value_len: 16,
        ..Limits::default()
    };
    let cases = [
        ("a".repeat(16), Some("a".repeat(16))),
        ("a".repeat(17), None),
        (
            format!("{}\\u00e9", "a".repeat(14)),
            Some(format!("{}\u{e9}", "a".repeat(14))),
        ),
        (format!("{}\\u00e9", "a".repeat(15)), None),
        ("\\n".repeat(16), Some("\n".repeat(16))),
        ("\\n".repeat(17), None),
        ("x".repeat(100_000), None),
    ];
    for (raw, expected) in cases {
        let doc = format!(r#"{{"params":{{"message":{{"contextId":"{raw}","taskId":"t"}}}}}}"#);
        let (events, progress) = scan_chunks(&[CONTEXT], limits, doc.as_bytes().chunks(5));
        assert_eq!(progress, Progress::Done);
        let want = match expected {
            Some(value) => Seen::Str { path: 0, value },
            None => Seen::TooLong { path: 0 },
        };
        assert_eq!(events, vec![want], "{raw}");
    }
}

#[test]
fn other_scalars_and_containers_at_watched_paths() {
    let doc = br#"{"params":{"message":{"contextId":12.5e1}},"method":null}"#;
    let (events, _) = scan(PATHS, doc);
    assert_eq!(
        events,
        vec![
            Seen::Open {
                path: 1,
                offset: 22,
                object: true
            },
            Seen::Other { path: 0 },
            Seen::Close {
                path: 1,
                offset: 40
            },
            Seen::Null { path: 2 },
        ]
    );
    let doc = r#"{"params":{"message":{"contextId":{"contextId":"x"}}}}"#;
    let (events, _) = scan(&[CONTEXT], doc.as_bytes());
    let open = offset_after(doc, r#""contextId":{"#);
    let close = doc.find('}').unwrap() as u64;
    assert_eq!(
        events,
        vec![
            Seen::Open {
                path: 0,
                offset: open,
                object: true
            },
            Seen::Close {
                path: 0,
                offset: close
            }
        ]
    );
    for literal in ["true", "false", "0", "-7"] {
        let doc = format!(r#"{{"method":{literal}}}"#);
        assert_eq!(
            scan(&[METHOD], doc.as_bytes()).0,
            vec![Seen::Other { path: 0 }]
        );
    }
    assert_eq!(
        scan(&[METHOD], br#"{"method":null}"#).0,
        vec![Seen::Null { path: 0 }]
    );
}

#[test]
fn scalar_events_say_where_the_value_ends() {
    // Every split point: the offset is absolute, not within the chunk.
    let doc = br#"{"a":"xy","b":null,"c":-1.5e3 ,"d":true}"#;
    let paths: &[&[&str]] = &[&["a"], &["b"], &["c"], &["d"]];
    let want: Vec<(usize, u64)> = vec![(0, 9), (1, 18), (2, 29), (3, 39)];
    for cut in 0..=doc.len() {
        let mut scanner = Scanner::new(paths, Limits::default());
        let mut ends = Vec::new();
        let mut sink = |event: Event<'_>| {
            if let Event::Scalar { path, end, .. } = event {
                ends.push((path, end));
            }
            Flow::Continue
        };
        scanner.feed(&doc[..cut], &mut sink);
        scanner.feed(&doc[cut..], &mut sink);
        assert_eq!(ends, want, "cut at {cut}");
    }
}

#[test]
fn duplicate_keys_are_all_reported_in_order() {
    let doc = br#"{"params":{"message":{"contextId":"first","contextId":"second"}}}"#;
    let str_at = |value: &str| Seen::Str {
        path: 0,
        value: value.into(),
    };
    assert_eq!(
        scan(&[CONTEXT], doc).0,
        vec![str_at("first"), str_at("second")]
    );
    // A later duplicate of an ancestor is searched too.
    let doc = br#"{"params":{"message":{}},"params":{"message":{"contextId":"late"}}}"#;
    assert_eq!(scan(&[CONTEXT], doc).0, vec![str_at("late")]);
    let doc = br#"{"params":{"message":{"taskId":"t"},"message":{"contextId":"late"}}}"#;
    assert_eq!(scan(&[CONTEXT], doc).0, vec![str_at("late")]);
    // Sibling paths are independent.
    let doc = br#"{"params":{"contextId":"a","message":{"contextId":"b"},"contextId":"c"}}"#;
    assert_eq!(
        scan(&[CONTEXT, LIST_CONTEXT], doc).0,
        vec![
            Seen::Str {
                path: 1,
                value: "a".into()
            },
            Seen::Str {
                path: 0,
                value: "b".into()
            },
            Seen::Str {
                path: 1,
                value: "c".into()
            }
        ]
    );
}

#[test]
fn prefix_paths_and_repeated_paths_both_report() {
    let doc = br#"{"params":{"message":{"contextId":"c"}}}"#;
    let paths: &[&[&str]] = &[CONTEXT, MESSAGE, &["params"], CONTEXT];
    assert_eq!(
        scan(paths, doc).0,
        vec![
            Seen::Open {
                path: 2,
                offset: 11,
                object: true
            },
            Seen::Open {
                path: 1,
                offset: 22,
                object: true
            },
            Seen::Str {
                path: 0,
                value: "c".into()
            },
            Seen::Str {
                path: 3,
                value: "c".into()
            },
            Seen::Close {
                path: 1,
                offset: 37
            },
            Seen::Close {
                path: 2,
                offset: 38
            },
        ]
    );
}

#[test]
fn stop_ends_scanning_at_once() {
    let body = JSONRPC_03.as_bytes();
    let end_of_context = offset_after(JSONRPC_03, r#""contextId":"ctx-03""#);
    for cut in [0, 10, 300, body.len() - 5] {
        let mut scanner = Scanner::new(&[CONTEXT, METHOD], Limits::default());
        let mut events = Vec::new();
        let mut sink = |e: Event<'_>| {
            let seen = own(e);
            let stop = matches!(seen, Seen::Str { path: 0, .. });
            events.push(seen);
            if stop {
                Flow::Stop
            } else {
                Flow::Continue
            }
        };
        let first = scanner.feed(&body[..cut], &mut sink);
        let second = scanner.feed(&body[cut..], &mut sink);
        if (cut as u64) < end_of_context {
            assert_eq!(second, Progress::Stopped);
        } else {
            assert_eq!(first, Progress::Stopped);
        }
        assert_eq!(scanner.offset(), end_of_context, "cut {cut}");
        assert_eq!(scanner.feed(b"garbage", &mut sink), Progress::Stopped);
        assert_eq!(scanner.finish(), Progress::Stopped);
        assert_eq!(
            events,
            vec![
                Seen::Str {
                    path: 1,
                    value: "message/send".into()
                },
                Seen::Str {
                    path: 0,
                    value: "ctx-03".into()
                },
            ]
        );
    }
    // Stop on an Open: offset is just past the bracket.
    let mut scanner = Scanner::new(&[MESSAGE], Limits::default());
    let progress = scanner.feed(body, &mut |_e: Event<'_>| Flow::Stop);
    assert_eq!(progress, Progress::Stopped);
    assert_eq!(scanner.offset(), offset_after(JSONRPC_03, r#""message":{"#));
}

#[test]
fn reset_starts_a_new_document() {
    let mut scanner = Scanner::new(PATHS, Limits::default());
    let mut events = Vec::new();
    for body in [JSONRPC_03, "{\"broken\"", REST_10, LIST_TASKS] {
        scanner.reset();
        let mut sink = |e: Event<'_>| {
            events.push(own(e));
            Flow::Continue
        };
        let _ = scanner.feed(body.as_bytes(), &mut sink);
        let _ = scanner.finish();
        assert_eq!(scanner.offset(), body.len() as u64);
    }
    let mut expected = scan(PATHS, JSONRPC_03.as_bytes()).0;
    expected.extend(scan(PATHS, REST_10.as_bytes()).0);
    expected.extend(scan(PATHS, LIST_TASKS.as_bytes()).0);
    assert_eq!(events, expected);
}

#[test]
fn failed_stays_failed() {
    let mut scanner = Scanner::new(PATHS, Limits::default());
    let mut sink = |_e: Event<'_>| Flow::Continue;
    let failed = Progress::Failed(ScanError::Syntax { offset: 1 });
    assert_eq!(scanner.feed(b"{x", &mut sink), failed);
    assert_eq!(scanner.feed(b"\"a\":1}", &mut sink), failed);
    assert_eq!(scanner.finish(), failed);
    assert_eq!(scanner.offset(), 1);
}

#[test]
fn close_says_whether_the_container_had_a_member() {
    let cases: &[(&[u8], bool)] = &[
        (br#"{"m":{}}"#, true),
        (b"{\"m\":{ \n\t }}", true),
        (br#"{"m":{"a":1}}"#, false),
        (br#"{"m":[]}"#, true),
        (br#"{"m":[ ]}"#, true),
        (br#"{"m":[0]}"#, false),
        (br#"{"m":{"a":{}}}"#, false),
    ];
    for (doc, want) in cases {
        for at in 0..=doc.len() {
            let mut scanner = Scanner::new(&[&["m"]], Limits::default());
            let mut empty = None;
            let mut sink = |event: Event<'_>| {
                if let Event::Close { empty: e, .. } = event {
                    empty = Some(e);
                }
                Flow::Continue
            };
            let (a, b) = doc.split_at(at);
            scanner.feed(a, &mut sink);
            scanner.feed(b, &mut sink);
            assert_eq!(
                empty,
                Some(*want),
                "{} split at {at}",
                String::from_utf8_lossy(doc)
            );
        }
    }
}
