//! a2a-affinity as a proxy-wasm module: route every turn of an A2A
//! conversation to the same replica.
//!
//! The decisions are `a2a_affinity_core`'s; this crate is the shell that
//! runs them inside Envoy's Wasm VM: `filter` speaks the proxy-wasm ABI
//! (and only compiles for wasm32), `host` is its view of Envoy, `stream`
//! turns each callback into a call on the core, `shared_store` keeps the
//! learned tasks in Envoy's shared data, `logger` sends the core's log
//! lines to `proxy_log`.

pub mod host;
pub mod logger;
pub mod shared_store;
pub mod stream;

#[cfg(target_arch = "wasm32")]
mod filter;
