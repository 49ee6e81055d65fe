//! The JSON codec and the JSON bindings (JSON-RPC and HTTP+JSON): the
//! incremental path scanner, its string-skip kernels, request extraction
//! and response learning.

pub mod request;
pub mod response;
pub mod scan;
mod skip;
