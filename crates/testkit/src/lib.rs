//! Test support for the a2a-affinity crates, in one place: an allocation
//! counter, UUID-shaped ids, A2A JSON and protobuf body builders, split points, an in-memory
//! `Env` for the core and (feature `wasm-shell`) an in-memory proxy-wasm
//! host for the Wasm shell.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod alloc;
pub mod bodies;
pub mod env;
pub mod ids;
pub mod logs;
pub mod ports;
pub mod proto;
pub mod splits;
#[cfg(feature = "wasm-shell")]
pub mod wasm;
