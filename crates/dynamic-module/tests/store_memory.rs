#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![allow(unsafe_code)]

//! The native task store at its default size: how many of as many distinct
//! tasks as it holds it keeps, and the heap it takes for them. Run with
//! `cargo test -p a2a-affinity-dynamic-module --test store_memory -- --nocapture`
//! to see the figures the crate README quotes.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use a2a_affinity_core::config::Config;
use a2a_affinity_core::store::{Learned, Lookup};
use a2a_affinity_dynamic::store::ShardedStore;

/// The system allocator, counting the bytes live on the heap.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call goes straight to the system allocator with the same
// arguments; the counter only observes the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// `n` distinct UUID-shaped ids (xorshift64*), as agents mint them.
fn uuids(n: usize, seed: u64) -> Vec<String> {
    let mut state = seed;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    (0..n)
        .map(|_| {
            let (a, b) = (next(), next());
            format!(
                "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                a >> 32,
                (a >> 16) & 0xffff,
                a & 0xfff,
                b >> 52,
                b & 0xffff_ffff_ffff
            )
        })
        .collect()
}

#[test]
fn a_full_default_store_and_its_heap() {
    let capacity = Config::default().task_capacity;
    let n = capacity as usize;
    let tasks = uuids(n, 0x9e37_79b9_7f4a_7c15);
    let contexts = uuids(n, 0x0123_4567_89ab_cdef);
    let more = uuids(n / 2, 0x5555_aaaa_5555_aaaa);
    let now = 1_000_000;

    let before = LIVE.load(Ordering::Relaxed);
    let store = ShardedStore::new(capacity, 3600);
    let mut evicted = 0usize;
    for (task, context) in tasks.iter().zip(&contexts) {
        match store.learn(task, context, now) {
            Learned::Stored => {}
            Learned::Evicted => evicted += 1,
            other => panic!("{other:?}"),
        }
    }
    let heap = LIVE.load(Ordering::Relaxed) - before;
    let held = store.len();
    let found = tasks
        .iter()
        .zip(&contexts)
        .filter(|(t, c)| store.lookup(t, now) == Lookup::Found((*c).clone()))
        .count();
    let per_task = heap as f64 / held as f64;
    println!(
        "task_capacity {capacity}: {found} of {n} distinct tasks kept ({:.2} % pushed out early, task_evicted {evicted}); heap {:.1} MiB, {per_task:.0} bytes per task (UUID task and context ids, 72 bytes of them)",
        (n - found) as f64 * 100.0 / n as f64,
        heap as f64 / (1024.0 * 1024.0),
    );
    // Every task pushed out was counted, and only per-shard overflow
    // pushed any out.
    assert_eq!(found, held);
    assert_eq!(n - found, evicted);
    assert!(evicted < n / 50, "{evicted} pushed out");

    // More tasks fill the shards that still had room; from then on every
    // new task takes the slot and the buffer of the one it replaces, and
    // the heap stays where it is.
    let (fill, overwrite) = more.split_at(n / 4);
    for (task, context) in fill.iter().zip(&contexts) {
        store.learn(task, context, now + 1);
    }
    assert_eq!(store.len(), n);
    let full = LIVE.load(Ordering::Relaxed) - before;
    for (task, context) in overwrite.iter().zip(&contexts) {
        assert_eq!(store.learn(task, context, now + 2), Learned::Evicted);
    }
    let after = LIVE.load(Ordering::Relaxed) - before;
    println!(
        "every shard full: heap {:.1} MiB; after {} overwrites: {:.1} MiB",
        full as f64 / (1024.0 * 1024.0),
        overwrite.len(),
        after as f64 / (1024.0 * 1024.0)
    );
    assert_eq!(after, full, "the full store's heap changed");
    // The ids themselves are 72 bytes a task; the rest is the slot, the
    // table and the allocator's rounding, which this counter does not see.
    assert!(per_task < 160.0, "{per_task:.0} bytes per task");
}
