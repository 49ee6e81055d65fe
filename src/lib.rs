//! a2a-affinity: route every turn of an A2A conversation to the same replica.
//!
//! The filter reads the A2A request body as it streams in, finds the
//! contextId for the binding and protocol version in use, and sets a header
//! that Envoy's RING_HASH or MAGLEV load balancer hashes. Everything but
//! `filter` (the proxy-wasm glue) is plain Rust that runs and is tested on
//! the host target.

pub mod a2a;
pub mod config;
pub mod extract;
pub mod grpc;
pub mod host;
pub mod learn;
pub mod mint;
pub mod request;
pub mod scan;
pub mod stats;

#[cfg(target_arch = "wasm32")]
mod filter;
