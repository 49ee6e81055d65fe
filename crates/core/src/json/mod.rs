//! The JSON codec and the JSON bindings (JSON-RPC and HTTP+JSON): the
//! incremental path scanner, its string-skip kernels, request extraction
//! and response learning.

pub mod request;
pub mod response;
pub mod scan;
mod skip;

#[doc(hidden)]
pub use skip::Kernel as StringSkipKernel;
pub use skip::KERNEL_ENV as STRING_KERNEL_ENV;

/// The string-skip kernel this process runs, as the shells log it at load:
/// `avx512`, `avx2` or `sse2` on x86-64 (the largest the CPU has, capped by
/// [`STRING_KERNEL_ENV`] when that is set, which the text then names),
/// `simd128` in the Wasm filter, `swar` elsewhere.
pub fn string_kernel() -> String {
    skip::kernel_in_use()
}

/// Steps over plain string contents from `at` as the filter's scanner does,
/// with the kernel this process chose; returns where the contents stop
/// being plain (a quote, a control character, an escape left to the
/// caller, or the chunk's end). Not part of the API: the bench's floor
/// module (`bench/dynamic-floor`) runs it to price the scan alone.
#[doc(hidden)]
pub fn skip_string_contents(chunk: &[u8], at: usize) -> usize {
    skip::skip_plain(chunk, at)
}

/// The string-skip kernels this CPU can run, by name, each a function from
/// (bytes, start) to where string contents stop being plain. Not part of the
/// API: the kernel benchmark (`bench/benches/scan.rs`) times them.
#[doc(hidden)]
pub fn string_skip_kernels() -> Vec<StringSkipKernel> {
    skip::kernels()
}
