//! Maglev (`source/extensions/load_balancing_policies/maglev/maglev_lb.cc`), the weighted
//! population of the Maglev paper's listing 1 with Envoy's `target_weight` bookkeeping.

use crate::error::LbError;
use crate::hash::xx_hash64;
use crate::host::{HostSet, NormalizedWeights};

/// `MaglevTable::DefaultTableSize`, the prime recommended in section 5.3 of the paper.
pub const DEFAULT_TABLE_SIZE: u64 = 65537;
/// `maglev.proto`: `table_size` `lte: 5000011`.
pub const MAX_TABLE_SIZE: u64 = 5_000_011;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct MaglevConfig {
    pub table_size: u64,
}

impl Default for MaglevConfig {
    fn default() -> Self {
        Self {
            table_size: DEFAULT_TABLE_SIZE,
        }
    }
}

impl MaglevConfig {
    pub fn validate(&self) -> Result<(), LbError> {
        if self.table_size > MAX_TABLE_SIZE {
            return Err(LbError::MaglevTableTooLarge {
                table_size: self.table_size,
            });
        }
        if !is_prime(self.table_size) {
            return Err(LbError::MaglevTableNotPrime {
                table_size: self.table_size,
            });
        }
        Ok(())
    }
}

/// `Primes::isPrime` (trial division is enough below 5000011).
pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    if n < 4 {
        return true;
    }
    if n.is_multiple_of(2) {
        return false;
    }
    let mut d = 3;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

/// `TableBuildEntry`. `slot` is the current permutation value `(offset + skip * next) % M`,
/// advanced by adding `skip` and subtracting `M` on overflow (Envoy PR #44168 does the same;
/// identical output, no division per probe).
struct BuildEntry {
    host: u32,
    skip: u64,
    weight: f64,
    target_weight: f64,
    slot: u64,
    count: u64,
}

impl BuildEntry {
    fn advance(&mut self, m: u64) {
        self.slot += self.skip;
        if self.slot >= m {
            self.slot -= m;
        }
    }
}

/// Marks a free slot while building, and a slot with no host afterwards.
const NO_HOST: u32 = u32::MAX;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Slots {
    Empty,
    /// `DegenerateMaglevTable`: one host, no table; every lookup returns it.
    Single(usize),
    Full(Vec<u32>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaglevTable {
    table_size: u64,
    slots: Slots,
    /// Entries per host, by index into `HostSet::hosts`, in the sorted build order.
    entries_per_host: Vec<(usize, u64)>,
    min_entries_per_host: u64,
    max_entries_per_host: u64,
}

impl MaglevTable {
    pub fn build(
        host_set: &HostSet,
        weights: &NormalizedWeights,
        use_hostname_for_hashing: bool,
        config: &MaglevConfig,
    ) -> Result<Self, LbError> {
        config.validate()?;
        let m = config.table_size;
        let mut table = Self {
            table_size: m,
            slots: Slots::Empty,
            entries_per_host: Vec::new(),
            min_entries_per_host: 0,
            max_entries_per_host: 0,
        };
        let mut keyed: Vec<(&str, usize, f64)> = weights
            .hosts
            .iter()
            .filter_map(|w| {
                host_set
                    .hosts
                    .get(w.index)
                    .map(|h| (h.key(use_hostname_for_hashing), w.index, w.weight))
            })
            .collect();
        match keyed.as_slice() {
            [] => return Ok(table),
            [(_, host, _)] => {
                table.slots = Slots::Single(*host);
                table.entries_per_host = vec![(*host, 1)];
                table.min_entries_per_host = 1;
                table.max_entries_per_host = 1;
                return Ok(table);
            }
            _ => {}
        }
        // Since ~1.27 Envoy sorts by key bytes so the table does not depend on host order.
        // Equal keys fall back to pointer order there (unspecified); host-set order here.
        keyed.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut entries = Vec::with_capacity(keyed.len());
        for (key, host, weight) in &keyed {
            let host = u32::try_from(*host)
                .ok()
                .filter(|h| *h != NO_HOST)
                .ok_or(LbError::TooManyHosts)?;
            entries.push(BuildEntry {
                host,
                skip: xx_hash64(key.as_bytes(), 1) % (m - 1) + 1,
                weight: *weight,
                target_weight: 0.0,
                slot: xx_hash64(key.as_bytes(), 0) % m,
                count: 0,
            });
        }
        let max_weight = weights.max_weight;
        let mut slots: Vec<u32> = vec![NO_HOST; m as usize];
        let mut filled: u64 = 0;
        let mut iteration: u32 = 1;
        // Each round, a host of maximal weight claims a slot, so the loop ends within
        // about m * max_weight / min_weight rounds.
        while filled < m {
            for entry in entries.iter_mut() {
                if filled >= m {
                    break;
                }
                // Hosts lighter than the heaviest skip rounds until their share catches up.
                if f64::from(iteration) * entry.weight < entry.target_weight {
                    continue;
                }
                entry.target_weight += max_weight;
                while slots
                    .get(entry.slot as usize)
                    .is_some_and(|s| *s != NO_HOST)
                {
                    entry.advance(m);
                }
                if let Some(slot) = slots.get_mut(entry.slot as usize) {
                    *slot = entry.host;
                }
                entry.advance(m);
                entry.count += 1;
                filled += 1;
            }
            iteration = iteration.wrapping_add(1);
        }
        table.slots = Slots::Full(slots);
        table.min_entries_per_host = entries.iter().map(|e| e.count).min().unwrap_or(0);
        table.max_entries_per_host = entries.iter().map(|e| e.count).max().unwrap_or(0);
        table.entries_per_host = entries.iter().map(|e| (e.host as usize, e.count)).collect();
        Ok(table)
    }

    /// `MaglevTable::chooseHost`: slot `hash % M`; retry attempt `a` first XORs the hash with
    /// `~0 - a + 1`, i.e. the two's-complement negation of `a`.
    pub fn choose(&self, hash: u64, attempt: u32) -> Option<usize> {
        match &self.slots {
            Slots::Empty => None,
            Slots::Single(host) => Some(*host),
            Slots::Full(slots) => {
                let hash = if attempt > 0 {
                    hash ^ u64::from(attempt).wrapping_neg()
                } else {
                    hash
                };
                slots
                    .get((hash % self.table_size) as usize)
                    .copied()
                    .filter(|h| *h != NO_HOST)
                    .map(|h| h as usize)
            }
        }
    }

    pub fn table_size(&self) -> u64 {
        self.table_size
    }

    /// Host index per slot; `None` for the empty and single-host forms that build no table.
    pub fn slots(&self) -> Option<&[u32]> {
        match &self.slots {
            Slots::Full(slots) => Some(slots),
            _ => None,
        }
    }

    pub fn entries_per_host(&self) -> &[(usize, u64)] {
        &self.entries_per_host
    }

    pub fn min_entries_per_host(&self) -> u64 {
        self.min_entries_per_host
    }

    pub fn max_entries_per_host(&self) -> u64 {
        self.max_entries_per_host
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::xx_hash64;
    use crate::host::{test_hosts as hosts, Host, Locality};

    fn build(set: &HostSet, m: u64, hostname: bool, locality: bool) -> MaglevTable {
        let weights = NormalizedWeights::compute(set, false, locality);
        MaglevTable::build(set, &weights, hostname, &MaglevConfig { table_size: m }).unwrap()
    }

    fn table_keys(table: &MaglevTable, set: &HostSet, hostname: bool) -> Vec<String> {
        (0..table.table_size())
            .map(|i| {
                let host = &set.hosts[table.choose(i, 0).unwrap()];
                host.key(hostname).rsplit(':').next().unwrap().to_string()
            })
            .collect()
    }

    fn ports(list: &str) -> Vec<String> {
        list.split(',').map(str::to_string).collect()
    }

    // maglev_lb_test.cc: Basic
    #[test]
    fn basic() {
        let set = hosts(90..=95);
        let table = build(&set, 7, false, false);
        assert_eq!(
            table_keys(&table, &set, false),
            ports("92,94,90,91,95,90,93")
        );
        assert_eq!(
            (table.min_entries_per_host(), table.max_entries_per_host()),
            (1, 2)
        );
    }

    // maglev_lb_test.cc: BasicWithHostName / BasicWithMetadataHashKey
    #[test]
    fn basic_with_hostname_and_metadata_key() {
        let mut by_hostname = hosts(90..=95);
        let mut by_metadata = hosts(90..=95);
        for i in 0..6 {
            by_hostname.hosts[i].hostname = (90 + i).to_string();
            by_metadata.hosts[i].hash_key = Some((90 + i).to_string());
        }
        let expected = ports("92,95,90,93,94,91,90");
        let table = build(&by_hostname, 7, true, false);
        assert_eq!(table_keys(&table, &by_hostname, true), expected);
        let table = build(&by_metadata, 7, false, false);
        assert_eq!(table_keys(&table, &by_metadata, false), expected);
    }

    // maglev_lb_test.cc: BasicWithRetryHostPredicate
    #[test]
    fn retry_attempts_flip_the_hash() {
        let set = hosts(90..=95);
        let table = build(&set, 7, false, false);
        let port = |i: Option<usize>| set.hosts[i.unwrap()].address.clone();
        assert_eq!(port(table.choose(10, 0)), "127.0.0.1:91");
        assert_eq!(port(table.choose(10, 1)), "127.0.0.1:90");
        assert_eq!(port(table.choose(10, 2)), "127.0.0.1:95");
    }

    // maglev_lb_test.cc: BasicStability
    #[test]
    fn host_order_does_not_matter() {
        let set = hosts(90..=95);
        let mut shuffled = set.clone();
        shuffled.hosts.reverse();
        shuffled.hosts.swap(1, 4);
        let a = table_keys(&build(&set, 7, false, false), &set, false);
        let b = table_keys(&build(&shuffled, 7, false, false), &shuffled, false);
        assert_eq!(a, b);
    }

    // maglev_lb_test.cc: Weighted
    #[test]
    fn weighted() {
        let set = HostSet::new(vec![
            Host::new("127.0.0.1:90").unwrap(),
            Host::new("127.0.0.1:91").unwrap().with_weight(2),
        ]);
        let table = build(&set, 17, false, false);
        assert_eq!(
            table_keys(&table, &set, false),
            ports("91,90,90,91,90,91,91,90,91,91,91,91,91,90,91,90,91")
        );
        assert_eq!(
            (table.min_entries_per_host(), table.max_entries_per_host()),
            (6, 11)
        );
    }

    fn zones(weights: &[u32], members: &[(u16, u32)]) -> HostSet {
        let mut set = HostSet::default();
        for (i, (weight, (port, host_weight))) in weights.iter().zip(members).enumerate() {
            let locality = Locality::parse(&format!("r/zone-{i}"));
            set.locality_weights.insert(locality.clone(), *weight);
            set.hosts.push(
                Host::new(&format!("127.0.0.1:{port}"))
                    .unwrap()
                    .with_weight(*host_weight)
                    .with_locality(locality),
            );
        }
        set
    }

    // maglev_lb_test.cc: LocalityWeightedSameLocalityWeights
    #[test]
    fn locality_weighted_same_weights() {
        let set = zones(&[1, 1], &[(90, 1), (91, 2)]);
        let table = build(&set, 17, false, true);
        assert_eq!(
            table_keys(&table, &set, false),
            ports("91,90,90,91,90,91,91,90,90,91,90,91,90,90,91,90,91")
        );
        assert_eq!(
            (table.min_entries_per_host(), table.max_entries_per_host()),
            (8, 9)
        );
    }

    // maglev_lb_test.cc: LocalityWeightedDifferentLocalityWeights
    #[test]
    fn locality_weighted_different_weights() {
        let set = zones(&[8, 0, 2], &[(90, 1), (92, 3), (91, 2)]);
        let table = build(&set, 17, false, true);
        assert_eq!(
            table_keys(&table, &set, false),
            ports("91,90,90,90,90,90,91,90,90,91,90,91,90,90,90,90,90")
        );
        assert_eq!(
            (table.min_entries_per_host(), table.max_entries_per_host()),
            (4, 13)
        );
    }

    // maglev_lb_test.cc: LocalityWeightedLopsided
    #[test]
    fn locality_weighted_lopsided() {
        let set = crate::host::lopsided_host_set();
        let table = build(&set, DEFAULT_TABLE_SIZE, false, true);
        let mut counts = vec![0u64; set.hosts.len()];
        for (host, count) in table.entries_per_host() {
            counts[*host] = *count;
        }
        assert_eq!(counts[0], 65537 - 1023);
        assert!(counts[1..].iter().all(|c| *c == 1));
        let slots = table.slots().unwrap();
        assert_eq!(slots.iter().filter(|h| **h == 0).count(), 64514);
    }

    // maglev_lb_test.cc: WeightedSingleHost
    #[test]
    fn single_host_is_degenerate() {
        let set = HostSet::new(vec![Host::new("127.0.0.1:90").unwrap().with_weight(7)]);
        let table = build(&set, 17, false, false);
        assert!(table.slots().is_none());
        assert_eq!(
            (table.min_entries_per_host(), table.max_entries_per_host()),
            (1, 1)
        );
        for hash in [0, 1, 16, 17, u64::MAX] {
            assert_eq!(table.choose(hash, 0), Some(0));
            assert_eq!(table.choose(hash, 3), Some(0));
        }
    }

    // Maglev architecture docs: A weight 1, B weight 2 at the default size.
    #[test]
    fn documented_weighted_example() {
        let set = HostSet::new(vec![
            Host::new("10.0.0.1:80").unwrap(),
            Host::new("10.0.0.2:80").unwrap().with_weight(2),
        ]);
        let table = build(&set, DEFAULT_TABLE_SIZE, false, false);
        let mut counts: Vec<u64> = table.entries_per_host().iter().map(|e| e.1).collect();
        counts.sort_unstable();
        assert_eq!(counts, vec![21846, 43691]);
    }

    // Three hosts at the default table size (65537), checked against a real
    // Envoy 1.40 in tests/envoy_differential.rs.
    #[test]
    fn three_hosts_default_table() {
        let set = HostSet::new(
            (1..=3)
                .map(|i| Host::new(&format!("10.0.0.{i}:8080")).unwrap())
                .collect(),
        );
        let m = DEFAULT_TABLE_SIZE;
        let params: Vec<(u64, u64)> = set
            .hosts
            .iter()
            .map(|h| {
                let k = h.address.as_bytes();
                (xx_hash64(k, 0) % m, xx_hash64(k, 1) % (m - 1) + 1)
            })
            .collect();
        assert_eq!(params, vec![(1495, 46121), (802, 64586), (60091, 19545)]);
        let table = build(&set, m, false, false);
        let counts: Vec<(usize, u64)> = table.entries_per_host().to_vec();
        assert_eq!(counts, vec![(0, 21846), (1, 21846), (2, 21845)]);
        let first: Vec<usize> = (0..10).map(|i| table.choose(i, 0).unwrap()).collect();
        assert_eq!(first, vec![2, 2, 2, 0, 0, 0, 0, 1, 0, 2]);
        assert_eq!(table.choose(12345, 0), Some(1));
        let h = xx_hash64(b"user-42", 0);
        assert_eq!(h % m, 27022);
        assert_eq!(table.choose(h, 0), Some(2));
    }

    #[test]
    fn table_size_validation() {
        let check = |m| MaglevConfig { table_size: m }.validate();
        assert_eq!(check(65537), Ok(()));
        assert_eq!(check(65357), Ok(()));
        assert_eq!(check(7), Ok(()));
        assert_eq!(check(2), Ok(()));
        assert_eq!(
            check(65536),
            Err(LbError::MaglevTableNotPrime { table_size: 65536 })
        );
        assert_eq!(
            check(1),
            Err(LbError::MaglevTableNotPrime { table_size: 1 })
        );
        assert_eq!(
            check(0),
            Err(LbError::MaglevTableNotPrime { table_size: 0 })
        );
        assert_eq!(check(5000011), Ok(()));
        assert_eq!(
            check(5000077),
            Err(LbError::MaglevTableTooLarge {
                table_size: 5000077
            })
        );
    }

    #[test]
    fn empty_host_set_has_no_host() {
        let table = build(&HostSet::default(), 7, false, false);
        assert_eq!(table.choose(3, 0), None);
    }
}
