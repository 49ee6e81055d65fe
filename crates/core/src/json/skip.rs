//! String-skip kernels: how the scanner steps over string contents it does
//! not keep (most of a request body is message text). Where the target has
//! 16-byte vectors that every build of it can use (wasm32 with SIMD, which
//! the filter module is built with; x86-64, whose baseline has SSE2: the
//! dynamic module and the ext_proc server) they compare 16-byte blocks at
//! once; elsewhere they test 8-byte words (SWAR). All find the same byte:
//! the tests below check it at every position.

/// Skips string contents that are not kept, from `at`: runs of plain bytes
/// and two-byte escapes. Returns the index of the first byte it leaves to the
/// caller: a quote, a control character, a backslash starting `\\u` or an
/// invalid escape or cut by the chunk's end, or the chunk's end.
#[cfg(not(any(
    all(target_arch = "wasm32", target_feature = "simd128"),
    all(target_arch = "x86_64", target_feature = "sse2")
)))]
#[inline]
pub(crate) fn skip_plain(chunk: &[u8], at: usize) -> usize {
    let mut i = at;
    loop {
        i += find_special(chunk.get(i..).unwrap_or_default());
        match chunk.get(i) {
            Some(b'\\') => match chunk.get(i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                _ => return i,
            },
            _ => return i,
        }
    }
}

/// `skip_plain` with 16-byte vectors (wasm32 with SIMD, x86-64): each
/// 16-byte block is loaded and compared once, and the two-byte escapes in it are
/// stepped over from its bit mask, so text with an escape every few dozen
/// bytes (quotes, line breaks) does not reload a block per escape.
#[cfg(any(
    all(target_arch = "wasm32", target_feature = "simd128"),
    all(target_arch = "x86_64", target_feature = "sse2")
))]
#[inline]
pub(crate) fn skip_plain(chunk: &[u8], at: usize) -> usize {
    let mut i = at;
    'blocks: while let Some(block) = chunk.get(i..).and_then(|rest| rest.first_chunk::<16>()) {
        let mut mask = special_mask(block);
        while mask != 0 {
            let pos = mask.trailing_zeros() as usize;
            let special = i + pos;
            if chunk.get(special) == Some(&b'\\') && simple_escape(chunk.get(special + 1)) {
                if pos == 15 {
                    // The escaped byte opens the next block: start there.
                    i = special + 2;
                    continue 'blocks;
                }
                // Drop the backslash and the byte it escapes (a quote or a
                // backslash is flagged too).
                mask &= !(0b11 << pos);
                continue;
            }
            return special;
        }
        i += 16;
    }
    // Fewer than 16 bytes left.
    loop {
        i += chunk
            .get(i..)
            .unwrap_or_default()
            .iter()
            .position(|&c| is_special(c))
            .unwrap_or(chunk.len().saturating_sub(i));
        match chunk.get(i) {
            Some(b'\\') if simple_escape(chunk.get(i + 1)) => i += 2,
            _ => return i,
        }
    }
}

/// A byte that makes `\\` and itself a complete two-byte escape.
#[cfg(any(
    all(target_arch = "wasm32", target_feature = "simd128"),
    all(target_arch = "x86_64", target_feature = "sse2")
))]
#[inline]
fn simple_escape(next: Option<&u8>) -> bool {
    matches!(
        next,
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't')
    )
}

/// Bit `n` set: byte `n` of `block` is a quote, a backslash or a control
/// character.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline]
fn special_mask(block: &[u8; 16]) -> u32 {
    use core::arch::wasm32::{
        u8x16_bitmask, u8x16_eq, u8x16_lt, u8x16_splat, v128, v128_load, v128_or,
    };
    #[allow(unsafe_code)]
    // SAFETY: `block` is 16 readable bytes, and v128_load has no alignment
    // requirement.
    let v = unsafe { v128_load(block.as_ptr().cast::<v128>()) };
    let hits = v128_or(
        v128_or(
            u8x16_eq(v, u8x16_splat(b'"')),
            u8x16_eq(v, u8x16_splat(b'\\')),
        ),
        u8x16_lt(v, u8x16_splat(0x20)),
    );
    u32::from(u8x16_bitmask(hits))
}

/// Bit `n` set: byte `n` of `block` is a quote, a backslash or a control
/// character (x86-64: SSE2, part of every x86-64 CPU).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
fn special_mask(block: &[u8; 16]) -> u32 {
    use core::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    #[allow(unsafe_code)]
    // SAFETY: `block` is 16 readable bytes, and `_mm_loadu_si128` has no
    // alignment requirement; SSE2, which the other intrinsics need, is part
    // of the x86-64 baseline and enabled for the whole target (the cfg).
    let hits = unsafe {
        let v = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
        // A byte is below 0x20 exactly when max(byte, 0x1f) is 0x1f (SSE2
        // has no unsigned less-than).
        let low = _mm_set1_epi8(0x1f);
        let control = _mm_cmpeq_epi8(_mm_max_epu8(v, low), low);
        _mm_or_si128(
            _mm_or_si128(
                _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8)),
                _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8)),
            ),
            control,
        )
    };
    // One bit per byte: 16 bits, never negative.
    #[allow(unsafe_code)]
    // SAFETY: SSE2, as above.
    let mask = unsafe { _mm_movemask_epi8(hits) };
    mask as u32
}

/// Index of the first byte in `bytes` that ends a run of plain string
/// content: `"`, `\\` or a control character (below 0x20), or `bytes.len()`.
///
/// With 16-byte vectors (wasm32 with SIMD, see `.cargo/config.toml`, and
/// x86-64): 16 bytes per step with three vector compares. Timed by `bench/wasm-scan`
/// in V8 on 512 KiB bodies with one long text part, this reads 8.3 GB/s
/// against 5.2 GB/s for the word loop below and 1.6 GB/s for `memchr2` plus
/// a control-character pass (wasm32 has no vector code in `memchr` without
/// SIMD, and its word loop is 4 bytes wide).
#[cfg(any(
    all(target_arch = "wasm32", target_feature = "simd128"),
    all(target_arch = "x86_64", target_feature = "sse2")
))]
#[inline]
pub(crate) fn find_special(bytes: &[u8]) -> usize {
    let mut skipped = 0;
    for block in bytes.chunks_exact(16) {
        let mask = block.first_chunk::<16>().map_or(0, special_mask);
        if mask != 0 {
            return skipped + mask.trailing_zeros() as usize;
        }
        skipped += 16;
    }
    let rest = bytes.get(skipped..).unwrap_or_default();
    skipped
        + rest
            .iter()
            .position(|&c| is_special(c))
            .unwrap_or(rest.len())
}

#[cfg(any(
    all(target_arch = "wasm32", target_feature = "simd128"),
    all(target_arch = "x86_64", target_feature = "sse2")
))]
#[inline]
fn is_special(c: u8) -> bool {
    c == b'"' || c == b'\\' || c < 0x20
}

/// Index of the first byte in `bytes` that ends a run of plain string
/// content: `"`, `\\` or a control character (below 0x20), or `bytes.len()`.
///
/// Everywhere else (aarch64 too: no NEON kernel is written yet). Keys, ids
/// and text between escapes are short, so the first 64 bytes are
/// checked a word at a time; only longer runs (long prose, base64 file
/// parts) go to `memchr2`, whose vector loop wins once it has enough to chew
/// on, followed by a branch-free minimum over the span for control
/// characters, which compiles to vector code too. Measured on this kind of
/// host with the bodies of `benches/scan.rs`: the word loop alone was no
/// faster, `memchr2` alone 12% slower with an escape every 33 bytes, and on
/// runs of several KiB `memchr2` is 2-3x faster than the word loop (measured
/// on x86-64 before its SSE2 kernel, which is faster than both: 42 against
/// 121 µs per 512 KiB body of dense text, `cargo run --release -p wasm-scan`).
///
/// On wasm32 without SIMD, `memchr2` has only a 4-byte word loop and the
/// control-character pass is a byte loop, so there the 8-byte word loop
/// runs the whole span.
#[cfg(not(any(
    all(target_arch = "wasm32", target_feature = "simd128"),
    all(target_arch = "x86_64", target_feature = "sse2")
)))]
#[inline]
pub(crate) fn find_special(bytes: &[u8]) -> usize {
    let words = if cfg!(target_arch = "wasm32") {
        usize::MAX
    } else {
        8
    };
    find_special_words(bytes, words)
}

/// `find_special` with at most `words` 8-byte words checked before
/// `memchr2` takes over.
/// (Compiled everywhere: the tests check it on every target.)
#[cfg_attr(
    any(
        all(target_arch = "wasm32", target_feature = "simd128"),
        all(target_arch = "x86_64", target_feature = "sse2")
    ),
    allow(dead_code)
)]
#[inline]
pub(crate) fn find_special_words(bytes: &[u8], words: usize) -> usize {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    let mut skipped = 0;
    for word in bytes.chunks_exact(8).take(words) {
        let mut array = [0u8; 8];
        array.copy_from_slice(word);
        let w = u64::from_le_bytes(array);
        // A byte's high bit is set when subtracting borrows out of it: the
        // byte is below 0x20, or equal to the quote or the backslash. Borrows
        // only travel upwards, so the lowest flagged byte is a true match.
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        let flagged = ((w.wrapping_sub(ONES * 0x20) & !w)
            | (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash))
            & HIGH;
        if flagged != 0 {
            return skipped + (flagged.trailing_zeros() / 8) as usize;
        }
        skipped += 8;
    }
    let rest = bytes.get(skipped..).unwrap_or_default();
    let end = memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
    let span = rest.get(..end).unwrap_or_default();
    let run = if span.iter().fold(0xff, |min: u8, &c| min.min(c)) < 0x20 {
        span.iter().position(|&c| c < 0x20).unwrap_or(end)
    } else {
        end
    };
    skipped + run
}

#[cfg(test)]
mod tests {
    use super::{find_special, find_special_words, skip_plain};

    fn special(c: u8) -> bool {
        c == b'"' || c == b'\\' || c < 0x20
    }

    #[test]
    fn find_special_finds_the_first_special_byte_at_every_position() {
        // Every byte value at every position across the word loop, the switch
        // to memchr2 and the tail, after a neighbour that could leak a borrow.
        for len in [1usize, 7, 8, 9, 63, 64, 65, 100, 200] {
            for at in 0..len {
                for c in 0..=255u8 {
                    for before in [b'a', 0xff, 0x80, 0x20, 0x21, 0x5d] {
                        let mut bytes = vec![b'a'; len];
                        if at > 0 {
                            bytes[at - 1] = before;
                        }
                        bytes[at] = c;
                        let want = bytes.iter().position(|&b| special(b)).unwrap_or(len);
                        assert_eq!(
                            find_special(&bytes),
                            want,
                            "len {len} at {at} byte {c:#x} after {before:#x}"
                        );
                        // The word loop over the whole span, as on wasm32
                        // without SIMD.
                        assert_eq!(
                            find_special_words(&bytes, usize::MAX),
                            want,
                            "words only: len {len} at {at} byte {c:#x} after {before:#x}"
                        );
                    }
                }
            }
        }
    }

    /// `skip_plain` one byte at a time.
    fn skip_plain_reference(chunk: &[u8], at: usize) -> usize {
        let mut i = at;
        while let Some(&c) = chunk.get(i) {
            if c == b'\\' {
                match chunk.get(i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                    _ => return i,
                }
            } else if special(c) {
                return i;
            } else {
                i += 1;
            }
        }
        i
    }

    #[test]
    fn skip_plain_agrees_with_a_byte_loop_across_blocks() {
        // Two-byte escapes, a stopping byte and the chunk's end at every
        // offset across several 16-byte blocks, escapes straddling a block
        // boundary included.
        let escapes: [&[u8]; 5] = [br#"\n"#, br#"\""#, br#"\\"#, br#"\u"#, br#"\x"#];
        let stops: [&[u8]; 4] = [b"\"", b"\x01", b"\\", b""];
        for len in [15usize, 16, 17, 31, 32, 33, 47, 70] {
            for e in 0..len {
                for escape in escapes {
                    for s in (e + 2)..=len {
                        for stop in stops {
                            let mut bytes = vec![b'a'; len];
                            bytes.splice(e..(e + 2).min(len), escape.iter().copied().take(len - e));
                            bytes.truncate(len);
                            bytes.truncate(s);
                            bytes.extend_from_slice(stop);
                            for at in [0, 1, e.min(bytes.len())] {
                                assert_eq!(
                                    skip_plain(&bytes, at),
                                    skip_plain_reference(&bytes, at),
                                    "{:?} from {at}",
                                    String::from_utf8_lossy(&bytes)
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn skip_plain_stops_where_the_byte_states_must_take_over() {
        let cases: &[(&[u8], usize)] = &[
            (br#"abc\n\"\\\/\b\f\r\tdef"x"#, 22),
            (br#"ab\u0041"#, 2),
            (br#"ab\x"#, 2),
            (br#"ab\"#, 2),
            (b"ab\x01", 2),
            (b"plain", 5),
            (b"", 0),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                skip_plain(bytes, 0),
                *want,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}
