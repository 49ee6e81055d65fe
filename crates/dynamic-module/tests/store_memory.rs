#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

//! The native task store at its default size: how many of as many distinct
//! tasks as it holds it keeps, and the heap it takes for them. Run with
//! `cargo test -p a2a-affinity-dynamic-module --release --test store_memory -- --nocapture`
//! to see the figures the crate README quotes. The second test times a new
//! `task_ttl_secs` taking over a full default store (a figure, printed, not
//! a limit).

use a2a_affinity_core::config::Config;
use a2a_affinity_core::store::{Learned, Lookup};
use a2a_affinity_dynamic::store::{shared, ShardedStore};
use a2a_affinity_testkit::alloc::{heap_bytes, Counting};
use a2a_affinity_testkit::ids::uuids;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn mib(bytes: i64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[test]
fn a_full_default_store_and_its_heap() {
    let capacity = Config::default().task_capacity;
    let n = capacity as usize;
    let tasks = uuids(n, 0x9e37_79b9_7f4a_7c15);
    let contexts = uuids(n, 0x0123_4567_89ab_cdef);
    let more = uuids(n / 2, 0x5555_aaaa_5555_aaaa);
    let now = 1_000_000;

    let ((store, evicted), heap) = heap_bytes(|| {
        let store = ShardedStore::new(capacity, 3600);
        let mut evicted = 0usize;
        for (task, context) in tasks.iter().zip(&contexts) {
            match store.learn(task, context, now) {
                Learned::Stored => {}
                Learned::Evicted => evicted += 1,
                other => panic!("{other:?}"),
            }
        }
        (store, evicted)
    });
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
        mib(heap),
    );
    // Every task pushed out was counted, and only per-shard overflow
    // pushed any out.
    assert_eq!(found, held);
    assert_eq!(n - found, evicted);
    assert!(evicted < n / 50, "{evicted} pushed out");

    // More tasks fill the shards that still had room; from then on every
    // new task takes the slot of the one it replaces, its ids in the slot,
    // and the heap stays where it is.
    let (fill, overwrite) = more.split_at(n / 4);
    let ((), filled) = heap_bytes(|| {
        for (task, context) in fill.iter().zip(&contexts) {
            store.learn(task, context, now + 1);
        }
    });
    assert_eq!(store.len(), n);
    let ((), overwritten) = heap_bytes(|| {
        for (task, context) in overwrite.iter().zip(&contexts) {
            assert_eq!(store.learn(task, context, now + 2), Learned::Evicted);
        }
    });
    println!(
        "every shard full: heap {:.1} MiB; {} overwrites then changed it by {overwritten} bytes",
        mib(heap + filled),
        overwrite.len(),
    );
    assert_eq!(overwritten, 0, "the full store's heap changed");
    // The ids themselves are 72 bytes a task; the rest is the slot, the
    // table and spare room in the shards' vectors.
    assert!(per_task < 160.0, "{per_task:.0} bytes per task");
}

#[test]
fn new_settings_take_over_a_full_default_store() {
    let capacity = Config::default().task_capacity;
    let n = capacity as usize;
    let tasks = uuids(n, 0x2468_ace0_1357_9bdf);
    let contexts = uuids(n, 0x0f1e_2d3c_4b5a_6978);
    let now = 1_000_000;
    let (old, none) = shared(capacity, 3600, now);
    assert!(none.is_none());
    for (task, context) in tasks.iter().zip(&contexts) {
        old.learn(task, context, now);
    }
    let held = old.len();
    let started = std::time::Instant::now();
    let ((new, carried), heap) = heap_bytes(|| shared(capacity, 7200, now + 1));
    let took = started.elapsed();
    let carried = carried.expect("taken over");
    // Placed with the new store's own keys, its shards overflow apart from
    // the old one's: a few more are pushed out, the ones that expire first.
    assert_eq!(carried.tasks, new.len());
    assert!(
        carried.tasks > held - held / 50,
        "{} of {held}",
        carried.tasks
    );
    // While the old store lives, the new one finds there what it left out.
    let found = tasks
        .iter()
        .zip(&contexts)
        .filter(|(t, c)| new.lookup(t, now + 1) == Lookup::Found((*c).clone()))
        .count();
    println!(
        "a new task_ttl_secs took over {} of the {held} tasks of a full default store in {:.0} ms (heap of the new store {:.1} MiB)",
        carried.tasks,
        took.as_secs_f64() * 1000.0,
        mib(heap),
    );
    assert_eq!(found, held);
}
