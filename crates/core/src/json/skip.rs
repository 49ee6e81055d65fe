//! String-skip kernels: how the scanner steps over string contents it does
//! not keep (most of a request body is message text). Where the target has
//! 16-byte vectors that every build of it can use (wasm32 with SIMD, which
//! the filter module is built with; x86-64, whose baseline has SSE2: the
//! dynamic module and the ext_proc server) they compare 16-byte blocks at
//! once; elsewhere they test 8-byte words (SWAR). On x86-64 CPUs with
//! AVX-512 or AVX2 (checked at run time) 64-byte blocks take over after the
//! first 16 bytes, escapes resolved from bit masks without a branch per
//! escape. All find the same byte: the tests below check each kernel the
//! CPU has at every position.

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

/// `skip_plain` on wasm32 with SIMD: the 16-byte kernel.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline]
pub(crate) fn skip_plain(chunk: &[u8], at: usize) -> usize {
    skip_plain_16(chunk, at)
}

/// `skip_plain` on x86-64: one 16-byte SSE2 block, which ends most strings;
/// then 64-byte blocks with AVX-512BW or AVX2 where the CPU has them
/// (checked at run time; the checks read a cached flag), then the 16-byte
/// SSE2 kernel for what is left (and for everything on a CPU with neither).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
pub(crate) fn skip_plain(chunk: &[u8], at: usize) -> usize {
    // Keys, ids and most values end within their first 16 bytes: one SSE2
    // block answers them, where a 64-byte block (three masks and the escape
    // arithmetic) would cost several times as much to find the same quote.
    let mut at = at;
    if let Some(block) = chunk.get(at..).and_then(|rest| rest.first_chunk::<16>()) {
        let mask = special_mask(block);
        if mask == 0 {
            at += 16;
        } else {
            let first = at + mask.trailing_zeros() as usize;
            if chunk.get(first) != Some(&b'\\') {
                // A quote or a control character, with only plain bytes
                // before it.
                return first;
            }
            // An escape: the kernels below step over it (or stop there).
            at = first;
        }
    }
    let kernel = if chunk.len().saturating_sub(at) >= 64 {
        wide_kernel()
    } else {
        Wide::None
    };
    skip_plain_with(kernel, chunk, at)
}

/// `skip_plain` with 16-byte vectors (wasm32 with SIMD, x86-64 SSE2): each
/// 16-byte block is loaded and compared once, and the two-byte escapes in it are
/// stepped over from its bit mask, so text with an escape every few dozen
/// bytes (quotes, line breaks) does not reload a block per escape.
#[cfg(any(
    all(target_arch = "wasm32", target_feature = "simd128"),
    all(target_arch = "x86_64", target_feature = "sse2")
))]
#[inline]
fn skip_plain_16(chunk: &[u8], at: usize) -> usize {
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

/// The 64-byte kernels of `skip_plain` on x86-64 CPUs with AVX2 or
/// AVX-512 (BW and VBMI).
///
/// Each block yields three bit masks at once: backslashes; quotes and
/// control characters; and the bytes that may follow a backslash in a
/// two-byte escape (`" \\ / b f n r t`). Which bytes a backslash escapes
/// follows from the backslash mask alone, by one subtraction over the runs
/// of backslashes (as simdjson's escape scanner finds them): no branch per
/// escape or per run, however dense they are. The two kernels differ only
/// in how they make the masks: AVX2 in two 32-byte halves, finding the
/// escape letters with one table lookup at a slot computed from each byte;
/// AVX-512 in one 64-byte vector with mask registers, finding them with one
/// lookup that reads a 128-entry table at each byte's low seven bits.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[allow(unsafe_code)]
mod wide {
    use core::arch::x86_64::{
        __m256i, __m512i, _mm256_avg_epu8, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_max_epu8,
        _mm256_min_epu8, _mm256_movemask_epi8, _mm256_set1_epi8, _mm256_setr_epi8,
        _mm256_shuffle_epi8, _mm256_xor_si256, _mm512_cmpeq_epi8_mask, _mm512_cmple_epu8_mask,
        _mm512_loadu_si512, _mm512_permutex2var_epi8, _mm512_set1_epi8, _mm512_xor_si512,
    };

    /// Bits at even positions.
    const EVEN: u64 = 0x5555_5555_5555_5555;

    /// One 64-byte block's bit masks (bit `n`: byte `n`).
    struct Masks {
        backslash: u64,
        /// Quotes and control characters.
        stop: u64,
        /// Bytes a two-byte escape may end with.
        escapable: u64,
    }

    /// What the block at `i` means for `skip_plain`.
    enum Block {
        /// `skip_plain` stops here (its answer).
        Stop(usize),
        /// Nothing stops in the block: go on from here.
        Next(usize),
    }

    #[inline(always)]
    fn step(chunk: &[u8], i: usize, m: &Masks) -> Block {
        // In a run of backslashes the first, third, ... start escapes, and
        // the byte after each start is escaped. Take the backslashes out of
        // `(backslash << 1) | EVEN`: the runs moved up one byte, over the
        // even positions. A run starting at an even position leaves only
        // the bit after it; one starting at an odd position leaves its own
        // bits and not the one after it; no borrow crosses from one run to
        // the next, and one reaching bit 63 borrows out of the word. Then
        // XOR with EVEN leaves each run's starts, and the byte after it when
        // its length is odd: the escaped byte that is not a backslash.
        let code = ((m.backslash << 1) | EVEN).wrapping_sub(m.backslash) ^ EVEN;
        let starts = code & m.backslash;
        // The escaped bytes: those ends, and the backslashes that start no
        // escape.
        let escaped = code ^ m.backslash;
        // Of the starts, those whose escape is not a two-byte one here
        // (`\u`, an invalid one): the caller's.
        let odd_escape = starts & !(m.escapable >> 1) & !(1 << 63);
        let stops = (m.stop & !escaped) | odd_escape;
        if stops != 0 {
            return Block::Stop(i + stops.trailing_zeros() as usize);
        }
        if starts >> 63 == 0 {
            return Block::Next(i + 64);
        }
        // The block ends with a backslash: its escape ends in the next byte,
        // if the chunk has one.
        match chunk.get(i + 64) {
            Some(&c) if super::simple_escape(Some(&c)) => Block::Next(i + 65),
            _ => Block::Stop(i + 63),
        }
    }

    /// The bytes that end a two-byte escape, as `super::simple_escape`
    /// lists them.
    const ESCAPE_LETTERS: [u8; 8] = *b"\"\\/bfnrt";

    /// Blocks read together by `skip_blocks`.
    const GROUP: usize = 4;

    /// Steps over whole 64-byte blocks of string contents from `at`, with
    /// `masks` making each block's masks (`#[inline(always)]`: it runs
    /// inside the kernel's `#[target_feature]` function, with its
    /// features). Returns `(index, true)` where `skip_plain` stops (its
    /// answer), or `(index, false)` where the 16-byte kernel goes on: fewer
    /// than 64 bytes are left from `index`, no escape pending there (or
    /// `masks` gave none).
    ///
    /// The masks of `GROUP` blocks are made before any of them is stepped,
    /// so that their vector work does not wait on the branches of the
    /// blocks before. On 512 KiB of dense text (`SCAN_BENCH_KERNELS=1` in
    /// `bench/benches/scan.rs`, an Intel Xeon with AVX-512): AVX-512 25 GB/s
    /// with one block per trip, 34 GB/s with four; AVX2 19 and 21 GB/s.
    ///
    /// A block that ends with an escape's backslash starts the next group
    /// after the escaped byte, dropping the masks made for the blocks after
    /// it. Carrying that escape into the next block as a bit instead, with
    /// one branch per group or per block, was 7-46 % slower in four variants
    /// (BENCHMARKS.md, "A carried escape in the 64-byte kernels").
    #[inline(always)]
    fn skip_blocks(
        chunk: &[u8],
        at: usize,
        masks: impl Fn(&[u8; 64]) -> Option<Masks>,
    ) -> (usize, bool) {
        let mut i = at;
        'groups: while let Some(group) = chunk
            .get(i..)
            .and_then(|rest| rest.first_chunk::<{ 64 * GROUP }>())
        {
            let Ok(blocks) = <&[[u8; 64]; GROUP]>::try_from(group.as_chunks::<64>().0) else {
                break;
            };
            let all = blocks.each_ref().map(&masks);
            for (n, m) in all.iter().enumerate() {
                let here = i + 64 * n;
                let Some(m) = m else {
                    return (here, false);
                };
                match step(chunk, here, m) {
                    Block::Stop(stop) => return (stop, true),
                    Block::Next(next) if next == here + 64 => {}
                    // The block ended with an escape's backslash: go on
                    // after its escaped byte.
                    Block::Next(next) => {
                        i = next;
                        continue 'groups;
                    }
                }
            }
            i += 64 * GROUP;
        }
        while let Some(block) = chunk.get(i..).and_then(|rest| rest.first_chunk::<64>()) {
            let Some(m) = masks(block) else {
                break;
            };
            match step(chunk, i, &m) {
                Block::Stop(stop) => return (stop, true),
                Block::Next(next) => i = next,
            }
        }
        (i, false)
    }

    /// The escape letters by their low seven bits (AVX-512 kernel): entry
    /// `k` is `k` for an escape letter and the quote for every other `k`,
    /// so byte `v` is an escape letter when the entry at `v & 0x7f` is `v`
    /// (a byte of 0x80 and up never finds itself: every entry is below
    /// 0x80). One VBMI lookup reads all 128 entries from two registers.
    const BY_LOW_SEVEN: [u8; 128] = letter_table(false);

    #[test]
    fn the_seven_bit_table_finds_exactly_the_escape_letters() {
        for v in 0..=255u8 {
            let found = BY_LOW_SEVEN.get(usize::from(v & 0x7f)).copied();
            assert_eq!(
                found == Some(v),
                super::simple_escape(Some(&v)),
                "byte {v:#04x}"
            );
        }
    }

    /// The added term of `escape_slot`.
    const SLOT_BIAS: u8 = 36;

    /// The slot of byte `v` (AVX2 kernel): `min((v + 37) / 2, v)`, which
    /// AVX2 computes in two instructions (a rounding unsigned average, then
    /// an unsigned minimum) with no bit crossing from one byte to the next.
    /// The table lookup keeps its low four bits, or gives zero when its top
    /// bit is set, which only bytes of 219 and up reach.
    const fn escape_slot(v: u8) -> u8 {
        let average = ((v as u16 + SLOT_BIAS as u16 + 1) >> 1) as u8;
        if average < v {
            average
        } else {
            v
        }
    }

    /// The escape letters by slot (AVX2 kernel): byte `v` is an escape
    /// letter when the entry at `escape_slot(v)` is `v`. The eight letters
    /// fall in eight different entries; the other entries hold the quote,
    /// whose own entry is another, so no byte finds itself there. The test
    /// `escape_slots_find_exactly_the_escape_letters` checks all 256 bytes.
    const BY_SLOT: [u8; 16] = letter_table(true);

    /// A table of the escape letters, each at its entry (its slot, or its
    /// low seven bits), the quote in every other entry.
    // Only evaluated at compile time (the two tables above): an index out
    // of bounds fails the build.
    #[allow(clippy::indexing_slicing)]
    const fn letter_table<const N: usize>(by_slot: bool) -> [u8; N] {
        let mut table = [b'"'; N];
        let mut i = 0;
        while i < ESCAPE_LETTERS.len() {
            let letter = ESCAPE_LETTERS[i];
            let entry = if by_slot {
                escape_slot(letter) & 0x0f
            } else {
                letter & 0x7f
            };
            table[entry as usize] = letter;
            i += 1;
        }
        table
    }

    #[test]
    fn escape_slots_find_exactly_the_escape_letters() {
        for v in 0..=255u8 {
            let slot = escape_slot(v);
            // The lookup gives zero for a slot with its top bit set.
            let found = if slot & 0x80 != 0 {
                Some(0)
            } else {
                BY_SLOT.get(usize::from(slot & 0x0f)).copied()
            };
            assert_eq!(
                found == Some(v),
                super::simple_escape(Some(&v)),
                "byte {v:#04x}, slot {slot}"
            );
        }
    }

    /// Quotes and control characters of `v`, as `super::quote_or_control_128`
    /// finds them.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn quote_or_control_256(v: __m256i) -> __m256i {
        let flipped = _mm256_xor_si256(v, _mm256_set1_epi8(0x02));
        let top = _mm256_set1_epi8(0x20);
        _mm256_cmpeq_epi8(_mm256_max_epu8(flipped, top), top)
    }

    /// The masks of one 32-byte half, in the low 32 bits (AVX2).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn half_masks(half: &[u8; 32]) -> (u64, u64, u64) {
        // SAFETY: 32 readable bytes; no alignment needed.
        let v = unsafe { _mm256_loadu_si256(half.as_ptr().cast::<__m256i>()) };
        let backslash = _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'\\' as i8));
        let stop = quote_or_control_256(v);
        // The same 16-byte table in both 128-bit lanes, as the lookup reads
        // each lane's own.
        let [t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, t10, t11, t12, t13, t14, t15] =
            BY_SLOT.map(|b| b as i8);
        let by_slot = _mm256_setr_epi8(
            t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, t10, t11, t12, t13, t14, t15, t0, t1, t2, t3,
            t4, t5, t6, t7, t8, t9, t10, t11, t12, t13, t14, t15,
        );
        let slot = _mm256_min_epu8(_mm256_avg_epu8(v, _mm256_set1_epi8(SLOT_BIAS as i8)), v);
        let escapable = _mm256_cmpeq_epi8(_mm256_shuffle_epi8(by_slot, slot), v);
        // movemask gives one bit per byte: 32 bits, reinterpreted unsigned.
        let bits = |m: __m256i| u64::from(_mm256_movemask_epi8(m) as u32);
        (bits(backslash), bits(stop), bits(escapable))
    }

    /// Steps over whole 64-byte blocks of string contents from `at`, with
    /// AVX2. Returns `(index, true)` where `skip_plain` stops (its answer),
    /// or `(index, false)` when fewer than 64 bytes are left from `index`, no
    /// escape pending there.
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn skip_blocks_avx2(chunk: &[u8], at: usize) -> (usize, bool) {
        skip_blocks(chunk, at, |block| {
            let (front, back) = (block.first_chunk::<32>()?, block.last_chunk::<32>()?);
            let ((b0, s0, e0), (b1, s1, e1)) = (half_masks(front), half_masks(back));
            Some(Masks {
                backslash: b0 | b1 << 32,
                stop: s0 | s1 << 32,
                escapable: e0 | e1 << 32,
            })
        })
    }

    /// `skip_blocks_avx2` with AVX-512BW and VBMI: one 64-byte vector per
    /// block, compares that give the bit masks directly, and the escape
    /// letters found with one lookup in a 128-entry table (`BY_LOW_SEVEN`)
    /// and one compare.
    ///
    /// # Safety
    /// The CPU has AVX-512F, AVX-512BW and AVX-512VBMI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    pub(super) unsafe fn skip_blocks_avx512(chunk: &[u8], at: usize) -> (usize, bool) {
        let (Some(low), Some(high)) = (
            BY_LOW_SEVEN.first_chunk::<64>(),
            BY_LOW_SEVEN.last_chunk::<64>(),
        ) else {
            return (at, false);
        };
        // SAFETY: 64 readable bytes each; no alignment needed.
        let (low, high) = unsafe {
            (
                _mm512_loadu_si512(low.as_ptr().cast::<__m512i>()),
                _mm512_loadu_si512(high.as_ptr().cast::<__m512i>()),
            )
        };
        let backslash = _mm512_set1_epi8(b'\\' as i8);
        let flip = _mm512_set1_epi8(0x02);
        let top = _mm512_set1_epi8(0x20);
        skip_blocks(chunk, at, |block| {
            // SAFETY: 64 readable bytes; no alignment needed.
            let v = unsafe { _mm512_loadu_si512(block.as_ptr().cast::<__m512i>()) };
            // Each byte's low seven bits pick the entry (bit 6 the table
            // half); its top bit is ignored.
            let letters = _mm512_permutex2var_epi8(low, v, high);
            Some(Masks {
                backslash: _mm512_cmpeq_epi8_mask(v, backslash),
                // Flipping bit 1 makes the quote 0x20 and keeps control
                // characters below it (`super::quote_or_control_128`).
                stop: _mm512_cmple_epu8_mask(_mm512_xor_si512(v, flip), top),
                escapable: _mm512_cmpeq_epi8_mask(letters, v),
            })
        })
    }
}

/// Which 64-byte kernel this CPU runs, if any.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wide {
    Avx512,
    Avx2,
    None,
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
impl Wide {
    /// The kernel's name: in the shells' log line, as a value of
    /// `KERNEL_ENV`, and in the kernel benchmark (`Wide::None` is the
    /// 16-byte SSE2 kernel alone).
    const fn name(self) -> &'static str {
        match self {
            Wide::Avx512 => "avx512",
            Wide::Avx2 => "avx2",
            Wide::None => "sse2",
        }
    }
}

/// AVX-512 only on CPUs that also have VBMI2 (Intel Ice Lake and later, AMD
/// Zen 4 and later), which do not lower their clock for 512-bit integer
/// work as the first AVX-512 CPUs did: the filter shares the CPU with the
/// rest of Envoy. Those CPUs have VBMI too, which the kernel's lookup needs.
///
/// `KERNEL_ENV` in the process's environment caps the choice (read once):
/// `avx2` or `sse2` keeps a CPU on a smaller kernel than it could run, to
/// time that kernel on it or to keep wide vector work off it; `avx512`, or
/// the variable unset, leaves the choice to the CPU. Nothing above what the
/// CPU has is ever chosen.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
fn wide_kernel() -> Wide {
    chosen().0
}

/// The kernel of this process, and `KERNEL_ENV` as it was read to choose
/// it (`None`: unset). Both are made once.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
fn chosen() -> &'static (Wide, Option<std::ffi::OsString>) {
    static CHOSEN: std::sync::OnceLock<(Wide, Option<std::ffi::OsString>)> =
        std::sync::OnceLock::new();
    CHOSEN.get_or_init(|| {
        let value = std::env::var_os(KERNEL_ENV);
        let cap = value
            .as_deref()
            .and_then(|v| v.to_str().and_then(cap_of))
            .unwrap_or(Wide::Avx512);
        let avx512 = avx512_here() && std::is_x86_feature_detected!("avx512vbmi2");
        let kernel = choose(cap, avx512, std::is_x86_feature_detected!("avx2"));
        (kernel, value)
    })
}

/// The largest kernel no larger than `cap` among those the CPU has.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
fn choose(cap: Wide, avx512: bool, avx2: bool) -> Wide {
    match cap {
        Wide::Avx512 if avx512 => Wide::Avx512,
        Wide::Avx512 | Wide::Avx2 if avx2 => Wide::Avx2,
        _ => Wide::None,
    }
}

/// The cap a value of `KERNEL_ENV` names (`None`: not one of them).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
fn cap_of(value: &str) -> Option<Wide> {
    let value = value.trim().to_ascii_lowercase();
    [Wide::Avx512, Wide::Avx2, Wide::None]
        .into_iter()
        .find(|kernel| kernel.name() == value)
}

/// The environment variable that caps the string-skip kernel on x86-64.
pub const KERNEL_ENV: &str = "A2A_AFFINITY_STRING_KERNEL";

/// Which string-skip kernel this process runs, for the shells' load-time
/// log: its name, and what became of `KERNEL_ENV` when it is set.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
pub(crate) fn kernel_in_use() -> String {
    let (kernel, value) = chosen();
    let name = kernel.name();
    match value {
        None => name.to_string(),
        Some(v) => match v.to_str().filter(|v| cap_of(v).is_some()) {
            Some(v) => format!("{name} ({KERNEL_ENV}={v})"),
            None => format!(
                "{name} ({KERNEL_ENV}={} is none of avx512, avx2, sse2: ignored)",
                v.to_string_lossy()
            ),
        },
    }
}

/// Which string-skip kernel this build runs (one per target off x86-64).
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
pub(crate) fn kernel_in_use() -> String {
    if cfg!(all(target_arch = "wasm32", target_feature = "simd128")) {
        "simd128".to_string()
    } else {
        "swar".to_string()
    }
}

/// The CPU has what `wide::skip_blocks_avx512` needs.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
fn avx512_here() -> bool {
    std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vbmi")
}

/// `skip_plain` with the given 64-byte kernel first (`Wide::None`: the
/// 16-byte kernel alone). The kernel must be one the CPU has.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
fn skip_plain_with(kernel: Wide, chunk: &[u8], at: usize) -> usize {
    let mut i = at;
    if chunk.len().saturating_sub(at) >= 64 {
        #[allow(unsafe_code)]
        // SAFETY: callers pass the kernel `wide_kernel` found, or (`kernels`)
        // one they checked the CPU has.
        let (stop, done) = unsafe {
            match kernel {
                Wide::Avx512 => wide::skip_blocks_avx512(chunk, at),
                Wide::Avx2 => wide::skip_blocks_avx2(chunk, at),
                Wide::None => (at, false),
            }
        };
        if done {
            return stop;
        }
        i = stop;
    }
    skip_plain_16(chunk, i)
}

/// A `skip_plain` that always takes one kernel, named.
pub type Kernel = (&'static str, fn(&[u8], usize) -> usize);

/// The string-skip kernels this CPU can run, each as a `skip_plain` that
/// always takes it: the 16-byte kernel alone, then each 64-byte kernel in
/// front of it. The kernel benchmark (`bench/benches/scan.rs`) times them
/// against each other on one body.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
pub(crate) fn kernels() -> Vec<Kernel> {
    let mut kernels: Vec<Kernel> = vec![(Wide::None.name(), |chunk, at| {
        skip_plain_with(Wide::None, chunk, at)
    })];
    if std::is_x86_feature_detected!("avx2") {
        kernels.push((Wide::Avx2.name(), |chunk, at| {
            skip_plain_with(Wide::Avx2, chunk, at)
        }));
    }
    if avx512_here() {
        kernels.push((Wide::Avx512.name(), |chunk, at| {
            skip_plain_with(Wide::Avx512, chunk, at)
        }));
    }
    kernels
}

/// The string-skip kernels of this target: `skip_plain` alone.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
pub(crate) fn kernels() -> Vec<Kernel> {
    vec![("portable", skip_plain)]
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

/// The bytes of `v` that are a quote or a control character (below 0x20),
/// with three operations where a compare for each and an OR take four:
/// flipping bit 1 turns the quote (0x22) into 0x20, keeps every control
/// character below 0x20 and every other byte above it, and SSE2's unsigned
/// maximum then tells "at most 0x20" apart (it has no unsigned compare).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
fn quote_or_control_128(v: core::arch::x86_64::__m128i) -> core::arch::x86_64::__m128i {
    use core::arch::x86_64::{_mm_cmpeq_epi8, _mm_max_epu8, _mm_set1_epi8, _mm_xor_si128};
    #[allow(unsafe_code)]
    // SAFETY: SSE2, part of the x86-64 baseline and enabled for the whole
    // target (the cfg).
    unsafe {
        let flipped = _mm_xor_si128(v, _mm_set1_epi8(0x02));
        let top = _mm_set1_epi8(0x20);
        _mm_cmpeq_epi8(_mm_max_epu8(flipped, top), top)
    }
}

/// Bit `n` set: byte `n` of `block` is a quote, a backslash or a control
/// character (x86-64: SSE2, part of every x86-64 CPU).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
fn special_mask(block: &[u8; 16]) -> u32 {
    use core::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    #[allow(unsafe_code)]
    // SAFETY: `block` is 16 readable bytes, and `_mm_loadu_si128` has no
    // alignment requirement; SSE2, which the other intrinsics need, is part
    // of the x86-64 baseline and enabled for the whole target (the cfg).
    let hits = unsafe {
        let v = _mm_loadu_si128(block.as_ptr().cast::<__m128i>());
        _mm_or_si128(
            quote_or_control_128(v),
            _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8)),
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

    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[test]
    fn the_kernel_cap_lowers_the_choice_and_never_raises_it() {
        use super::{cap_of, choose, Wide};
        // (cap, CPU has AVX-512, CPU has AVX2) -> kernel. Every CPU with
        // the AVX-512 kernel's features has AVX2.
        let cases = [
            ((Wide::Avx512, true, true), Wide::Avx512),
            ((Wide::Avx2, true, true), Wide::Avx2),
            ((Wide::None, true, true), Wide::None),
            ((Wide::Avx512, false, true), Wide::Avx2),
            ((Wide::Avx2, false, true), Wide::Avx2),
            ((Wide::None, false, true), Wide::None),
            ((Wide::Avx512, false, false), Wide::None),
            ((Wide::Avx2, false, false), Wide::None),
            ((Wide::None, false, false), Wide::None),
        ];
        for ((cap, avx512, avx2), want) in cases {
            assert_eq!(choose(cap, avx512, avx2), want, "{cap:?} {avx512} {avx2}");
        }
        assert_eq!(cap_of("avx512"), Some(Wide::Avx512));
        assert_eq!(cap_of(" AVX2\n"), Some(Wide::Avx2));
        assert_eq!(cap_of("sse2"), Some(Wide::None));
        for unknown in ["", "avx-512", "avx", "none", "auto"] {
            assert_eq!(cap_of(unknown), None, "{unknown:?}");
        }
    }

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

    /// `skip_plain`, and each kernel this CPU has (`super::kernels`: on
    /// x86-64 the 16-byte one alone, and each 64-byte one in front of it),
    /// agree with the byte loop.
    fn assert_skip(bytes: &[u8], at: usize, what: &dyn Fn() -> String) {
        let want = skip_plain_reference(bytes, at);
        assert_eq!(skip_plain(bytes, at), want, "{}", what());
        for (kernel, skip) in super::kernels() {
            assert_eq!(skip(bytes, at), want, "{kernel}: {}", what());
        }
    }

    #[test]
    fn skip_plain_agrees_with_a_byte_loop_across_blocks() {
        // Two-byte escapes, a stopping byte and the chunk's end at every
        // offset across several 16-byte blocks, escapes straddling a block
        // boundary included.
        let escapes: [&[u8]; 5] = [br#"\n"#, br#"\""#, br#"\\"#, br#"\u"#, br#"\x"#];
        let stops: [&[u8]; 4] = [b"\"", b"\x01", b"\\", b""];
        for len in [
            15usize, 16, 17, 31, 32, 33, 47, 63, 64, 65, 70, 127, 128, 129,
        ] {
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
                                assert_skip(&bytes, at, &|| {
                                    format!("{:?} from {at}", String::from_utf8_lossy(&bytes))
                                });
                            }
                        }
                    }
                }
            }
        }
    }

    /// Text of bytes that matter to the kernels (plain, backslash, quote, a
    /// control character, escape letters, `u`, a byte that escapes nothing,
    /// a non-ASCII byte), in runs of backslashes of every length.
    fn random_text(seed: &mut u64, len: usize) -> Vec<u8> {
        const ALPHABET: &[u8] = b"aaaaaaaa\\\\\"\x01nt/bu x\xff";
        (0..len)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                ALPHABET[(*seed % ALPHABET.len() as u64) as usize]
            })
            .collect()
    }

    #[test]
    fn skip_plain_agrees_with_a_byte_loop_on_random_text() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for round in 0..20_000 {
            let len = 1 + round % 300;
            let bytes = random_text(&mut seed, len);
            // Start outside an escape: after a quote-free prefix of plain
            // bytes, as the scanner calls it.
            for at in [0, 1, 63, 64, 65].into_iter().filter(|&a| a <= len) {
                if at > 0 && bytes[..at].iter().any(|&c| special(c)) {
                    continue;
                }
                assert_skip(&bytes, at, &|| {
                    format!("{:?} from {at}", String::from_utf8_lossy(&bytes))
                });
            }
        }
    }

    #[test]
    fn skip_plain_agrees_with_a_byte_loop_on_long_escaped_text() {
        // Text with an escape every few bytes and a stopping byte only every
        // few hundred, so that the 64-byte kernels read whole groups of
        // blocks before they stop.
        const COMMON: [&[u8]; 10] = [
            b"a", b"ab", b"abcdefg", b"\xff", br#"\n"#, br#"\""#, br#"\\"#, br#"\\\\"#, br#"\\\""#,
            br#"\/"#,
        ];
        const RARE: [&[u8]; 4] = [br#"\x"#, br#"\u"#, b"\x01", b"\""];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for round in 0..3_000 {
            let len = 200 + round % 900;
            let mut bytes = Vec::with_capacity(len + 8);
            while bytes.len() < len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let pick = (seed >> 32) as usize;
                // A piece that stops `skip_plain` one time in 400.
                let piece = if seed.is_multiple_of(400) {
                    RARE[pick % RARE.len()]
                } else {
                    COMMON[pick % COMMON.len()]
                };
                bytes.extend_from_slice(piece);
            }
            for cut in [bytes.len(), bytes.len() - 1] {
                let chunk = &bytes[..cut];
                assert_skip(chunk, 0, &|| {
                    format!("{:?}", String::from_utf8_lossy(chunk))
                });
            }
        }
    }

    #[test]
    fn skip_plain_steps_over_runs_of_backslashes_across_blocks() {
        // n backslashes ending at every offset around the 64-byte blocks,
        // then a byte that ends the string, an escape or the chunk.
        // Up to 600 bytes: every block of two groups of the 64-byte
        // kernels, and the single blocks after them.
        for n in 1..=9 {
            for end in n..=600 {
                for next in [b'"', b'n', b'u', b'a', b'\x01'] {
                    let mut bytes = vec![b'a'; end - n];
                    bytes.extend(std::iter::repeat_n(b'\\', n));
                    bytes.push(next);
                    bytes.extend_from_slice(&[b'a'; 70]);
                    bytes.push(b'"');
                    for cut in [end, end + 1, bytes.len()] {
                        let chunk = &bytes[..cut];
                        assert_skip(chunk, 0, &|| {
                            format!("{n} backslashes ending at {end}, then {next:#x}, cut at {cut}")
                        });
                    }
                }
            }
        }
    }

    #[test]
    fn skip_plain_knows_every_byte() {
        // A backslash then each byte value, and each byte value alone,
        // inside a block and across a block boundary: in each block of a
        // group of the 64-byte kernels and in the group after it, whether
        // the kernel starts at byte 0 (`skip_plain_with`) or after the
        // first 16 bytes (`skip_plain`).
        for c in 0..=255u8 {
            for at in [
                10usize, 62, 63, 64, 100, 126, 127, 142, 143, 190, 191, 206, 207, 254, 255, 270,
                271, 300,
            ] {
                let mut bytes = vec![b'a'; at];
                bytes.extend_from_slice(&[b'\\', c]);
                bytes.extend_from_slice(&[b'a'; 300]);
                bytes.push(b'"');
                assert_skip(&bytes, 0, &|| format!("escape {c:#x} at {at}"));
                // And the byte alone, in plain text.
                let mut bytes = vec![b'a'; at];
                bytes.push(c);
                bytes.extend_from_slice(&[b'a'; 300]);
                bytes.push(b'"');
                assert_skip(&bytes, 0, &|| format!("byte {c:#x} at {at}"));
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
