//! The `envoy-lb` binary: outputs agree with the library, bad input fails cleanly.

// An integration-test crate: helpers outside #[test] functions may fail loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::{Command, Output};

use envoy_lb::hash::xx_hash64;
use envoy_lb::{ClusterConfig, HashingLoadBalancer, Host, LbPolicy, MaglevConfig, RingHashConfig};

const HOSTS: &str = "10.0.0.1:8080,10.0.0.2:8080,10.0.0.3:8080";

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_envoy-lb"))
        .args(args)
        .output()
        .expect("run envoy-lb")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn model(policy: LbPolicy) -> HashingLoadBalancer {
    let hosts = HOSTS.split(',').map(|h| Host::new(h).unwrap()).collect();
    HashingLoadBalancer::with_hosts(ClusterConfig::new(policy), hosts).unwrap()
}

#[test]
fn route_prints_the_model_choice_per_key() {
    let keys: Vec<String> = (0..50).map(|i| format!("ctx-{i}")).collect();
    for (lb, policy) in [
        ("ring", LbPolicy::RingHash(RingHashConfig::default())),
        ("maglev", LbPolicy::Maglev(MaglevConfig::default())),
    ] {
        let mut args = vec!["route", "--lb", lb, "--hosts", HOSTS];
        args.extend(keys.iter().map(String::as_str));
        let out = stdout(&run(&args));
        let balancer = model(policy);
        let expected: String = keys
            .iter()
            .map(|k| {
                let host = balancer
                    .choose_host(xx_hash64(k.as_bytes(), 0))
                    .unwrap()
                    .host;
                format!("{k} {}\n", host.address)
            })
            .collect();
        assert_eq!(out, expected, "{lb}");
    }
    // user-42 lands on .3 under both algorithms with three hosts.
    let out = stdout(&run(&[
        "route", "--lb", "maglev", "--hosts", HOSTS, "user-42",
    ]));
    assert_eq!(out, "user-42 10.0.0.3:8080\n");
}

#[test]
fn route_json_has_hash_and_host() {
    let out = stdout(&run(&[
        "route", "--lb", "ring", "--hosts", HOSTS, "--json", "user-42",
    ]));
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(value[0]["hash"], 4142921581652311169u64);
    assert_eq!(value[0]["host"], "10.0.0.3:8080");
}

#[test]
fn hosts_file_weights_and_hash_keys() {
    let dir = std::env::temp_dir().join(format!("envoy-lb-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("hosts.txt");
    std::fs::write(&file, "127.0.0.1:90 weight=1\n127.0.0.1:91 weight=2\n").unwrap();
    let out = stdout(&run(&[
        "table",
        "--lb",
        "maglev",
        "--table-size",
        "17",
        "--hosts-file",
        file.to_str().unwrap(),
    ]));
    // maglev_lb_test.cc Weighted: 6 and 11 entries.
    assert!(out.contains("entries per host min 6 max 11"), "{out}");
    std::fs::write(&file, "127.0.0.1:1 hash_key=90\n127.0.0.1:2 hash_key=91\n127.0.0.1:3 hash_key=92\n127.0.0.1:4 hash_key=93\n127.0.0.1:5 hash_key=94\n127.0.0.1:6 hash_key=95\n").unwrap();
    let out = stdout(&run(&[
        "table",
        "--lb",
        "ring",
        "--min-ring-size",
        "12",
        "--hosts-file",
        file.to_str().unwrap(),
        "--json",
    ]));
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(value[0]["entries"], 12);
    assert_eq!(value[0]["hosts"][0]["hash_key"], "90");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn churn_reports_both_algorithms() {
    let out = stdout(&run(&[
        "churn",
        "--hosts",
        HOSTS,
        "--add",
        "10.0.0.4:8080",
        "--keys",
        "2000",
        "--json",
    ]));
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    let results = value["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for r in results {
        let moved = r["moved_fraction"].as_f64().unwrap();
        assert!(moved > 0.15 && moved < 0.45, "{r}");
        assert_eq!(r["load_after"].as_array().unwrap().len(), 4);
        assert!((r["ideal_moved_fraction"].as_f64().unwrap() - 0.25).abs() < 1e-9);
    }
}

#[test]
fn bad_input_is_a_clear_error_not_a_panic() {
    for (args, needle) in [
        (
            vec![
                "route",
                "--lb",
                "maglev",
                "--table-size",
                "100",
                "--hosts",
                HOSTS,
                "k",
            ],
            "not a prime",
        ),
        (
            vec!["route", "--lb", "ring", "--hosts", "replica-1", "k"],
            "not an address",
        ),
        (
            vec![
                "route",
                "--lb",
                "ring",
                "--min-ring-size",
                "20",
                "--max-ring-size",
                "10",
                "--hosts",
                HOSTS,
                "k",
            ],
            "minimum ring size",
        ),
        (
            vec![
                "route",
                "--lb",
                "ring",
                "--hosts-file",
                "/nonexistent/hosts",
                "k",
            ],
            "cannot read",
        ),
        (
            vec![
                "route",
                "--lb",
                "ring",
                "--from-admin",
                "http://192.0.2.1:9901",
                "--cluster",
                "c",
                "k",
            ],
            "loopback",
        ),
        (vec!["churn", "--hosts", HOSTS], "say what changes"),
        (
            vec!["churn", "--hosts", HOSTS, "--remove", "10.0.0.9:8080"],
            "not in the host set",
        ),
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // Usage errors come from clap with exit code 2.
    let out = run(&["route", "--lb", "rendezvous", "--hosts", HOSTS, "k"]);
    assert_eq!(out.status.code(), Some(2));
}
