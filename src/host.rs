//! The filter's only view of Envoy. `filter` implements it over proxy-wasm
//! host calls; tests implement it in memory, so every decision the filter
//! makes runs on the host target.

use crate::stats::Counter;

/// A host call failed (Envoy answered with a status other than Ok).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostError(pub &'static str);

/// Log levels, as proxy-wasm defines them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
    /// Only for a panic, just before the VM aborts.
    Critical,
}

pub trait Host {
    /// The first value of a request header, if any.
    fn request_header(&self, name: &str) -> Option<Vec<u8>>;
    /// Removes every value of a request header, then adds `value`: Envoy
    /// hashes all values of a repeated header, so appending would let a
    /// client-sent value change the hash.
    fn replace_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError>;
    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError>;
    /// `len` bytes of the buffered request body from `start`.
    fn request_body(&self, start: usize, len: usize) -> Result<Vec<u8>, HostError>;
    /// Replaces the `buffered` bytes held so far with `data`.
    fn replace_request_body(&mut self, buffered: usize, data: &[u8]) -> Result<(), HostError>;
    /// The first value of a response header, if any.
    fn response_header(&self, name: &str) -> Option<Vec<u8>>;
    /// `len` bytes of the response body chunk from `start`.
    fn response_body(&self, start: usize, len: usize) -> Result<Vec<u8>, HostError>;
    fn count(&mut self, counter: Counter);
    fn log(&self, level: Level, message: &str);
    fn random(&mut self, buf: &mut [u8; 16]) -> Result<(), HostError>;
    /// Seconds since the Unix epoch.
    fn now_secs(&self) -> u64;
    /// A value in the store every worker of this Envoy shares.
    fn shared_get(&self, key: &str) -> Option<Vec<u8>>;
    fn shared_set(&mut self, key: &str, value: &[u8]) -> Result<(), HostError>;
}
