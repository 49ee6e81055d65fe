//! What learning one task costs the dynamic module's shared task store, on
//! the host, at the sizes the Envoy benchmark reaches.
//!
//! Run: `cargo bench -p a2a-affinity-bench --bench store`
//!
//! In the Envoy benchmark every answer names a new task, so every request
//! learns one, into a store that grows from empty towards its capacity
//! (262,144 by default) and, at 1 KiB bodies, fills and overwrites its
//! oldest entries. Between two learns the request's body has gone through
//! the cache. This benchmark learns new tasks the same way:
//!
//! - `fill`: into an empty default store, up to 81,920 entries (about what
//!   one 512 KiB run of `bench/run.py` learns), nothing between learns; the
//!   shards' vectors and tables grow on the way, as they do in Envoy;
//! - `grown`: into that store (81,920 entries and 4,096 more, which no
//!   shard's vector or table needs to grow for), 512 KiB of memory read and
//!   written between two learns, as a 512 KiB body is;
//! - `full`: into a default store already full (each learn overwrites the
//!   oldest entry), the same 512 KiB between learns;
//! - `small`: into a full store of 1,024 entries, which stays in the cache,
//!   the same 512 KiB between learns.
//!
//! Figures: ns per learn, the median over interleaved rounds, and each
//! case over `small`. Only the learns are timed, not the memory traffic.

// Bench set-up code may panic on a broken fixture; the store never does.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use a2a_affinity_core::store::Learned;
use a2a_affinity_dynamic::store::ShardedStore;
use a2a_affinity_testkit::bodies::{bench_task_id, CONTEXT_ID};

const ROUNDS: usize = 7;
const DEFAULT_CAPACITY: u32 = 262_144;
const SMALL_CAPACITY: u32 = 1_024;
/// Entries the growing store holds before `grown` is timed: 2,560 a shard,
/// between the growths of its vector (at 2,048 and 4,096) and its table
/// (at 1,792 and 3,584), so that `grown` prices a learn, not a growth.
const GROWN: usize = 81_920;
/// Learns timed per case and round, each after a body's worth of traffic.
const TIMED: usize = 4_096;
const BODY: usize = 512 * 1024;
const TTL_SECS: u64 = 3_600;
const NOW: u64 = 1_000_000;

/// Reads and writes one body's worth of memory, as a request's body does on
/// its way through the proxy.
struct Traffic {
    from: Vec<u64>,
    to: Vec<u64>,
}

impl Traffic {
    fn new() -> Self {
        let words = BODY / 8;
        Traffic {
            from: (0..words as u64).collect(),
            to: vec![0; words],
        }
    }

    fn pass(&mut self) {
        self.to.copy_from_slice(&self.from);
        black_box(&mut self.to);
    }
}

/// Learns `count` new tasks from `next` on, untimed.
fn learn_untimed(store: &ShardedStore, next: &mut usize, count: usize) {
    for _ in 0..count {
        let learned = store.learn(&bench_task_id(*next), CONTEXT_ID, NOW);
        assert!(matches!(learned, Learned::Stored | Learned::Evicted));
        *next += 1;
    }
}

/// Learns `count` new tasks, with a body's traffic before each if
/// `traffic` is given; returns the time the learns took, in all.
fn learn_timed(
    store: &ShardedStore,
    next: &mut usize,
    count: usize,
    mut traffic: Option<&mut Traffic>,
) -> Duration {
    let ids: Vec<String> = (*next..*next + count).map(bench_task_id).collect();
    *next += count;
    let mut spent = Duration::ZERO;
    for id in &ids {
        if let Some(traffic) = traffic.as_deref_mut() {
            traffic.pass();
        }
        let start = Instant::now();
        let learned = store.learn(black_box(id), CONTEXT_ID, NOW);
        spent += start.elapsed();
        assert!(matches!(learned, Learned::Stored | Learned::Evicted));
    }
    spent
}

fn per_learn(spent: Duration, count: usize) -> f64 {
    spent.as_secs_f64() * 1e9 / count as f64
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let mut traffic = Traffic::new();
    let cases = ["fill", "grown", "full", "small"];
    let mut figures: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for _ in 0..ROUNDS {
        let mut next = 0;

        let growing = ShardedStore::new(DEFAULT_CAPACITY, TTL_SECS);
        let spent = learn_timed(&growing, &mut next, GROWN, None);
        figures[0].push(per_learn(spent, GROWN));
        let spent = learn_timed(&growing, &mut next, TIMED, Some(&mut traffic));
        figures[1].push(per_learn(spent, TIMED));
        drop(growing);

        let full = ShardedStore::new(DEFAULT_CAPACITY, TTL_SECS);
        learn_untimed(&full, &mut next, DEFAULT_CAPACITY as usize);
        let spent = learn_timed(&full, &mut next, TIMED, Some(&mut traffic));
        figures[2].push(per_learn(spent, TIMED));
        drop(full);

        let small = ShardedStore::new(SMALL_CAPACITY, TTL_SECS);
        learn_untimed(&small, &mut next, SMALL_CAPACITY as usize);
        let spent = learn_timed(&small, &mut next, TIMED, Some(&mut traffic));
        figures[3].push(per_learn(spent, TIMED));
    }
    let medians: Vec<f64> = figures.iter_mut().map(|f| median(f)).collect();
    let small = medians[3];
    println!("task store: ns per learn of a new task, median of {ROUNDS} interleaved rounds");
    for (case, ns) in cases.iter().zip(&medians) {
        println!("  {case:<6} {ns:8.1} ns   {:5.2} x small", ns / small);
    }
}
