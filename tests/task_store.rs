#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

//! The learned-task store at its default size: how many of 100,000 live
//! tasks it keeps. Run with `cargo test --test task_store -- --nocapture`
//! to see the figures the README quotes.

use a2a_affinity::shared_store::SharedStore;
use a2a_affinity_core::config::Config;
use a2a_affinity_core::store::{Learned, Lookup, TaskStore};
use a2a_affinity_testkit::ids::uuids;
use a2a_affinity_testkit::wasm::{Harness, MockHost};

/// Deterministic UUID-shaped task ids, as agents mint them.
fn task_ids(n: usize) -> Vec<String> {
    uuids(n, 0x9e37_79b9_7f4a_7c15)
}

/// Learns `n` tasks into a store of `capacity` and counts how many can still
/// be looked up.
fn kept(capacity: u32, n: usize) -> (usize, u64) {
    let h = Harness::new(&format!(r#"{{"task_capacity":{capacity}}}"#));
    let store = SharedStore::new(capacity, 3600);
    let mut host: MockHost = h.host("POST", "/");
    let now = 1_000_000;
    let mut tasks = store.with(&mut host);
    let ids = task_ids(n);
    let mut evicted = 0;
    for (i, id) in ids.iter().enumerate() {
        match tasks.learn(id, &format!("ctx-{i}"), now) {
            Learned::Evicted => evicted += 1,
            Learned::Stored => {}
            other => panic!("{other:?}"),
        }
    }
    let found = ids
        .iter()
        .enumerate()
        .filter(|(i, id)| tasks.lookup(id, now) == Lookup::Found(format!("ctx-{i}")))
        .count();
    (found, evicted)
}

#[test]
fn the_default_capacity_keeps_a_hundred_thousand_live_tasks() {
    let capacity = Config::default().task_capacity;
    let (found, evicted) = kept(capacity, 100_000);
    let lost = 100_000 - found;
    println!(
        "task_capacity {capacity}: {found} of 100000 live tasks kept, {lost} pushed out early ({:.2} %), task_evicted {evicted}",
        lost as f64 / 1000.0
    );
    assert_eq!(lost as u64, evicted, "every task pushed out is counted");
    assert!(lost < 2_000, "{lost} of 100000 live tasks pushed out");
    // Half the size is not enough: 4-way sets overflow well before full.
    let (half_found, _) = kept(capacity / 2, 100_000);
    println!(
        "task_capacity {}: {half_found} of 100000 live tasks kept ({:.2} % pushed out)",
        capacity / 2,
        (100_000 - half_found) as f64 / 1000.0
    );
    assert!(100_000 - half_found > 5_000);
}

#[test]
fn the_store_never_holds_more_keys_than_its_capacity() {
    let h = Harness::new("");
    let store = SharedStore::new(1000, 3600);
    let mut host: MockHost = h.host("POST", "/");
    let mut tasks = store.with(&mut host);
    for (i, id) in task_ids(5_000).iter().enumerate() {
        assert_ne!(
            tasks.learn(id, &format!("ctx-{i}"), 1_000_000),
            Learned::NotStored
        );
    }
    let keys = h.shared.borrow().data.len();
    assert!(keys <= 1000, "{keys} keys");
    assert!(keys > 900, "{keys} keys: the store should fill up");
}
