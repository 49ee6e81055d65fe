//! Differential test against a real Envoy: for every host set, each key sent as `x-context-id`
//! must land on the upstream the model predicts, for 100 % of the keys.
//!
//! One Envoy per host set. Its upstream "replicas" are extra listeners on the same Envoy that
//! answer with a `direct_response` naming themselves and echo the `x-context-id` they received,
//! so no other server is needed. Envoy: `ENVOY_BIN`, else the project's `.venv/bin/envoy`.

// An integration-test crate: helpers outside #[test] functions may fail loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use envoy_lb::hash::HashFunction;
use envoy_lb::policy::{HashMethod, HashPolicy, Request};
use envoy_lb::{
    ClusterConfig, HashingLoadBalancer, Health, Host, HostSet, LbPolicy, Locality, MaglevConfig,
    RingHashConfig,
};

const KEYS_PER_SCENARIO: usize = 2000;
const CONTEXT_HEADER: &str = "x-context-id";

/// Which configuration form the cluster uses: the legacy `Cluster.lb_policy` enum or the typed
/// `load_balancing_policy` extension.
#[derive(Clone, Copy, Debug)]
enum Form {
    Legacy,
    Typed,
}

#[derive(Clone, Debug)]
struct Endpoint {
    weight: u32,
    hostname: Option<String>,
    hash_key: Option<String>,
    health: Health,
    priority: u32,
    /// (zone, locality weight); region is always "r".
    locality: Option<(String, u32)>,
}

impl Endpoint {
    fn plain() -> Self {
        Self {
            weight: 1,
            hostname: None,
            hash_key: None,
            health: Health::Healthy,
            priority: 0,
            locality: None,
        }
    }
    fn weight(mut self, w: u32) -> Self {
        self.weight = w;
        self
    }
    fn hostname(mut self, h: &str) -> Self {
        self.hostname = Some(h.to_string());
        self
    }
    fn hash_key(mut self, k: &str) -> Self {
        self.hash_key = Some(k.to_string());
        self
    }
    fn health(mut self, h: Health) -> Self {
        self.health = h;
        self
    }
    fn priority(mut self, p: u32) -> Self {
        self.priority = p;
        self
    }
    fn zone(mut self, zone: &str, weight: u32) -> Self {
        self.locality = Some((zone.to_string(), weight));
        self
    }
}

struct Scenario {
    name: &'static str,
    form: Form,
    config: ClusterConfig,
    endpoints: Vec<Endpoint>,
    /// Also check the CLI against this Envoy through `--from-admin http://...`.
    cli_flags: Option<Vec<&'static str>>,
    /// Also send requests through the multi-policy `/policy` route.
    policy_route: bool,
    /// Replicas listen on `::1`, so host keys look like `[::1]:port`.
    ipv6: bool,
}

impl Scenario {
    fn upstream_ip(&self) -> &'static str {
        if self.ipv6 {
            "::1"
        } else {
            "127.0.0.1"
        }
    }

    fn upstream_address(&self, port: u16) -> String {
        if self.ipv6 {
            format!("[::1]:{port}")
        } else {
            format!("127.0.0.1:{port}")
        }
    }
}

fn ring(min: u64, f: HashFunction) -> ClusterConfig {
    ClusterConfig::new(LbPolicy::RingHash(RingHashConfig {
        minimum_ring_size: min,
        hash_function: f,
        ..RingHashConfig::default()
    }))
}

fn maglev(m: u64) -> ClusterConfig {
    ClusterConfig::new(LbPolicy::Maglev(MaglevConfig { table_size: m }))
}

fn plain(n: usize) -> Vec<Endpoint> {
    (0..n).map(|_| Endpoint::plain()).collect()
}

fn weighted(n: usize) -> Vec<Endpoint> {
    (0..n)
        .map(|i| Endpoint::plain().weight([1, 3, 2, 5, 1, 4][i % 6]))
        .collect()
}

fn scenarios() -> Vec<Scenario> {
    let hostname = |mut c: ClusterConfig| {
        c.use_hostname_for_hashing = true;
        c
    };
    let locality = |mut c: ClusterConfig| {
        c.locality_weighted = true;
        c
    };
    let keyed = |n: usize| -> Vec<Endpoint> {
        (0..n)
            .map(|i| Endpoint::plain().hash_key(&format!("replica-{i}")))
            .collect()
    };
    let named = |n: usize| -> Vec<Endpoint> {
        (0..n)
            .map(|i| Endpoint::plain().hostname(&format!("agent-{i}.agents.svc")))
            .collect()
    };
    // P0 at 1/3 healthy and P1 fully healthy: loads 46/54, no panic.
    let failover = vec![
        Endpoint::plain(),
        Endpoint::plain().health(Health::Unhealthy),
        Endpoint::plain().health(Health::Unhealthy),
        Endpoint::plain().priority(1),
        Endpoint::plain().priority(1).weight(2),
    ];
    // P0 at 20 % healthy is in panic (built from all five hosts), P1 at 50 % is not: 29/71.
    let panic = vec![
        Endpoint::plain().health(Health::Unhealthy),
        Endpoint::plain(),
        Endpoint::plain().health(Health::Unhealthy),
        Endpoint::plain().health(Health::Unhealthy).weight(3),
        Endpoint::plain().health(Health::Unhealthy),
        Endpoint::plain().priority(1),
        Endpoint::plain().priority(1).health(Health::Unhealthy),
    ];
    // Listed zone-b first: Envoy orders localities by (region, zone, sub_zone).
    let zones = vec![
        Endpoint::plain().zone("zone-b", 2),
        Endpoint::plain().zone("zone-b", 2).weight(3),
        Endpoint::plain().zone("zone-a", 1),
        Endpoint::plain().zone("zone-a", 1).weight(2),
        Endpoint::plain().zone("zone-c", 0),
    ];
    vec![
        Scenario {
            name: "ring, 3 hosts, default ring",
            form: Form::Legacy,
            config: ring(1024, HashFunction::XxHash),
            endpoints: plain(3),
            cli_flags: Some(vec!["--lb", "ring"]),
            policy_route: false,
            ipv6: false,
        },
        Scenario {
            name: "ring, 5 hosts, min ring 12",
            form: Form::Typed,
            config: ring(12, HashFunction::XxHash),
            endpoints: plain(5),
            cli_flags: Some(vec!["--lb", "ring", "--min-ring-size", "12"]),
            policy_route: false,
            ipv6: false,
        },
        Scenario {
            name: "ring, 17 hosts, unequal weights",
            form: Form::Typed,
            config: ring(1024, HashFunction::XxHash),
            endpoints: weighted(17),
            cli_flags: None,
            policy_route: true,
            ipv6: false,
        },
        Scenario {
            name: "ring, 5 hosts, hash_key metadata",
            form: Form::Legacy,
            config: ring(1024, HashFunction::XxHash),
            endpoints: keyed(5),
            cli_flags: None,
            policy_route: false,
            ipv6: false,
        },
        Scenario {
            name: "ring, 5 hosts, use_hostname_for_hashing, min ring 12",
            form: Form::Typed,
            config: hostname(ring(12, HashFunction::XxHash)),
            endpoints: named(5),
            cli_flags: Some(vec![
                "--lb",
                "ring",
                "--min-ring-size",
                "12",
                "--use-hostname",
            ]),
            policy_route: false,
            ipv6: false,
        },
        Scenario {
            name: "ring, 5 hosts, MURMUR_HASH_2, min ring 64",
            form: Form::Typed,
            config: ring(64, HashFunction::MurmurHash2),
            endpoints: weighted(5),
            cli_flags: None,
            policy_route: false,
            ipv6: false,
        },
        Scenario {
            name: "ring, 2 priorities, failover 46/54",
            form: Form::Legacy,
            config: ring(1024, HashFunction::XxHash),
            endpoints: failover.clone(),
            cli_flags: Some(vec!["--lb", "ring"]),
            policy_route: false,
            ipv6: false,
        },
        Scenario {
            name: "ring, localities weighted 1:2:0",
            form: Form::Typed,
            config: locality(ring(12, HashFunction::XxHash)),
            endpoints: zones.clone(),
            cli_flags: None,
            policy_route: false,
            ipv6: false,
        },
        Scenario {
            name: "maglev 65537, 3 hosts",
            form: Form::Legacy,
            config: maglev(65537),
            endpoints: plain(3),
            cli_flags: Some(vec!["--lb", "maglev"]),
            policy_route: false,
            ipv6: false,
        },
        Scenario {
            name: "maglev 65537, 17 hosts, unequal weights",
            form: Form::Typed,
            config: maglev(65537),
            endpoints: weighted(17),
            cli_flags: None,
            policy_route: true,
            ipv6: false,
        },
        Scenario {
            name: "maglev 13, 5 hosts, unequal weights",
            form: Form::Typed,
            config: maglev(13),
            endpoints: weighted(5),
            cli_flags: Some(vec!["--lb", "maglev", "--table-size", "13"]),
            policy_route: false,
            ipv6: false,
        },
        Scenario {
            name: "ring, 5 hosts on [::1], min ring 12",
            form: Form::Typed,
            config: ring(12, HashFunction::XxHash),
            endpoints: weighted(5),
            cli_flags: Some(vec!["--lb", "ring", "--min-ring-size", "12"]),
            policy_route: false,
            ipv6: true,
        },
        Scenario {
            name: "maglev 65537, 5 hosts on [::1]",
            form: Form::Legacy,
            config: maglev(65537),
            endpoints: plain(5),
            cli_flags: Some(vec!["--lb", "maglev"]),
            policy_route: false,
            ipv6: true,
        },
        Scenario {
            name: "maglev 65537, 5 hosts, hash_key metadata",
            form: Form::Typed,
            config: maglev(65537),
            endpoints: keyed(5),
            cli_flags: None,
            policy_route: false,
            ipv6: false,
        },
        Scenario {
            name: "maglev 65537, 17 hosts, use_hostname_for_hashing",
            // The legacy common_lb_config form is refused for STATIC clusters ("Cannot use
            // hostname for consistent hashing loadbalancing"); the typed extension is not.
            form: Form::Typed,
            config: hostname(maglev(65537)),
            endpoints: named(17),
            cli_flags: Some(vec!["--lb", "maglev", "--use-hostname"]),
            policy_route: false,
            ipv6: false,
        },
        Scenario {
            name: "maglev 65537, 2 priorities, P0 in panic 29/71",
            form: Form::Typed,
            config: maglev(65537),
            endpoints: panic,
            cli_flags: Some(vec!["--lb", "maglev"]),
            policy_route: false,
            ipv6: false,
        },
        Scenario {
            name: "maglev 17, localities weighted 1:2:0",
            form: Form::Legacy,
            config: locality(maglev(17)),
            endpoints: zones,
            cli_flags: None,
            policy_route: false,
            ipv6: false,
        },
    ]
}

fn envoy_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("ENVOY_BIN") {
        return PathBuf::from(bin);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/envoy")
}

/// Ports the kernel hands out for port 0, released just before Envoy binds
/// them: `n` on each (address, n) of `wanted`. All are held until all are
/// bound, so no two on one address are the same port.
fn free_ports(wanted: &[(&str, usize)]) -> Vec<Vec<u16>> {
    let listeners: Vec<Vec<TcpListener>> = wanted
        .iter()
        .map(|&(ip, n)| {
            (0..n)
                .map(|_| TcpListener::bind((ip, 0)).unwrap())
                .collect()
        })
        .collect();
    listeners
        .iter()
        .map(|set| set.iter().map(|l| l.local_addr().unwrap().port()).collect())
        .collect()
}

/// The model's host list for the scenario, in the order Envoy's host set has them.
fn host_sets(scenario: &Scenario, ports: &[u16]) -> Vec<HostSet> {
    let mut sets: Vec<HostSet> = Vec::new();
    for (e, port) in ordered(&scenario.endpoints).into_iter().zip(ports) {
        let mut host = Host::new(&scenario.upstream_address(*port))
            .unwrap()
            .with_weight(e.weight)
            .with_health(e.health);
        if let Some(h) = &e.hostname {
            host = host.with_hostname(h);
        }
        if let Some(k) = &e.hash_key {
            host = host.with_hash_key(k);
        }
        let p = e.priority as usize;
        if sets.len() <= p {
            sets.resize_with(p + 1, HostSet::default);
        }
        if let Some((zone, weight)) = &e.locality {
            let locality = Locality::parse(&format!("r/{zone}"));
            sets[p].locality_weights.insert(locality.clone(), *weight);
            host = host.with_locality(locality);
        }
        sets[p].hosts.push(host);
    }
    sets
}

/// Endpoints grouped as they are written into `load_assignment` (priority, then locality in
/// first-appearance order); Envoy's host list follows this order.
fn ordered(endpoints: &[Endpoint]) -> Vec<&Endpoint> {
    type Group<'a> = ((u32, Option<String>), Vec<&'a Endpoint>);
    let mut groups: Vec<Group<'_>> = Vec::new();
    for e in endpoints {
        let key = (e.priority, e.locality.as_ref().map(|l| l.0.clone()));
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(e),
            None => groups.push((key, vec![e])),
        }
    }
    groups.sort_by_key(|((p, _), _)| *p);
    groups.into_iter().flat_map(|(_, m)| m).collect()
}

fn health_name(h: Health) -> &'static str {
    match h {
        Health::Healthy => "HEALTHY",
        Health::Degraded => "DEGRADED",
        Health::Unhealthy => "UNHEALTHY",
    }
}

fn hcm(stat_prefix: &str, routes: &str) -> String {
    format!(
        r#"      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {stat_prefix}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
{routes}
"#
    )
}

fn lb_yaml(scenario: &Scenario) -> String {
    let c = &scenario.config;
    let hostname = c.use_hostname_for_hashing;
    let mut out = String::new();
    match (scenario.form, c.policy) {
        (Form::Legacy, policy) => {
            match policy {
                LbPolicy::RingHash(r) => {
                    let f = match r.hash_function {
                        HashFunction::XxHash => "XX_HASH",
                        HashFunction::MurmurHash2 => "MURMUR_HASH_2",
                    };
                    let _ = writeln!(out, "    lb_policy: RING_HASH");
                    let _ = writeln!(
                        out,
                        "    ring_hash_lb_config: {{minimum_ring_size: {}, hash_function: {f}}}",
                        r.minimum_ring_size
                    );
                }
                LbPolicy::Maglev(m) => {
                    let _ = writeln!(out, "    lb_policy: MAGLEV");
                    let _ = writeln!(
                        out,
                        "    maglev_lb_config: {{table_size: {}}}",
                        m.table_size
                    );
                }
            }
            let _ = writeln!(out, "    common_lb_config:");
            let _ = writeln!(
                out,
                "      consistent_hashing_lb_config: {{use_hostname_for_hashing: {hostname}}}"
            );
            if c.locality_weighted {
                let _ = writeln!(out, "      locality_weighted_lb_config: {{}}");
            }
        }
        (Form::Typed, policy) => {
            let (name, ty, fields) = match policy {
                LbPolicy::RingHash(r) => (
                    "ring_hash",
                    "ring_hash.v3.RingHash",
                    format!(
                        "minimum_ring_size: {}\n            hash_function: {}",
                        r.minimum_ring_size,
                        match r.hash_function {
                            HashFunction::XxHash => "XX_HASH",
                            HashFunction::MurmurHash2 => "MURMUR_HASH_2",
                        }
                    ),
                ),
                LbPolicy::Maglev(m) => (
                    "maglev",
                    "maglev.v3.Maglev",
                    format!("table_size: {}", m.table_size),
                ),
            };
            let _ = write!(
                out,
                r#"    load_balancing_policy:
      policies:
      - typed_extension_config:
          name: envoy.load_balancing_policies.{name}
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.load_balancing_policies.{ty}
            {fields}
            consistent_hashing_lb_config: {{use_hostname_for_hashing: {hostname}}}
"#
            );
            if c.locality_weighted {
                let _ = writeln!(out, "            locality_weighted_lb_config: {{}}");
            }
        }
    }
    out
}

fn envoy_config(scenario: &Scenario, front: u16, admin: u16, upstreams: &[u16]) -> String {
    let mut yaml = format!(
        "admin:\n  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}\n\
         static_resources:\n  listeners:\n"
    );
    // `/policy` exercises a multi-policy hash (see `policy_model`); everything else hashes
    // x-context-id alone, as the project's routes do.
    let front_routes = format!(
        r#"              - match: {{prefix: "/policy"}}
                route:
                  cluster: replicas
                  hash_policy:
                  - cookie: {{name: session}}
                  - header: {{header_name: {CONTEXT_HEADER}}}
                    terminal: true
                  - query_parameter: {{name: tenant}}
                  - connection_properties: {{source_ip: true}}
              - match: {{prefix: "/"}}
                route:
                  cluster: replicas
                  hash_policy: [{{header: {{header_name: {CONTEXT_HEADER}}}}}]"#
    );
    let _ = write!(
        yaml,
        "  - name: front\n    address: {{socket_address: {{address: 127.0.0.1, port_value: {front}}}}}\n    filter_chains:\n    - filters:\n{}",
        hcm("front", &front_routes)
    );
    for (i, port) in upstreams.iter().enumerate() {
        // Each replica names itself in the body and echoes the key it received.
        let route = format!(
            "              - match: {{prefix: \"/\"}}\n                direct_response: {{status: 200, body: {{inline_string: \"replica-{i}\"}}}}\n                response_headers_to_add:\n                - header: {{key: x-received-context-id, value: \"%REQ({CONTEXT_HEADER})%\"}}\n                - header: {{key: x-received-path, value: \"%REQ(:PATH)%\"}}"
        );
        let _ = write!(
            yaml,
            "  - name: replica-{i}\n    address: {{socket_address: {{address: \"{}\", port_value: {port}}}}}\n    filter_chains:\n    - filters:\n{}",
            scenario.upstream_ip(),
            hcm(&format!("replica_{i}"), &route)
        );
    }
    let _ = write!(
        yaml,
        "  clusters:\n  - name: replicas\n    type: STATIC\n    connect_timeout: 1s\n{}",
        lb_yaml(scenario)
    );
    let _ = write!(
        yaml,
        "    load_assignment:\n      cluster_name: replicas\n      endpoints:\n"
    );
    // One LocalityLbEndpoints per (priority, locality) group, in first-appearance order.
    let endpoints = ordered(&scenario.endpoints);
    let mut i = 0;
    while i < endpoints.len() {
        let first = endpoints[i];
        let key = (first.priority, first.locality.clone());
        let _ = writeln!(yaml, "      - priority: {}", first.priority);
        if let Some((zone, weight)) = &first.locality {
            let _ = writeln!(yaml, "        locality: {{region: r, zone: {zone}}}");
            // Envoy rejects an explicit 0; an unset locality weight counts as 0.
            if *weight > 0 {
                let _ = writeln!(yaml, "        load_balancing_weight: {weight}");
            }
        }
        let _ = writeln!(yaml, "        lb_endpoints:");
        while i < endpoints.len() && (endpoints[i].priority, endpoints[i].locality.clone()) == key {
            let e = endpoints[i];
            let hostname = e
                .hostname
                .as_ref()
                .map(|h| format!(", hostname: \"{h}\""))
                .unwrap_or_default();
            let _ = writeln!(
                yaml,
                "        - endpoint: {{address: {{socket_address: {{address: \"{}\", port_value: {}}}}}{hostname}}}",
                scenario.upstream_ip(),
                upstreams[i]
            );
            let _ = writeln!(yaml, "          load_balancing_weight: {}", e.weight);
            let _ = writeln!(yaml, "          health_status: {}", health_name(e.health));
            if let Some(k) = &e.hash_key {
                let _ = writeln!(
                    yaml,
                    "          metadata: {{filter_metadata: {{envoy.lb: {{hash_key: \"{k}\"}}}}}}"
                );
            }
            i += 1;
        }
    }
    yaml
}

/// A running Envoy, killed and reaped on drop.
struct Envoy {
    child: Child,
    dir: PathBuf,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Envoy {
    fn start(name: &str, yaml: &str, admin: u16) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "envoy-lb-diff-{}-{}",
            std::process::id(),
            name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("envoy.yaml");
        std::fs::write(&config, yaml).unwrap();
        let log = std::fs::File::create(dir.join("envoy.log")).unwrap();
        let bin = envoy_bin();
        assert!(
            bin.exists(),
            "Envoy binary not found at {} (set ENVOY_BIN)",
            bin.display()
        );
        // A dynamic base id keeps this Envoy's shared memory apart from every other Envoy on
        // the machine, including the other scenarios' processes.
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&config)
            .args([
                "--use-dynamic-base-id",
                "--concurrency",
                "1",
                "-l",
                "warning",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut envoy = Self { child, dir };
        envoy.wait_ready(admin);
        envoy
    }

    fn wait_ready(&mut self, admin: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default();
                panic!("Envoy exited with {status} before it was ready:\n{log}");
            }
            if admin_get(admin, "/ready")
                .is_some_and(|(code, body)| code == 200 && body.contains("LIVE"))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("Envoy not ready after 30 s");
    }
}

fn admin_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, response))
}

/// Keep-alive HTTP/1.1 client: one connection, one request at a time.
struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            reader: BufReader::new(stream),
        }
    }

    /// Sends `key` as `x-context-id` to `/`; returns (replica body, echoed key).
    fn send(&mut self, key: &str) -> (String, String) {
        let reply = self.get("/", &[(CONTEXT_HEADER, key)]);
        assert_eq!(
            reply.path, "/",
            "the replica must receive the path unchanged"
        );
        (reply.body, reply.context_id)
    }

    fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: front\r\n");
        for (name, value) in headers {
            let _ = write!(request, "{name}: {value}\r\n");
        }
        request.push_str("\r\n");
        self.reader.get_mut().write_all(request.as_bytes()).unwrap();
        let mut status = String::new();
        self.reader.read_line(&mut status).unwrap();
        assert!(
            status.starts_with("HTTP/1.1 200"),
            "{path} {headers:?}: {status}"
        );
        let mut length = 0usize;
        let mut reply = Reply::default();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap(),
                    "x-received-context-id" => reply.context_id = value.trim().to_string(),
                    "x-received-path" => reply.path = value.trim().to_string(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body).unwrap();
        reply.body = String::from_utf8(body).unwrap();
        reply
    }

    fn local_address(&self) -> std::net::SocketAddr {
        self.reader.get_ref().local_addr().unwrap()
    }
}

#[derive(Default)]
struct Reply {
    body: String,
    context_id: String,
    path: String,
}

/// The `/policy` route's hash policy, in the same order as the Envoy config.
fn policy_model() -> HashPolicy {
    HashPolicy::default()
        .then(HashMethod::Cookie {
            name: "session".into(),
            ttl_seconds: None,
        })
        .then_terminal(HashMethod::Header {
            name: CONTEXT_HEADER.into(),
        })
        .then(HashMethod::QueryParameter {
            name: "tenant".into(),
        })
        .then(HashMethod::SourceIp)
}

/// Requests that reach each policy branch: header only, two header entries (sorted and
/// chained), cookie then terminal header, query parameter plus source IP, a cookie with the
/// terminal header absent (stops on the accumulated hash), and source IP alone.
fn policy_request(i: usize, key: &str) -> (String, Vec<(String, String)>) {
    let h = |n: &str, v: String| (n.to_string(), v);
    match i % 6 {
        0 => ("/policy".into(), vec![h(CONTEXT_HEADER, key.into())]),
        1 => (
            "/policy/a".into(),
            vec![
                h(CONTEXT_HEADER, format!("{key}-b")),
                h(CONTEXT_HEADER, key.into()),
            ],
        ),
        2 => (
            "/policy".into(),
            vec![
                h("cookie", format!("a=1; session={key}")),
                h(CONTEXT_HEADER, "fixed".into()),
            ],
        ),
        3 => (format!("/policy?x=1&tenant={key}&tenant=other"), vec![]),
        4 => (
            format!("/policy?tenant={key}"),
            vec![h("cookie", format!("session=\"{key}\""))],
        ),
        _ => ("/policy".into(), vec![]),
    }
}

/// Sends `count` `/policy` requests; returns how many landed where the model says.
fn check_policy_route(
    client: &mut Client,
    model: &HashingLoadBalancer,
    replica_of: &BTreeMap<String, String>,
    keys: &[String],
) -> usize {
    let policy = policy_model();
    let remote = client.local_address();
    let mut agree = 0;
    for (i, key) in keys.iter().enumerate() {
        let (path, headers) = policy_request(i, key);
        let borrowed: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let reply = client.get(&path, &borrowed);
        assert_eq!(
            reply.path, path,
            "the replica must receive the path unchanged"
        );
        let mut request = Request {
            remote_address: Some(remote),
            ..Request::default()
        };
        request.headers.push((":path".into(), path.clone()));
        request.headers.extend(headers.iter().cloned());
        let hash = policy.generate_hash(&request).unwrap();
        let predicted = model.choose_host(hash).map(|c| c.host.address.clone());
        let actual = replica_of.get(&reply.body).cloned();
        assert_eq!(
            predicted, actual,
            "/policy request {i} ({path} {headers:?})"
        );
        agree += 1;
    }
    agree
}

/// UUID-shaped keys plus short ones, deterministic per scenario.
fn keys(seed: u64) -> Vec<String> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..KEYS_PER_SCENARIO)
        .map(|i| {
            let (a, b) = (next(), next());
            if i % 4 == 3 {
                format!("ctx-{}", a % 100_000)
            } else {
                format!(
                    "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                    a >> 32,
                    (a >> 16) & 0xffff,
                    a & 0xfff,
                    (b >> 48) | 0x8000,
                    b & 0xffff_ffff_ffff
                )
            }
        })
        .collect()
}

fn observed_keys(observed: &[(String, String)]) -> Vec<String> {
    observed.iter().take(1200).map(|(k, _)| k.clone()).collect()
}

/// Runs the CLI against the live admin endpoint and compares with what Envoy chose.
fn check_cli(flags: &[&str], admin: u16, observed: &[(String, String)]) -> usize {
    let url = format!("http://127.0.0.1:{admin}");
    let sample: Vec<&(String, String)> = observed.iter().take(300).collect();
    let mut args: Vec<String> = vec!["route".into()];
    args.extend(flags.iter().map(|s| s.to_string()));
    args.extend([
        "--from-admin".into(),
        url,
        "--cluster".into(),
        "replicas".into(),
    ]);
    args.extend(sample.iter().map(|(k, _)| k.clone()));
    let out = Command::new(env!("CARGO_BIN_EXE_envoy-lb"))
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), sample.len());
    for (line, (key, address)) in lines.iter().zip(&sample) {
        assert_eq!(
            *line,
            format!("{key} {address}"),
            "CLI disagrees with Envoy"
        );
    }
    sample.len()
}

#[test]
#[ignore = "needs Envoy; scripts/test.sh runs it"]
fn envoy_agrees_with_the_model_for_every_key() {
    let policy = HashPolicy::header(CONTEXT_HEADER);
    let started = Instant::now();
    let mut summary = Vec::new();
    for (index, scenario) in scenarios().iter().enumerate() {
        let ports = free_ports(&[
            ("127.0.0.1", 2),
            (scenario.upstream_ip(), scenario.endpoints.len()),
        ]);
        let (front, admin) = (ports[0][0], ports[0][1]);
        let upstreams = &ports[1];
        let yaml = envoy_config(scenario, front, admin, upstreams);
        let envoy = Envoy::start(scenario.name, &yaml, admin);
        let sets = host_sets(scenario, upstreams);
        let model = HashingLoadBalancer::new(scenario.config, sets).unwrap();
        let replica_of: BTreeMap<String, String> = upstreams
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("replica-{i}"), scenario.upstream_address(*p)))
            .collect();

        let mut client = Client::connect(front);
        let mut agree = 0usize;
        let mut per_host: BTreeMap<String, usize> = BTreeMap::new();
        let mut observed = Vec::new();
        let mut mismatches = Vec::new();
        for key in keys(index as u64 + 1) {
            let (replica, echoed) = client.send(&key);
            assert_eq!(echoed, key, "the replica must receive the key unchanged");
            let actual = replica_of
                .get(&replica)
                .unwrap_or_else(|| panic!("unknown replica body {replica:?}"))
                .clone();
            let hash = policy
                .generate_hash(&Request::default().with_header(CONTEXT_HEADER, &key))
                .unwrap();
            let predicted = model.choose_host(hash).map(|c| c.host.address.clone());
            if predicted.as_deref() == Some(actual.as_str()) {
                agree += 1;
            } else if mismatches.len() < 5 {
                mismatches.push(format!("{key}: Envoy {actual}, model {predicted:?}"));
            }
            *per_host.entry(actual.clone()).or_insert(0) += 1;
            observed.push((key, actual));
        }
        let line = format!(
            "{:<55} {agree}/{} agree, {} hosts used",
            scenario.name,
            observed.len(),
            per_host.len()
        );
        assert!(mismatches.is_empty(), "{line}\n{}", mismatches.join("\n"));
        assert_eq!(agree, KEYS_PER_SCENARIO);
        let policy_checked = if scenario.policy_route {
            check_policy_route(&mut client, &model, &replica_of, &observed_keys(&observed))
        } else {
            0
        };
        let cli_checked = scenario
            .cli_flags
            .as_ref()
            .map_or(0, |flags| check_cli(flags, admin, &observed));
        drop(envoy);
        let mut line = line;
        if policy_checked > 0 {
            let _ = write!(line, "; /policy route agrees on {policy_checked} requests");
        }
        if cli_checked > 0 {
            let _ = write!(line, "; CLI --from-admin agrees on {cli_checked} keys");
        }
        println!("{line}");
        summary.push(agree);
    }
    println!(
        "{} scenarios, {} keys, 100% agreement, {:.1} s",
        summary.len(),
        summary.iter().sum::<usize>(),
        started.elapsed().as_secs_f64()
    );
}
