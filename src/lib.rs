//! a2a-affinity: route every turn of an A2A conversation to the same replica.
//!
//! The filter reads the A2A request body as it streams in, finds the
//! contextId for the binding and protocol version in use, and sets a header
//! that Envoy's RING_HASH or MAGLEV load balancer hashes. Everything here but
//! `filter` is plain Rust that runs and is tested on the host target.

pub mod scan;
