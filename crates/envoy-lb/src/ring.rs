//! Ring hash (`source/extensions/load_balancing_policies/ring_hash/ring_hash_lb.cc`).

use std::io::Write as _;

use crate::error::LbError;
use crate::hash::HashFunction;
use crate::host::{HostSet, NormalizedWeights};

/// `RingHashLoadBalancer::DefaultMinRingSize`.
pub const DEFAULT_MIN_RING_SIZE: u64 = 1024;
/// `RingHashLoadBalancer::DefaultMaxRingSize` (8M), also the proto's upper bound for both sizes.
pub const DEFAULT_MAX_RING_SIZE: u64 = 1024 * 1024 * 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RingHashConfig {
    pub minimum_ring_size: u64,
    pub maximum_ring_size: u64,
    pub hash_function: HashFunction,
}

impl Default for RingHashConfig {
    fn default() -> Self {
        Self {
            minimum_ring_size: DEFAULT_MIN_RING_SIZE,
            maximum_ring_size: DEFAULT_MAX_RING_SIZE,
            hash_function: HashFunction::XxHash,
        }
    }
}

impl RingHashConfig {
    pub fn validate(&self) -> Result<(), LbError> {
        for (field, value) in [
            ("minimum ring size", self.minimum_ring_size),
            ("maximum ring size", self.maximum_ring_size),
        ] {
            if value > DEFAULT_MAX_RING_SIZE {
                return Err(LbError::RingSizeTooLarge { field, value });
            }
        }
        if self.minimum_ring_size > self.maximum_ring_size {
            return Err(LbError::RingSizeInverted {
                minimum: self.minimum_ring_size,
                maximum: self.maximum_ring_size,
            });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RingEntry {
    pub hash: u64,
    /// Index into the priority's `HostSet::hosts`.
    pub host: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    entries: Vec<RingEntry>,
    /// `ceil(scale)`: Envoy's `size` stat, not necessarily `entries.len()`.
    size_stat: u64,
    min_hashes_per_host: u64,
    max_hashes_per_host: u64,
}

impl Ring {
    pub fn build(
        host_set: &HostSet,
        weights: &NormalizedWeights,
        use_hostname_for_hashing: bool,
        config: &RingHashConfig,
    ) -> Result<Self, LbError> {
        config.validate()?;
        let mut ring = Self {
            entries: Vec::new(),
            size_stat: 0,
            min_hashes_per_host: 0,
            max_hashes_per_host: 0,
        };
        if weights.hosts.is_empty() {
            return Ok(ring);
        }
        // Scale so the lightest host gets ceil(min_weight * min_ring_size) entries, capped by the
        // maximum size. All sums are doubles in the same order as Envoy: a host's entry count is
        // decided by the running totals, so it depends on host-set order.
        let min_weight = weights.min_weight;
        let scale = ((min_weight * config.minimum_ring_size as f64).ceil() / min_weight)
            .min(config.maximum_ring_size as f64);
        ring.size_stat = scale.ceil() as u64;
        ring.min_hashes_per_host = ring.size_stat;
        ring.entries.reserve(ring.size_stat as usize);
        let mut current_hashes = 0.0_f64;
        let mut target_hashes = 0.0_f64;
        let mut key = Vec::with_capacity(64);
        for weighted in &weights.hosts {
            let Some(host) = host_set.hosts.get(weighted.index) else {
                continue;
            };
            key.clear();
            key.extend_from_slice(host.key(use_hostname_for_hashing).as_bytes());
            key.push(b'_');
            let prefix = key.len();
            target_hashes += scale * weighted.weight;
            let mut i: u64 = 0;
            while current_hashes < target_hashes {
                key.truncate(prefix);
                // `absl::StrCat("", i)`: plain decimal. Writing into a Vec cannot fail.
                let _ = write!(key, "{i}");
                ring.entries.push(RingEntry {
                    hash: config.hash_function.hash(&key),
                    host: weighted.index,
                });
                i += 1;
                current_hashes += 1.0;
            }
            ring.min_hashes_per_host = ring.min_hashes_per_host.min(i);
            ring.max_hashes_per_host = ring.max_hashes_per_host.max(i);
        }
        // Envoy's std::sort is unstable, so entries with equal hashes (two hosts sharing a
        // hash_key) have no defined order there; a stable sort keeps host-set order here.
        ring.entries.sort_by_key(|e| e.hash);
        Ok(ring)
    }

    /// `Ring::chooseHost`: the first entry whose hash is >= `hash`, wrapping to the start; a
    /// retry moves `attempt` entries further (possibly to the same host again).
    pub fn choose(&self, hash: u64, attempt: u32) -> Option<usize> {
        if self.entries.is_empty() {
            return None;
        }
        let mut index = self.entries.partition_point(|e| e.hash < hash);
        if index == self.entries.len() {
            index = 0;
        }
        if attempt > 0 {
            index = (index + attempt as usize) % self.entries.len();
        }
        self.entries.get(index).map(|e| e.host)
    }

    pub fn entries(&self) -> &[RingEntry] {
        &self.entries
    }

    pub fn size_stat(&self) -> u64 {
        self.size_stat
    }

    pub fn min_hashes_per_host(&self) -> u64 {
        self.min_hashes_per_host
    }

    pub fn max_hashes_per_host(&self) -> u64 {
        self.max_hashes_per_host
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::xx_hash64;
    use crate::host::{test_hosts as hosts, Host, Locality};

    fn ring_of(set: &HostSet, min: u64, max: u64, f: HashFunction, hostname: bool) -> Ring {
        let weights = NormalizedWeights::compute(set, false, false);
        let config = RingHashConfig {
            minimum_ring_size: min,
            maximum_ring_size: max,
            hash_function: f,
        };
        Ring::build(set, &weights, hostname, &config).unwrap()
    }

    fn port(set: &HostSet, index: Option<usize>) -> String {
        let host = &set.hosts[index.unwrap()];
        host.address.rsplit(':').next().unwrap().to_string()
    }

    fn assert_ring(ring: &Ring, set: &HostSet, expected: &[(&str, u64)], hostname: bool) {
        let actual: Vec<(String, u64)> = ring
            .entries()
            .iter()
            .map(|e| {
                let key = set.hosts[e.host].key(hostname);
                (key.rsplit(':').next().unwrap().to_string(), e.hash)
            })
            .collect();
        let expected: Vec<(String, u64)> =
            expected.iter().map(|(p, h)| (p.to_string(), *h)).collect();
        assert_eq!(actual, expected);
    }

    // ring_hash_lb_test.cc: Basic
    #[test]
    fn basic() {
        let set = hosts(90..=95);
        let ring = ring_of(&set, 12, DEFAULT_MAX_RING_SIZE, HashFunction::XxHash, false);
        assert_eq!(ring.size_stat(), 12);
        assert_eq!(
            (ring.min_hashes_per_host(), ring.max_hashes_per_host()),
            (2, 2)
        );
        assert_ring(
            &ring,
            &set,
            &[
                ("94", 833437586790550860),
                ("92", 928266305478181108),
                ("90", 1033482794131418490),
                ("95", 3551244743356806947),
                ("93", 3851675632748031481),
                ("91", 5583722120771150861),
                ("91", 6311230543546372928),
                ("93", 7700377290971790572),
                ("95", 13144177310400110813),
                ("92", 13444792449719432967),
                ("94", 15516499411664133160),
                ("90", 16117243373044804889),
            ],
            false,
        );
        assert_eq!(xx_hash64(b"127.0.0.1:90_0", 0), 16117243373044804889);
        assert_eq!(port(&set, ring.choose(0, 0)), "94");
        assert_eq!(port(&set, ring.choose(u64::MAX, 0)), "94");
        assert_eq!(port(&set, ring.choose(3551244743356806947, 0)), "95");
        assert_eq!(port(&set, ring.choose(3551244743356806948, 0)), "93");
        assert_eq!(port(&set, ring.choose(16117243373044804880, 0)), "90");
    }

    // ring_hash_lb_test.cc: BasicWithRetryHostPredicate (attempts as the LB loop issues them)
    #[test]
    fn retry_moves_along_the_ring() {
        let set = hosts(90..=95);
        let ring = ring_of(&set, 12, DEFAULT_MAX_RING_SIZE, HashFunction::XxHash, false);
        assert_eq!(port(&set, ring.choose(0, 1)), "92");
        assert_eq!(port(&set, ring.choose(0, 2)), "90");
        assert_eq!(port(&set, ring.choose(0, 13)), "92");
    }

    // ring_hash_lb_test.cc: BasicWithMurmur2
    #[test]
    fn basic_with_murmur2() {
        let set = hosts(80..=85);
        let ring = ring_of(
            &set,
            12,
            DEFAULT_MAX_RING_SIZE,
            HashFunction::MurmurHash2,
            false,
        );
        assert_ring(
            &ring,
            &set,
            &[
                ("85", 1358027074129602068),
                ("83", 4361834613929391114),
                ("84", 7224494972555149682),
                ("81", 7701421856454313576),
                ("82", 8649315368077433379),
                ("84", 8739448859063030639),
                ("81", 9887544217113020895),
                ("82", 10150910876324007731),
                ("83", 15168472011420622455),
                ("80", 15427156902705414897),
                ("85", 16375050414328759093),
                ("80", 17613279263364193813),
            ],
            false,
        );
        assert_eq!(port(&set, ring.choose(0, 0)), "85");
        assert_eq!(port(&set, ring.choose(u64::MAX, 0)), "85");
        assert_eq!(port(&set, ring.choose(1358027074129602068, 0)), "85");
        assert_eq!(port(&set, ring.choose(1358027074129602069, 0)), "83");
        assert_eq!(port(&set, ring.choose(10150910876324007730, 0)), "82");
    }

    const KEYED_RING: [(&str, u64); 12] = [
        ("95", 1975508444536362413),
        ("95", 2376063919839173711),
        ("93", 2386806903309390596),
        ("94", 6749904478991551885),
        ("93", 6803900775736438537),
        ("92", 7225015537174310577),
        ("90", 8787465352164086522),
        ("92", 11282020843382717940),
        ("91", 13723418369486627818),
        ("90", 13776502110861797421),
        ("91", 14338313586354474791),
        ("94", 15364271037087512980),
    ];

    fn check_keyed(set: &HostSet, hostname: bool) {
        let ring = ring_of(
            set,
            12,
            DEFAULT_MAX_RING_SIZE,
            HashFunction::XxHash,
            hostname,
        );
        assert_ring(&ring, set, &KEYED_RING, hostname);
        let key = |i: Option<usize>| set.hosts[i.unwrap()].key(hostname).to_string();
        assert_eq!(key(ring.choose(0, 0)), "95");
        assert_eq!(key(ring.choose(7225015537174310577, 0)), "92");
        assert_eq!(key(ring.choose(6803900775736438537, 0)), "93");
    }

    // ring_hash_lb_test.cc: BasicWithHostname
    #[test]
    fn basic_with_hostname() {
        let mut set = hosts(90..=95);
        for (i, h) in set.hosts.iter_mut().enumerate() {
            h.hostname = (90 + i).to_string();
        }
        check_keyed(&set, true);
        // Without use_hostname_for_hashing the addresses are hashed.
        let ring = ring_of(&set, 12, DEFAULT_MAX_RING_SIZE, HashFunction::XxHash, false);
        assert_eq!(ring.entries()[0].hash, 833437586790550860);
    }

    // ring_hash_lb_test.cc: BasicWithMetadataHashKey
    #[test]
    fn basic_with_metadata_hash_key() {
        let mut set = hosts(90..=95);
        for (i, h) in set.hosts.iter_mut().enumerate() {
            h.hash_key = Some((90 + i).to_string());
        }
        check_keyed(&set, false);
    }

    // ring_hash_lb_test.cc: UnevenHosts
    #[test]
    fn uneven_hosts() {
        let set = hosts([80, 81]);
        let ring = ring_of(&set, 3, DEFAULT_MAX_RING_SIZE, HashFunction::XxHash, false);
        assert_eq!(ring.size_stat(), 4);
        assert_ring(
            &ring,
            &set,
            &[
                ("80", 5454692015285649509),
                ("81", 7859399908942313493),
                ("80", 13838424394637650569),
                ("81", 16064866803292627174),
            ],
            false,
        );
    }

    fn weighted_set() -> HostSet {
        HostSet::new(vec![
            Host::new("127.0.0.1:90").unwrap().with_weight(1),
            Host::new("127.0.0.1:91").unwrap().with_weight(2),
            Host::new("127.0.0.1:92").unwrap().with_weight(3),
        ])
    }

    fn locality_set(weights: &[u32], hosts_per_zone: &[&[(u16, u32)]]) -> HostSet {
        let mut set = HostSet::default();
        for (zone, (weight, members)) in weights.iter().zip(hosts_per_zone).enumerate() {
            let locality = Locality::parse(&format!("region/zone-{zone}"));
            set.locality_weights.insert(locality.clone(), *weight);
            for (port, w) in members.iter() {
                set.hosts.push(
                    Host::new(&format!("127.0.0.1:{port}"))
                        .unwrap()
                        .with_weight(*w)
                        .with_locality(locality.clone()),
                );
            }
        }
        set
    }

    fn probe_counts(ring: &Ring, set: &HostSet, probes: u64) -> Vec<usize> {
        let mut counts = vec![0; set.hosts.len()];
        let step = u64::MAX / probes;
        for i in 0..probes {
            counts[ring.choose(i * step, 0).unwrap()] += 1;
        }
        counts
    }

    const TINY_PROBES: [(u64, &str); 6] = [
        (928266305478181108, "92"),
        (4443673547860492590, "92"),
        (5583722120771150861, "91"),
        (6311230543546372928, "91"),
        (13444792449719432967, "92"),
        (16117243373044804889, "90"),
    ];

    // ring_hash_lb_test.cc: HostWeightedTinyRing / HostWeightedLargeRing
    #[test]
    fn host_weighted_rings() {
        let set = weighted_set();
        let ring = ring_of(&set, 6, 6, HashFunction::XxHash, false);
        assert_eq!(ring.entries().len(), 6);
        for (hash, expected) in TINY_PROBES {
            assert_eq!(port(&set, ring.choose(hash, 0)), expected, "hash {hash}");
        }
        let ring = ring_of(
            &set,
            6144,
            DEFAULT_MAX_RING_SIZE,
            HashFunction::XxHash,
            false,
        );
        assert_eq!(ring.size_stat(), 6144);
        assert_eq!(
            (ring.min_hashes_per_host(), ring.max_hashes_per_host()),
            (1024, 3072)
        );
        assert_eq!(probe_counts(&ring, &set, 6000), vec![987, 1932, 3081]);
    }

    fn locality_ring(set: &HostSet, min: u64, max: u64) -> Ring {
        let weights = NormalizedWeights::compute(set, false, true);
        let config = RingHashConfig {
            minimum_ring_size: min,
            maximum_ring_size: max,
            hash_function: HashFunction::XxHash,
        };
        Ring::build(set, &weights, false, &config).unwrap()
    }

    // ring_hash_lb_test.cc: LocalityWeightedTinyRing / LocalityWeightedLargeRing
    #[test]
    fn locality_weighted_rings() {
        let set = locality_set(
            &[1, 2, 3, 0],
            &[&[(90, 1)], &[(91, 1)], &[(92, 1)], &[(93, 1)]],
        );
        let ring = locality_ring(&set, 6, 6);
        for (hash, expected) in TINY_PROBES {
            assert_eq!(port(&set, ring.choose(hash, 0)), expected, "hash {hash}");
        }
        let ring = locality_ring(&set, 6144, DEFAULT_MAX_RING_SIZE);
        assert_eq!(probe_counts(&ring, &set, 6000), vec![987, 1932, 3081, 0]);
    }

    // ring_hash_lb_test.cc: HostAndLocalityWeightedTinyRing / ...LargeRing
    #[test]
    fn host_and_locality_weighted_rings() {
        let set = locality_set(&[1, 2], &[&[(90, 1), (91, 2)], &[(92, 1), (93, 2)]]);
        let ring = locality_ring(&set, 9, 9);
        for (hash, expected) in [
            (928266305478181108, "92"),
            (3851675632748031481, "93"),
            (5583722120771150861, "91"),
            (6311230543546372928, "91"),
            (7700377290971790572, "93"),
            (12559126875973811811, "93"),
            (13444792449719432967, "92"),
            (13784988426630141778, "93"),
            (16117243373044804889, "90"),
        ] {
            assert_eq!(port(&set, ring.choose(hash, 0)), expected, "hash {hash}");
        }
        let ring = locality_ring(&set, 9216, DEFAULT_MAX_RING_SIZE);
        assert_eq!(probe_counts(&ring, &set, 9000), vec![924, 2009, 2053, 4014]);
    }

    // ring_hash_lb_test.cc: LargeFractionalScale
    #[test]
    fn large_fractional_scale() {
        let set = hosts([90, 91]);
        let ring = ring_of(&set, 1023, 1023, HashFunction::XxHash, false);
        let mut per_host = [0usize; 2];
        for e in ring.entries() {
            per_host[e.host] += 1;
        }
        assert_eq!(per_host, [512, 511]);
        assert_eq!(probe_counts(&ring, &set, 1023), vec![526, 497]);
    }

    // ring_hash_lb_test.cc: SmallFractionalScale
    #[test]
    fn small_fractional_scale() {
        let set = hosts(90..=93);
        let ring = ring_of(&set, 2, 2, HashFunction::XxHash, false);
        assert_eq!(ring.entries().len(), 2);
        assert_eq!(ring.min_hashes_per_host(), 0);
        let mut present: Vec<usize> = ring.entries().iter().map(|e| e.host).collect();
        present.sort_unstable();
        present.dedup();
        assert_eq!(present.len(), 2);
    }

    // ring_hash_lb_test.cc: LopsidedWeightSmallScale
    #[test]
    fn lopsided_weight_small_scale() {
        let set = crate::host::lopsided_host_set();
        let ring = locality_ring(&set, 1024, 1024);
        let mut per_host = vec![0usize; set.hosts.len()];
        for e in ring.entries() {
            per_host[e.host] += 1;
        }
        assert_eq!(per_host[0], 1016);
        for (i, count) in per_host.iter().enumerate().skip(1) {
            let expected = usize::from(i % 128 == 0 || i == 1);
            assert_eq!(*count, expected, "host {i}");
        }
        for (hash, expected) in [
            (11664790346325243808, "1"),
            (15894554872961148518, "128"),
            (13958138884277627155, "256"),
            (15803774069438192949, "384"),
            (3829253010855396576, "512"),
            (17918147347826565154, "640"),
            (6442769608292299103, "768"),
            (5881074926069334434, "896"),
        ] {
            assert_eq!(port(&set, ring.choose(hash, 0)), expected, "hash {hash}");
        }
    }

    // Three hosts with the default ring sizes, checked against a real Envoy
    // 1.40 in tests/envoy_differential.rs.
    #[test]
    fn three_hosts_default_ring() {
        let set = HostSet::new(
            (1..=3)
                .map(|i| Host::new(&format!("10.0.0.{i}:8080")).unwrap())
                .collect(),
        );
        let ring = ring_of(
            &set,
            DEFAULT_MIN_RING_SIZE,
            DEFAULT_MAX_RING_SIZE,
            HashFunction::XxHash,
            false,
        );
        assert_eq!(ring.entries().len(), 1026);
        assert_eq!(
            (ring.min_hashes_per_host(), ring.max_hashes_per_host()),
            (342, 342)
        );
        let first: Vec<(u64, usize)> = ring.entries()[..3]
            .iter()
            .map(|e| (e.hash, e.host))
            .collect();
        assert_eq!(
            first,
            vec![
                (28240643374849546, 1),
                (34745952330020386, 0),
                (53707980929909465, 1)
            ]
        );
        assert_eq!(ring.choose(0, 0), Some(1));
        assert_eq!(ring.choose(4142921581652311169, 0), Some(2));
        assert_eq!(xx_hash64(b"user-42", 0), 4142921581652311169);
    }

    #[test]
    fn config_validation() {
        let bad = |min, max| {
            RingHashConfig {
                minimum_ring_size: min,
                maximum_ring_size: max,
                hash_function: HashFunction::XxHash,
            }
            .validate()
        };
        assert_eq!(
            bad(12, 6),
            Err(LbError::RingSizeInverted {
                minimum: 12,
                maximum: 6
            })
        );
        // Envoy 1.40 accepts 0 and builds an empty ring: every request gets a 503.
        assert_eq!(bad(0, 6), Ok(()));
        assert!(matches!(
            bad(1, DEFAULT_MAX_RING_SIZE + 1),
            Err(LbError::RingSizeTooLarge { .. })
        ));
        assert_eq!(bad(DEFAULT_MAX_RING_SIZE, DEFAULT_MAX_RING_SIZE), Ok(()));
    }

    #[test]
    fn minimum_ring_size_zero_builds_an_empty_ring() {
        let set = hosts(90..=92);
        let ring = ring_of(&set, 0, DEFAULT_MAX_RING_SIZE, HashFunction::XxHash, false);
        assert!(ring.entries().is_empty());
        assert_eq!(ring.choose(0, 0), None);
    }

    #[test]
    fn empty_ring_has_no_host() {
        let set = HostSet::default();
        let ring = ring_of(&set, 12, 12, HashFunction::XxHash, false);
        assert_eq!(ring.choose(0, 0), None);
    }
}
