//! Scanner throughput on A2A JSON-RPC `message/send` bodies with one long
//! text part, against serde_json deserializing only params.message.contextId.
//!
//! Run: `cargo bench -p a2a-affinity-bench --bench scan -- --warm-up-time 1 --measurement-time 3`
//!
//! On a busy shared machine criterion's figures swing with the neighbours'
//! load; `SCAN_BENCH_INTERLEAVED=1 cargo bench --bench scan` instead runs the
//! scanner and serde_json alternately, 40 rounds of ~4 MiB each, and prints
//! the best round of each (GB/s = 10^9 bytes/s), which is steadier.
//!
//! `SCAN_BENCH_KERNELS=1 cargo bench -p a2a-affinity-bench --bench scan`
//! times each string-skip kernel the CPU has (the 16-byte SSE2 one, and the
//! 64-byte AVX2 and AVX-512 ones in front of it) over each body's message
//! text, alternately, 40 rounds of ~4 MiB each: the best round of each, and
//! each kernel over the 16-byte one in the same rounds.
//!
//! `SCAN_BENCH_READ_ON=1 cargo bench -p a2a-affinity-bench --bench scan`
//! prices reading a request to its end (the last of a duplicate key wins,
//! so the filter cannot stop at the first contextId): per body, the best
//! of 40 interleaved rounds of the scanner stopping at the first contextId
//! and of the request extractor reading the whole body to its verdict.
//!
//! `SCAN_BENCH_INDEX=1 cargo bench -p a2a-affinity-bench --bench scan`
//! prices a parser of another shape: a structural index built 64 bytes at
//! a time (scan/structural.rs), alone and with the least walk over it,
//! against the request extractor reading each body to its verdict, best
//! of 40 interleaved rounds; and the same on each body's envelope alone
//! (its message text empty), which leaves what the text costs each.
//! `A2A_AFFINITY_STRING_KERNEL=avx2` caps the extractor's string kernel
//! at AVX2, the index's instruction set.

// Bench set-up code may panic on a broken fixture; the filter never does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use a2a_affinity_core::json::request::{BodyKind, Extractor, RPC_PATHS};
use a2a_affinity_core::json::scan::{Event, Flow, Limits, Progress, Scalar, Scanner};
use a2a_affinity_core::json::string_skip_kernels;
use a2a_affinity_core::verdict::{Step, Verdict};
use criterion::{black_box, criterion_group, BenchmarkId, Criterion, Throughput};
use serde::Deserialize;
use std::time::{Duration, Instant};

use a2a_affinity_testkit::bodies::{body, cases, Text, CONTEXT_ID};

#[path = "scan/structural.rs"]
mod structural;

const PATHS: &[&[&str]] = &[&["params", "message", "contextId"]];

fn scan(scanner: &mut Scanner<'_>, body: &[u8]) -> usize {
    scanner.reset();
    let mut found = 0;
    let progress = scanner.feed(body, &mut |event: Event<'_>| match event {
        Event::Scalar {
            value: Scalar::Str(s),
            ..
        } => {
            found = s.len();
            Flow::Stop
        }
        _ => Flow::Continue,
    });
    assert_eq!(progress, Progress::Stopped);
    found
}

#[derive(Deserialize)]
struct Request {
    params: Params,
}

#[derive(Deserialize)]
struct Params {
    message: Message,
}

#[derive(Deserialize)]
struct Message {
    #[serde(rename = "contextId")]
    context_id: Option<String>,
}

fn serde(body: &[u8]) -> usize {
    let request: Request = serde_json::from_slice(body).unwrap();
    request.params.message.context_id.map_or(0, |c| c.len())
}

fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("scan");
    for case in cases() {
        let (label, text, position, body) = (case.size, case.text, case.position, case.body);
        let id = format!("{label}/{text}/context-{position}");
        group.throughput(Throughput::Bytes(body.len() as u64));
        let mut scanner = Scanner::new(PATHS, Limits::default());
        assert_eq!(scan(&mut scanner, &body), CONTEXT_ID.len());
        assert_eq!(serde(&body), CONTEXT_ID.len());
        group.bench_with_input(BenchmarkId::new("scanner", &id), &body, |b, body| {
            b.iter(|| scan(&mut scanner, black_box(body)))
        });
        group.bench_with_input(BenchmarkId::new("serde_json", &id), &body, |b, body| {
            b.iter(|| serde(black_box(body)))
        });
    }
    group.finish();
}

/// The best of 40 rounds of each run, the runs taking turns within each
/// round so that all see the same background load. Each run is one round's
/// work (its own repetitions inside, so that timing adds no call per
/// repetition).
fn best_of_rounds(runs: &mut [Box<dyn FnMut() + '_>]) -> Vec<Duration> {
    let mut best = vec![Duration::MAX; runs.len()];
    for _ in 0..40 {
        for (run, best) in runs.iter_mut().zip(best.iter_mut()) {
            let start = Instant::now();
            run();
            *best = (*best).min(start.elapsed());
        }
    }
    best
}

/// A run for `best_of_rounds`: `work` `reps` times (inlined into the loop).
fn repeated<'a>(reps: usize, mut work: impl FnMut() + 'a) -> Box<dyn FnMut() + 'a> {
    Box::new(move || {
        for _ in 0..reps {
            work();
        }
    })
}

/// Best-of-rounds throughput of `scanner` and `serde_json`, run alternately
/// so that both see the same background load.
fn interleaved() {
    println!("| body | text | contextId | scanner GB/s | serde_json GB/s |");
    println!("|---|---|---|---|---|");
    for case in cases() {
        let (label, text, position, body) = (case.size, case.text, case.position, case.body);
        let reps = (4 << 20) / body.len();
        let mut scanner = Scanner::new(PATHS, Limits::default());
        let best = best_of_rounds(&mut [
            repeated(reps, || {
                black_box(scan(&mut scanner, black_box(&body)));
            }),
            repeated(reps, || {
                black_box(serde(black_box(&body)));
            }),
        ]);
        let [best_scanner, best_serde] = best[..] else {
            unreachable!("two runs")
        };
        let gbps = |t: Duration| (reps * body.len()) as f64 / t.as_secs_f64() / 1e9;
        println!(
            "| {label} | {text} | {position} | {:.2} | {:.2} |",
            gbps(best_scanner),
            gbps(best_serde)
        );
    }
}

/// The request extractor's verdict over the whole body.
fn read_whole(extractor: &mut Extractor, body: &[u8]) -> usize {
    extractor.reset();
    assert_eq!(extractor.feed(body), Step::NeedMore);
    match extractor.finish() {
        Step::Decided(Verdict::Context(c)) => c.len(),
        other => panic!("{other:?}"),
    }
}

/// What reading on costs: stopping at the first contextId against reading
/// the whole body, best of 40 alternating rounds of ~4 MiB each.
fn read_on() {
    println!("| body | text | contextId | stop at the contextId µs | read to the end µs | bytes read then |");
    println!("|---|---|---|---|---|---|");
    for case in cases() {
        let (label, text, position, body) = (case.size, case.text, case.position, case.body);
        let reps = ((4 << 20) / body.len()).max(1);
        let mut scanner = Scanner::new(PATHS, Limits::default());
        let mut extractor = Extractor::new(BodyKind::JsonRpc, 256);
        assert_eq!(read_whole(&mut extractor, &body), CONTEXT_ID.len());
        scan(&mut scanner, &body);
        let stopped_at = scanner.offset();
        let best = best_of_rounds(&mut [
            repeated(reps, || {
                black_box(scan(&mut scanner, black_box(&body)));
            }),
            repeated(reps, || {
                black_box(read_whole(&mut extractor, black_box(&body)));
            }),
        ]);
        let [best_stop, best_whole] = best[..] else {
            unreachable!("two runs")
        };
        let micros = |t: Duration| t.as_secs_f64() * 1e6 / reps as f64;
        println!(
            "| {label} | {text} | {position} | {:.2} | {:.2} | {stopped_at} of {} |",
            micros(best_stop),
            micros(best_whole),
            body.len()
        );
    }
}

/// Each string-skip kernel over the message text of each body (the text is
/// the same whichever end the contextId is at, so the bodies with it first),
/// best of 40 alternating rounds.
fn kernels() {
    let kernels = string_skip_kernels();
    let names: Vec<&str> = kernels.iter().map(|(name, _)| *name).collect();
    let first = names.first().copied().unwrap();
    let mut columns: Vec<String> = names.iter().map(|name| format!("{name} GB/s")).collect();
    columns.extend(names.iter().skip(1).map(|name| format!("{name} / {first}")));
    println!("| body | text | text bytes | {} |", columns.join(" | "));
    println!("|---|---|---|{}", "---|".repeat(columns.len()));
    for case in cases().into_iter().filter(|case| case.position == "first") {
        let (label, text, body) = (case.size, case.text, case.body);
        let opening = b"\"text\":\"";
        let start = body
            .windows(opening.len())
            .position(|w| w == opening)
            .unwrap()
            + opening.len();
        // Every kernel stops at the text's closing quote.
        let stops: Vec<usize> = kernels.iter().map(|(_, skip)| skip(&body, start)).collect();
        let stop = stops.first().copied().unwrap();
        assert!(stops.iter().all(|&other| other == stop), "{stops:?}");
        assert_eq!(body.get(stop), Some(&b'"'));
        let bytes = stop - start;
        let reps = ((4 << 20) / bytes).max(1);
        let body = &body;
        let mut runs: Vec<_> = kernels
            .iter()
            .map(|&(_, skip)| {
                repeated(reps, move || {
                    black_box(skip(black_box(body), black_box(start)));
                })
            })
            .collect();
        let best = best_of_rounds(&mut runs);
        let gbps = |t: &Duration| (reps * bytes) as f64 / t.as_secs_f64() / 1e9;
        let base = best.first().copied().unwrap();
        let mut cells: Vec<String> = best.iter().map(|t| format!("{:.2}", gbps(t))).collect();
        cells.extend(
            best.iter()
                .skip(1)
                .map(|t| format!("{:.2}", base.as_secs_f64() / t.as_secs_f64())),
        );
        println!("| {label} | {text} | {bytes} | {} |", cells.join(" | "));
    }
}

/// A parser built on a structural index, priced against the extractor:
/// per body, µs for the extractor reading it to its verdict, for the
/// extractor's scanner alone (its paths, a sink that does nothing), for
/// the scanner watching no path (the grammar and the byte loop), for the
/// index alone, and for the index with the least walk over it; then the
/// extractor and the index with its walk less what each takes on the
/// body's envelope alone (the text empty): what the message text costs
/// each.
fn index_shape() {
    let cases = cases();
    let texts: Vec<&[u8]> = cases.iter().map(|case| case.body.as_slice()).collect();
    structural::check(&texts);
    println!("kernel: {}", a2a_affinity_core::json::string_kernel());
    println!(
        "| body | text | contextId | structurals | extractor µs | its scanner µs | scanner, no path µs | index µs | index + walk µs | extractor, text only µs | index + walk, text only µs |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut envelope = std::collections::HashMap::new();
    for (text, kind) in [("dense", Text::Dense), ("prose", Text::Prose)] {
        for (position, first) in [("first", true), ("last", false)] {
            let bare = body(0, kind, first);
            envelope.insert((text, position), price(&bare));
        }
    }
    for case in &cases {
        let (label, text, position) = (case.size, case.text, case.position);
        let price = price(&case.body);
        let bare = envelope.get(&(text, position)).unwrap();
        println!(
            "| {label} | {text} | {position} | {} | {:.3} | {:.3} |",
            price.row(),
            price.reader - bare.reader,
            price.walked - bare.walked
        );
    }
    let mut rows: Vec<_> = envelope.into_iter().collect();
    rows.sort_by_key(|(key, _)| *key);
    for ((text, position), price) in rows {
        println!("| envelope | {text} | {position} | {} | | |", price.row());
    }
}

/// µs per body (best of 40 interleaved rounds), and how many offsets the
/// index holds.
struct Price {
    structurals: usize,
    reader: f64,
    scanner: f64,
    grammar: f64,
    index: f64,
    walked: f64,
}

impl Price {
    fn row(&self) -> String {
        format!(
            "{} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3}",
            self.structurals, self.reader, self.scanner, self.grammar, self.index, self.walked
        )
    }
}

/// The scanner over a whole body, every event dropped.
fn scan_all(scanner: &mut Scanner<'_>, body: &[u8]) {
    scanner.reset();
    assert_eq!(
        scanner.feed(body, &mut |_: Event<'_>| Flow::Continue),
        Progress::Done
    );
}

fn price(body: &[u8]) -> Price {
    let reps = ((4 << 20) / body.len()).max(1);
    let mut extractor = Extractor::new(BodyKind::JsonRpc, 256);
    assert_eq!(read_whole(&mut extractor, body), CONTEXT_ID.len());
    let mut scanner = Scanner::new(RPC_PATHS, Limits::default());
    let mut grammar = Scanner::new(&[], Limits::default());
    let mut offsets = Vec::with_capacity(body.len());
    structural::index(body, &mut offsets);
    let structurals = offsets.len();
    let mut walk_offsets = offsets.clone();
    let best = best_of_rounds(&mut [
        repeated(reps, || {
            black_box(read_whole(&mut extractor, black_box(body)));
        }),
        repeated(reps, || scan_all(&mut scanner, black_box(body))),
        repeated(reps, || scan_all(&mut grammar, black_box(body))),
        repeated(reps, || {
            structural::index(black_box(body), &mut offsets);
            black_box(offsets.len());
        }),
        repeated(reps, || {
            structural::index(black_box(body), &mut walk_offsets);
            black_box(structural::walk(body, &walk_offsets));
        }),
    ]);
    let micros = |t: &Duration| t.as_secs_f64() * 1e6 / reps as f64;
    let [reader, scanner, grammar, index, walked] = best[..] else {
        unreachable!("five runs")
    };
    let [reader, scanner, grammar, index, walked] =
        [reader, scanner, grammar, index, walked].map(|t| micros(&t));
    Price {
        structurals,
        reader,
        scanner,
        grammar,
        index,
        walked,
    }
}

criterion_group!(benches, throughput);

fn main() {
    if std::env::var_os("SCAN_BENCH_KERNELS").is_some() {
        kernels();
    } else if std::env::var_os("SCAN_BENCH_INDEX").is_some() {
        index_shape();
    } else if std::env::var_os("SCAN_BENCH_READ_ON").is_some() {
        read_on();
    } else if std::env::var_os("SCAN_BENCH_INTERLEAVED").is_some() {
        interleaved();
    } else {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
}
