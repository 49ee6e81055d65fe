//! Hash primitives exactly as Envoy computes them (`source/common/common/hash.{h,cc}`).

/// Seed Envoy passes to `MurmurHash::murmurHash2` (libstdc++'s `_Hash_bytes` seed).
pub const STD_HASH_SEED: u64 = 0xc70f_6907;

/// Hash function used for ring entries (`RingHash.hash_function`).
///
/// Only `MURMUR_HASH_2` selects Murmur; `DEFAULT_HASH` and `XX_HASH` both mean XXH64 seed 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HashFunction {
    #[default]
    XxHash,
    MurmurHash2,
}

impl HashFunction {
    pub fn hash(self, bytes: &[u8]) -> u64 {
        match self {
            Self::XxHash => xx_hash64(bytes, 0),
            Self::MurmurHash2 => murmur_hash2(bytes, STD_HASH_SEED),
        }
    }
}

/// `HashUtil::xxHash64`: classic XXH64 (not XXH3).
pub fn xx_hash64(bytes: &[u8], seed: u64) -> u64 {
    xxhash_rust::xxh64::xxh64(bytes, seed)
}

/// `HashUtil::xxHash64(absl::Span<absl::string_view>)`: each value's hash seeds the next one.
/// This is not the hash of the concatenation; an empty list yields the seed itself.
pub fn xx_hash64_chain<I, B>(values: I, seed: u64) -> u64
where
    I: IntoIterator<Item = B>,
    B: AsRef<[u8]>,
{
    values
        .into_iter()
        .fold(seed, |acc, value| xx_hash64(value.as_ref(), acc))
}

/// `MurmurHash::murmurHash2`: MurmurHash64A with little-endian block and tail loads, which is
/// what Envoy reads on every platform because `hash.h` byte-swaps with `htole64`.
pub fn murmur_hash2(bytes: &[u8], seed: u64) -> u64 {
    const MUL: u64 = 0xc6a4_a793_5bd1_e995;
    let shift_mix = |v: u64| v ^ (v >> 47);
    let len = bytes.len() as u64;
    let mut hash = seed ^ len.wrapping_mul(MUL);
    let mut blocks = bytes.chunks_exact(8);
    for block in &mut blocks {
        let mut word = [0u8; 8];
        word.copy_from_slice(block);
        let data = shift_mix(u64::from_le_bytes(word).wrapping_mul(MUL)).wrapping_mul(MUL);
        hash ^= data;
        hash = hash.wrapping_mul(MUL);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let mut word = [0u8; 8];
        for (dst, src) in word.iter_mut().zip(tail) {
            *dst = *src;
        }
        hash ^= u64::from_le_bytes(word);
        hash = hash.wrapping_mul(MUL);
    }
    hash = shift_mix(hash).wrapping_mul(MUL);
    shift_mix(hash)
}

/// `Hex::uint64ToHex`: 16 lower-case digits, as used in generated cookie values.
pub fn uint64_to_hex(value: u64) -> String {
    format!("{value:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    // test/common/common/hash_test.cc
    #[test]
    fn xx_hash64_matches_envoy_vectors() {
        assert_eq!(xx_hash64(b"foo", 0), 3728699739546630719);
        assert_eq!(xx_hash64(b"bar", 0), 5234164152756840025);
        assert_eq!(xx_hash64(b"foo\nbar", 0), 8917841378505826757);
        assert_eq!(xx_hash64(b"lyft", 0), 4400747396090729504);
        assert_eq!(xx_hash64(b"", 0), 17241709254077376921);
    }

    #[test]
    fn chained_hash_is_not_hash_of_concatenation() {
        assert_eq!(xx_hash64_chain(["foo", "bar"], 0), 17745830980996999794);
        assert_eq!(xx_hash64(b"foobar", 0), 11721187498075204345);
        assert_eq!(xx_hash64_chain(["foo"], 0), xx_hash64(b"foo", 0));
        assert_eq!(xx_hash64_chain(Vec::<&str>::new(), 0), 0);
    }

    #[test]
    fn murmur_hash2_matches_envoy_vectors() {
        let h = |s: &str| murmur_hash2(s.as_bytes(), STD_HASH_SEED);
        assert_eq!(h("foo"), 9631199822919835226);
        assert_eq!(h("bar"), 11474628671133349555);
        assert_eq!(h("foo\nbar"), 16306510975912980159);
        assert_eq!(h("lyft"), 12847078931730529320);
        assert_eq!(h(""), 6142509188972423790);
    }

    #[test]
    fn murmur_hash2_covers_full_blocks_and_tails() {
        // The ring-hash Murmur vectors (ring.rs) hash 15-byte keys: one block plus a 7-byte tail.
        assert_ne!(
            murmur_hash2(b"12345678", STD_HASH_SEED),
            murmur_hash2(b"1234567", STD_HASH_SEED)
        );
    }

    #[test]
    fn hex_is_zero_padded_lower_case() {
        assert_eq!(uint64_to_hex(0xab), "00000000000000ab");
        assert_eq!(uint64_to_hex(u64::MAX), "ffffffffffffffff");
    }
}
