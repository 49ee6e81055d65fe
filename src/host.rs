//! The Wasm shell's view of Envoy, in proxy-wasm's terms: serialized header
//! maps, bodies read by offset from Envoy's buffer and replaced whole,
//! shared data. `filter` implements it over the proxy-wasm host calls;
//! tests implement it in memory (the testkit's `wasm::MockHost`), so the
//! shell's own logic (read windows, header maps, the shared-data store)
//! runs on the host target too.

use a2a_affinity_core::stats::Counter;

/// A host call failed (Envoy answered with a status other than Ok).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostError(pub &'static str);

pub trait Host {
    /// Every request header, serialized as Envoy hands the map over
    /// (`proxy_get_header_map_pairs`, read with [`first_values`]); empty if
    /// the host could not. One host call for all names: a call per name
    /// would enter the VM twice each (once for the call, once to allocate
    /// the answer).
    fn request_header_map(&self) -> Vec<u8>;
    /// Removes every value of a request header, then adds `value`: Envoy
    /// hashes all values of a repeated header, so appending would let a
    /// client-sent value change the hash.
    fn replace_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError>;
    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError>;
    /// `len` bytes of the buffered request body from `start`.
    fn request_body(&self, start: usize, len: usize) -> Result<Vec<u8>, HostError>;
    /// Replaces the `buffered` bytes held so far with `data`.
    fn replace_request_body(&mut self, buffered: usize, data: &[u8]) -> Result<(), HostError>;
    /// Every response header, serialized (see `request_header_map`).
    fn response_header_map(&self) -> Vec<u8>;
    /// `len` bytes of the response body chunk from `start`.
    fn response_body(&self, start: usize, len: usize) -> Result<Vec<u8>, HostError>;
    fn count(&mut self, counter: Counter);
    fn random(&mut self, buf: &mut [u8; 16]) -> Result<(), HostError>;
    /// Seconds since the Unix epoch.
    fn now_secs(&self) -> u64;
    /// A value in the store every worker of this Envoy shares.
    fn shared_get(&self, key: &str) -> Option<Vec<u8>>;
    fn shared_set(&mut self, key: &str, value: &[u8]) -> Result<(), HostError>;
}

/// The first value of each of `names` in a header map as the proxy-wasm ABI
/// serializes it (`proxy_get_header_map_pairs`): a little-endian u32 pair
/// count, then a u32 name length and a u32 value length per pair, then each
/// name and value followed by a NUL. A map that does not parse yields `None`
/// for every name, as if no header were there. The values borrow from the
/// map: reading headers allocates nothing.
pub fn first_values<'m, const N: usize>(map: &'m [u8], names: [&str; N]) -> [Option<&'m [u8]>; N] {
    parse_first_values(map, names).unwrap_or([None; N])
}

fn parse_first_values<'m, const N: usize>(
    map: &'m [u8],
    names: [&str; N],
) -> Option<[Option<&'m [u8]>; N]> {
    let u32_at = |at: usize| -> Option<usize> {
        let bytes: [u8; 4] = map.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(bytes)).ok()
    };
    let count = u32_at(0)?;
    let mut sizes = 4usize;
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    if data > map.len() {
        return None;
    }
    let mut found = [None; N];
    for _ in 0..count {
        let name_len = u32_at(sizes)?;
        let value_len = u32_at(sizes + 4)?;
        sizes += 8;
        let name = map.get(data..data.checked_add(name_len)?)?;
        data += name_len;
        if map.get(data) != Some(&0) {
            return None;
        }
        data += 1;
        let value = map.get(data..data.checked_add(value_len)?)?;
        data += value_len;
        if map.get(data) != Some(&0) {
            return None;
        }
        data += 1;
        for (want, slot) in names.iter().zip(found.iter_mut()) {
            if slot.is_none() && want.as_bytes() == name {
                *slot = Some(value);
            }
        }
    }
    // Only a map that parses to its end counts.
    (data == map.len()).then_some(found)
}

/// Serializes header pairs the way Envoy does for
/// `proxy_get_header_map_pairs`: what in-memory hosts hand the filter.
pub fn serialize_pairs<'a>(
    pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])> + Clone,
) -> Vec<u8> {
    let count = pairs.clone().into_iter().count();
    let mut out = Vec::new();
    out.extend_from_slice(&u32::try_from(count).unwrap_or(u32::MAX).to_le_bytes());
    for (name, value) in pairs.clone() {
        out.extend_from_slice(&u32::try_from(name.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&u32::try_from(value.len()).unwrap_or(u32::MAX).to_le_bytes());
    }
    for (name, value) in pairs {
        out.extend_from_slice(name);
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{first_values, serialize_pairs};

    fn serialize(pairs: &[(&str, &[u8])]) -> Vec<u8> {
        serialize_pairs(pairs.iter().map(|(n, v)| (n.as_bytes(), *v)))
    }

    #[test]
    fn serializes_as_envoy_does() {
        let map = serialize(&[("ab", b"c"), ("d", b"")]);
        let mut want = 2u32.to_le_bytes().to_vec();
        for n in [2u32, 1, 1, 0] {
            want.extend_from_slice(&n.to_le_bytes());
        }
        want.extend_from_slice(b"ab\0c\0d\0\0");
        assert_eq!(map, want);
    }

    #[test]
    fn finds_the_first_value_of_each_name() {
        let map = serialize(&[
            (":method", b"POST"),
            (":path", b"/"),
            ("content-type", b"application/json"),
            ("x-context-id", b"one"),
            ("x-context-id", b"two"),
            ("empty", b""),
        ]);
        assert_eq!(
            first_values(
                &map,
                [
                    ":path",
                    "x-context-id",
                    "content-encoding",
                    "empty",
                    ":method"
                ]
            ),
            [
                Some(&b"/"[..]),
                Some(&b"one"[..]),
                None,
                Some(&b""[..]),
                Some(&b"POST"[..])
            ]
        );
        assert_eq!(first_values(&serialize(&[]), [":path"]), [None]);
    }

    #[test]
    fn a_map_that_does_not_parse_has_no_headers() {
        let map = serialize(&[(":method", b"POST"), (":path", b"/a")]);
        let names = [":method", ":path"];
        // Every truncation, every single-byte change to a length or a NUL,
        // and trailing bytes: no panic, and either the true values or none.
        for cut in 0..map.len() {
            assert_eq!(first_values(&map[..cut], names), [None, None], "cut {cut}");
        }
        let mut longer = map.clone();
        longer.push(0);
        assert_eq!(first_values(&longer, names), [None, None]);
        let truth = first_values(&map, names);
        for at in 0..map.len() {
            for byte in [0u8, 1, 0x7f, 0xff] {
                let mut bad = map.clone();
                if bad[at] == byte {
                    continue;
                }
                bad[at] = byte;
                let got = first_values(&bad, names);
                for (g, t) in got.iter().zip(&truth) {
                    // A changed value byte changes that value; anything
                    // else must be rejected as a whole.
                    assert!(
                        g.is_none() || g.map(<[u8]>::len) == t.map(<[u8]>::len),
                        "byte {at} = {byte:#x}: {got:?}"
                    );
                }
            }
        }
        assert_eq!(first_values(&u32::MAX.to_le_bytes(), names), [None, None]);
    }
}
