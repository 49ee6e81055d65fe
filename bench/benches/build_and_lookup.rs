//! Build and lookup cost of the ring and the Maglev table, sized like Envoy's own benchmarks
//! (`ring_hash_lb_test`/`maglev_lb_test` BM_* build cases), so the figures can be compared.

// A benchmark harness: a failed setup should abort loudly.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use envoy_lb::hash::xx_hash64;
use envoy_lb::host::NormalizedWeights;
use envoy_lb::maglev::MaglevTable;
use envoy_lb::policy::{HashPolicy, Request};
use envoy_lb::ring::Ring;
use envoy_lb::{
    ClusterConfig, HashingLoadBalancer, Host, HostSet, LbPolicy, MaglevConfig, RingHashConfig,
};

fn host_set(count: usize) -> HostSet {
    HostSet::new(
        (0..count)
            .map(|i| {
                Host::new(&format!(
                    "10.{}.{}.{}:8080",
                    i / 65536,
                    (i / 256) % 256,
                    i % 256
                ))
                .expect("address")
            })
            .collect(),
    )
}

fn ring_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring_build");
    for (hosts, min_ring) in [(3, 1024), (100, 1024), (500, 1024), (100, 65536)] {
        let set = host_set(hosts);
        let weights = NormalizedWeights::compute(&set, false, false);
        let config = RingHashConfig {
            minimum_ring_size: min_ring,
            ..RingHashConfig::default()
        };
        let entries = Ring::build(&set, &weights, false, &config)
            .expect("ring")
            .entries()
            .len();
        group.bench_function(
            BenchmarkId::new(format!("{hosts}_hosts_min_ring_{min_ring}"), entries),
            |b| b.iter(|| Ring::build(black_box(&set), &weights, false, &config).expect("ring")),
        );
    }
    group.finish();
}

fn maglev_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("maglev_build");
    for hosts in [3, 100, 500] {
        let set = host_set(hosts);
        let weights = NormalizedWeights::compute(&set, false, false);
        let config = MaglevConfig::default();
        group.bench_function(BenchmarkId::new("65537", format!("{hosts}_hosts")), |b| {
            b.iter(|| MaglevTable::build(black_box(&set), &weights, false, &config).expect("table"))
        });
    }
    group.finish();
}

fn lookups(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup");
    let set = host_set(100);
    let keys: Vec<u64> = (0..1024u64)
        .map(|i| xx_hash64(format!("ctx-{i}").as_bytes(), 0))
        .collect();
    let ring64k = HashingLoadBalancer::new(
        ClusterConfig::new(LbPolicy::RingHash(RingHashConfig {
            minimum_ring_size: 65536,
            ..RingHashConfig::default()
        })),
        vec![set.clone()],
    )
    .expect("ring");
    let maglev = HashingLoadBalancer::new(
        ClusterConfig::new(LbPolicy::Maglev(MaglevConfig::default())),
        vec![set],
    )
    .expect("maglev");
    for (name, lb) in [
        ("ring_64k_100_hosts", &ring64k),
        ("maglev_65537_100_hosts", &maglev),
    ] {
        group.bench_function(name, |b| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) % keys.len();
                lb.choose_host(black_box(keys[i])).map(|c| c.index)
            })
        });
    }
    // Whole request path: header policy hash of a UUID contextId, then the Maglev lookup.
    let policy = HashPolicy::header("x-context-id");
    let request =
        Request::default().with_header("x-context-id", "6f1c1b5e-3e0a-4d7c-9a57-0b7f3f0f3a11");
    group.bench_function("header_hash_plus_maglev", |b| {
        b.iter(|| {
            let hash = policy.generate_hash(black_box(&request)).unwrap_or(0);
            maglev.choose_host(hash).map(|c| c.index)
        })
    });
    group.finish();
}

criterion_group!(benches, ring_build, maglev_build, lookups);
criterion_main!(benches);
