//! Per-priority load, panic mode and the priority a hash selects
//! (`source/extensions/load_balancing_policies/common/load_balancer_impl.cc`).

use crate::host::{Health, HostSet};

/// `LoadBalancerBase` knobs that matter for a hashed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PriorityConfig {
    /// `overprovisioning_factor` of the ClusterLoadAssignment policy, default 140.
    pub overprovisioning_factor: u32,
    /// `healthy_panic_threshold` (percent), default 50; capped at 100 like Envoy.
    pub panic_threshold: u32,
    /// `weighted_priority_health`: sums of weights instead of host counts.
    pub weighted_priority_health: bool,
}

impl Default for PriorityConfig {
    fn default() -> Self {
        Self {
            overprovisioning_factor: 140,
            panic_threshold: 50,
            weighted_priority_health: false,
        }
    }
}

/// `HealthyLoad`, `DegradedLoad` and the per-priority panic flags.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PriorityLoads {
    pub healthy: Vec<u32>,
    pub degraded: Vec<u32>,
    pub panic: Vec<bool>,
}

impl PriorityLoads {
    /// `recalculatePerPriorityState` for every priority, then `recalculatePerPriorityPanic`.
    pub fn compute(priorities: &[HostSet], config: &PriorityConfig) -> Self {
        let n = priorities.len().max(1);
        let mut loads = Self {
            healthy: vec![0; n],
            degraded: vec![0; n],
            panic: vec![false; n],
        };
        let factor = u64::from(config.overprovisioning_factor);
        let mut health = vec![0u32; n];
        let mut degraded = vec![0u32; n];
        for (p, set) in priorities.iter().enumerate() {
            if set.hosts.is_empty() {
                continue;
            }
            let (healthy_w, degraded_w, total_w) = if config.weighted_priority_health {
                let sum = |f: &dyn Fn(Health) -> bool| -> u64 {
                    set.hosts
                        .iter()
                        .filter(|h| f(h.health))
                        .map(|h| u64::from(h.weight))
                        .sum()
                };
                (
                    sum(&|h| h == Health::Healthy),
                    sum(&|h| h == Health::Degraded),
                    sum(&|_| true),
                )
            } else {
                (
                    set.healthy_count() as u64,
                    set.degraded_count() as u64,
                    set.hosts.len() as u64,
                )
            };
            if let Some(slot) = health.get_mut(p) {
                *slot = (factor * healthy_w / total_w).min(100) as u32;
            }
            if let Some(slot) = degraded.get_mut(p) {
                *slot = (factor * degraded_w / total_w).min(100) as u32;
            }
        }
        let total_availability =
            (health.iter().sum::<u32>() + degraded.iter().sum::<u32>()).min(100);
        if total_availability > 0 {
            let (first_healthy, remaining) =
                distribute_load(&mut loads.healthy, &health, 100, total_availability);
            let (first_degraded, remaining) = distribute_load(
                &mut loads.degraded,
                &degraded,
                remaining,
                total_availability,
            );
            // Rounding leftovers go to the first priority that has any availability.
            if remaining != 0 {
                let target = match (first_healthy, first_degraded) {
                    (Some(p), _) => loads.healthy.get_mut(p),
                    (None, Some(p)) => loads.degraded.get_mut(p),
                    (None, None) => None,
                };
                if let Some(slot) = target {
                    *slot += remaining;
                }
            }
        }
        let threshold = config.panic_threshold.min(100);
        if total_availability == 0 && threshold == 0 {
            // Panic disabled and nothing available: everything goes to P0, which fails.
            loads.healthy.fill(0);
            loads.degraded.fill(0);
            if let Some(first) = loads.healthy.first_mut() {
                *first = 100;
            }
            return loads;
        }
        let mut total_panic = true;
        for (p, panic) in loads.panic.iter_mut().enumerate() {
            *panic = total_availability != 100
                && priorities
                    .get(p)
                    .is_none_or(|set| host_set_in_panic(set, threshold));
            total_panic &= *panic;
        }
        if total_panic {
            load_in_total_panic(&mut loads, priorities);
        }
        loads
    }

    /// `LoadBalancerBase::choosePriority`: `hash % 100 + 1` against the cumulative healthy
    /// loads, then the degraded ones.
    pub fn choose_priority(&self, hash: u64) -> u32 {
        let point = (hash % 100 + 1) as u32;
        let mut aggregate = 0u32;
        for (p, load) in self.healthy.iter().chain(self.degraded.iter()).enumerate() {
            aggregate += load;
            if point <= aggregate {
                return (p % self.healthy.len().max(1)) as u32;
            }
        }
        // Envoy reports IS_ENVOY_BUG and uses P0.
        0
    }
}

/// `distributeLoad`: each priority takes `availability * 100 / total`, capped by what is left.
fn distribute_load(
    load: &mut [u32],
    availability: &[u32],
    mut remaining: u32,
    total_availability: u32,
) -> (Option<usize>, u32) {
    let mut first_available = None;
    for (p, (slot, avail)) in load.iter_mut().zip(availability).enumerate() {
        if *avail > 0 && first_available.is_none() {
            first_available = Some(p);
        }
        *slot = remaining.min(avail * 100 / total_availability);
        remaining -= *slot;
    }
    (first_available, remaining)
}

/// `isHostSetInPanic`: healthy plus degraded percentage (by count) below the threshold.
fn host_set_in_panic(set: &HostSet, threshold: u32) -> bool {
    let count = set.hosts.len();
    let (healthy, degraded) = if count == 0 {
        (0.0, 0.0)
    } else {
        (
            100.0 * set.healthy_count() as f64 / count as f64,
            100.0 * set.degraded_count() as f64 / count as f64,
        )
    };
    healthy + degraded < f64::from(threshold)
}

/// `recalculateLoadInTotalPanic`: load proportional to host counts, remainder to the first
/// non-empty priority.
fn load_in_total_panic(loads: &mut PriorityLoads, priorities: &[HostSet]) {
    loads.healthy.fill(0);
    loads.degraded.fill(0);
    let total: usize = priorities.iter().map(|s| s.hosts.len()).sum();
    if total == 0 {
        if let Some(first) = loads.healthy.first_mut() {
            *first = 100;
        }
        return;
    }
    let mut remaining = 100u32;
    let mut first_non_empty = None;
    for (p, (slot, set)) in loads.healthy.iter_mut().zip(priorities).enumerate() {
        if first_non_empty.is_none() && !set.hosts.is_empty() {
            first_non_empty = Some(p);
        }
        *slot = (100 * set.hosts.len() / total) as u32;
        remaining -= *slot;
    }
    if let Some(slot) = first_non_empty.and_then(|p| loads.healthy.get_mut(p)) {
        *slot += remaining;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Host;

    fn set(healths: &[Health]) -> HostSet {
        HostSet::new(
            healths
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    Host::new(&format!("127.0.0.1:{}", 80 + i))
                        .unwrap()
                        .with_health(*h)
                })
                .collect(),
        )
    }

    use Health::{Degraded, Healthy, Unhealthy};

    #[test]
    fn single_healthy_priority_takes_everything() {
        let loads =
            PriorityLoads::compute(&[set(&[Healthy, Unhealthy])], &PriorityConfig::default());
        assert_eq!(loads.healthy, vec![100]);
        assert_eq!(loads.panic, vec![false]);
        assert_eq!(loads.choose_priority(99), 0);
    }

    // ring_hash_lb_test.cc: BasicFailover
    #[test]
    fn failover_to_p1() {
        let sets = [set(&[Unhealthy]), set(&[Healthy])];
        let loads = PriorityLoads::compute(&sets, &PriorityConfig::default());
        assert_eq!(loads.healthy, vec![0, 100]);
        assert_eq!(loads.choose_priority(0), 1);
        let sets = [set(&[Healthy, Unhealthy]), set(&[Healthy])];
        let loads = PriorityLoads::compute(&sets, &PriorityConfig::default());
        assert_eq!(loads.healthy, vec![70, 30]);
        assert_eq!(loads.choose_priority(69), 0);
        assert_eq!(loads.choose_priority(71), 1);
    }

    #[test]
    fn panic_when_below_threshold_but_not_when_fully_available() {
        // P0 at 20% healthy is in panic, P1 at 50% is not; availability 28 + 70 < 100.
        let sets = [
            set(&[Healthy, Unhealthy, Unhealthy, Unhealthy, Unhealthy]),
            set(&[Healthy, Unhealthy]),
        ];
        let loads = PriorityLoads::compute(&sets, &PriorityConfig::default());
        assert_eq!(loads.healthy, vec![29, 71]);
        assert_eq!(loads.panic, vec![true, false]);
        // Total availability 100 means no priority is in panic.
        let sets = [
            set(&[Healthy, Unhealthy, Unhealthy]),
            set(&[Healthy, Healthy]),
        ];
        let loads = PriorityLoads::compute(&sets, &PriorityConfig::default());
        assert_eq!(loads.panic, vec![false, false]);
    }

    #[test]
    fn total_panic_splits_by_host_count() {
        let sets = [set(&[Unhealthy]), set(&[Unhealthy, Unhealthy])];
        let loads = PriorityLoads::compute(&sets, &PriorityConfig::default());
        assert_eq!(loads.panic, vec![true, true]);
        assert_eq!(loads.healthy, vec![34, 66]);
        let no_panic = PriorityConfig {
            panic_threshold: 0,
            ..PriorityConfig::default()
        };
        let loads = PriorityLoads::compute(&sets, &no_panic);
        assert_eq!(loads.healthy, vec![100, 0]);
        assert_eq!(loads.panic, vec![false, false]);
    }

    #[test]
    fn degraded_hosts_receive_leftover_load() {
        let sets = [set(&[Degraded]), set(&[Unhealthy, Unhealthy])];
        let loads = PriorityLoads::compute(&sets, &PriorityConfig::default());
        assert_eq!(loads.healthy, vec![0, 0]);
        assert_eq!(loads.degraded, vec![100, 0]);
        assert_eq!(loads.choose_priority(5), 0);
    }

    #[test]
    fn weighted_priority_health_uses_weights() {
        let mut p0 = set(&[Healthy, Unhealthy]);
        p0.hosts[1].weight = 3;
        let sets = [p0, set(&[Healthy])];
        let config = PriorityConfig {
            weighted_priority_health: true,
            ..PriorityConfig::default()
        };
        let loads = PriorityLoads::compute(&sets, &config);
        // 140 * 1 / 4 = 35.
        assert_eq!(loads.healthy, vec![35, 65]);
    }
}
