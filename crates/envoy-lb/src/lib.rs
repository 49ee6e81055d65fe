//! Envoy's consistent-hash host choice (`RING_HASH`, `MAGLEV`) and the route `hash_policy` that
//! feeds it, reproduced bit for bit so that operators and tests can predict which upstream a
//! request reaches.
//!
//! Pipeline (Envoy's `ThreadAwareLoadBalancerBase::LoadBalancerImpl::chooseHost`):
//! request → [`policy::HashPolicy::generate_hash`] → [`priority::PriorityLoads::choose_priority`]
//! → that priority's [`ring::Ring`] or [`maglev::MaglevTable`] → retry attempts.

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
