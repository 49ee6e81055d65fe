//! `churn`: how many keys change host when the host set changes, against the minimum any
//! weighted assignment must move, and how evenly the keys land afterwards.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use clap::Args;
use envoy_lb::host::Host;
use envoy_lb::lb::HashingLoadBalancer;
use envoy_lb::HostSet;

use super::{key_hash, share_table, to_json, CliError, HostArgs, LbKind, SizeArgs};

#[derive(Debug, Clone, Args)]
pub struct ChurnArgs {
    /// Host set A (before).
    #[command(flatten)]
    from: HostArgs,
    /// Host set B (after) as comma-separated addresses.
    #[arg(long, value_delimiter = ',', group = "to_source")]
    to_hosts: Vec<String>,
    /// Host set B from a hosts file.
    #[arg(long, group = "to_source")]
    to_hosts_file: Option<String>,
    /// Derive B from A by adding these hosts (scale up; with --remove, replace).
    #[arg(long, value_delimiter = ',')]
    add: Vec<String>,
    /// Derive B from A by removing these hosts (scale down).
    #[arg(long, value_delimiter = ',')]
    remove: Vec<String>,
    /// Only this algorithm (default: both).
    #[arg(long, value_enum)]
    lb: Option<LbKind>,
    #[command(flatten)]
    sizes: SizeArgs,
    /// Number of sampled keys (UUID-like contextIds from a fixed seed).
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Live contextIds, one per line, instead of sampled keys.
    #[arg(long)]
    keys_file: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct HostLoad {
    host: String,
    keys: u64,
    share: f64,
    ideal_share: f64,
}

#[derive(serde::Serialize)]
struct AlgorithmChurn {
    lb: &'static str,
    keys: u64,
    moved: u64,
    moved_fraction: f64,
    /// `1 - sum(min(share_A, share_B))` over hosts: what any assignment must move.
    ideal_moved_fraction: f64,
    unrouted_after: u64,
    load_after: Vec<HostLoad>,
    max_over_ideal: f64,
}

#[derive(serde::Serialize)]
struct ChurnReport {
    hosts_before: usize,
    hosts_after: usize,
    added: Vec<String>,
    removed: Vec<String>,
    keys_source: String,
    results: Vec<AlgorithmChurn>,
}

pub fn run(args: &ChurnArgs) -> Result<String, CliError> {
    let before = args.from.load()?;
    let after = after_set(args, &before)?;
    let (keys, keys_source) = keys(args)?;
    let hashes: Vec<u64> = keys.iter().filter_map(|k| key_hash(k)).collect();
    let addresses = |sets: &[HostSet]| -> Vec<String> {
        sets.iter()
            .flat_map(|s| s.hosts.iter().map(|h| h.address.clone()))
            .collect()
    };
    let (a, b) = (addresses(&before), addresses(&after));
    let added: Vec<String> = b.iter().filter(|h| !a.contains(h)).cloned().collect();
    let removed: Vec<String> = a.iter().filter(|h| !b.contains(h)).cloned().collect();
    let kinds = match args.lb {
        Some(kind) => vec![kind],
        None => vec![LbKind::Ring, LbKind::Maglev],
    };
    let mut results = Vec::new();
    for kind in kinds {
        let lb_a = HashingLoadBalancer::new(args.sizes.cluster(kind), before.clone())?;
        let lb_b = HashingLoadBalancer::new(args.sizes.cluster(kind), after.clone())?;
        results.push(measure(kind, &lb_a, &lb_b, &hashes));
    }
    let report = ChurnReport {
        hosts_before: a.len(),
        hosts_after: b.len(),
        added,
        removed,
        keys_source,
        results,
    };
    if args.json {
        return to_json(&report);
    }
    Ok(render(&report))
}

fn after_set(args: &ChurnArgs, before: &[HostSet]) -> Result<Vec<HostSet>, CliError> {
    if !args.to_hosts.is_empty() || args.to_hosts_file.is_some() {
        if !args.add.is_empty() || !args.remove.is_empty() {
            return Err(CliError::new(
                "use either --to-hosts/--to-hosts-file or --add/--remove",
            ));
        }
        let to = HostArgs {
            hosts: args.to_hosts.clone(),
            hosts_file: args.to_hosts_file.clone(),
            from_admin: None,
            cluster: None,
        };
        return to.load();
    }
    if args.add.is_empty() && args.remove.is_empty() {
        return Err(CliError::new(
            "say what changes: --to-hosts, --to-hosts-file, --add or --remove",
        ));
    }
    let mut after = before.to_vec();
    for address in &args.remove {
        let wanted = Host::new(address.trim())?.address;
        let mut found = false;
        for set in &mut after {
            let len = set.hosts.len();
            set.hosts.retain(|h| h.address != wanted);
            found |= set.hosts.len() != len;
        }
        if !found {
            return Err(CliError::new(format!(
                "--remove {wanted}: not in the host set"
            )));
        }
    }
    let Some(first) = after.first_mut() else {
        return Err(CliError::new("empty host set"));
    };
    for address in &args.add {
        first.hosts.push(Host::new(address.trim())?);
    }
    Ok(after)
}

fn keys(args: &ChurnArgs) -> Result<(Vec<String>, String), CliError> {
    if let Some(path) = &args.keys_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::new(format!("cannot read keys file '{path}': {e}")))?;
        let keys: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        if keys.is_empty() {
            return Err(CliError::new(format!("keys file '{path}' has no keys")));
        }
        let source = format!("{} keys from {path}", keys.len());
        return Ok((keys, source));
    }
    if args.keys == 0 || args.keys > 10_000_000 {
        return Err(CliError::new("--keys must be between 1 and 10000000"));
    }
    let keys = sample_keys(args.keys);
    let source = format!("{} sampled UUID-like keys", keys.len());
    Ok((keys, source))
}

/// Deterministic UUID-shaped keys (splitmix64), so runs are comparable.
pub fn sample_keys(count: u64) -> Vec<String> {
    let mut state: u64 = 0x5eed_0000_0000_0001;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    (0..count)
        .map(|_| {
            let (a, b) = (next(), next());
            format!(
                "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                a >> 32,
                (a >> 16) & 0xffff,
                a & 0xfff,
                (b >> 48) | 0x8000,
                b & 0xffff_ffff_ffff
            )
        })
        .collect()
}

/// Share of all traffic each address should get: priority load times normalised weight.
fn ideal_shares(lb: &HashingLoadBalancer) -> BTreeMap<String, f64> {
    let mut shares = BTreeMap::new();
    for (p, state) in lb.priorities().iter().enumerate() {
        let load = f64::from(
            lb.loads().healthy.get(p).copied().unwrap_or(0)
                + lb.loads().degraded.get(p).copied().unwrap_or(0),
        ) / 100.0;
        for w in &state.weights.hosts {
            if let Some(host) = state.hosts.hosts.get(w.index) {
                *shares.entry(host.address.clone()).or_insert(0.0) += load * w.weight;
            }
        }
    }
    shares
}

fn measure(
    kind: LbKind,
    before: &HashingLoadBalancer,
    after: &HashingLoadBalancer,
    hashes: &[u64],
) -> AlgorithmChurn {
    let mut moved = 0u64;
    let mut unrouted = 0u64;
    let mut per_host: BTreeMap<String, u64> = BTreeMap::new();
    for &hash in hashes {
        let a = before.choose_host(hash).map(|c| c.host.address.as_str());
        let b = after.choose_host(hash).map(|c| c.host.address.as_str());
        if a != b {
            moved += 1;
        }
        match b {
            Some(host) => *per_host.entry(host.to_string()).or_insert(0) += 1,
            None => unrouted += 1,
        }
    }
    let ideal_a = ideal_shares(before);
    let ideal_b = ideal_shares(after);
    let kept: f64 = ideal_b
        .iter()
        .map(|(host, b)| ideal_a.get(host).map_or(0.0, |a| a.min(*b)))
        .sum();
    let total = hashes.len() as u64;
    let mut load_after = Vec::new();
    let mut max_over_ideal: f64 = 0.0;
    for (host, ideal) in &ideal_b {
        let keys = per_host.get(host).copied().unwrap_or(0);
        let share = if total == 0 {
            0.0
        } else {
            keys as f64 / total as f64
        };
        if *ideal > 0.0 {
            max_over_ideal = max_over_ideal.max(share / ideal);
        }
        load_after.push(HostLoad {
            host: host.clone(),
            keys,
            share,
            ideal_share: *ideal,
        });
    }
    AlgorithmChurn {
        lb: match kind {
            LbKind::Ring => "ring",
            LbKind::Maglev => "maglev",
        },
        keys: total,
        moved,
        moved_fraction: if total == 0 {
            0.0
        } else {
            moved as f64 / total as f64
        },
        ideal_moved_fraction: (1.0 - kept).max(0.0),
        unrouted_after: unrouted,
        load_after,
        max_over_ideal,
    }
}

fn render(report: &ChurnReport) -> String {
    let mut out = String::new();
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let _ = writeln!(
        out,
        "hosts {} -> {} (added: {}; removed: {}); {}",
        report.hosts_before,
        report.hosts_after,
        list(&report.added),
        list(&report.removed),
        report.keys_source
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<7} {:>8} {:>8} {:>8} {:>13}",
        "lb", "moved", "moved%", "ideal%", "max/ideal load"
    );
    for r in &report.results {
        let _ = writeln!(
            out,
            "{:<7} {:>8} {:>7.2}% {:>7.2}% {:>13.3}",
            r.lb,
            r.moved,
            r.moved_fraction * 100.0,
            r.ideal_moved_fraction * 100.0,
            r.max_over_ideal
        );
    }
    for r in &report.results {
        let _ = writeln!(out);
        let _ = writeln!(out, "{} load after:", r.lb);
        share_table(
            &mut out,
            "keys",
            r.load_after
                .iter()
                .map(|h| (h.host.as_str(), h.keys, h.share, h.ideal_share)),
        );
        if r.unrouted_after > 0 {
            let _ = writeln!(
                out,
                "  {} keys have no host after the change",
                r.unrouted_after
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_keys_are_distinct_uuid_shaped() {
        let keys = sample_keys(1000);
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 1000);
        assert!(keys
            .iter()
            .all(|k| k.len() == 36 && k.as_bytes()[14] == b'4'));
    }
}
