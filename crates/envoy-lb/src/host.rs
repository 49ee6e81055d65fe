//! Hosts, their hash keys, localities and the weights Envoy normalises before building a ring or
//! a Maglev table (`ThreadAwareLoadBalancerBase::refresh` / `normalizeWeights`).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::error::LbError;

/// Health as the load balancer sees it: `healthyHosts()`, `degradedHosts()`, the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    #[default]
    Healthy,
    Degraded,
    Unhealthy,
}

/// `envoy.config.core.v3.Locality`. Envoy orders per-locality host lists by
/// `(region, zone, sub_zone)` (`LocalityLess`), which the derived `Ord` reproduces.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Locality {
    pub region: String,
    pub zone: String,
    pub sub_zone: String,
}

impl Locality {
    /// Parses `region/zone/sub_zone`; missing trailing parts are empty.
    pub fn parse(text: &str) -> Self {
        let mut parts = text.splitn(3, '/');
        let mut next = || parts.next().unwrap_or_default().to_string();
        Self {
            region: next(),
            zone: next(),
            sub_zone: next(),
        }
    }
}

impl std::fmt::Display for Locality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.region, self.zone, self.sub_zone)
    }
}

/// One `LbEndpoint`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Host {
    /// `address()->asString()`: `10.0.0.1:8080`, `[2001:db8::1]:8080`, a pipe path, or
    /// `envoy://listener/id`.
    pub address: String,
    /// `Endpoint.hostname`, used as the key with `use_hostname_for_hashing`.
    pub hostname: String,
    /// `metadata.filter_metadata["envoy.lb"]["hash_key"]` when it is a string.
    pub hash_key: Option<String>,
    /// `load_balancing_weight`, at least 1.
    pub weight: u32,
    pub health: Health,
    pub locality: Locality,
}

impl Host {
    /// A healthy host of weight 1 whose address is normalised like Envoy prints it.
    pub fn new(address: &str) -> Result<Self, LbError> {
        Ok(Self {
            address: normalize_address(address)?,
            hostname: String::new(),
            hash_key: None,
            weight: 1,
            health: Health::Healthy,
            locality: Locality::default(),
        })
    }

    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    pub fn with_hostname(mut self, hostname: &str) -> Self {
        self.hostname = hostname.to_string();
        self
    }

    pub fn with_hash_key(mut self, hash_key: &str) -> Self {
        self.hash_key = Some(hash_key.to_string());
        self
    }

    pub fn with_health(mut self, health: Health) -> Self {
        self.health = health;
        self
    }

    pub fn with_locality(mut self, locality: Locality) -> Self {
        self.locality = locality;
        self
    }

    /// `HashingLoadBalancer::hashKey`: a non-empty `hash_key` wins, then the hostname when
    /// `use_hostname_for_hashing` is set (even if it is empty), then the address.
    pub fn key(&self, use_hostname_for_hashing: bool) -> &str {
        match &self.hash_key {
            Some(key) if !key.is_empty() => key,
            _ if use_hostname_for_hashing => &self.hostname,
            _ => &self.address,
        }
    }
}

/// Formats an address the way `Address::Instance::asString()` does. `SocketAddr`'s display is
/// RFC 5952 text with brackets for IPv6, the same as `inet_ntop` for ordinary addresses.
/// Pipes (`/path`, `@abstract`) and internal addresses (`envoy://...`) pass through.
pub fn normalize_address(address: &str) -> Result<String, LbError> {
    if let Ok(socket) = address.parse::<SocketAddr>() {
        return Ok(socket.to_string());
    }
    if address.starts_with('/') || address.starts_with('@') || address.starts_with("envoy://") {
        return Ok(address.to_string());
    }
    Err(LbError::BadAddress {
        address: address.to_string(),
    })
}

/// One priority level: its hosts in host-set order and, for locality-weighted balancing,
/// the weight of each locality (`LocalityLbEndpoints.load_balancing_weight`; unset = 0).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSet {
    pub hosts: Vec<Host>,
    pub locality_weights: BTreeMap<Locality, u32>,
}

impl HostSet {
    pub fn new(hosts: Vec<Host>) -> Self {
        Self {
            hosts,
            locality_weights: BTreeMap::new(),
        }
    }

    pub fn healthy_count(&self) -> usize {
        self.count(Health::Healthy)
    }

    pub fn degraded_count(&self) -> usize {
        self.count(Health::Degraded)
    }

    fn count(&self, health: Health) -> usize {
        self.hosts.iter().filter(|h| h.health == health).count()
    }

    pub(crate) fn validate(&self, priority: u32) -> Result<(), LbError> {
        let mut sum: u64 = 0;
        for host in &self.hosts {
            if host.weight == 0 {
                return Err(LbError::ZeroHostWeight {
                    host: host.address.clone(),
                });
            }
            sum += u64::from(host.weight);
        }
        if sum > u64::from(u32::MAX) {
            return Err(LbError::WeightSumOverflow { priority });
        }
        Ok(())
    }
}

/// A host (as an index into its `HostSet::hosts`) with its normalised weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeightedHost {
    pub index: usize,
    pub weight: f64,
}

/// `NormalizedHostWeightVector` plus the min/max that both table builders need.
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizedWeights {
    pub hosts: Vec<WeightedHost>,
    pub min_weight: f64,
    pub max_weight: f64,
}

impl NormalizedWeights {
    /// `normalizeWeights`: healthy hosts only unless the priority is in panic (degraded hosts are
    /// left out too), and with locality weighting each non-zero locality gets its share.
    pub fn compute(host_set: &HostSet, in_panic: bool, locality_weighted: bool) -> Self {
        let mut out = Self {
            hosts: Vec::new(),
            min_weight: 1.0,
            max_weight: 0.0,
        };
        let eligible: Vec<usize> = host_set
            .hosts
            .iter()
            .enumerate()
            .filter(|(_, h)| in_panic || h.health == Health::Healthy)
            .map(|(i, _)| i)
            .collect();
        // `localityWeights()` exists only with locality_weighted_lb_config; it has one entry per
        // locality that has hosts (healthy or not), so an all-unhealthy locality still counts in
        // the sum.
        let localities: BTreeMap<&Locality, u32> = host_set
            .hosts
            .iter()
            .map(|h| {
                let weight = host_set
                    .locality_weights
                    .get(&h.locality)
                    .copied()
                    .unwrap_or(0);
                (&h.locality, weight)
            })
            .collect();
        if !locality_weighted || localities.is_empty() {
            out.add(host_set, &eligible, 1.0);
            return out;
        }
        let sum: u64 = localities.values().map(|w| u64::from(*w)).sum();
        if sum == 0 {
            return out;
        }
        // Envoy sums into a uint32_t; weights are validated so the sum fits.
        for (locality, weight) in localities {
            if weight == 0 {
                continue;
            }
            let members: Vec<usize> = eligible
                .iter()
                .copied()
                .filter(|i| {
                    host_set
                        .hosts
                        .get(*i)
                        .is_some_and(|h| &h.locality == locality)
                })
                .collect();
            out.add(host_set, &members, f64::from(weight) / sum as f64);
        }
        out
    }

    /// `normalizeHostWeights`: `weight * locality_share / sum`, evaluated in that order.
    fn add(&mut self, host_set: &HostSet, members: &[usize], locality_share: f64) {
        let sum: u64 = members
            .iter()
            .filter_map(|i| host_set.hosts.get(*i))
            .map(|h| u64::from(h.weight))
            .sum();
        for &index in members {
            let Some(host) = host_set.hosts.get(index) else {
                continue;
            };
            let weight = f64::from(host.weight) * locality_share / sum as f64;
            self.hosts.push(WeightedHost { index, weight });
            self.min_weight = self.min_weight.min(weight);
            self.max_weight = self.max_weight.max(weight);
        }
    }
}

/// `127.0.0.1:PORT` hosts of weight 1, in the given order, as Envoy's ring
/// and Maglev unit tests build them.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn test_hosts(ports: impl IntoIterator<Item = u16>) -> crate::HostSet {
    crate::HostSet::new(
        ports
            .into_iter()
            .map(|p| Host::new(&format!("127.0.0.1:{p}")).unwrap())
            .collect(),
    )
}

/// Envoy's "lopsided" test fixture (ring_hash_lb_test.cc
/// `LopsidedWeightSmallScale`, maglev_lb_test.cc `LocalityWeightedLopsided`):
/// `127.0.0.1:0` alone in a locality of weight 127, `127.0.0.1:1` ..
/// `127.0.0.1:1023` in one of weight 1.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn lopsided_host_set() -> crate::HostSet {
    let mut set = crate::HostSet::default();
    let heavy = Locality::parse("heavy");
    let light = Locality::parse("light");
    set.locality_weights.insert(heavy.clone(), 127);
    set.locality_weights.insert(light.clone(), 1);
    set.hosts
        .push(Host::new("127.0.0.1:0").unwrap().with_locality(heavy));
    for port in 1..1024 {
        set.hosts.push(
            Host::new(&format!("127.0.0.1:{port}"))
                .unwrap()
                .with_locality(light.clone()),
        );
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_print_like_envoy() {
        assert_eq!(normalize_address("10.0.0.1:8080").unwrap(), "10.0.0.1:8080");
        assert_eq!(
            normalize_address("[2001:db8:0:0::1]:80").unwrap(),
            "[2001:db8::1]:80"
        );
        assert_eq!(
            normalize_address("[::ffff:10.0.0.1]:80").unwrap(),
            "[::ffff:10.0.0.1]:80"
        );
        assert_eq!(normalize_address("/tmp/sock").unwrap(), "/tmp/sock");
        assert!(matches!(
            normalize_address("replica-1"),
            Err(LbError::BadAddress { .. })
        ));
        assert!(normalize_address("10.0.0.1").is_err());
    }

    #[test]
    fn key_precedence_is_metadata_then_hostname_then_address() {
        let host = Host::new("127.0.0.1:90").unwrap();
        assert_eq!(host.key(false), "127.0.0.1:90");
        assert_eq!(host.key(true), "");
        let host = host.with_hostname("90");
        assert_eq!(host.key(false), "127.0.0.1:90");
        assert_eq!(host.key(true), "90");
        let host = host.with_hash_key("k");
        assert_eq!(host.key(false), "k");
        assert_eq!(host.key(true), "k");
        let host = host.with_hash_key("");
        assert_eq!(host.key(true), "90");
    }

    #[test]
    fn weights_normalise_to_shares() {
        let set = HostSet::new(vec![
            Host::new("127.0.0.1:90").unwrap(),
            Host::new("127.0.0.1:91").unwrap().with_weight(3),
            Host::new("127.0.0.1:92")
                .unwrap()
                .with_health(Health::Unhealthy),
        ]);
        let w = NormalizedWeights::compute(&set, false, false);
        assert_eq!(w.hosts.len(), 2);
        assert_eq!(w.hosts[0].weight, 0.25);
        assert_eq!(w.hosts[1].weight, 0.75);
        assert_eq!((w.min_weight, w.max_weight), (0.25, 0.75));
        let panic = NormalizedWeights::compute(&set, true, false);
        assert_eq!(panic.hosts.len(), 3);
        assert_eq!(panic.hosts[2].weight, 0.2);
    }

    #[test]
    fn locality_weights_sorted_by_locality_and_zero_dropped() {
        let mut set = HostSet::new(vec![
            Host::new("127.0.0.1:91")
                .unwrap()
                .with_locality(Locality::parse("r/b")),
            Host::new("127.0.0.1:90")
                .unwrap()
                .with_locality(Locality::parse("r/a")),
            Host::new("127.0.0.1:92")
                .unwrap()
                .with_locality(Locality::parse("r/c")),
        ]);
        set.locality_weights.insert(Locality::parse("r/a"), 1);
        set.locality_weights.insert(Locality::parse("r/b"), 3);
        let w = NormalizedWeights::compute(&set, false, true);
        let order: Vec<usize> = w.hosts.iter().map(|h| h.index).collect();
        assert_eq!(order, vec![1, 0]);
        assert_eq!(w.hosts[0].weight, 0.25);
        assert_eq!(w.hosts[1].weight, 0.75);
        // Without locality weighting the host-set order and equal shares apply.
        let flat = NormalizedWeights::compute(&set, false, false);
        assert_eq!(flat.hosts.len(), 3);
        assert_eq!(flat.hosts[0].index, 0);
    }
}
