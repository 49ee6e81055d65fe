//! Command-line interface: argument parsing, host sources and the `route` / `table` commands.

mod admin;
mod churn;
mod hosts_file;

use std::fmt::{self, Write as _};

use clap::{Args, Parser, Subcommand, ValueEnum};
use envoy_lb::hash::HashFunction;
use envoy_lb::host::Host;
use envoy_lb::lb::{ClusterConfig, HashingLoadBalancer, LbPolicy};
use envoy_lb::maglev::{MaglevConfig, DEFAULT_TABLE_SIZE};
use envoy_lb::policy::{HashPolicy, Request};
use envoy_lb::priority::PriorityConfig;
use envoy_lb::ring::{RingHashConfig, DEFAULT_MAX_RING_SIZE, DEFAULT_MIN_RING_SIZE};
use envoy_lb::HostSet;

/// The header the project's routes hash (`hash_policy: [{header: {header_name: x-context-id}}]`).
pub const CONTEXT_HEADER: &str = "x-context-id";

#[derive(Debug)]
pub struct CliError(String);

impl CliError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<envoy_lb::LbError> for CliError {
    fn from(e: envoy_lb::LbError) -> Self {
        Self(e.to_string())
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "envoy-lb",
    version,
    about = "Predict Envoy's RING_HASH / MAGLEV host choice for x-context-id keys"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the host Envoy picks for each KEY (hashed as one x-context-id header value).
    Route {
        #[command(flatten)]
        hosts: HostArgs,
        #[command(flatten)]
        lb: LbArgs,
        /// Emit JSON instead of `KEY HOST` lines.
        #[arg(long)]
        json: bool,
        /// Keys (contextIds) to route.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Entries per host in the ring or Maglev table (Envoy's min/max per-host stats).
    Table {
        #[command(flatten)]
        hosts: HostArgs,
        #[command(flatten)]
        lb: LbArgs,
        #[arg(long)]
        json: bool,
    },
    /// Fraction of keys that move from host set A to host set B, and the load spread after.
    Churn(churn::ChurnArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LbKind {
    Ring,
    Maglev,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HashFunctionArg {
    Xx,
    Murmur,
}

/// Where the hosts come from (exactly one source).
#[derive(Debug, Clone, Args)]
pub struct HostArgs {
    /// Comma-separated host addresses (ip:port or [v6]:port), weight 1, priority 0.
    #[arg(long, value_delimiter = ',', group = "host_source")]
    hosts: Vec<String>,
    /// File with one host per line: ADDR [weight=N] [hash_key=K] [hostname=H] [priority=P]
    /// [locality=REGION/ZONE/SUB] [health=healthy|degraded|unhealthy]; `locality NAME weight=N`.
    #[arg(long, group = "host_source")]
    hosts_file: Option<String>,
    /// Envoy admin `/clusters?format=json`: a saved file or http://127.0.0.1:PORT.
    #[arg(long, group = "host_source", requires = "cluster")]
    from_admin: Option<String>,
    /// Cluster name inside the admin output.
    #[arg(long)]
    cluster: Option<String>,
}

impl HostArgs {
    pub fn load(&self) -> Result<Vec<HostSet>, CliError> {
        if let Some(path) = &self.hosts_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CliError::new(format!("cannot read hosts file '{path}': {e}")))?;
            return hosts_file::parse(&text, path);
        }
        if let Some(source) = &self.from_admin {
            let cluster = self.cluster.as_deref().unwrap_or_default();
            return admin::parse_clusters(&admin::load(source)?, cluster);
        }
        if self.hosts.is_empty() {
            return Err(CliError::new(
                "no hosts: give --hosts, --hosts-file or --from-admin with --cluster",
            ));
        }
        let hosts = self
            .hosts
            .iter()
            .map(|h| Host::new(h.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(vec![HostSet::new(hosts)])
    }
}

/// The load-balancer configuration of the cluster.
#[derive(Debug, Clone, Args)]
pub struct LbArgs {
    /// RING_HASH or MAGLEV.
    #[arg(long, value_enum)]
    lb: LbKind,
    #[command(flatten)]
    sizes: SizeArgs,
}

/// Table and ring sizes plus the cluster options shared by every command.
#[derive(Debug, Clone, Args)]
pub struct SizeArgs {
    /// Ring hash `minimum_ring_size`.
    #[arg(long, default_value_t = DEFAULT_MIN_RING_SIZE)]
    min_ring_size: u64,
    /// Ring hash `maximum_ring_size`.
    #[arg(long, default_value_t = DEFAULT_MAX_RING_SIZE)]
    max_ring_size: u64,
    /// Ring hash `hash_function`.
    #[arg(long, value_enum, default_value = "xx")]
    hash_function: HashFunctionArg,
    /// Maglev `table_size` (a prime <= 5000011).
    #[arg(long, default_value_t = DEFAULT_TABLE_SIZE)]
    table_size: u64,
    /// `consistent_hashing_lb_config.use_hostname_for_hashing`.
    #[arg(long)]
    use_hostname: bool,
    /// `locality_weighted_lb_config` (weights from `locality` lines of the hosts file).
    #[arg(long)]
    locality_weighted: bool,
    /// `policy.overprovisioning_factor` of the load assignment.
    #[arg(long, default_value_t = 140)]
    overprovisioning_factor: u32,
    /// `common_lb_config.healthy_panic_threshold` in percent.
    #[arg(long, default_value_t = 50)]
    panic_threshold: u32,
}

impl SizeArgs {
    pub fn cluster(&self, kind: LbKind) -> ClusterConfig {
        let policy = match kind {
            LbKind::Ring => LbPolicy::RingHash(RingHashConfig {
                minimum_ring_size: self.min_ring_size,
                maximum_ring_size: self.max_ring_size,
                hash_function: match self.hash_function {
                    HashFunctionArg::Xx => HashFunction::XxHash,
                    HashFunctionArg::Murmur => HashFunction::MurmurHash2,
                },
            }),
            LbKind::Maglev => LbPolicy::Maglev(MaglevConfig {
                table_size: self.table_size,
            }),
        };
        ClusterConfig {
            policy,
            use_hostname_for_hashing: self.use_hostname,
            locality_weighted: self.locality_weighted,
            priority: PriorityConfig {
                overprovisioning_factor: self.overprovisioning_factor,
                panic_threshold: self.panic_threshold,
                weighted_priority_health: false,
            },
        }
    }
}

/// The request hash Envoy computes for a key sent as the only `x-context-id` header.
pub fn key_hash(key: &str) -> Option<u64> {
    HashPolicy::header(CONTEXT_HEADER)
        .generate_hash(&Request::default().with_header(CONTEXT_HEADER, key))
}

pub fn run(cli: Cli) -> Result<String, CliError> {
    match cli.command {
        Command::Route {
            hosts,
            lb,
            json,
            keys,
        } => {
            let balancer = HashingLoadBalancer::new(lb.sizes.cluster(lb.lb), hosts.load()?)?;
            route(&balancer, &keys, json)
        }
        Command::Table { hosts, lb, json } => {
            let balancer = HashingLoadBalancer::new(lb.sizes.cluster(lb.lb), hosts.load()?)?;
            table(&balancer, json)
        }
        Command::Churn(args) => churn::run(&args),
    }
}

#[derive(serde::Serialize)]
struct RouteLine<'a> {
    key: &'a str,
    hash: u64,
    host: Option<&'a str>,
    priority: Option<u32>,
}

fn route(balancer: &HashingLoadBalancer, keys: &[String], json: bool) -> Result<String, CliError> {
    let mut lines = Vec::with_capacity(keys.len());
    for key in keys {
        let hash = key_hash(key).ok_or_else(|| CliError::new("header policy produced no hash"))?;
        let choice = balancer.choose_host(hash);
        lines.push(RouteLine {
            key,
            hash,
            host: choice.map(|c| c.host.address.as_str()),
            priority: choice.map(|c| c.priority),
        });
    }
    if json {
        return to_json(&lines);
    }
    let mut out = String::new();
    for line in &lines {
        // Envoy answers 503 "no healthy upstream" when the chosen priority has no host.
        let _ = writeln!(out, "{} {}", line.key, line.host.unwrap_or("-"));
    }
    Ok(out)
}

#[derive(serde::Serialize)]
struct TableHost<'a> {
    host: &'a str,
    hash_key: &'a str,
    entries: u64,
    share: f64,
    ideal_share: f64,
}

#[derive(serde::Serialize)]
struct TablePriority<'a> {
    priority: usize,
    healthy_load: u32,
    degraded_load: u32,
    panic: bool,
    kind: &'static str,
    /// Ring `size` stat or Maglev `table_size`.
    size: u64,
    /// Ring entries or Maglev slots actually built.
    entries: u64,
    min_entries_per_host: u64,
    max_entries_per_host: u64,
    hosts: Vec<TableHost<'a>>,
}

fn table(balancer: &HashingLoadBalancer, json: bool) -> Result<String, CliError> {
    let config = balancer.config();
    let mut report = Vec::new();
    for (p, state) in balancer.priorities().iter().enumerate() {
        let counts = state.table.entries_per_host(state.hosts.hosts.len());
        let total: u64 = counts.iter().sum();
        let (min, max) = state.table.min_max_stat();
        let mut hosts = Vec::new();
        for weighted in &state.weights.hosts {
            let Some(host) = state.hosts.hosts.get(weighted.index) else {
                continue;
            };
            let entries = counts.get(weighted.index).copied().unwrap_or(0);
            hosts.push(TableHost {
                host: &host.address,
                hash_key: host.key(config.use_hostname_for_hashing),
                entries,
                share: if total == 0 {
                    0.0
                } else {
                    entries as f64 / total as f64
                },
                ideal_share: weighted.weight,
            });
        }
        report.push(TablePriority {
            priority: p,
            healthy_load: balancer.loads().healthy.get(p).copied().unwrap_or(0),
            degraded_load: balancer.loads().degraded.get(p).copied().unwrap_or(0),
            panic: state.panic,
            kind: match config.policy {
                LbPolicy::RingHash(_) => "ring",
                LbPolicy::Maglev(_) => "maglev",
            },
            size: state.table.size(),
            entries: total,
            min_entries_per_host: min,
            max_entries_per_host: max,
            hosts,
        });
    }
    if json {
        return to_json(&report);
    }
    let mut out = String::new();
    for p in &report {
        let unit = if p.kind == "ring" {
            "ring entries"
        } else {
            "table slots"
        };
        let _ = writeln!(
            out,
            "priority {} ({}): healthy load {}%, degraded load {}%{}",
            p.priority,
            p.kind,
            p.healthy_load,
            p.degraded_load,
            if p.panic {
                ", PANIC (all hosts used)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "  {} {unit} (size {}), entries per host min {} max {}",
            p.entries, p.size, p.min_entries_per_host, p.max_entries_per_host
        );
        share_table(
            &mut out,
            "entries",
            p.hosts
                .iter()
                .map(|h| (h.host, h.entries, h.share, h.ideal_share)),
        );
    }
    Ok(out)
}

/// Writes the per-host table of `table` and `churn`: host, a count
/// (`count_label`), its share and the ideal share, aligned on the longest
/// host name.
pub fn share_table<'a, N: fmt::Display>(
    out: &mut String,
    count_label: &str,
    rows: impl Iterator<Item = (&'a str, N, f64, f64)> + Clone,
) {
    let width = rows
        .clone()
        .map(|(host, ..)| host.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        out,
        "  {:width$}  {:>8}  {:>7}  {:>7}",
        "host", count_label, "share", "ideal"
    );
    for (host, count, share, ideal) in rows {
        let _ = writeln!(
            out,
            "  {:width$}  {:>8}  {:>6.2}%  {:>6.2}%",
            host,
            count,
            share * 100.0,
            ideal * 100.0
        );
    }
}

pub fn to_json<T: serde::Serialize>(value: &T) -> Result<String, CliError> {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|e| CliError::new(format!("cannot encode JSON: {e}")))
}
