//! Typed errors: every way a configuration or host set can be rejected.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LbError {
    /// `maglev.proto`: `table_size` must be at most 5000011.
    MaglevTableTooLarge { table_size: u64 },
    /// `maglev_lb.cc`: "The table size of maglev must be prime number".
    MaglevTableNotPrime { table_size: u64 },
    /// `ring_hash.proto`: both sizes are at most 8M.
    RingSizeTooLarge { field: &'static str, value: u64 },
    /// `ring_hash_lb.cc`: "ring hash: minimum_ring_size (..) > maximum_ring_size (..)".
    RingSizeInverted { minimum: u64, maximum: u64 },
    /// `LbEndpoint.load_balancing_weight` must be at least 1.
    ZeroHostWeight { host: String },
    /// Envoy validates that the weights of one priority fit in a `uint32_t`.
    WeightSumOverflow { priority: u32 },
    /// A host address that is neither `ip:port` nor a pipe/internal address.
    BadAddress { address: String },
    /// Maglev stores host indices as 32-bit numbers.
    TooManyHosts,
    /// Overprovisioning factor must be positive.
    BadOverprovisioningFactor,
}

impl fmt::Display for LbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MaglevTableTooLarge { table_size } => {
                write!(f, "maglev table size {table_size} exceeds the maximum 5000011")
            }
            Self::MaglevTableNotPrime { table_size } => {
                write!(f, "maglev table size {table_size} is not a prime number")
            }
            Self::RingSizeTooLarge { field, value } => {
                write!(f, "{field} {value} exceeds the maximum 8388608")
            }
            Self::RingSizeInverted { minimum, maximum } => write!(
                f,
                "minimum ring size ({minimum}) > maximum ring size ({maximum})"
            ),
            Self::ZeroHostWeight { host } => write!(f, "host {host} has weight 0 (minimum 1)"),
            Self::WeightSumOverflow { priority } => write!(
                f,
                "the sum of host weights in priority {priority} exceeds 4294967295"
            ),
            Self::BadAddress { address } => write!(
                f,
                "'{address}' is not an address Envoy would print (ip:port, [ipv6]:port, a pipe path or envoy://...)"
            ),
            Self::TooManyHosts => write!(f, "too many hosts for one table (at most 4294967294)"),
            Self::BadOverprovisioningFactor => write!(f, "overprovisioning factor must be > 0"),
        }
    }
}

impl std::error::Error for LbError {}
