//! The thread-aware hashing load balancer: priority choice, per-priority ring or Maglev table,
//! and the host-selection retry loop
//! (`ThreadAwareLoadBalancerBase::LoadBalancerImpl::chooseHost`).

use crate::error::LbError;
use crate::host::{Host, HostSet, NormalizedWeights};
use crate::maglev::{MaglevConfig, MaglevTable};
use crate::priority::{PriorityConfig, PriorityLoads};
use crate::ring::{Ring, RingHashConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum LbPolicy {
    RingHash(RingHashConfig),
    Maglev(MaglevConfig),
}

impl LbPolicy {
    pub fn validate(&self) -> Result<(), LbError> {
        match self {
            Self::RingHash(c) => c.validate(),
            Self::Maglev(c) => c.validate(),
        }
    }
}

/// The cluster settings that decide the host for a hashed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ClusterConfig {
    pub policy: LbPolicy,
    /// `consistent_hashing_lb_config.use_hostname_for_hashing`.
    pub use_hostname_for_hashing: bool,
    /// `locality_weighted_lb_config` is set.
    pub locality_weighted: bool,
    pub priority: PriorityConfig,
}

impl ClusterConfig {
    pub fn new(policy: LbPolicy) -> Self {
        Self {
            policy,
            use_hostname_for_hashing: false,
            locality_weighted: false,
            priority: PriorityConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashTable {
    Ring(Ring),
    Maglev(MaglevTable),
}

impl HashTable {
    pub fn choose(&self, hash: u64, attempt: u32) -> Option<usize> {
        match self {
            Self::Ring(r) => r.choose(hash, attempt),
            Self::Maglev(m) => m.choose(hash, attempt),
        }
    }

    /// Entries per host index in the table (ring entries or Maglev slots).
    pub fn entries_per_host(&self, host_count: usize) -> Vec<u64> {
        let mut counts = vec![0u64; host_count];
        match self {
            Self::Ring(r) => {
                for e in r.entries() {
                    if let Some(c) = counts.get_mut(e.host) {
                        *c += 1;
                    }
                }
            }
            Self::Maglev(m) => {
                for (host, count) in m.entries_per_host() {
                    if let Some(c) = counts.get_mut(*host) {
                        *c += count;
                    }
                }
            }
        }
        counts
    }

    /// Envoy's `min_hashes_per_host`/`max_hashes_per_host` (ring) or
    /// `min_entries_per_host`/`max_entries_per_host` (Maglev) gauges.
    pub fn min_max_stat(&self) -> (u64, u64) {
        match self {
            Self::Ring(r) => (r.min_hashes_per_host(), r.max_hashes_per_host()),
            Self::Maglev(m) => (m.min_entries_per_host(), m.max_entries_per_host()),
        }
    }

    /// Ring `size` stat or Maglev table size.
    pub fn size(&self) -> u64 {
        match self {
            Self::Ring(r) => r.size_stat(),
            Self::Maglev(m) => m.table_size(),
        }
    }
}

/// `PerPriorityState`.
#[derive(Debug, Clone, PartialEq)]
pub struct PriorityState {
    pub hosts: HostSet,
    pub panic: bool,
    pub weights: NormalizedWeights,
    pub table: HashTable,
}

/// A host chosen for a hash: where it sits and which retry attempt produced it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Choice<'a> {
    pub priority: u32,
    pub index: usize,
    pub attempt: u32,
    pub host: &'a Host,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HashingLoadBalancer {
    config: ClusterConfig,
    loads: PriorityLoads,
    priorities: Vec<PriorityState>,
}

impl HashingLoadBalancer {
    /// Builds one table per priority from that priority's healthy hosts, or all of its hosts
    /// while it is in panic, exactly as `ThreadAwareLoadBalancerBase::refresh` does.
    pub fn new(config: ClusterConfig, priorities: Vec<HostSet>) -> Result<Self, LbError> {
        config.policy.validate()?;
        if config.priority.overprovisioning_factor == 0 {
            return Err(LbError::BadOverprovisioningFactor);
        }
        for (p, set) in priorities.iter().enumerate() {
            set.validate(p as u32)?;
        }
        let loads = PriorityLoads::compute(&priorities, &config.priority);
        let mut states = Vec::with_capacity(priorities.len());
        for (p, hosts) in priorities.into_iter().enumerate() {
            let panic = loads.panic.get(p).copied().unwrap_or(false);
            let weights = NormalizedWeights::compute(&hosts, panic, config.locality_weighted);
            let hostname = config.use_hostname_for_hashing;
            let table = match &config.policy {
                LbPolicy::RingHash(c) => {
                    HashTable::Ring(Ring::build(&hosts, &weights, hostname, c)?)
                }
                LbPolicy::Maglev(c) => {
                    HashTable::Maglev(MaglevTable::build(&hosts, &weights, hostname, c)?)
                }
            };
            states.push(PriorityState {
                hosts,
                panic,
                weights,
                table,
            });
        }
        Ok(Self {
            config,
            loads,
            priorities: states,
        })
    }

    /// Single priority, all hosts as given.
    pub fn with_hosts(config: ClusterConfig, hosts: Vec<Host>) -> Result<Self, LbError> {
        Self::new(config, vec![HostSet::new(hosts)])
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    pub fn loads(&self) -> &PriorityLoads {
        &self.loads
    }

    pub fn priorities(&self) -> &[PriorityState] {
        &self.priorities
    }

    /// The host for a request hash with no host-selection retries.
    pub fn choose_host(&self, hash: u64) -> Option<Choice<'_>> {
        self.choose_host_with_retries(hash, 0, |_| false)
    }

    /// The retry-host-predicate loop: up to `retry_count + 1` attempts with the same hash; the
    /// last host tried is returned when every attempt is rejected. The same hash also picks the
    /// priority, once.
    pub fn choose_host_with_retries(
        &self,
        hash: u64,
        retry_count: u32,
        mut reject: impl FnMut(&Host) -> bool,
    ) -> Option<Choice<'_>> {
        let priority = self.loads.choose_priority(hash);
        let state = self.priorities.get(priority as usize)?;
        let mut last = None;
        for attempt in 0..=retry_count {
            let index = state.table.choose(hash, attempt)?;
            let host = state.hosts.hosts.get(index)?;
            let choice = Choice {
                priority,
                index,
                attempt,
                host,
            };
            if !reject(host) {
                return Some(choice);
            }
            last = Some(choice);
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Health;

    fn ports(range: std::ops::RangeInclusive<u16>) -> Vec<Host> {
        range
            .map(|p| Host::new(&format!("127.0.0.1:{p}")).unwrap())
            .collect()
    }

    fn ring(min: u64) -> ClusterConfig {
        ClusterConfig::new(LbPolicy::RingHash(RingHashConfig {
            minimum_ring_size: min,
            ..RingHashConfig::default()
        }))
    }

    fn maglev(m: u64) -> ClusterConfig {
        ClusterConfig::new(LbPolicy::Maglev(MaglevConfig { table_size: m }))
    }

    fn addr(choice: Option<Choice<'_>>) -> &str {
        &choice.unwrap().host.address
    }

    // ring_hash_lb_test.cc: BasicWithRetryHostPredicate
    #[test]
    fn ring_retry_predicate() {
        let lb = HashingLoadBalancer::with_hosts(ring(12), ports(90..=95)).unwrap();
        assert_eq!(addr(lb.choose_host(0)), "127.0.0.1:94");
        let reject_94 = |h: &Host| h.address == "127.0.0.1:94";
        assert_eq!(
            addr(lb.choose_host_with_retries(0, 1, reject_94)),
            "127.0.0.1:92"
        );
        assert_eq!(
            addr(lb.choose_host_with_retries(0, 2, |_| true)),
            "127.0.0.1:90"
        );
        assert_eq!(
            addr(lb.choose_host_with_retries(0, 13, |_| true)),
            "127.0.0.1:92"
        );
    }

    // maglev_lb_test.cc: BasicWithRetryHostPredicate
    #[test]
    fn maglev_retry_predicate() {
        let lb = HashingLoadBalancer::with_hosts(maglev(7), ports(90..=95)).unwrap();
        assert_eq!(addr(lb.choose_host(10)), "127.0.0.1:91");
        let reject_91 = |h: &Host| h.address == "127.0.0.1:91";
        let choice = lb.choose_host_with_retries(10, 1, reject_91).unwrap();
        assert_eq!(
            (choice.host.address.as_str(), choice.attempt),
            ("127.0.0.1:90", 1)
        );
        assert_eq!(
            addr(lb.choose_host_with_retries(10, 2, |_| true)),
            "127.0.0.1:95"
        );
    }

    // ring_hash_lb_test.cc: BasicFailover
    #[test]
    fn failover_between_priorities() {
        let p0 = HostSet::new(vec![Host::new("127.0.0.1:80")
            .unwrap()
            .with_health(Health::Unhealthy)]);
        let p1 = HostSet::new(vec![Host::new("127.0.0.1:82").unwrap()]);
        let lb = HashingLoadBalancer::new(ring(12), vec![p0, p1]).unwrap();
        let choice = lb.choose_host(0).unwrap();
        assert_eq!(
            (choice.priority, choice.host.address.as_str()),
            (1, "127.0.0.1:82")
        );

        let p0 = HostSet::new(vec![
            Host::new("127.0.0.1:80").unwrap(),
            Host::new("127.0.0.1:81")
                .unwrap()
                .with_health(Health::Unhealthy),
        ]);
        let p1 = HostSet::new(vec![Host::new("127.0.0.1:82").unwrap()]);
        let lb = HashingLoadBalancer::new(ring(12), vec![p0, p1]).unwrap();
        assert_eq!(lb.loads().healthy, vec![70, 30]);
        let choice = lb.choose_host(69).unwrap();
        assert_eq!(
            (choice.priority, choice.host.address.as_str()),
            (0, "127.0.0.1:80")
        );
        assert_eq!(lb.choose_host(71).unwrap().priority, 1);
    }

    // maglev_lb_test.cc: LocalityWeightedGlobalPanic — panic builds from all hosts.
    #[test]
    fn panic_uses_all_hosts() {
        let hosts: Vec<Host> = ports(90..=95)
            .into_iter()
            .map(|h| h.with_health(Health::Unhealthy))
            .collect();
        let lb = HashingLoadBalancer::with_hosts(maglev(7), hosts).unwrap();
        assert!(lb.priorities()[0].panic);
        let healthy = HashingLoadBalancer::with_hosts(maglev(7), ports(90..=95)).unwrap();
        for hash in 0..7 {
            assert_eq!(addr(lb.choose_host(hash)), addr(healthy.choose_host(hash)));
        }
        // Below the threshold but above zero: the unhealthy hosts are left out.
        let mut hosts = ports(90..=95);
        hosts[0].health = Health::Unhealthy;
        let lb = HashingLoadBalancer::with_hosts(maglev(7), hosts).unwrap();
        assert!(!lb.priorities()[0].panic);
        assert!((0..7).all(|h| addr(lb.choose_host(h)) != "127.0.0.1:90"));
    }

    #[test]
    fn degraded_only_priority_yields_no_host() {
        let hosts = vec![Host::new("127.0.0.1:90")
            .unwrap()
            .with_health(Health::Degraded)];
        let lb = HashingLoadBalancer::with_hosts(ring(12), hosts).unwrap();
        assert!(lb.choose_host(1).is_none());
    }

    #[test]
    fn invalid_configs_are_rejected() {
        assert_eq!(
            HashingLoadBalancer::with_hosts(maglev(8), ports(90..=91)).err(),
            Some(LbError::MaglevTableNotPrime { table_size: 8 })
        );
        let zero = vec![Host::new("127.0.0.1:90").unwrap().with_weight(0)];
        assert!(matches!(
            HashingLoadBalancer::with_hosts(ring(12), zero),
            Err(LbError::ZeroHostWeight { .. })
        ));
    }
}
