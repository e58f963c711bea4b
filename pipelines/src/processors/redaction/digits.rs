//! The digit gates' measures of a value: how many ASCII digits it holds, and its longest run of digits
//! where consecutive digits are at most two separators (` -./()`) apart, so grouped numbers (cards,
//! phone numbers, IBANs) count whole: `4111 1111 1111 1111` is a run of 16, `(415) 555-2671` of 10.
//!
//! Both run on most values with digits, so both are written to vectorise. The run is computed 64 bytes
//! at a time on bit masks rather than byte by byte: the digit and separator flags of a block are
//! compared 32 bytes at a time with AVX2 where the CPU has it (chosen at run time; else 16 at a time
//! with SSE2, and elsewhere than x86_64 computed lane-wise and packed by multiplication) and taken into
//! words with `movemask`, the separators that bridge two digits (a gap of one or two) are found with
//! shifts, and each chain of digits and bridges long enough to hold the digits asked for is then one
//! step of a loop over its start and end bits, its digits counted with `popcnt`. A value full of
//! digits and separators costs a few instructions per chain instead of a dependent chain of operations
//! per byte. A batch also takes its upper-case mask from the same compares
//! ([`for_each_run_noting_upper`]), so the text is read once for both.

/// The bytes that may separate two digits of a run (at most two of them in a row).
pub(crate) const SEPARATORS: [u8; 6] = *b" -./()";

/// ASCII digits in `hay`.
#[inline]
pub(crate) fn count(hay: &[u8]) -> usize {
    // Counted in byte lanes, 255 bytes at a time, so it vectorises to byte adds.
    hay.chunks(255)
        .map(|c| usize::from(c.iter().fold(0u8, |n, b| n + u8::from(b.is_ascii_digit()))))
        .sum()
}

/// The digit and separator masks of 64 bytes (bit `i` is byte `i`): SSE2 compares, the flags of 16
/// bytes taken at once with `movemask`.
#[cfg(target_arch = "x86_64")]
#[inline]
fn masks(block: &[u8; 64]) -> (u64, u64) {
    use std::arch::x86_64::*;
    let (mut digit, mut sep) = (0u64, 0u64);
    for i in 0..4 {
        // SAFETY: SSE2 is part of x86_64, and the 16 bytes loaded (unaligned) are within `block`.
        unsafe {
            let v = _mm_loadu_si128(block.as_ptr().add(16 * i).cast());
            let s = SEPARATORS.iter().fold(_mm_setzero_si128(), |s, &b| {
                _mm_or_si128(s, _mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8)))
            });
            digit |= u64::from(in_range(v, b'0', 10)) << (16 * i);
            sep |= u64::from(_mm_movemask_epi8(s) as u16) << (16 * i);
        }
    }
    (digit, sep)
}

/// Bit `i`: byte `i` of `v` is in `from..from + n`. Shifted by 128, the unsigned `b - from < n` is a
/// signed comparison, which SSE2 has.
#[cfg(target_arch = "x86_64")]
#[inline]
fn in_range(v: std::arch::x86_64::__m128i, from: u8, n: u8) -> u16 {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is part of x86_64.
    unsafe {
        let shifted = _mm_xor_si128(
            _mm_sub_epi8(v, _mm_set1_epi8(from as i8)),
            _mm_set1_epi8(i8::MIN),
        );
        let lt = _mm_cmplt_epi8(shifted, _mm_set1_epi8(i8::MIN.wrapping_add(n as i8)));
        _mm_movemask_epi8(lt) as u16
    }
}

/// The digit and upper-case masks of 64 bytes: [`masks`] without the separators, and [`upper`], from
/// one load of each 16 bytes.
#[cfg(target_arch = "x86_64")]
#[inline]
fn digit_and_upper(block: &[u8; 64]) -> (u64, u64) {
    use std::arch::x86_64::*;
    let (mut digit, mut upper) = (0u64, 0u64);
    for i in 0..4 {
        // SAFETY: SSE2 is part of x86_64, and the 16 bytes loaded (unaligned) are within `block`.
        let v = unsafe { _mm_loadu_si128(block.as_ptr().add(16 * i).cast()) };
        digit |= u64::from(in_range(v, b'0', 10)) << (16 * i);
        upper |= u64::from(in_range(v, b'A', 26)) << (16 * i);
    }
    (digit, upper)
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn digit_and_upper(block: &[u8; 64]) -> (u64, u64) {
    (masks(block).0, upper(block))
}

/// Bit `i`: byte `i` of `block` is an ASCII upper-case letter.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn upper(block: &[u8; 64]) -> u64 {
    use std::arch::x86_64::*;
    let mut m = 0u64;
    for i in 0..4 {
        // SAFETY: SSE2 is part of x86_64, and the 16 bytes loaded (unaligned) are within `block`.
        let v = unsafe { _mm_loadu_si128(block.as_ptr().add(16 * i).cast()) };
        m |= u64::from(in_range(v, b'A', 26)) << (16 * i);
    }
    m
}

/// The digit, separator and upper-case masks of 64 bytes with AVX2: the compares of [`masks`] and
/// [`upper`] 32 bytes at a time, all three taken from one load of each half.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn masks_avx2(block: &[u8; 64]) -> (u64, u64, u64) {
    use std::arch::x86_64::*;
    let in_range = |v: __m256i, from: u8, n: u8| {
        let shifted = _mm256_xor_si256(
            _mm256_sub_epi8(v, _mm256_set1_epi8(from as i8)),
            _mm256_set1_epi8(i8::MIN),
        );
        let lt = _mm256_cmpgt_epi8(_mm256_set1_epi8(i8::MIN.wrapping_add(n as i8)), shifted);
        _mm256_movemask_epi8(lt) as u32
    };
    let (mut digit, mut sep, mut upper) = (0u64, 0u64, 0u64);
    for i in 0..2 {
        // SAFETY: the 32 bytes loaded (unaligned) are within `block`; AVX2 is the caller's promise.
        let v = unsafe { _mm256_loadu_si256(block.as_ptr().add(32 * i).cast()) };
        let s = SEPARATORS.iter().fold(_mm256_setzero_si256(), |s, &b| {
            _mm256_or_si256(s, _mm256_cmpeq_epi8(v, _mm256_set1_epi8(b as i8)))
        });
        digit |= u64::from(in_range(v, b'0', 10)) << (32 * i);
        sep |= u64::from(_mm256_movemask_epi8(s) as u32) << (32 * i);
        upper |= u64::from(in_range(v, b'A', 26)) << (32 * i);
    }
    (digit, sep, upper)
}

/// Bit `i`: byte `i` of `block` is an ASCII upper-case letter.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub(crate) fn upper(block: &[u8; 64]) -> u64 {
    let mut flags = [0u8; 64];
    for i in 0..64 {
        flags[i] = u8::from(block[i].wrapping_sub(b'A') < 26);
    }
    pack(&flags)
}

/// The digit and separator masks of 64 bytes, portably: flags packed by multiplication.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn masks(block: &[u8; 64]) -> (u64, u64) {
    let mut digit = [0u8; 64];
    let mut sep = [0u8; 64];
    for i in 0..64 {
        let b = block[i];
        digit[i] = u8::from(b.wrapping_sub(b'0') < 10);
        // `|` of comparisons, not `contains`: a branch-free form the compiler turns into vector
        // compares.
        sep[i] = SEPARATORS.iter().fold(0, |s, &c| s | u8::from(b == c));
    }
    (pack(&digit), pack(&sep))
}

/// Packs 64 flags of 0 or 1 into a word: eight at a time, by a multiplication that gathers each
/// byte's low bit into the top byte.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn pack(flags: &[u8; 64]) -> u64 {
    let mut m = 0u64;
    for (i, c) in flags.chunks_exact(8).enumerate() {
        let w = u64::from_le_bytes(c.try_into().expect("chunks of 8"));
        m |= (w.wrapping_mul(0x0102_0408_1020_4080) >> 56) << (8 * i);
    }
    m
}

/// The longest rows of ASCII digits and of ASCII upper-case letters in `hay`, with no byte of
/// another kind between (unlike a run, which `SEPARATORS` do not break). From the 64-byte block masks:
/// a row's length in a block is how many times the mask can be shifted onto itself before it empties,
/// and a row that crosses into the next block goes on from the first block's top bits.
pub(crate) fn longest_rows(hay: &[u8]) -> (usize, usize) {
    let (mut digits, mut uppers) = (LongestRow::default(), LongestRow::default());
    for chunk in hay.chunks(64) {
        let mut tail = [0u8; 64];
        let block = whole_block(chunk, &mut tail);
        let (digit, upper) = digit_and_upper(block);
        digits.add(digit);
        uppers.add(upper);
    }
    (digits.best, uppers.best)
}

/// `chunk` (at most 64 bytes) as a block: itself when whole, else copied into `tail`, which must be
/// zeros (no digit, separator or letter).
#[inline]
pub(crate) fn whole_block<'a>(chunk: &'a [u8], tail: &'a mut [u8; 64]) -> &'a [u8; 64] {
    match <&[u8; 64]>::try_from(chunk) {
        Ok(block) => block,
        Err(_) => {
            tail[..chunk.len()].copy_from_slice(chunk);
            tail
        }
    }
}

/// The longest row of set bits over consecutive 64-bit masks.
#[derive(Default)]
struct LongestRow {
    best: usize,
    /// The row the masks so far end with.
    open: usize,
}

impl LongestRow {
    #[inline]
    fn add(&mut self, mask: u64) {
        let mut longest = 0;
        let mut m = mask;
        while m != 0 {
            m &= m >> 1;
            longest += 1;
        }
        let from_before = self.open + mask.trailing_ones() as usize;
        self.best = self.best.max(longest).max(from_before);
        self.open = if mask == u64::MAX {
            from_before
        } else {
            mask.leading_ones() as usize
        };
    }
}

/// The longest run of digits in `hay`, consecutive digits at most two separators apart.
pub(crate) fn longest_run(hay: &[u8]) -> usize {
    let mut best = 0;
    for_each_run(hay, 1, |_, digits| best = best.max(digits));
    best
}

/// Calls `found(end, digits)` for every run of `hay` (as [`longest_run`] defines them) that holds at
/// least `min` digits, in order: `end` is the index of the run's last digit. Runs never cross a byte
/// that is neither a digit nor a separator, so over values joined by such a byte each run lies in one
/// value. Blocks where no stretch of digits and bridges is `min` bytes long (and none goes on from or
/// into a neighbouring block) skip the per-run loop: a run of `min` digits is at least `min` bytes long.
#[inline]
pub(crate) fn for_each_run(hay: &[u8], min: usize, found: impl FnMut(usize, usize)) {
    for_each_run_impl(hay, min, None, found)
}

/// [`for_each_run`], also appending to `upper` each 64-byte block's upper-case mask (bit `i`: byte
/// `i` of the block is an ASCII upper-case letter; the last block padded), so a caller that needs
/// both reads the text once.
pub(crate) fn for_each_run_noting_upper(
    hay: &[u8],
    min: usize,
    upper: &mut Vec<u64>,
    found: impl FnMut(usize, usize),
) {
    for_each_run_impl(hay, min, Some(upper), found)
}

#[inline]
fn for_each_run_impl(
    hay: &[u8],
    min: usize,
    upper: Option<&mut Vec<u64>>,
    found: impl FnMut(usize, usize),
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU has AVX2 and POPCNT, checked just above.
            return unsafe { runs_with_avx2(hay, min, upper, found) };
        }
        if std::is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU has POPCNT, checked just above.
            return unsafe { runs_with_popcnt(hay, min, upper, found) };
        }
    }
    let mut upper = upper;
    runs(hay, min, baseline_masks(&mut upper), found)
}

/// The masks of the baseline target ([`masks`], and [`upper`] appended to `upper` if given).
#[inline(always)]
fn baseline_masks<'a, 'v>(
    upper: &'a mut Option<&'v mut Vec<u64>>,
) -> impl FnMut(&[u8; 64]) -> (u64, u64) + use<'a, 'v> {
    move |block| {
        if let Some(u) = upper.as_mut() {
            u.push(self::upper(block));
        }
        masks(block)
    }
}

/// [`runs`] with AVX2's 32-byte compares for the masks and POPCNT for the digit counts, neither in
/// the baseline x86_64 target: half the compares of SSE2, and without POPCNT every digit count of a
/// chain is a dozen instructions (5% of a batch's time).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,popcnt")]
unsafe fn runs_with_avx2(
    hay: &[u8],
    min: usize,
    mut upper: Option<&mut Vec<u64>>,
    found: impl FnMut(usize, usize),
) {
    let masks_of = |block: &[u8; 64]| {
        // SAFETY: this function runs only on CPUs with AVX2.
        let (digit, sep, up) = unsafe { masks_avx2(block) };
        if let Some(u) = upper.as_mut() {
            u.push(up);
        }
        (digit, sep)
    };
    runs(hay, min, masks_of, found)
}

/// [`runs`] with SSE2 masks and POPCNT, for x86_64 CPUs without AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn runs_with_popcnt(
    hay: &[u8],
    min: usize,
    mut upper: Option<&mut Vec<u64>>,
    found: impl FnMut(usize, usize),
) {
    runs(hay, min, baseline_masks(&mut upper), found)
}

/// [`for_each_run`], the blocks' (digit, separator) masks given by `masks_of`, for any target;
/// always inlined, so each caller's target features apply to it.
#[inline(always)]
fn runs(
    hay: &[u8],
    min: usize,
    mut masks_of: impl FnMut(&[u8; 64]) -> (u64, u64),
    mut found: impl FnMut(usize, usize),
) {
    // Blocks by index rather than through an iterator adapter, which was not inlined: a call per
    // block.
    let mut block = 0usize;
    let mut next_block = || {
        let at = block * 64;
        block += 1;
        let mut tail = [0u8; 64];
        // One call of `masks_of` for whole blocks and the tail alike, so it is inlined.
        let bytes: &[u8; 64] = match hay.get(at..at + 64) {
            Some(whole) => whole.try_into().expect("64 bytes"),
            None if at < hay.len() => {
                // The tail, padded with zero bytes (no digit, separator or letter).
                tail[..hay.len() - at].copy_from_slice(&hay[at..]);
                &tail
            }
            None => return None,
        };
        Some(masks_of(bytes))
    };
    let (mut prev_d, mut prev_s) = (0u64, 0u64);
    let Some((mut d, mut s)) = next_block() else {
        return;
    };
    let mut prev_j = 0u64;
    // Digits before the current block, and before the start of the run still open, if any.
    let mut base = 0usize;
    let mut open: Option<usize> = None;
    let mut offset = 0usize;
    let stretch = min.clamp(1, 64);
    loop {
        let next = next_block();
        let last = next.is_none();
        let (next_d, next_s) = next.unwrap_or((0, 0));
        // Bit `i` of `before1(x)` is bit `i - 1` of the value's mask `x`; `after1` is `i + 1`.
        let before1 = |cur: u64, prev: u64| cur << 1 | prev >> 63;
        let before2 = |cur: u64, prev: u64| cur << 2 | prev >> 62;
        let after1 = |cur: u64, next: u64| cur >> 1 | next << 63;
        let after2 = |cur: u64, next: u64| cur >> 2 | next << 62;
        let (bd, ad) = (before1(d, prev_d), after1(d, next_d));
        // Separators that bridge two digits: `1-2` (one), `1 -2` (either of two).
        let bridges = s
            & ((bd & ad)
                | (bd & after1(s, next_s) & after2(d, next_d))
                | (before1(s, prev_s) & before2(d, prev_d) & ad));
        let j = d | bridges;
        // Bits where `stretch` consecutive bytes of runs start, within this block.
        let mut long = j;
        for i in 1..stretch {
            long &= j >> i;
        }
        if open.is_some() || long != 0 || j >> 63 != 0 {
            // The next block's bridges need this block's; recomputing its first bit is enough.
            let next_j0 = next_d & 1
                | next_s
                    & 1
                    & ((d >> 63 & (next_d >> 1))
                        | (d >> 63 & (next_s >> 1) & (next_d >> 2))
                        | (s >> 63 & (d >> 62) & (next_d >> 1)));
            // Only the chains that can hold `min` digits: those at least `stretch` bytes long in
            // this block (the windows `long` starts, spread over their bytes), and those going on
            // from the previous block or into the next, whose length is not known here. Short chains
            // (`2/1`, the `00-` of a trace id) were most of the loop's steps.
            let mut kept = long;
            for i in 1..stretch {
                kept |= long << i;
            }
            if prev_j >> 63 != 0 {
                kept |= j & !j.wrapping_add(1);
            }
            if next_j0 != 0 {
                let ones = (!j).leading_zeros();
                kept |= u64::MAX.checked_shl(64 - ones).unwrap_or(0);
            }
            let j = j & kept;
            let mut starts = j & !(j << 1 | prev_j >> 63);
            let mut ends = j & !(j >> 1 | next_j0 << 63);
            loop {
                if open.is_none() {
                    if starts == 0 {
                        break;
                    }
                    let at = starts.trailing_zeros();
                    starts &= starts - 1;
                    open = Some(base + (d & ((1u64 << at) - 1)).count_ones() as usize);
                }
                if ends == 0 {
                    // The run goes on into the next block.
                    break;
                }
                let at = ends.trailing_zeros();
                ends &= ends - 1;
                let through = if at == 63 {
                    u64::MAX
                } else {
                    (1u64 << (at + 1)) - 1
                };
                let digits = base + (d & through).count_ones() as usize;
                if let Some(start) = open.take() {
                    if digits - start >= min {
                        found(offset + at as usize, digits - start);
                    }
                }
            }
        }
        base += d.count_ones() as usize;
        offset += 64;
        if last {
            break;
        }
        (prev_d, prev_s, prev_j) = (d, s, j);
        (d, s) = (next_d, next_s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What one implementation of the run scan gave: its name, the runs, the upper-case masks.
    type PathResult = (&'static str, Vec<(usize, usize)>, Vec<u64>);
    /// A run scan noting upper-case masks into the vector and runs into the callback.
    type RunScan<'a> = &'a dyn Fn(&mut Vec<u64>, &mut dyn FnMut(usize, usize));

    /// The result of each implementation of the run scan this CPU can run, whichever
    /// [`for_each_run`] would pick.
    fn every_path(hay: &[u8], min: usize) -> Vec<PathResult> {
        let mut out = Vec::new();
        let mut run = |name, f: RunScan| {
            let (mut got, mut uppers) = (Vec::new(), Vec::new());
            f(&mut uppers, &mut |end, n| got.push((end, n)));
            out.push((name, got, uppers));
        };
        run("baseline target", &|u, found| {
            runs(hay, min, baseline_masks(&mut Some(u)), found)
        });
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("popcnt") {
                // SAFETY: the CPU has POPCNT, checked just above.
                run("popcnt", &|u, found| unsafe {
                    runs_with_popcnt(hay, min, Some(u), found)
                });
            }
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("popcnt") {
                // SAFETY: the CPU has AVX2 and POPCNT, checked just above.
                run("avx2", &|u, found| unsafe {
                    runs_with_avx2(hay, min, Some(u), found)
                });
            }
        }
        out
    }

    /// The definition, byte by byte.
    fn reference(hay: &[u8]) -> usize {
        let (mut best, mut run, mut gap) = (0usize, 0usize, 0usize);
        for &b in hay {
            let digit = b.is_ascii_digit();
            let sep = !digit
                && run > 0
                && gap < 2
                && matches!(b, b' ' | b'-' | b'.' | b'/' | b'(' | b')');
            run = if digit {
                run + 1
            } else if sep {
                run
            } else {
                0
            };
            gap = if sep { gap + 1 } else { 0 };
            best = best.max(run);
        }
        best
    }

    /// The digits of the run still open at the end of `hay` (0 when none is).
    fn reference_run_ending(hay: &[u8]) -> usize {
        let (mut run, mut gap) = (0usize, 0usize);
        for &b in hay {
            let digit = b.is_ascii_digit();
            let sep = !digit
                && run > 0
                && gap < 2
                && matches!(b, b' ' | b'-' | b'.' | b'/' | b'(' | b')');
            run = if digit {
                run + 1
            } else if sep {
                run
            } else {
                0
            };
            gap = if sep { gap + 1 } else { 0 };
        }
        run
    }

    /// Whether the run holding the digit at `end` goes on to a later digit.
    fn continues(hay: &[u8], end: usize) -> bool {
        let next = |i: usize| hay.get(i).copied();
        let sep = |b: Option<u8>| matches!(b, Some(b' ' | b'-' | b'.' | b'/' | b'(' | b')'));
        let digit = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_digit());
        digit(next(end + 1))
            || (sep(next(end + 1)) && digit(next(end + 2)))
            || (sep(next(end + 1)) && sep(next(end + 2)) && digit(next(end + 3)))
    }

    #[test]
    fn digit_runs_span_up_to_two_separators() {
        for (text, want) in [
            ("4111 1111 1111 1111", 16),
            ("(415) 555-2671", 10),
            ("a1b2c3", 1),
            ("12 - 34", 2),
            ("12 -34", 4),
            ("v1.24.3-rc.1", 4),
            ("", 0),
            ("--12", 2),
        ] {
            assert_eq!(longest_run(text.as_bytes()), want, "{text:?}");
            assert_eq!(reference(text.as_bytes()), want, "{text:?}");
        }
    }

    #[test]
    fn rows_are_broken_by_any_other_byte() {
        let long = |pad: usize, row: &str| format!("{}{row}x", "x".repeat(pad));
        for (text, want) in [
            (long(60, "12345678"), (8, 0)),
            (long(64, "12345678"), (8, 0)),
            (long(30, &"7".repeat(100)), (100, 0)),
            (long(63, "AB12"), (2, 2)),
            (
                long(0, &format!("{}{}", "A".repeat(64), "B".repeat(64))),
                (0, 128),
            ),
        ] {
            assert_eq!(longest_rows(text.as_bytes()), want, "{text:?}");
        }
        for (text, want) in [
            ("2024-05-13T14:25:36.123Z", (4, 1)),
            ("NL91ABNA0417164300", (10, 4)),
            ("12345678Z", (8, 1)),
            ("AB 12", (2, 2)),
            ("a1b2", (1, 0)),
            ("", (0, 0)),
            ("XY", (0, 2)),
        ] {
            assert_eq!(longest_rows(text.as_bytes()), want, "{text:?}");
        }
    }

    #[test]
    fn runs_across_block_boundaries() {
        for pad in 55..70 {
            for tail in ["1234 5678 9012 3456", "12 -34", "1--2--3", "9"] {
                let text = format!("{}{tail}x", "a".repeat(pad));
                assert_eq!(
                    longest_run(text.as_bytes()),
                    reference(text.as_bytes()),
                    "{text:?}"
                );
            }
        }
        let long = "1-".repeat(200);
        assert_eq!(longest_run(long.as_bytes()), 200);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn equals_the_byte_by_byte_definition(hay in "[0-9 ./()a-]{0,300}") {
            prop_assert_eq!(longest_run(hay.as_bytes()), reference(hay.as_bytes()));
        }

        #[test]
        fn rows_equal_the_byte_by_byte_definition(hay in "([0-9]{0,70}|[A-Z]{0,70}|[a -]{0,3}){0,9}") {
            let (mut d, mut u, mut want) = (0, 0, (0, 0));
            for &b in hay.as_bytes() {
                d = if b.is_ascii_digit() { d + 1 } else { 0 };
                u = if b.is_ascii_uppercase() { u + 1 } else { 0 };
                want = (want.0.max(d), want.1.max(u));
            }
            prop_assert_eq!(longest_rows(hay.as_bytes()), want);
        }

        #[test]
        fn reports_every_run_of_at_least_min(
            hay in "[0-9 ./()aAZ\\x00-]{0,300}",
            min in 1..14usize,
        ) {
            // The reference: the run's digits so far at each digit that no later digit of the same
            // run follows.
            let mut want = Vec::new();
            for end in 0..hay.len() {
                let here = reference_run_ending(&hay.as_bytes()[..=end]);
                if here >= min
                    && hay.as_bytes()[end].is_ascii_digit()
                    && !continues(hay.as_bytes(), end)
                {
                    want.push((end, here));
                }
            }
            let mut got = Vec::new();
            for_each_run(hay.as_bytes(), min, |end, n| got.push((end, n)));
            prop_assert_eq!(&got, &want);
            // Every implementation this CPU can run, each also noting the upper-case masks.
            let padded_uppers: Vec<u64> = hay
                .as_bytes()
                .chunks(64)
                .map(|c| {
                    c.iter().enumerate().fold(0u64, |m, (i, b)| m | u64::from(b.is_ascii_uppercase()) << i)
                })
                .collect();
            for (path, got, uppers) in every_path(hay.as_bytes(), min) {
                prop_assert_eq!(&got, &want, "{}", path);
                prop_assert_eq!(&uppers, &padded_uppers, "{}", path);
            }
        }

        #[test]
        fn block_masks_flag_exactly_their_bytes(block in prop::collection::vec(any::<u8>(), 64)) {
            let block: &[u8; 64] = block[..].try_into().unwrap();
            let flags = |f: &dyn Fn(u8) -> bool| {
                block.iter().enumerate().fold(0u64, |m, (i, &b)| m | u64::from(f(b)) << i)
            };
            let (digit, sep) = masks(block);
            prop_assert_eq!(digit, flags(&|b| b.is_ascii_digit()));
            prop_assert_eq!(sep, flags(&|b| b" -./()".contains(&b)));
            prop_assert_eq!(upper(block), flags(&|b| b.is_ascii_uppercase()));
            prop_assert_eq!(digit_and_upper(block), (digit, upper(block)));
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2, checked just above.
                let wide = unsafe { masks_avx2(block) };
                prop_assert_eq!(wide, (digit, sep, upper(block)));
            }
        }

        #[test]
        fn counts_every_digit(hay in prop::collection::vec(any::<u8>(), 0..700)) {
            prop_assert_eq!(count(&hay), hay.iter().filter(|b| b.is_ascii_digit()).count());
        }
    }
}
