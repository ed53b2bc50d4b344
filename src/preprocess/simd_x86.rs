//! SSE4.1 and AVX2 versions of the preprocessing kernels ([`super::kernels`]), picked at run time.
//!
//! Why `unsafe` lives here: the release build targets baseline x86-64 (SSE2) so one binary runs
//! on every x86 board, and the wide instructions are only used after `is_x86_feature_detected!`
//! said the CPU has them. Calling a `#[target_feature]` function and loading or storing through
//! the intrinsics' raw pointers are the two operations Rust cannot check; both are confined to
//! this module. Every public function here is safe: it checks the CPU feature itself (a cached
//! flag) and the slice bounds before the unchecked part runs, and every pointer access goes
//! through a helper that slices the exact bytes it touches first. No crate fits (see
//! `docs/ARCHITECTURE.md`): the kernels work on the source's own packed or planar layout with
//! weights folded over subsampled chroma, which no resizer's API takes.
//!
//! Arithmetic is integer (Q14 weights, Q7 samples, Q13 colour matrix) until the final two
//! correctly rounded divisions, so the results equal the portable kernels bit for bit.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use super::kernels::{SAMPLE_MAX, q14_to_sample, tail};
use super::layout::{CONV_SHIFT, Conv};
use super::taps::{HTaps, SAMPLE_BITS, WEIGHT_BITS};

/// Two i16 weights as the i32 lane `_mm_madd_epi16` multiplies a pair of samples by.
#[inline]
fn pair(lo: i16, hi: i16) -> i32 {
    i32::from(lo as u16) | (i32::from(hi) << 16)
}

fn check_vertical(src: &[u8], stride: usize, w: &[i16], out: &[i16]) {
    assert!(
        !w.is_empty() && (w.len() - 1) * stride + out.len() <= src.len(),
        "vertical pass reads past the plane"
    );
}

/// What the horizontal kernels rely on: every output's `taps` samples lie inside `src` (the
/// taps' reach, computed when they were made) and its weights inside theirs (`HTaps` holds
/// `taps` weights per output, `taps` a positive multiple of 8).
fn check_horizontal(src: &[i16], h: &HTaps, out: &[i16]) {
    assert!(h.reach() <= src.len() && out.len() == h.outputs() && h.taps().is_multiple_of(8));
}

// ------------------------------------------------------------------------------------ loads

/// `s[i..i + 8]` as eight i16 lanes.
#[inline]
#[target_feature(enable = "sse4.1")]
fn load_i16x8(s: &[i16], i: usize) -> __m128i {
    let b: &[i16] = &s[i..i + 8];
    // SAFETY: `b` is 16 readable bytes; `_mm_loadu_si128` reads exactly 16, unaligned.
    unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
}

/// `s[i..i + 4]` sign-extended to four i32 lanes.
#[inline]
#[target_feature(enable = "sse4.1")]
fn load_i16x4_i32(s: &[i16], i: usize) -> __m128i {
    let b: &[i16] = &s[i..i + 4];
    // SAFETY: `b` is 8 readable bytes; `_mm_loadl_epi64` reads exactly 8, unaligned.
    _mm_cvtepi16_epi32(unsafe { _mm_loadl_epi64(b.as_ptr().cast()) })
}

#[inline]
#[target_feature(enable = "sse4.1")]
fn store_i16x8(s: &mut [i16], i: usize, v: __m128i) {
    let b: &mut [i16] = &mut s[i..i + 8];
    // SAFETY: `b` is 16 writable bytes; `_mm_storeu_si128` writes exactly 16, unaligned.
    unsafe { _mm_storeu_si128(b.as_mut_ptr().cast(), v) }
}

/// The low 8 bytes of `v` into `s[i..i + 8]`.
#[inline]
#[target_feature(enable = "sse4.1")]
fn store_u8x8(s: &mut [u8], i: usize, v: __m128i) {
    let b: &mut [u8] = &mut s[i..i + 8];
    // SAFETY: `b` is 8 writable bytes; `_mm_storel_epi64` writes exactly 8, unaligned.
    unsafe { _mm_storel_epi64(b.as_mut_ptr().cast(), v) }
}

#[inline]
#[target_feature(enable = "avx2")]
fn load_i16x16_avx(s: &[i16], i: usize) -> __m256i {
    let b: &[i16] = &s[i..i + 16];
    // SAFETY: `b` is 32 readable bytes; `_mm256_loadu_si256` reads exactly 32, unaligned.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

/// `s[i..i + 8]` sign-extended to eight i32 lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn load_i16x8_i32_avx(s: &[i16], i: usize) -> __m256i {
    let b: &[i16] = &s[i..i + 8];
    // SAFETY: `b` is 16 readable bytes; `_mm_loadu_si128` reads exactly 16, unaligned.
    _mm256_cvtepi16_epi32(unsafe { _mm_loadu_si128(b.as_ptr().cast()) })
}

#[inline]
#[target_feature(enable = "avx2")]
fn store_i16x16_avx(s: &mut [i16], i: usize, v: __m256i) {
    let b: &mut [i16] = &mut s[i..i + 16];
    // SAFETY: `b` is 32 writable bytes; `_mm256_storeu_si256` writes exactly 32, unaligned.
    unsafe { _mm256_storeu_si256(b.as_mut_ptr().cast(), v) }
}

#[inline]
#[target_feature(enable = "avx2")]
fn store_f32x8_avx(s: &mut [f32], i: usize, v: __m256) {
    let b: &mut [f32] = &mut s[i..i + 8];
    // SAFETY: `b` is 32 writable bytes; `_mm256_storeu_ps` writes exactly 32, unaligned.
    unsafe { _mm256_storeu_ps(b.as_mut_ptr(), v) }
}

// ------------------------------------------------------------------------------- vertical

/// The weights `w[k], w[k + 1]` as the i32 lane `_mm_madd_epi16` multiplies a pair by.
#[inline(always)]
fn pair_at(w: &[i16], k: usize) -> i32 {
    pair(w[k], w.get(k + 1).copied().unwrap_or(0))
}

/// [`super::kernels::vertical`] with SSE4.1 (`src` starts at the first row it reads).
pub fn vertical_sse41(src: &[u8], stride: usize, w: &[i16], out: &mut [i16]) {
    check_vertical(src, stride, w, out);
    assert!(std::arch::is_x86_feature_detected!("sse4.1"));
    // SSE4.1 is present (checked above), and `check_vertical` proved that every row
    // `k < w.len()` has `out.len()` readable bytes at `k * stride`.
    // SAFETY: the CPU feature and the bounds are checked just above.
    unsafe { vertical_sse41_impl(src, stride, w, out) }
}

/// # Safety
/// SSE4.1 is present, and `(w.len() - 1) * stride + out.len() <= src.len()` with `w` non-empty.
#[target_feature(enable = "sse4.1")]
unsafe fn vertical_sse41_impl(src: &[u8], stride: usize, w: &[i16], out: &mut [i16]) {
    let (n, width) = (w.len(), out.len());
    let round = _mm_set1_epi32(1 << (WEIGHT_BITS - SAMPLE_BITS - 1));
    let zero = _mm_setzero_si128();
    let max = _mm_set1_epi16(SAMPLE_MAX as i16);
    let base = src.as_ptr();
    let mut x = 0;
    while x + 8 <= width {
        let (mut lo, mut hi) = (round, round);
        let mut k = 0;
        while k < n {
            let wp = _mm_set1_epi32(pair_at(w, k));
            // Rows k and k + 1 (when k + 1 < n) have 8 readable bytes at x, as
            // x + 8 <= width (the caller's contract).
            // SAFETY: every access stays in bounds, as the lines above show.
            let a = _mm_cvtepu8_epi16(unsafe { _mm_loadl_epi64(base.add(k * stride + x).cast()) });
            let b = if k + 1 < n {
                // SAFETY: as above, row k + 1 < n.
                _mm_cvtepu8_epi16(unsafe { _mm_loadl_epi64(base.add((k + 1) * stride + x).cast()) })
            } else {
                zero
            };
            lo = _mm_add_epi32(lo, _mm_madd_epi16(_mm_unpacklo_epi16(a, b), wp));
            hi = _mm_add_epi32(hi, _mm_madd_epi16(_mm_unpackhi_epi16(a, b), wp));
            k += 2;
        }
        let v = _mm_packs_epi32(
            _mm_srai_epi32::<{ (WEIGHT_BITS - SAMPLE_BITS) as i32 }>(lo),
            _mm_srai_epi32::<{ (WEIGHT_BITS - SAMPLE_BITS) as i32 }>(hi),
        );
        store_i16x8(out, x, _mm_min_epi16(_mm_max_epi16(v, zero), max));
        x += 8;
    }
    if x < width {
        tail::vertical(&src[x..], stride, w, &mut out[x..]);
    }
}

/// [`super::kernels::vertical`] with AVX2 (`src` starts at the first row it reads).
pub fn vertical_avx2(src: &[u8], stride: usize, w: &[i16], out: &mut [i16]) {
    check_vertical(src, stride, w, out);
    assert!(std::arch::is_x86_feature_detected!("avx2"));
    // AVX2 (and so SSE4.1) is present (checked above), and `check_vertical` proved
    // that every row `k < w.len()` has `out.len()` readable bytes at `k * stride`.
    // SAFETY: the CPU feature and the bounds are checked just above.
    unsafe { vertical_avx2_impl(src, stride, w, out) }
}

/// Sixteen pixels of one row (`p`) and the next (`q`, or zeros) weighted by a pair into the
/// accumulators (`lo`: pixels 0-3 and 8-11, `hi`: 4-7 and 12-15, from the in-lane unpacks).
#[inline]
#[target_feature(enable = "avx2")]
fn madd16(lo: &mut __m256i, hi: &mut __m256i, p: __m128i, q: __m128i, wp: __m256i) {
    let (a, b) = (_mm256_cvtepu8_epi16(p), _mm256_cvtepu8_epi16(q));
    *lo = _mm256_add_epi32(*lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(a, b), wp));
    *hi = _mm256_add_epi32(*hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(a, b), wp));
}

/// The accumulators of [`madd16`] as sixteen clipped Q7 samples, in pixel order.
#[inline]
#[target_feature(enable = "avx2")]
fn finish16(lo: __m256i, hi: __m256i) -> __m256i {
    let v = _mm256_packs_epi32(
        _mm256_srai_epi32::<{ (WEIGHT_BITS - SAMPLE_BITS) as i32 }>(lo),
        _mm256_srai_epi32::<{ (WEIGHT_BITS - SAMPLE_BITS) as i32 }>(hi),
    );
    _mm256_min_epi16(
        _mm256_max_epi16(v, _mm256_setzero_si256()),
        _mm256_set1_epi16(SAMPLE_MAX as i16),
    )
}

/// # Safety
/// AVX2 is present, and `(w.len() - 1) * stride + out.len() <= src.len()` with `w` non-empty.
#[target_feature(enable = "avx2")]
unsafe fn vertical_avx2_impl(src: &[u8], stride: usize, w: &[i16], out: &mut [i16]) {
    let (n, width) = (w.len(), out.len());
    let round = _mm256_set1_epi32(1 << (WEIGHT_BITS - SAMPLE_BITS - 1));
    let base = src.as_ptr();
    let load = |off: usize| {
        // Every caller below reads 16 bytes at `k * stride + x` with k < n and
        // x + 16 <= width (32 for the second half), inside `src` by the caller's contract.
        // SAFETY: every access stays in bounds, as the lines above show.
        unsafe { _mm_loadu_si128(base.add(off).cast()) }
    };
    let mut x = 0;
    // Two groups of sixteen pixels per pass over the taps: two independent chains.
    while x + 32 <= width {
        let (mut lo0, mut hi0, mut lo1, mut hi1) = (round, round, round, round);
        let mut k = 0;
        while k + 1 < n {
            let wp = _mm256_set1_epi32(pair(w[k], w[k + 1]));
            let (r0, r1) = (k * stride + x, (k + 1) * stride + x);
            madd16(&mut lo0, &mut hi0, load(r0), load(r1), wp);
            madd16(&mut lo1, &mut hi1, load(r0 + 16), load(r1 + 16), wp);
            k += 2;
        }
        if k < n {
            let wp = _mm256_set1_epi32(pair(w[k], 0));
            let r0 = k * stride + x;
            let z = _mm_setzero_si128();
            madd16(&mut lo0, &mut hi0, load(r0), z, wp);
            madd16(&mut lo1, &mut hi1, load(r0 + 16), z, wp);
        }
        store_i16x16_avx(out, x, finish16(lo0, hi0));
        store_i16x16_avx(out, x + 16, finish16(lo1, hi1));
        x += 32;
    }
    while x + 16 <= width {
        let (mut lo, mut hi) = (round, round);
        let mut k = 0;
        while k < n {
            let wp = _mm256_set1_epi32(pair_at(w, k));
            let q = if k + 1 < n {
                load((k + 1) * stride + x)
            } else {
                _mm_setzero_si128()
            };
            madd16(&mut lo, &mut hi, load(k * stride + x), q, wp);
            k += 2;
        }
        store_i16x16_avx(out, x, finish16(lo, hi));
        x += 16;
    }
    if x < width {
        // SAFETY: the same contract holds for the columns from x on.
        unsafe { vertical_sse41_impl(&src[x..], stride, w, &mut out[x..]) }
    }
}

// ----------------------------------------------------------------------------- horizontal

/// Sums of the four i32 lanes of `a`, `b`, `c`, `d`, rounded and clipped to Q7 samples, as the
/// low four i16 lanes.
#[inline]
#[target_feature(enable = "sse4.1")]
fn finish4(a: __m128i, b: __m128i, c: __m128i, d: __m128i) -> __m128i {
    let sums = _mm_hadd_epi32(_mm_hadd_epi32(a, b), _mm_hadd_epi32(c, d));
    let rounded = _mm_srai_epi32::<{ WEIGHT_BITS as i32 }>(_mm_add_epi32(
        sums,
        _mm_set1_epi32(1 << (WEIGHT_BITS - 1)),
    ));
    let v = _mm_packs_epi32(rounded, rounded);
    _mm_min_epi16(
        _mm_max_epi16(v, _mm_setzero_si128()),
        _mm_set1_epi16(SAMPLE_MAX as i16),
    )
}

/// The four results of [`finish4`] into `out[i..i + 4]`.
#[inline]
#[target_feature(enable = "sse4.1")]
fn store4(out: &mut [i16], i: usize, v: __m128i) {
    let b: &mut [i16] = &mut out[i..i + 4];
    // SAFETY: `b` is 8 writable bytes; `_mm_storel_epi64` writes exactly 8, unaligned.
    unsafe { _mm_storel_epi64(b.as_mut_ptr().cast(), v) }
}

/// The sum of the four i32 lanes of `acc`, rounded and clipped.
#[inline]
#[target_feature(enable = "sse4.1")]
fn finish1(acc: __m128i) -> i16 {
    let s = _mm_add_epi32(acc, _mm_shuffle_epi32::<0x4E>(acc));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0xB1>(s));
    q14_to_sample(_mm_cvtsi128_si32(s))
}

/// [`super::kernels::horizontal`] with SSE4.1.
pub fn horizontal_sse41(src: &[i16], h: &HTaps, out: &mut [i16]) {
    check_horizontal(src, h, out);
    assert!(std::arch::is_x86_feature_detected!("sse4.1"));
    // SSE4.1 is present (checked above), and `check_horizontal` proved that every
    // output reads `taps` samples from `start[i]` inside `src`; `HTaps` holds `taps` weights per
    // output.
    // SAFETY: the CPU feature and the bounds are checked just above.
    unsafe { horizontal_sse41_impl(src, h.start(), h.weights(), h.taps(), out) }
}

/// `taps` products of `s` and `w`, as four i32 partial sums.
///
/// # Safety
/// SSE4.1 is present; `s` and `w` each point at `taps` readable i16, `taps` a multiple of 8.
#[inline]
#[target_feature(enable = "sse4.1")]
unsafe fn dot_sse41(s: *const i16, w: *const i16, taps: usize) -> __m128i {
    let mut acc = _mm_setzero_si128();
    let mut k = 0;
    while k < taps {
        // SAFETY: k + 8 <= taps, readable from both by the contract.
        let (a, b) = unsafe {
            (
                _mm_loadu_si128(s.add(k).cast()),
                _mm_loadu_si128(w.add(k).cast()),
            )
        };
        acc = _mm_add_epi32(acc, _mm_madd_epi16(a, b));
        k += 8;
    }
    acc
}

/// # Safety
/// SSE4.1 is present; `start[i] + taps <= src.len()` for every `i`, `w.len() == out.len() *
/// taps`, and `taps` is a multiple of 8.
#[target_feature(enable = "sse4.1")]
unsafe fn horizontal_sse41_impl(
    src: &[i16],
    start: &[usize],
    w: &[i16],
    taps: usize,
    out: &mut [i16],
) {
    let (n, sp, wp) = (out.len(), src.as_ptr(), w.as_ptr());
    // For every `dot_sse41` below: output j < n reads `taps` samples at `start[j]` and
    // `taps` weights at `j * taps`, in bounds by the contract.
    // SAFETY: every access stays in bounds, as the lines above show.
    let dot = |j: usize| unsafe { dot_sse41(sp.add(start[j]), wp.add(j * taps), taps) };
    let mut i = 0;
    while i + 4 <= n {
        store4(out, i, finish4(dot(i), dot(i + 1), dot(i + 2), dot(i + 3)));
        i += 4;
    }
    while i < n {
        out[i] = finish1(dot(i));
        i += 1;
    }
}

/// [`super::kernels::horizontal`] with AVX2.
pub fn horizontal_avx2(src: &[i16], h: &HTaps, out: &mut [i16]) {
    check_horizontal(src, h, out);
    assert!(std::arch::is_x86_feature_detected!("avx2"));
    // AVX2 (and so SSE4.1) is present (checked above), and `check_horizontal` proved
    // that every output reads `taps` samples from `start[i]` inside `src`; `HTaps` holds
    // `taps` weights per output.
    // SAFETY: the CPU feature and the bounds are checked just above.
    unsafe { horizontal_avx2_impl(src, h.start(), h.weights(), h.taps(), out) }
}

/// `taps` products of `s` and `w` (16 at a time, then the last 8 in the low half), as eight
/// i32 partial sums.
///
/// # Safety
/// AVX2 is present; `s` and `w` each point at `taps` readable i16, `taps` a multiple of 8.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn dot_avx2(s: *const i16, w: *const i16, taps: usize) -> __m256i {
    let mut acc = _mm256_setzero_si256();
    let mut k = 0;
    while k + 16 <= taps {
        // SAFETY: k + 16 <= taps, readable from both by the contract.
        let (a, b) = unsafe {
            (
                _mm256_loadu_si256(s.add(k).cast()),
                _mm256_loadu_si256(w.add(k).cast()),
            )
        };
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
        k += 16;
    }
    if k < taps {
        // SAFETY: taps is a multiple of 8, so k + 8 == taps here.
        let (a, b) = unsafe {
            (
                _mm_loadu_si128(s.add(k).cast()),
                _mm_loadu_si128(w.add(k).cast()),
            )
        };
        acc = _mm256_add_epi32(acc, _mm256_zextsi128_si256(_mm_madd_epi16(a, b)));
    }
    acc
}

/// Two outputs of exactly 8 taps in one multiply: `a`'s samples and weights in the low lane,
/// `b`'s in the high lane (their weights are adjacent, output after output).
///
/// # Safety
/// AVX2 is present; `sa` and `sb` point at 8 readable i16, `w` at 16.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn dot8x2_avx2(sa: *const i16, sb: *const i16, w: *const i16) -> __m256i {
    // SAFETY: 8 samples at each of `sa` and `sb`, 16 weights at `w` (the contract).
    let (a, b, wv) = unsafe {
        (
            _mm_loadu_si128(sa.cast()),
            _mm_loadu_si128(sb.cast()),
            _mm256_loadu_si256(w.cast()),
        )
    };
    _mm256_madd_epi16(
        _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(a), b),
        wv,
    )
}

/// Eight sums of eight i32 lanes each (one vector per output), in output order.
#[inline]
#[target_feature(enable = "avx2")]
fn sum8(v: [__m256i; 8]) -> __m256i {
    let h01 = _mm256_hadd_epi32(v[0], v[1]);
    let h23 = _mm256_hadd_epi32(v[2], v[3]);
    let h45 = _mm256_hadd_epi32(v[4], v[5]);
    let h67 = _mm256_hadd_epi32(v[6], v[7]);
    // Per lane: partial sums of outputs 0-3 and 4-7; adding the two lanes finishes them.
    let h0123 = _mm256_hadd_epi32(h01, h23);
    let h4567 = _mm256_hadd_epi32(h45, h67);
    _mm256_add_epi32(
        _mm256_permute2x128_si256::<0x20>(h0123, h4567),
        _mm256_permute2x128_si256::<0x31>(h0123, h4567),
    )
}

/// Eight i32 sums rounded, shifted and clipped to Q7, stored at `out[i..i + 8]`.
#[inline]
#[target_feature(enable = "avx2")]
fn store8(out: &mut [i16], i: usize, sums: __m256i) {
    let r = _mm256_srai_epi32::<{ WEIGHT_BITS as i32 }>(_mm256_add_epi32(
        sums,
        _mm256_set1_epi32(1 << (WEIGHT_BITS - 1)),
    ));
    let v = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256::<1>(r));
    let v = _mm_min_epi16(
        _mm_max_epi16(v, _mm_setzero_si128()),
        _mm_set1_epi16(SAMPLE_MAX as i16),
    );
    store_i16x8(out, i, v);
}

/// # Safety
/// AVX2 is present; `start[i] + taps <= src.len()` for every `i`, `w.len() == out.len() *
/// taps`, and `taps` is a multiple of 8.
#[target_feature(enable = "avx2")]
unsafe fn horizontal_avx2_impl(
    src: &[i16],
    start: &[usize],
    w: &[i16],
    taps: usize,
    out: &mut [i16],
) {
    let (n, sp, wp) = (out.len(), src.as_ptr(), w.as_ptr());
    let mut i = 0;
    if taps == 8 {
        // Pairs of outputs per multiply; the pairs' lanes are [o0 | o1], [o2 | o3], ...
        while i + 8 <= n {
            // Outputs i..i + 8 < n read 8 samples at their start and their 8
            // weights at `j * 8`, in bounds by the contract.
            // SAFETY: every access stays in bounds, as the lines above show.
            let v: [__m256i; 4] = std::array::from_fn(|p| unsafe {
                let j = i + 2 * p;
                dot8x2_avx2(sp.add(start[j]), sp.add(start[j + 1]), wp.add(j * 8))
            });
            // Lane 0 of h: outputs 0, 2, 4, 6; lane 1: 1, 3, 5, 7.
            let h = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
            let r = _mm256_srai_epi32::<{ WEIGHT_BITS as i32 }>(_mm256_add_epi32(
                h,
                _mm256_set1_epi32(1 << (WEIGHT_BITS - 1)),
            ));
            let even = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm_setzero_si128());
            let odd = _mm_packs_epi32(_mm256_extracti128_si256::<1>(r), _mm_setzero_si128());
            let v = _mm_min_epi16(
                _mm_max_epi16(_mm_unpacklo_epi16(even, odd), _mm_setzero_si128()),
                _mm_set1_epi16(SAMPLE_MAX as i16),
            );
            store_i16x8(out, i, v);
            i += 8;
        }
    } else {
        while i + 8 <= n {
            // Output j < n reads `taps` samples at `start[j]` and `taps` weights at
            // `j * taps`, in bounds by the contract.
            // SAFETY: every access stays in bounds, as the lines above show.
            let v: [__m256i; 8] = std::array::from_fn(|k| unsafe {
                let j = i + k;
                dot_avx2(sp.add(start[j]), wp.add(j * taps), taps)
            });
            store8(out, i, sum8(v));
            i += 8;
        }
    }
    while i < n {
        // SAFETY: as above, for output i < n.
        let acc = unsafe { dot_avx2(sp.add(start[i]), wp.add(i * taps), taps) };
        let folded = _mm_add_epi32(
            _mm256_castsi256_si128(acc),
            _mm256_extracti128_si256::<1>(acc),
        );
        out[i] = finish1(folded);
        i += 1;
    }
}

// ---------------------------------------------------------------------------------- split

/// [`super::kernels::split2`] with SSE4.1.
pub fn split2_sse41(src: &[i16], even: &mut [i16], odd: &mut [i16]) {
    assert!(even.len() == src.len() / 2 && odd.len() == even.len());
    assert!(std::arch::is_x86_feature_detected!("sse4.1"));
    // SAFETY: SSE4.1 is present (checked above); the function checks every access itself.
    unsafe { split2_sse41_impl(src, even, odd) }
}

#[target_feature(enable = "sse4.1")]
fn split2_sse41_impl(src: &[i16], even: &mut [i16], odd: &mut [i16]) {
    // Per 8 samples: the 4 even ones to the low half, the 4 odd ones to the high half.
    let mask = _mm_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
    let n = even.len();
    let mut i = 0;
    while i + 8 <= n {
        let a = _mm_shuffle_epi8(load_i16x8(src, 2 * i), mask);
        let b = _mm_shuffle_epi8(load_i16x8(src, 2 * i + 8), mask);
        store_i16x8(even, i, _mm_unpacklo_epi64(a, b));
        store_i16x8(odd, i, _mm_unpackhi_epi64(a, b));
        i += 8;
    }
    if i < n {
        tail::split2(&src[2 * i..], &mut even[i..], &mut odd[i..]);
    }
}

/// [`super::kernels::split2`] with AVX2.
pub fn split2_avx2(src: &[i16], even: &mut [i16], odd: &mut [i16]) {
    assert!(even.len() == src.len() / 2 && odd.len() == even.len());
    assert!(std::arch::is_x86_feature_detected!("avx2"));
    // AVX2 (and so SSE4.1) is present (checked above); the function checks every
    // access itself.
    // SAFETY: the CPU feature and the bounds are checked just above.
    unsafe { split2_avx2_impl(src, even, odd) }
}

#[target_feature(enable = "avx2")]
fn split2_avx2_impl(src: &[i16], even: &mut [i16], odd: &mut [i16]) {
    let mask = _mm256_setr_epi8(
        0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15, 0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7,
        10, 11, 14, 15,
    );
    let n = even.len();
    let mut i = 0;
    while i + 16 <= n {
        // In-lane shuffles give [e e e e o o o o | e e e e o o o o]; the 64-bit permute
        // gathers the evens of both lanes low and the odds high.
        let a = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_shuffle_epi8(
            load_i16x16_avx(src, 2 * i),
            mask,
        ));
        let b = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_shuffle_epi8(
            load_i16x16_avx(src, 2 * i + 16),
            mask,
        ));
        store_i16x16_avx(even, i, _mm256_permute2x128_si256::<0x20>(a, b));
        store_i16x16_avx(odd, i, _mm256_permute2x128_si256::<0x31>(a, b));
        i += 16;
    }
    if i < n {
        split2_sse41_impl(&src[2 * i..], &mut even[i..], &mut odd[i..]);
    }
}

// --------------------------------------------------------------------------------- to RGB

/// One output channel of the matrix for four pixels (i32 lanes of the offset samples).
#[inline]
#[target_feature(enable = "sse4.1")]
fn mat_row(m: &[i32; 3], s: [__m128i; 3]) -> __m128i {
    let acc = _mm_add_epi32(
        _mm_add_epi32(
            _mm_mullo_epi32(s[0], _mm_set1_epi32(m[0])),
            _mm_mullo_epi32(s[1], _mm_set1_epi32(m[1])),
        ),
        _mm_add_epi32(
            _mm_mullo_epi32(s[2], _mm_set1_epi32(m[2])),
            _mm_set1_epi32(1 << (CONV_SHIFT - 1)),
        ),
    );
    _mm_srai_epi32::<{ CONV_SHIFT as i32 }>(acc)
}

/// [`super::kernels::to_rgb`] with SSE4.1.
pub fn to_rgb_sse41(conv: &Conv, ch: [&[i16]; 3], rgb: [&mut [u8]; 3]) {
    let n = ch[0].len();
    assert!(ch.iter().all(|c| c.len() == n) && rgb.iter().all(|c| c.len() == n));
    assert!(std::arch::is_x86_feature_detected!("sse4.1"));
    // SAFETY: SSE4.1 is present (checked above); the function checks every access itself.
    unsafe { to_rgb_sse41_impl(conv, ch, rgb) }
}

#[target_feature(enable = "sse4.1")]
fn to_rgb_sse41_impl(conv: &Conv, ch: [&[i16]; 3], rgb: [&mut [u8]; 3]) {
    let n = ch[0].len();
    let off = [
        _mm_set1_epi32(conv.off[0]),
        _mm_set1_epi32(conv.off[1]),
        _mm_set1_epi32(conv.off[2]),
    ];
    let [r, g, b] = rgb;
    let mut i = 0;
    while i + 8 <= n {
        let mut lo = [_mm_setzero_si128(); 3];
        let mut hi = [_mm_setzero_si128(); 3];
        for (h, dst) in [(0, &mut lo), (4, &mut hi)] {
            let s = [
                _mm_sub_epi32(load_i16x4_i32(ch[0], i + h), off[0]),
                _mm_sub_epi32(load_i16x4_i32(ch[1], i + h), off[1]),
                _mm_sub_epi32(load_i16x4_i32(ch[2], i + h), off[2]),
            ];
            for (d, m) in dst.iter_mut().zip(&conv.m) {
                *d = mat_row(m, s);
            }
        }
        for (c, dst) in [&mut *r, &mut *g, &mut *b].into_iter().enumerate() {
            let v = _mm_packs_epi32(lo[c], hi[c]);
            store_u8x8(dst, i, _mm_packus_epi16(v, v));
        }
        i += 8;
    }
    if i < n {
        let tails = [&ch[0][i..], &ch[1][i..], &ch[2][i..]];
        tail::to_rgb(conv, tails, [&mut r[i..], &mut g[i..], &mut b[i..]]);
    }
}

/// One output channel of the matrix for eight pixels.
#[inline]
#[target_feature(enable = "avx2")]
fn mat_row_avx(m: &[i32; 3], s: [__m256i; 3]) -> __m256i {
    let acc = _mm256_add_epi32(
        _mm256_add_epi32(
            _mm256_mullo_epi32(s[0], _mm256_set1_epi32(m[0])),
            _mm256_mullo_epi32(s[1], _mm256_set1_epi32(m[1])),
        ),
        _mm256_add_epi32(
            _mm256_mullo_epi32(s[2], _mm256_set1_epi32(m[2])),
            _mm256_set1_epi32(1 << (CONV_SHIFT - 1)),
        ),
    );
    _mm256_srai_epi32::<{ CONV_SHIFT as i32 }>(acc)
}

/// [`super::kernels::to_rgb`] with AVX2.
pub fn to_rgb_avx2(conv: &Conv, ch: [&[i16]; 3], rgb: [&mut [u8]; 3]) {
    let n = ch[0].len();
    assert!(ch.iter().all(|c| c.len() == n) && rgb.iter().all(|c| c.len() == n));
    assert!(std::arch::is_x86_feature_detected!("avx2"));
    // AVX2 (and so SSE4.1) is present (checked above); the function checks every
    // access itself.
    // SAFETY: the CPU feature and the bounds are checked just above.
    unsafe { to_rgb_avx2_impl(conv, ch, rgb) }
}

#[target_feature(enable = "avx2")]
fn to_rgb_avx2_impl(conv: &Conv, ch: [&[i16]; 3], rgb: [&mut [u8]; 3]) {
    let n = ch[0].len();
    let off = [
        _mm256_set1_epi32(conv.off[0]),
        _mm256_set1_epi32(conv.off[1]),
        _mm256_set1_epi32(conv.off[2]),
    ];
    let [r, g, b] = rgb;
    let mut i = 0;
    while i + 8 <= n {
        let s = [
            _mm256_sub_epi32(load_i16x8_i32_avx(ch[0], i), off[0]),
            _mm256_sub_epi32(load_i16x8_i32_avx(ch[1], i), off[1]),
            _mm256_sub_epi32(load_i16x8_i32_avx(ch[2], i), off[2]),
        ];
        for (c, dst) in [&mut *r, &mut *g, &mut *b].into_iter().enumerate() {
            let v = mat_row_avx(&conv.m[c], s);
            let packed =
                _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
            store_u8x8(dst, i, _mm_packus_epi16(packed, packed));
        }
        i += 8;
    }
    if i < n {
        let tails = [&ch[0][i..], &ch[1][i..], &ch[2][i..]];
        to_rgb_sse41_impl(conv, tails, [&mut r[i..], &mut g[i..], &mut b[i..]]);
    }
}

/// [`super::kernels::to_tensor_f32`] with AVX2 (the table lookups are gathers).
pub fn to_tensor_f32_avx2(
    conv: &Conv,
    ch: [&[i16]; 3],
    lut: [&[f32; 256]; 3],
    from: [usize; 3],
    out: [&mut [f32]; 3],
) {
    let n = ch[0].len();
    assert!(ch.iter().all(|c| c.len() == n) && out.iter().all(|c| c.len() == n));
    assert!(from.iter().all(|f| *f < 3));
    assert!(std::arch::is_x86_feature_detected!("avx2"));
    // AVX2 is present (checked above); the function checks every slice access itself,
    // and every gather index is clipped to 0..=255, inside the 256-entry tables.
    // SAFETY: the CPU feature and the bounds are checked just above.
    unsafe { to_tensor_f32_avx2_impl(conv, ch, lut, from, out) }
}

/// # Safety
/// AVX2 is present.
#[target_feature(enable = "avx2")]
unsafe fn to_tensor_f32_avx2_impl(
    conv: &Conv,
    ch: [&[i16]; 3],
    lut: [&[f32; 256]; 3],
    from: [usize; 3],
    out: [&mut [f32]; 3],
) {
    let n = ch[0].len();
    let off = [
        _mm256_set1_epi32(conv.off[0]),
        _mm256_set1_epi32(conv.off[1]),
        _mm256_set1_epi32(conv.off[2]),
    ];
    let (zero, top) = (_mm256_setzero_si256(), _mm256_set1_epi32(255));
    let [o0, o1, o2] = out;
    let mut i = 0;
    while i + 8 <= n {
        let s = [
            _mm256_sub_epi32(load_i16x8_i32_avx(ch[0], i), off[0]),
            _mm256_sub_epi32(load_i16x8_i32_avx(ch[1], i), off[1]),
            _mm256_sub_epi32(load_i16x8_i32_avx(ch[2], i), off[2]),
        ];
        let rgb = [
            _mm256_min_epi32(_mm256_max_epi32(mat_row_avx(&conv.m[0], s), zero), top),
            _mm256_min_epi32(_mm256_max_epi32(mat_row_avx(&conv.m[1], s), zero), top),
            _mm256_min_epi32(_mm256_max_epi32(mat_row_avx(&conv.m[2], s), zero), top),
        ];
        for (k, dst) in [&mut *o0, &mut *o1, &mut *o2].into_iter().enumerate() {
            // SAFETY: the indices are clipped to 0..=255 above and the table has 256 entries.
            let v = unsafe { _mm256_i32gather_ps::<4>(lut[k].as_ptr(), rgb[from[k]]) };
            store_f32x8_avx(dst, i, v);
        }
        i += 8;
    }
    if i < n {
        let tails = [&ch[0][i..], &ch[1][i..], &ch[2][i..]];
        tail::to_tensor_f32(
            conv,
            tails,
            lut,
            from,
            [&mut o0[i..], &mut o1[i..], &mut o2[i..]],
        );
    }
}
