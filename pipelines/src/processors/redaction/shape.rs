//! A value's shape: its bytes with every ASCII digit read as `0`, so `order 8525239 took 2043 ms`
//! and `order 3144846 took 1901 ms` have one shape. Telemetry values are mostly templates filled in
//! with numbers (log lines with ids and durations, URLs with ids, timestamps), so far fewer shapes
//! than values recur from batch to batch.
//!
//! What a batch's passes decide about a value is a function of its shape and key bits alone: no
//! prefilter literal and no streamed byte is a digit (checked when the plan is built), upper-case
//! letters are not digits, and the digit runs and rows depend only on which bytes are digits and
//! which are separators, which the shape keeps. So a batch remembers, per shape, the rules its
//! passes left possible ([`super::batch`]), and a value of a known shape skips the passes.
//!
//! This module hashes and compares shapes without building them: 32 bytes at a time with AVX2
//! where the CPU has it (chosen at run time), else eight at a time in a word. Every value pushed to
//! a batch is hashed, so the hash reads each byte once and costs a few instructions per 32 bytes.
//! The comparison is exact: a shape is only taken as known when every byte matches.

/// Longer values are not memoised: they recur less, and the memo's memory stays bounded.
pub(crate) const MAX: usize = 256;

/// The hash of `value`'s shape with `key` (never 0), or 0 if the value is empty or longer than
/// [`MAX`].
#[inline]
pub(crate) fn hash(value: &[u8], key: Option<u64>) -> u32 {
    if value.is_empty() || value.len() > MAX {
        return 0;
    }
    let h = imp::hash(value);
    let k = key.map_or(0x243f_6a88_85a3_08d3, |k| k ^ 0x1319_8a2e_0370_7344);
    let h = (h ^ (value.len() as u64).rotate_left(40) ^ k.rotate_left(7))
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((h >> 32) as u32).max(1)
}

/// Whether `value`'s shape is `shape` (as [`write`] gives it).
#[inline]
pub(crate) fn same(value: &[u8], shape: &[u8]) -> bool {
    value.len() == shape.len() && !value.is_empty() && imp::same(value, shape)
}

/// `value`'s shape, into `out` (cleared first).
pub(crate) fn write(value: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend(
        value
            .iter()
            .map(|&b| if b.is_ascii_digit() { b'0' } else { b }),
    );
}

/// Eight bytes with their digits as `0`. `x` is the word with `0` subtracted bytewise, by XOR: a
/// digit's byte is then below 10, and the low nibble cleared makes it `0` again.
#[inline]
fn word_shape(w: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let x = w ^ 0x3030_3030_3030_3030;
    // High bit of a byte of `t`: its low seven bits are 10 or more; of `x`: it was not ASCII.
    let t = (x & LOW7).wrapping_add(0x7676_7676_7676_7676);
    let digit = !(t | x) & HIGH;
    w & !((digit >> 3) - (digit >> 7))
}

/// The eight bytes of `v` at `at`.
#[inline]
fn word(v: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(v[at..at + 8].try_into().expect("8 bytes"))
}

/// A value of 1..8 bytes as one word: every byte in it, placed alike for any two values of one
/// length.
#[inline]
fn small(v: &[u8]) -> u64 {
    let n = v.len();
    if n >= 4 {
        let half = |at: usize| u64::from(u32::from_le_bytes(v[at..at + 4].try_into().expect("4")));
        half(0) | half(n - 4) << 32
    } else {
        u64::from(v[0]) | u64::from(v[n / 2]) << 8 | u64::from(v[n - 1]) << 16
    }
}

/// The word at a time version, for any target. A value of eight bytes or more is read as its whole
/// words from the start and the word ending at its end (overlapping the one before): every byte in
/// at least one word, the same words for any two values of one length, so two values' shapes are
/// equal exactly when their words' shapes are.
mod words {
    use super::{small, word, word_shape};

    pub(super) fn hash(v: &[u8]) -> u64 {
        let n = v.len();
        if n < 8 {
            return word_shape(small(v)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
        // Two lanes, so consecutive words' multiplications do not wait on each other.
        let (mut a, mut b) = (0x4528_21e6_38d0_1377u64, 0xbe54_66cf_34e9_0c6cu64);
        let mut at = 0;
        while at + 8 < n {
            a = (a ^ word_shape(word(v, at)))
                .wrapping_mul(0x517c_c1b7_2722_0a95)
                .rotate_left(23);
            (a, b) = (b, a);
            at += 8;
        }
        b = (b ^ word_shape(word(v, n - 8))).wrapping_mul(0x6c62_272e_07bb_0142);
        a ^ b.rotate_left(32)
    }

    pub(super) fn same(v: &[u8], shape: &[u8]) -> bool {
        let n = v.len();
        if n < 8 {
            return word_shape(small(v)) == small(shape);
        }
        let mut at = 0;
        while at + 8 < n {
            if word_shape(word(v, at)) != word(shape, at) {
                return false;
            }
            at += 8;
        }
        word_shape(word(v, n - 8)) == word(shape, n - 8)
    }
}

#[cfg(not(target_arch = "x86_64"))]
use words as imp;

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::*;

    #[inline]
    pub(super) fn hash(v: &[u8]) -> u64 {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            unsafe { hash_avx2(v) }
        } else {
            super::words::hash(v)
        }
    }

    #[inline]
    pub(super) fn same(v: &[u8], shape: &[u8]) -> bool {
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            unsafe { same_avx2(v, shape) }
        } else {
            super::words::same(v, shape)
        }
    }

    /// The 32 bytes at `at` of a value of `n` bytes at `p` (`n` ≥ 32), or its last 32 when fewer
    /// are left: whole vectors from the start, the last one ending at the value's end (overlapping
    /// the one before).
    ///
    /// # Safety
    /// `p` must point at `n` readable bytes, `n` ≥ 32; the CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn vector(p: *const u8, n: usize, at: usize) -> __m256i {
        // SAFETY: the load ends at `at.min(n - 32) + 32 <= n`, within the caller's bytes.
        unsafe { _mm256_loadu_si256(p.add(at.min(n - 32)).cast()) }
    }

    /// A value of fewer than 32 bytes as one vector: every byte in at least one lane, the lanes
    /// placed alike for any two values of one length.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn short(v: &[u8]) -> __m256i {
        let n = v.len();
        if n >= 16 {
            // SAFETY: both 16-byte loads are within `v`.
            unsafe {
                _mm256_set_m128i(
                    _mm_loadu_si128(v.as_ptr().add(n - 16).cast()),
                    _mm_loadu_si128(v.as_ptr().cast()),
                )
            }
        } else if n >= 8 {
            _mm256_set_epi64x(0, 0, super::word(v, n - 8) as i64, super::word(v, 0) as i64)
        } else {
            _mm256_set_epi64x(0, 0, 0, super::small(v) as i64)
        }
    }

    /// The vector with its digits as `0`.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn vector_shape(v: __m256i) -> __m256i {
        // Shifted by 128, the unsigned `b - '0' < 10` is a signed comparison.
        let shifted = _mm256_xor_si256(
            _mm256_sub_epi8(v, _mm256_set1_epi8(b'0' as i8)),
            _mm256_set1_epi8(i8::MIN),
        );
        let digit = _mm256_cmpgt_epi8(_mm256_set1_epi8(i8::MIN + 10), shifted);
        _mm256_andnot_si256(_mm256_and_si256(digit, _mm256_set1_epi8(0x0f)), v)
    }

    /// Per 32 bytes, the four lanes' halves multiplied (after a key that changes with the
    /// position, so vectors in another order hash apart) and the input added, as fast
    /// non-cryptographic hashes do.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn mix(acc: __m256i, v: __m256i, key: __m256i) -> __m256i {
        let k = _mm256_xor_si256(v, key);
        let product = _mm256_mul_epu32(k, _mm256_srli_epi64(k, 32));
        _mm256_add_epi64(
            _mm256_add_epi64(acc, product),
            _mm256_shuffle_epi32(v, 0b0100_1110),
        )
    }

    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    unsafe fn hash_avx2(v: &[u8]) -> u64 {
        let n = v.len();
        let mut key = _mm256_set_epi64x(
            0x1cad_21f7_2c81_017c,
            0x5b97_9083_e96d_d4de,
            0x1f67_b3b7_a4a4_4072,
            0x78e5_c0cc_4ee6_79cb,
        );
        let mut acc = key;
        if n >= 32 {
            let mut at = 0;
            loop {
                // SAFETY: `v` holds `n` bytes, and the CPU has AVX2 (this function's promise).
                let x = unsafe { vector(v.as_ptr(), n, at) };
                acc = mix(acc, vector_shape(x), key);
                key = _mm256_add_epi64(key, _mm256_set1_epi64x(0x9e37_79b9));
                at += 32;
                if at >= n {
                    break;
                }
            }
        } else {
            // SAFETY: the CPU has AVX2 (this function's promise).
            acc = mix(acc, vector_shape(unsafe { short(v) }), key);
        }
        let folded = _mm_xor_si128(
            _mm256_castsi256_si128(acc),
            _mm_shuffle_epi32(_mm256_extracti128_si256::<1>(acc), 0b0100_1110),
        );
        let (a, b) = (_mm_cvtsi128_si64(folded), _mm_extract_epi64::<1>(folded));
        a as u64 ^ (b as u64).rotate_left(29)
    }

    /// # Safety
    /// `v` and `shape` must have the same, nonzero length; the CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    unsafe fn same_avx2(v: &[u8], shape: &[u8]) -> bool {
        let n = v.len();
        let equal = |a: __m256i, b: __m256i| {
            _mm256_movemask_epi8(_mm256_cmpeq_epi8(vector_shape(a), b)) == -1
        };
        if n >= 32 {
            let mut at = 0;
            loop {
                // SAFETY: both hold `n` bytes, and the CPU has AVX2 (this function's promise).
                let (a, b) = unsafe { (vector(v.as_ptr(), n, at), vector(shape.as_ptr(), n, at)) };
                if !equal(a, b) {
                    return false;
                }
                at += 32;
                if at >= n {
                    return true;
                }
            }
        }
        // SAFETY: the CPU has AVX2 (this function's promise).
        unsafe { equal(short(v), short(shape)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn shape_of(v: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        write(v, &mut out);
        out
    }

    #[test]
    fn digits_are_zero_and_nothing_else_changes() {
        assert_eq!(
            shape_of(b"order 8525239 in 2043 ms"),
            b"order 0000000 in 0000 ms"
        );
        let every: Vec<u8> = (0..=255).collect();
        let shape = shape_of(&every);
        for (b, s) in every.iter().zip(&shape) {
            assert_eq!(*s, if b.is_ascii_digit() { b'0' } else { *b });
        }
        // Every byte value through the word at a time version too, eight at a time.
        for chunk in every.chunks(8) {
            let w = u64::from_le_bytes(chunk.try_into().unwrap());
            assert_eq!(
                word_shape(w).to_le_bytes().to_vec(),
                shape_of(chunk),
                "{w:#x}"
            );
        }
        for w in [
            0u64,
            u64::MAX,
            0x3930_2f3a_ff80_7f00,
            u64::from_le_bytes(*b"a1/:09\xb0\xb9"),
        ] {
            let bytes = w.to_le_bytes();
            assert_eq!(
                word_shape(w).to_le_bytes().to_vec(),
                shape_of(&bytes),
                "{w:#x}"
            );
        }
    }

    #[test]
    fn values_of_one_shape_hash_alike_and_others_mostly_not() {
        let a = b"https://cart.shop.example.com/api/v2/cart/76894?page=15&lang=en-GB";
        let b = b"https://cart.shop.example.com/api/v3/cart/12345?page=99&lang=en-GB";
        assert_eq!(hash(a, None), hash(b, None));
        assert!(same(b, &shape_of(a)));
        assert_ne!(hash(a, None), hash(a, Some(1)));
        assert_ne!(hash(a, Some(1)), hash(a, Some(2)));
        assert_eq!(hash(&[], None), 0);
        assert_eq!(hash(&[b'x'; MAX + 1], None), 0);
        assert_ne!(hash(&[b'x'; MAX], None), 0);
        // Distinct shapes of every length class: few collisions among 32-bit hashes.
        let mut seen = std::collections::HashSet::new();
        let mut n = 0;
        for len in 1..=MAX {
            for c in [b'a', b'b', b'Z'] {
                let mut v = vec![b'x'; len];
                v[len / 3] = c;
                seen.insert(hash(&v, None));
                n += 1;
            }
        }
        assert!(seen.len() >= n - 2, "{} hashes for {n} shapes", seen.len());
    }

    proptest! {
        /// Equality and hashing by shape agree with building the shapes, on both implementations,
        /// for values that differ in one byte (a digit for another digit, or any other change).
        #[test]
        fn shapes_compare_and_hash_as_built(
            v in prop::collection::vec(prop_oneof![
                3 => prop::sample::select(b"0123456789 -./:Aa".to_vec()),
                1 => any::<u8>(),
            ], 1..=MAX),
            at in any::<prop::sample::Index>(),
            to in any::<u8>(),
        ) {
            let mut w = v.clone();
            w[at.index(v.len())] = to;
            let equal = shape_of(&v) == shape_of(&w);
            prop_assert_eq!(same(&w, &shape_of(&v)), equal);
            prop_assert_eq!(words::same(&w, &shape_of(&v)), equal);
            prop_assert!(same(&v, &shape_of(&v)));
            if equal {
                prop_assert_eq!(hash(&v, Some(3)), hash(&w, Some(3)));
                prop_assert_eq!(words::hash(&v), words::hash(&w));
            }
            prop_assert!(!same(&v[1..], &shape_of(&v)));
        }
    }
}
