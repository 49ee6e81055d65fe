//! The JSON codec and the JSON bindings (JSON-RPC and HTTP+JSON): the
//! incremental path scanner, its string-skip kernels, request extraction
//! and response learning.

pub mod request;
pub mod response;
pub mod scan;
mod skip;

#[doc(hidden)]
pub use skip::Kernel as StringSkipKernel;

/// The string-skip kernels this CPU can run, by name, each a function from
/// (bytes, start) to where string contents stop being plain. Not part of the
/// API: the kernel benchmark (`bench/benches/scan.rs`) times them.
#[doc(hidden)]
pub fn string_skip_kernels() -> Vec<StringSkipKernel> {
    skip::kernels()
}
