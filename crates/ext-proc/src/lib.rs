//! a2a-affinity as an Envoy ext_proc server: the same sans-IO core as the
//! Wasm filter, driven by the messages of Envoy's external processing
//! protocol (`envoy.service.ext_proc.v3`) instead of proxy-wasm callbacks.
//! For gateways that cannot load Wasm (kgateway) and any that speaks
//! ext_proc.
//!
//! - `shell`: one gRPC stream (one HTTP request) turned into calls on the
//!   core's `Stream`, and its decisions into `ProcessingResponse`s;
//! - `store`: the learned-task stores (in-process, Redis);
//! - `server`: the gRPC and metrics servers and their shutdown;
//! - `metrics`, `settings`, `logger`: counters and histograms, flags, and
//!   a stderr `log` backend.

pub mod logger;
pub mod metrics;
pub mod server;
pub mod settings;
pub mod shell;
pub mod store;

pub use server::{start, Running};
pub use settings::{Flags, Settings, TaskStoreSetting};
