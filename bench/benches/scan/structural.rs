//! A structural index of a JSON text, 64 bytes at a time: the first stage
//! of a parser shaped like simdjson, built here only to price that shape
//! against the filter's scanner (`SCAN_BENCH_INDEX=1`, scan.rs).
//!
//! For each 64-byte block it finds, with no branch per byte: the
//! backslashes and the quotes; which bytes an odd run of backslashes
//! escapes (carried into the next block); which bytes lie inside a string
//! (a prefix XOR of the unescaped quotes, by carry-less multiply); the
//! structural characters `{}[]:,` and whitespace (one table lookup each,
//! on the low nibble). It records the offset of every quote, of every
//! structural character outside strings, and of the first byte of every
//! number or literal. A second stage would walk those offsets instead of
//! the bytes.
//!
//! The index checks nothing (escapes, controls, grammar): a parser built
//! on it would still have to.

// The vector loads and the carry-less multiply are `std::arch` intrinsics.
#![allow(unsafe_code)]

/// Bytes of the block the index reads at a time.
const BLOCK: usize = 64;

/// What the index carries from one block to the next.
#[derive(Clone, Copy, Debug, Default)]
struct Carry {
    /// The block ended in an odd run of backslashes: its next byte is
    /// escaped.
    escaped: u64,
    /// All ones when the block ended inside a string.
    in_string: u64,
    /// The block ended inside a number or literal.
    scalar: u64,
}

/// The offsets of `text`'s structural bytes, in order, into `out`
/// (cleared first).
pub fn index(text: &[u8], out: &mut Vec<u32>) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("pclmulqdq")
    {
        // SAFETY: the CPU has both (checked above).
        return unsafe { index_avx2(text, out) };
    }
    index_portable(text, out);
}

/// The index without vector instructions.
fn index_portable(text: &[u8], out: &mut Vec<u32>) {
    index_with(text, out, masks_bytewise, prefix_xor_shifts);
}

/// The index with the vector instructions it was written for, decided
/// once per text.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,pclmulqdq")]
unsafe fn index_avx2(text: &[u8], out: &mut Vec<u32>) {
    index_with(
        text,
        out,
        // SAFETY: this function runs only where the CPU has AVX2 and
        // PCLMULQDQ; every block is 64 bytes.
        |block| unsafe { masks_avx2(block) },
        |bits| unsafe { prefix_xor_clmul(bits) },
    );
}

#[inline(always)]
fn index_with(
    text: &[u8],
    out: &mut Vec<u32>,
    masks: impl Fn(&[u8]) -> Masks,
    prefix_xor: impl Fn(u64) -> u64,
) {
    out.clear();
    let mut carry = Carry::default();
    let mut blocks = text.chunks_exact(BLOCK);
    let mut base = 0u32;
    for block in &mut blocks {
        let bits = block_bits(masks(block), &prefix_xor, &mut carry);
        flatten(bits, base, out);
        base += BLOCK as u32;
    }
    let rest = blocks.remainder();
    if !rest.is_empty() {
        // Pad with spaces, which are neither structural nor scalar.
        let mut last = [b' '; BLOCK];
        if let Some(head) = last.get_mut(..rest.len()) {
            head.copy_from_slice(rest);
        }
        let bits = block_bits(masks(&last), &prefix_xor, &mut carry);
        flatten(bits, base, out);
    }
}

/// The same index, one byte at a time: the reference the other two are
/// checked against. Outside strings it reads a backslash as any other
/// byte, where the block-wise index lets it escape the next one: the two
/// agree on texts with no backslash outside a string, valid JSON among
/// them.
pub fn index_bytewise(text: &[u8], out: &mut Vec<u32>) {
    out.clear();
    let (mut in_string, mut escaped, mut in_scalar) = (false, false, false);
    for (at, &b) in text.iter().enumerate() {
        let at = at as u32;
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
                out.push(at);
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                in_scalar = false;
                out.push(at);
            }
            b'{' | b'}' | b'[' | b']' | b':' | b',' => {
                in_scalar = false;
                out.push(at);
            }
            b' ' | b'\t' | b'\n' | b'\r' => in_scalar = false,
            _ => {
                if !in_scalar {
                    out.push(at);
                }
                in_scalar = true;
            }
        }
    }
}

#[inline(always)]
fn flatten(mut bits: u64, base: u32, out: &mut Vec<u32>) {
    while bits != 0 {
        out.push(base + bits.trailing_zeros());
        bits &= bits - 1;
    }
}

/// Bytes escaped by a backslash, given the block's backslashes: a run of
/// backslashes escapes the byte after it when the run is odd. Runs are
/// told apart by adding each run's start to the run: where it starts on
/// an odd bit the carry lands past the run on an even bit, and the other
/// way round, so the parity of where the sum lands is the run's parity.
#[inline(always)]
fn escaped_bytes(backslashes: u64, carry: &mut u64) -> u64 {
    const EVEN: u64 = 0x5555_5555_5555_5555;
    // A backslash that the previous block's run escapes starts nothing.
    let backslashes = backslashes & !*carry;
    let follows = (backslashes << 1) | *carry;
    let odd_starts = backslashes & !EVEN & !follows;
    let (sum, overflow) = odd_starts.overflowing_add(backslashes);
    *carry = u64::from(overflow);
    (EVEN ^ (sum << 1)) & follows
}

#[inline(always)]
fn block_bits(masks: Masks, prefix_xor: impl Fn(u64) -> u64, carry: &mut Carry) -> u64 {
    let escaped = escaped_bytes(masks.backslash, &mut carry.escaped);
    let quotes = masks.quote & !escaped;
    // Inside a string: from an opening quote up to, not including, its
    // closing one.
    let in_string = prefix_xor(quotes) ^ carry.in_string;
    carry.in_string = ((in_string as i64) >> 63) as u64;
    let outside = !in_string;
    let scalar = !(masks.op | masks.space | quotes) & outside;
    let scalar_starts = scalar & !((scalar << 1) | carry.scalar);
    carry.scalar = scalar >> 63;
    quotes | (masks.op & outside) | scalar_starts
}

/// Per-byte class bits of one block.
struct Masks {
    backslash: u64,
    quote: u64,
    op: u64,
    space: u64,
}

fn masks_bytewise(block: &[u8]) -> Masks {
    let mut masks = Masks {
        backslash: 0,
        quote: 0,
        op: 0,
        space: 0,
    };
    for (i, &b) in block.iter().enumerate() {
        let bit = 1u64 << i;
        match b {
            b'\\' => masks.backslash |= bit,
            b'"' => masks.quote |= bit,
            b'{' | b'}' | b'[' | b']' | b':' | b',' => masks.op |= bit,
            b' ' | b'\t' | b'\n' | b'\r' => masks.space |= bit,
            _ => {}
        }
    }
    masks
}

/// XOR of every bit at or below each position, by doubling shifts.
fn prefix_xor_shifts(bits: u64) -> u64 {
    let mut x = bits;
    let mut shift = 1;
    while shift < 64 {
        x ^= x << shift;
        shift <<= 1;
    }
    x
}

/// The same in one carry-less multiply by all ones.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "pclmulqdq")]
#[inline]
unsafe fn prefix_xor_clmul(bits: u64) -> u64 {
    use std::arch::x86_64::{
        _mm_clmulepi64_si128, _mm_cvtsi128_si64, _mm_set1_epi8, _mm_set_epi64x,
    };
    let product = _mm_clmulepi64_si128::<0>(_mm_set_epi64x(0, bits as i64), _mm_set1_epi8(-1));
    _mm_cvtsi128_si64(product) as u64
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn masks_avx2(block: &[u8]) -> Masks {
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_or_si256,
        _mm256_set1_epi8, _mm256_setr_epi8, _mm256_shuffle_epi8,
    };
    debug_assert!(block.len() >= BLOCK);
    // SAFETY: `block` has 64 bytes, read as two unaligned 32-byte loads.
    let halves: [__m256i; 2] = unsafe {
        [
            _mm256_loadu_si256(block.as_ptr().cast()),
            _mm256_loadu_si256(block.as_ptr().add(32).cast()),
        ]
    };
    // `{` and `}` are `[` and `]` with bit 5 set. With bit 5 forced on,
    // every operator is `,` `:` `{` or `}`, each with a low nibble of its
    // own (0xc, 0xa, 0xb, 0xd), so one lookup on the low nibble and one
    // compare find them. A byte with its top bit set looks up 0, which it
    // is not. The control bytes 0x0c and 0x1a fold onto `,` and `:`; JSON
    // has neither outside a string.
    let ops = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x3a, 0x7b, 0x2c, 0x7d, 0, 0, //
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x3a, 0x7b, 0x2c, 0x7d, 0, 0,
    );
    // Space 0x20, tab 0x09, line feed 0x0a, carriage return 0x0d. A zero
    // slot matches nothing: 0x00's low nibble is 0, whose slot holds 0x20.
    let spaces = _mm256_setr_epi8(
        0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0x09, 0x0a, 0, 0, 0x0d, 0, 0, //
        0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0x09, 0x0a, 0, 0, 0x0d, 0, 0,
    );
    let bit5 = _mm256_set1_epi8(0x20);
    let backslash = _mm256_set1_epi8(b'\\' as i8);
    let quote = _mm256_set1_epi8(b'"' as i8);
    let mut masks = Masks {
        backslash: 0,
        quote: 0,
        op: 0,
        space: 0,
    };
    for (half, v) in halves.into_iter().enumerate() {
        let shift = 32 * half;
        let bits = |m: __m256i| u64::from(_mm256_movemask_epi8(m) as u32) << shift;
        masks.backslash |= bits(_mm256_cmpeq_epi8(v, backslash));
        masks.quote |= bits(_mm256_cmpeq_epi8(v, quote));
        let folded = _mm256_or_si256(v, bit5);
        masks.op |= bits(_mm256_cmpeq_epi8(_mm256_shuffle_epi8(ops, folded), folded));
        masks.space |= bits(_mm256_cmpeq_epi8(_mm256_shuffle_epi8(spaces, v), v));
    }
    masks
}

/// The least a second stage does: visit each recorded offset and dispatch
/// on its byte, keeping the nesting depth. No keys, no values, no checks:
/// a floor under any walk of the index.
pub fn walk(text: &[u8], offsets: &[u32]) -> u64 {
    let mut depth = 0u64;
    let mut strings = 0u64;
    let mut scalars = 0u64;
    for &at in offsets {
        match text.get(at as usize) {
            Some(b'{' | b'[') => depth += 1,
            Some(b'}' | b']') => depth = depth.wrapping_sub(1),
            Some(b'"') => strings += 1,
            Some(b':' | b',') | None => {}
            Some(_) => scalars += 1,
        }
    }
    depth ^ (strings << 20) ^ (scalars << 40)
}

/// The index, with and without vector instructions, against the
/// byte-wise reference, on each of `texts` (valid JSON) and on backslash
/// runs inside a string, placed across a block boundary; panics on the
/// first difference.
pub fn check(texts: &[&[u8]]) {
    let (mut fast, mut portable, mut slow) = (Vec::new(), Vec::new(), Vec::new());
    let mut same = |text: &[u8], what: &dyn Fn() -> String| {
        index(text, &mut fast);
        index_portable(text, &mut portable);
        index_bytewise(text, &mut slow);
        assert_eq!(fast, slow, "index differs: {}", what());
        assert_eq!(portable, slow, "portable index differs: {}", what());
    };
    for text in texts {
        same(text, &|| format!("a {}-byte text", text.len()));
    }
    // Backslash runs of every length, at every offset across a block
    // boundary, before a quote and before a letter.
    for run in 0..=6 {
        for at in 40..90 {
            for after in [b'"', b'n'] {
                let mut text = br#"{"k":""#.to_vec();
                text.resize(at, b'a');
                text.extend(std::iter::repeat_n(b'\\', run));
                text.push(after);
                text.extend_from_slice(br#"x", "n": [1, -2.5e3, true, null]}"#);
                same(&text, &|| format!("run {run} at {at}"));
            }
        }
    }
}
