//! The shell's view of Envoy for one HTTP stream, in the terms of the
//! dynamic-module ABI: headers read and written by name, bodies as lists of
//! chunks that Envoy owns, the two kinds of body (what arrived in this
//! callback, and what the filter chain holds), counters.
//!
//! `ffi` implements it over Envoy's callbacks; the values it returns borrow
//! Envoy's memory and so live only as long as the `&self` they come from:
//! any write (`&mut self`) ends them, as the ABI requires.

use a2a_affinity_core::stats::Counter;
use smallvec::SmallVec;

/// Header entries kept inline (a request's map has about ten).
const INLINE_HEADERS: usize = 24;
/// Body chunks kept inline (Envoy's buffers hold a few slices each).
const INLINE_CHUNKS: usize = 8;

/// The chunks of a body, in order, as Envoy lends them for one hook.
pub type Chunks<'a> = SmallVec<[&'a [u8]; INLINE_CHUNKS]>;

/// Which body a body call reads or changes (the ABI's
/// `envoy_dynamic_module_type_http_body_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// The request bytes that arrived with this body callback.
    ReceivedRequest,
    /// The request bytes the filter chain holds (what earlier callbacks
    /// answered with "stop and buffer").
    BufferedRequest,
    ReceivedResponse,
    BufferedResponse,
}

/// Which header map a header call uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Headers {
    Request,
    Response,
}

/// Every entry of one header map, as Envoy lends them for one hook: read
/// with one call however many headers the filter looks at, where Envoy's
/// single-header lookup copies and checks the name and searches the map
/// anew for each.
#[derive(Debug, Default)]
pub struct HeaderList<'a> {
    entries: SmallVec<[(&'a [u8], &'a [u8]); INLINE_HEADERS]>,
}

impl<'a> HeaderList<'a> {
    pub fn new(entries: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> Self {
        HeaderList {
            entries: entries.into_iter().collect(),
        }
    }

    /// The first value of header `name`, if present. `name` is in lower
    /// case, as Envoy keeps every header name; a key is matched without
    /// regard to its case all the same.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        let name = name.as_bytes();
        self.entries
            .iter()
            .find(|(key, _)| {
                key.len() == name.len()
                    && key
                        .iter()
                        .zip(name)
                        .all(|(k, n)| k.to_ascii_lowercase() == *n)
            })
            .map(|&(_, value)| value)
    }
}

pub trait Host {
    /// Every header of a map, in Envoy's order (empty when the stream has
    /// no such map now, or Envoy cannot hand it over).
    fn headers(&self, map: Headers) -> HeaderList<'_>;
    /// Replaces every value of the request header `name` with `value`.
    fn set_request_header(&mut self, name: &str, value: &[u8]) -> bool;
    /// Removes every value of the request header `name`.
    fn remove_request_header(&mut self, name: &str) -> bool;
    /// Stores `value` in the stream's filter state as the object of
    /// Envoy's factory `factory` (which is also its key).
    fn set_filter_state(&mut self, factory: &str, value: &[u8]) -> bool;
    /// The chunks of a body, in order; empty when Envoy has no such body
    /// now (no buffer yet, or a received body outside a body callback).
    /// `None` if Envoy handed over a chunk that cannot be read.
    fn body_chunks(&self, body: Body) -> Option<Chunks<'_>>;
    /// The bytes in a body (0 if Envoy has none).
    fn body_size(&self, body: Body) -> usize;
    /// Whether the received request body of this callback *is* the buffered
    /// one (a filter before this one held the body and let it go at once),
    /// so reading both would see the same bytes twice.
    fn received_is_buffered(&self, request: bool) -> bool;
    fn append_body(&mut self, body: Body, data: &[u8]) -> bool;
    /// Removes `len` bytes from the front of a body.
    fn drain_body(&mut self, body: Body, len: usize) -> bool;
    /// The stream's buffer limit in bytes; 0 if Envoy sets none.
    fn buffer_limit(&self) -> u64;
    /// Sets the stream's buffer limit (the test-only `fault-probe` build;
    /// a host that cannot set one ignores it).
    #[cfg(feature = "fault-probe")]
    fn set_buffer_limit(&mut self, limit: u64) {
        let _ = limit;
    }
    fn count(&mut self, counter: Counter);
}

#[cfg(test)]
mod tests {
    use super::HeaderList;

    #[test]
    fn first_value_of_a_name_in_any_case() {
        let list = HeaderList::new(vec![
            (&b":method"[..], &b"POST"[..]),
            (b"x-context-id", b"first"),
            (b"X-Context-Id", b"second"),
            (b"X-Context-I", b"shorter"),
        ]);
        assert_eq!(list.get("x-context-id"), Some(&b"first"[..]));
        assert_eq!(list.get(":method"), Some(&b"POST"[..]));
        assert_eq!(list.get("x-context-i"), Some(&b"shorter"[..]));
        assert_eq!(list.get("content-type"), None);
        assert_eq!(HeaderList::default().get(":method"), None);
    }
}
