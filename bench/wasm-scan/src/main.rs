//! The filter's request-body extractor, timed where it runs in production:
//! compiled to wasm32-wasip1 and run by V8 (Node's WASI), fed the same
//! bodies as `bench/benches/scan.rs` in the windows the filter copies out of Envoy
//! (2 KiB, doubling to 64 KiB).
//!
//! Run: `scripts/bench.sh --wasm-scan` (builds this crate for
//! wasm32-wasip1 and runs it with `bench/wasm_scan.mjs`). On the host target
//! (`cargo run --release -p wasm-scan`) it gives the same table for
//! comparison.
//!
//! With `--check` it instead runs the extractor over bodies with every kind
//! of string byte at every position around the scanner's 8- and 16-byte
//! blocks, fed whole and in two pieces split everywhere, and exits 1 if any
//! verdict is wrong: the test suite runs it inside V8, where the filter's
//! SIMD string skip is compiled in (the host tests cannot reach that code).

// Bench set-up code may panic on a broken fixture; the filter never does.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use a2a_affinity_core::json::request::{BodyKind, Extractor};
use a2a_affinity_core::verdict::{Step, Verdict};
use a2a_affinity_testkit::bodies::{cases, raw_message as message, CONTEXT_ID};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn extract(body: &[u8]) -> usize {
    let mut extractor = Extractor::new(BodyKind::JsonRpc, 256);
    let (mut at, mut window) = (0, 2048);
    while at < body.len() {
        let end = (at + window).min(body.len());
        match extractor.feed(&body[at..end]) {
            Step::NeedMore => {}
            other => panic!("unexpected step {other:?}"),
        }
        at = end;
        window = (window * 2).min(64 * 1024);
    }
    // The verdict waits for the end of the body (a later duplicate key
    // would win).
    match extractor.finish() {
        Step::Decided(Verdict::Context(id)) => id.len(),
        other => panic!("unexpected step {other:?}"),
    }
}

/// Outcome of reading `body` fed in two pieces split at `split`.
fn verdict_split(body: &[u8], split: usize) -> Result<Verdict, String> {
    let mut extractor = Extractor::new(BodyKind::JsonRpc, 256);
    let (head, tail) = body.split_at(split.min(body.len()));
    for piece in [head, tail] {
        match extractor.feed(piece) {
            Step::Decided(verdict) => return Ok(verdict),
            Step::NeedMore => {}
            Step::InvalidJson(e) => return Err(format!("invalid JSON: {e:?}")),
            Step::InvalidGrpc(e) => return Err(format!("invalid gRPC: {e:?}")),
        }
    }
    match extractor.finish() {
        Step::Decided(verdict) => Ok(verdict),
        Step::InvalidJson(e) => Err(format!("invalid JSON: {e:?}")),
        other => Err(format!("unexpected {other:?}")),
    }
}

/// The filter's rule for a contextId: any non-empty string (the header
/// percent-encodes what a header value cannot hold); an empty one makes the
/// message a first turn.
fn usable(id: &str) -> bool {
    !id.is_empty()
}

/// Every byte class a string can hold, at every position of text parts and
/// contextIds of lengths around the block sizes, split everywhere. Returns
/// the number of failures, after printing the first 20.
fn check() -> usize {
    // Raw bytes inside a JSON string, and whether the body is valid JSON.
    // Bytes that are not UTF-8 make it invalid too, but the scanner checks
    // that only in the strings it reports (the contextId), not in those it
    // skips (see src/scan.rs): `None` accepts either answer for a text part.
    let specials: [(&[u8], Option<bool>); 12] = [
        (br#"\\\"\\\\"#, Some(true)),
        (b"\\\"", Some(true)),
        (b"\\\\", Some(true)),
        (b"\\n", Some(true)),
        (b"\\/", Some(true)),
        (b"\\u00e9", Some(true)),
        (b"\\ud83d\\ude00", Some(true)),
        ("é€😀".as_bytes(), Some(true)),
        (b"\x7f\xff", None),
        (b"\x01", Some(false)),
        (b"\x1f", Some(false)),
        (b"\n", Some(false)),
    ];
    let mut failures = 0;
    for len in (0..40).chain([47, 48, 63, 64, 65, 79, 80, 127, 128, 129, 300]) {
        for at in 0..=len {
            for &(special, valid) in &specials {
                let mut raw = vec![b'a'; at];
                raw.extend_from_slice(special);
                raw.resize(raw.len() + (len - at), b'b');
                // The bytes in a text part the scanner skips, then in the
                // contextId it captures (up to 200 bytes: longer values are
                // refused as too long before their end).
                let mut bodies = vec![(message(&raw, b"ctx-1"), valid)];
                if len <= 200 {
                    let decoy = b"\\\"contextId\\\":\\\"decoy\\\"";
                    bodies.push((message(decoy, &raw), Some(valid == Some(true))));
                }
                for (body, valid) in bodies {
                    let want: Result<String, ()> = if valid != Some(false) {
                        serde_json::from_slice::<serde_json::Value>(&body)
                            .ok()
                            .and_then(|v| {
                                v["params"]["message"]["contextId"]
                                    .as_str()
                                    .map(str::to_owned)
                            })
                            .ok_or(())
                    } else {
                        Err(())
                    };
                    for split in 0..=body.len() {
                        let got = verdict_split(&body, split);
                        let ok = match (valid, &want, &got) {
                            (None, _, Err(_)) => true,
                            (None, _, Ok(Verdict::Context(got))) => got == "ctx-1",
                            (Some(_), Ok(id), Ok(Verdict::Context(got))) => id == got && usable(id),
                            (Some(_), Ok(id), Ok(Verdict::Mint(_))) => !usable(id),
                            (Some(_), Err(()), Err(_)) => true,
                            _ => false,
                        };
                        if !ok {
                            failures += 1;
                            if failures <= 20 {
                                println!(
                                    "{} split {split}: want {want:?}, got {got:?}",
                                    String::from_utf8_lossy(&body)
                                );
                            }
                        }
                    }
                }
            }
        }
    }
    failures
}

fn main() {
    if std::env::args().any(|a| a == "--check") {
        let failures = check();
        let target = if cfg!(target_arch = "wasm32") {
            "wasm32"
        } else {
            "host"
        };
        println!("extractor check on {target}: {failures} failures");
        std::process::exit(i32::from(failures > 0));
    }
    let target = if cfg!(target_arch = "wasm32") {
        "wasm32 (V8)"
    } else {
        "host"
    };
    println!("Extractor on {target}, best of 20 rounds of ~8 MiB each");
    println!();
    println!("| body | text | contextId | µs per body | GB/s |");
    println!("|---|---|---|---|---|");
    for case in cases() {
        let (label, text, position, body) = (case.size, case.text, case.position, case.body);
        assert_eq!(extract(&body), CONTEXT_ID.len());
        let reps = (8 << 20) / body.len();
        let mut best = Duration::MAX;
        for _ in 0..20 {
            let start = Instant::now();
            for _ in 0..reps {
                black_box(extract(black_box(&body)));
            }
            best = best.min(start.elapsed());
        }
        let per_body = best.as_secs_f64() / reps as f64;
        println!(
            "| {label} | {text} | {position} | {:.2} | {:.2} |",
            per_body * 1e6,
            body.len() as f64 / per_body / 1e9
        );
    }
}
