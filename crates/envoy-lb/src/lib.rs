//! Envoy's consistent-hash host choice (`RING_HASH`, `MAGLEV`) and the route `hash_policy` that
//! feeds it, reproduced bit for bit so that operators and tests can predict which upstream a
//! request reaches.
//!
//! Pipeline (Envoy's `ThreadAwareLoadBalancerBase::LoadBalancerImpl::chooseHost`):
//! request → [`policy::HashPolicy::generate_hash`] → [`priority::PriorityLoads::choose_priority`]
//! → that priority's [`ring::Ring`] or [`maglev::MaglevTable`] → retry attempts.
//!
//! ```
//! use envoy_lb::{ClusterConfig, HashingLoadBalancer, Host, HashPolicy, LbPolicy, MaglevConfig, Request};
//! # fn main() -> Result<(), envoy_lb::LbError> {
//!
//! let hosts = ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"]
//!     .iter().map(|a| Host::new(a)).collect::<Result<Vec<_>, _>>()?;
//! let lb = HashingLoadBalancer::with_hosts(
//!     ClusterConfig::new(LbPolicy::Maglev(MaglevConfig::default())), hosts)?;
//! let hash = HashPolicy::header("x-context-id")
//!     .generate_hash(&Request::default().with_header("x-context-id", "user-42"));
//! let host = hash.and_then(|h| lb.choose_host(h)).map(|c| &c.host.address); // 10.0.0.3:8080
//! assert_eq!(host.map(String::as_str), Some("10.0.0.3:8080"));
//! # Ok(())
//! # }
//! ```

pub mod error;
pub mod hash;
pub mod host;
pub mod lb;
pub mod maglev;
pub mod policy;
pub mod priority;
pub mod ring;

pub use error::LbError;
pub use hash::HashFunction;
pub use host::{Health, Host, HostSet, Locality};
pub use lb::{ClusterConfig, HashingLoadBalancer, LbPolicy};
pub use maglev::MaglevConfig;
pub use policy::{HashMethod, HashPolicy, Request};
pub use priority::PriorityConfig;
pub use ring::RingHashConfig;
