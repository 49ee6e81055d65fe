//! The decisions of a2a-affinity, free of any host: which A2A request this
//! is, where its contextId or taskId lives, what to do about it.
//!
//! The core is sans-IO, in the manner of quinn-proto or rustls: a host
//! (the proxy-wasm module, the Envoy dynamic module, the ext_proc server)
//! pushes in the request head and body bytes as they arrive, the response
//! head and body, and the time and random bytes it owns; the core answers
//! with what to do (continue or wait for more body, set or remove the hash
//! header, edit the body) and which outcome to count. It never calls a
//! host, reads a clock or draws random numbers itself, so every decision
//! runs, and is tested, on any target.
//!
//! Layers, each using only those above it in this list:
//! - `a2a`: the protocol's words (versions, operations, method names);
//! - `json` and `proto`: the codecs (incremental JSON path scanner,
//!   protobuf frame walker);
//! - `verdict`: what a body says about routing;
//! - `json::request`, `json::response`, `grpc`: the bindings;
//! - `classify`: which binding a request is, from its head;
//! - `mint`, `store`, `config`, `stats`: first-turn edits, the task store
//!   interface, the configuration, the counters;
//! - `task_id`: task ids that carry their contextId;
//! - `spare`: readers of finished streams, kept for the next;
//! - `stream`: one HTTP stream's state machine.

pub mod a2a;
pub mod classify;
pub mod config;
pub mod grpc;
pub mod json;
pub mod mint;
pub mod proto;
pub mod spare;
pub mod stats;
pub mod store;
pub mod stream;
pub mod task_id;
pub mod verdict;
