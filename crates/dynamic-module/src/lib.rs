//! a2a-affinity as an Envoy dynamic module (`envoy.filters.http.dynamic_modules`):
//! the same core as the Wasm filter, as a native shared library loaded into
//! Envoy's process.
//!
//! - `ffi`: the ABI by hand (types, Envoy's callbacks, the exported hooks);
//!   the only module with `unsafe` code;
//! - `host`: the shell's safe view of Envoy for one stream;
//! - `filter`: each hook turned into a call on the core's `Stream`, and the
//!   core's decisions applied;
//! - `store`: the learned tasks, shared by every worker thread;
//! - `readers`: the JSON readers of finished streams, kept for the next;
//! - `padded`: shards kept apart on their own cache lines;
//! - `logger`: the `log` backend over Envoy's log callback.

#[allow(unsafe_code)]
pub mod ffi;
pub mod filter;
pub mod host;
pub mod logger;
pub mod padded;
pub mod readers;
pub mod store;

#[cfg(test)]
#[allow(unsafe_code)]
mod fake_envoy;
#[cfg(test)]
mod tests;
