//! The scanner's memory does not grow with the body: after the first document
//! (which sizes the nesting stack and value buffer), feeding, finishing and
//! resetting allocate nothing, whatever the body size or chunking.

use a2a_affinity_core::json::scan::{Event, Flow, Limits, Progress, Scalar, Scanner};
use a2a_affinity_testkit::alloc::{allocations, Counting};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn body(text_len: usize, depth: usize) -> Vec<u8> {
    let text = "word \\\"quoted\\\" \\u00e9\\n".repeat(text_len / 24 + 1);
    let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    format!(
        r#"{{"method":"message/send","params":{{"message":{{"parts":[{{"text":"{text}","deep":{deep}}}],"contextId":"ctx-\u00e9-1234","{long_key}":1}}}}}}"#,
        long_key = "k".repeat(10_000),
    )
    .into_bytes()
}

#[test]
fn steady_state_feeding_does_not_allocate() {
    const PATHS: &[&[&str]] = &[
        &["params", "message", "contextId"],
        &["params", "message"],
        &["method"],
    ];
    let mut scanner = Scanner::new(PATHS, Limits::default());
    let mut found = 0usize;
    let mut sink = |event: Event<'_>| {
        if let Event::Scalar {
            value: Scalar::Str(s),
            ..
        } = event
        {
            found += s.len();
        }
        Flow::Continue
    };
    // Warm-up: the deepest nesting and the longest value this scanner will see.
    let warm = body(100, 120);
    assert_eq!(scanner.feed(&warm, &mut sink), Progress::Done);
    let bodies = [body(1_000, 3), body(512 * 1024, 120), body(64 * 1024, 60)];
    let ((), during) = allocations(|| {
        for doc in &bodies {
            for chunk_len in [1, 7, 4096, doc.len()] {
                scanner.reset();
                for chunk in doc.chunks(chunk_len) {
                    let progress = scanner.feed(chunk, &mut sink);
                    assert!(
                        matches!(progress, Progress::NeedMore | Progress::Done),
                        "{progress:?}"
                    );
                }
                assert_eq!(scanner.finish(), Progress::Done);
            }
        }
    });
    assert_eq!(during, 0, "allocations while scanning");
    // Each pass saw the method and the contextId (found counts their bytes).
    assert_eq!(
        found,
        (1 + bodies.len() * 4) * ("message/send".len() + "ctx-é-1234".len())
    );
}
