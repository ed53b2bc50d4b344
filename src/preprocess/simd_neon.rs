//! NEON versions of the preprocessing kernels ([`super::kernels`]) for aarch64 boards
//! (Cortex-A53/A72, Carmel): NEON is part of the aarch64 baseline, so there is nothing to detect.
//!
//! Why `unsafe` lives here: the NEON loads and stores take raw pointers. Each goes through a
//! helper that slices the exact bytes it touches first, so every public function here is safe;
//! the rest of the crate stays `#![deny(unsafe_code)]`. Arithmetic is integer (Q14 weights, Q7
//! samples, Q13 colour matrix) until the final two correctly rounded divisions, so the results
//! equal the portable kernels bit for bit (checked under qemu by `scripts/cross.sh`).
#![allow(unsafe_code)]

use std::arch::aarch64::*;

use super::kernels::{SAMPLE_MAX, q14_to_sample, tail};
use super::layout::{CONV_SHIFT, Conv};
use super::taps::{HTaps, SAMPLE_BITS, WEIGHT_BITS};

#[inline]
#[target_feature(enable = "neon")]
fn load_i16x8(s: &[i16], i: usize) -> int16x8_t {
    let b: &[i16] = &s[i..i + 8];
    // SAFETY: `b` is 8 readable i16; `vld1q_s16` reads exactly 8.
    unsafe { vld1q_s16(b.as_ptr()) }
}

#[inline]
#[target_feature(enable = "neon")]
fn store_i16x8(s: &mut [i16], i: usize, v: int16x8_t) {
    let b: &mut [i16] = &mut s[i..i + 8];
    // SAFETY: `b` is 8 writable i16; `vst1q_s16` writes exactly 8.
    unsafe { vst1q_s16(b.as_mut_ptr(), v) }
}

#[inline]
#[target_feature(enable = "neon")]
fn store_u8x8(s: &mut [u8], i: usize, v: uint8x8_t) {
    let b: &mut [u8] = &mut s[i..i + 8];
    // SAFETY: `b` is 8 writable bytes; `vst1_u8` writes exactly 8.
    unsafe { vst1_u8(b.as_mut_ptr(), v) }
}

/// [`super::kernels::vertical`] (`src` starts at the first row it reads).
pub fn vertical(src: &[u8], stride: usize, w: &[i16], out: &mut [i16]) {
    assert!(std::arch::is_aarch64_feature_detected!("neon"));
    // SAFETY: NEON is present (part of the aarch64 baseline, and checked above); the function
    // checks every access itself.
    unsafe { vertical_impl(src, stride, w, out) }
}

#[target_feature(enable = "neon")]
fn vertical_impl(src: &[u8], stride: usize, w: &[i16], out: &mut [i16]) {
    let (n, width) = (w.len(), out.len());
    assert!(
        n > 0 && (n - 1) * stride + width <= src.len(),
        "vertical pass reads past the plane"
    );
    let round = vdupq_n_s32(1 << (WEIGHT_BITS - SAMPLE_BITS - 1));
    let (zero, max) = (vdupq_n_s16(0), vdupq_n_s16(SAMPLE_MAX as i16));
    let base = src.as_ptr();
    let row = |off: usize| {
        // Every call reads 8 bytes at `k * stride + x (+ 8)` with k < n and the last
        // byte before `(n - 1) * stride + width <= src.len()` (checked above).
        // SAFETY: every access stays in bounds, as the lines above show.
        vreinterpretq_s16_u16(vmovl_u8(unsafe { vld1_u8(base.add(off)) }))
    };
    let mut x = 0;
    while x + 16 <= width {
        // Two groups of eight pixels per pass over the taps, for two independent chains.
        let (mut a0, mut a1, mut b0, mut b1) = (round, round, round, round);
        for (k, &wk) in w.iter().enumerate() {
            let (p, q) = (row(k * stride + x), row(k * stride + x + 8));
            a0 = vmlal_n_s16(a0, vget_low_s16(p), wk);
            a1 = vmlal_high_n_s16(a1, p, wk);
            b0 = vmlal_n_s16(b0, vget_low_s16(q), wk);
            b1 = vmlal_high_n_s16(b1, q, wk);
        }
        let narrow = |lo: int32x4_t, hi: int32x4_t| {
            let v = vcombine_s16(
                vqmovn_s32(vshrq_n_s32::<{ (WEIGHT_BITS - SAMPLE_BITS) as i32 }>(lo)),
                vqmovn_s32(vshrq_n_s32::<{ (WEIGHT_BITS - SAMPLE_BITS) as i32 }>(hi)),
            );
            vminq_s16(vmaxq_s16(v, zero), max)
        };
        store_i16x8(out, x, narrow(a0, a1));
        store_i16x8(out, x + 8, narrow(b0, b1));
        x += 16;
    }
    if x < width {
        tail::vertical(&src[x..], stride, w, &mut out[x..]);
    }
}

/// [`super::kernels::horizontal`].
pub fn horizontal(src: &[i16], h: &HTaps, out: &mut [i16]) {
    assert!(std::arch::is_aarch64_feature_detected!("neon"));
    // SAFETY: NEON is present (part of the aarch64 baseline, and checked above); the function
    // checks every access itself.
    unsafe { horizontal_impl(src, h, out) }
}

#[target_feature(enable = "neon")]
fn horizontal_impl(src: &[i16], h: &HTaps, out: &mut [i16]) {
    // `HTaps` holds `taps` weights per output, `taps` a positive multiple of 8, and its reach
    // is one past the furthest sample any output reads.
    assert!(h.reach() <= src.len() && out.len() == h.outputs() && h.taps().is_multiple_of(8));
    let (start, w, taps) = (h.start(), h.weights(), h.taps());
    let (sp, wp) = (src.as_ptr(), w.as_ptr());
    for (i, (o, &s)) in out.iter_mut().zip(start).enumerate() {
        let (mut lo, mut hi) = (vdupq_n_s32(0), vdupq_n_s32(0));
        let mut k = 0;
        while k < taps {
            // Output i reads `taps` samples from `s`, with `s + taps <= reach <=
            // src.len()`, and `taps` weights from `i * taps` (checked above); k + 8 <= taps.
            // SAFETY: every access stays in bounds, as the lines above show.
            let (a, b) = unsafe { (vld1q_s16(sp.add(s + k)), vld1q_s16(wp.add(i * taps + k))) };
            lo = vmlal_s16(lo, vget_low_s16(a), vget_low_s16(b));
            hi = vmlal_high_s16(hi, a, b);
            k += 8;
        }
        *o = q14_to_sample(vaddvq_s32(vaddq_s32(lo, hi)));
    }
}

/// [`super::kernels::split2`].
pub fn split2(src: &[i16], even: &mut [i16], odd: &mut [i16]) {
    assert!(std::arch::is_aarch64_feature_detected!("neon"));
    // SAFETY: NEON is present (part of the aarch64 baseline, and checked above); the function
    // checks every access itself.
    unsafe { split2_impl(src, even, odd) }
}

#[target_feature(enable = "neon")]
fn split2_impl(src: &[i16], even: &mut [i16], odd: &mut [i16]) {
    assert!(even.len() == src.len() / 2 && odd.len() == even.len());
    let n = even.len();
    let mut i = 0;
    while i + 8 <= n {
        let b: &[i16] = &src[2 * i..2 * i + 16];
        // SAFETY: `b` is 16 readable i16; `vld2q_s16` reads exactly 16, deinterleaving them.
        let v = unsafe { vld2q_s16(b.as_ptr()) };
        store_i16x8(even, i, v.0);
        store_i16x8(odd, i, v.1);
        i += 8;
    }
    if i < n {
        tail::split2(&src[2 * i..], &mut even[i..], &mut odd[i..]);
    }
}

/// One output channel of the matrix for four pixels (i32 lanes of the offset samples).
#[inline]
#[target_feature(enable = "neon")]
fn mat_row(m: &[i32; 3], s: [int32x4_t; 3]) -> int32x4_t {
    let acc = vmlaq_n_s32(
        vmlaq_n_s32(
            vmlaq_n_s32(vdupq_n_s32(1 << (CONV_SHIFT - 1)), s[0], m[0]),
            s[1],
            m[1],
        ),
        s[2],
        m[2],
    );
    vshrq_n_s32::<{ CONV_SHIFT as i32 }>(acc)
}

/// [`super::kernels::to_rgb`].
pub fn to_rgb(conv: &Conv, ch: [&[i16]; 3], rgb: [&mut [u8]; 3]) {
    assert!(std::arch::is_aarch64_feature_detected!("neon"));
    // SAFETY: NEON is present (part of the aarch64 baseline, and checked above); the function
    // checks every access itself.
    unsafe { to_rgb_impl(conv, ch, rgb) }
}

#[target_feature(enable = "neon")]
fn to_rgb_impl(conv: &Conv, ch: [&[i16]; 3], rgb: [&mut [u8]; 3]) {
    let n = ch[0].len();
    assert!(ch.iter().all(|c| c.len() == n) && rgb.iter().all(|c| c.len() == n));
    let off = [
        vdupq_n_s32(conv.off[0]),
        vdupq_n_s32(conv.off[1]),
        vdupq_n_s32(conv.off[2]),
    ];
    let [r, g, b] = rgb;
    let mut i = 0;
    while i + 8 <= n {
        let v = [
            load_i16x8(ch[0], i),
            load_i16x8(ch[1], i),
            load_i16x8(ch[2], i),
        ];
        let lo = [
            vsubq_s32(vmovl_s16(vget_low_s16(v[0])), off[0]),
            vsubq_s32(vmovl_s16(vget_low_s16(v[1])), off[1]),
            vsubq_s32(vmovl_s16(vget_low_s16(v[2])), off[2]),
        ];
        let hi = [
            vsubq_s32(vmovl_high_s16(v[0]), off[0]),
            vsubq_s32(vmovl_high_s16(v[1]), off[1]),
            vsubq_s32(vmovl_high_s16(v[2]), off[2]),
        ];
        for (c, dst) in [&mut *r, &mut *g, &mut *b].into_iter().enumerate() {
            let wide =
                vqmovn_high_s32(vqmovn_s32(mat_row(&conv.m[c], lo)), mat_row(&conv.m[c], hi));
            store_u8x8(dst, i, vqmovun_s16(wide));
        }
        i += 8;
    }
    if i < n {
        let tails = [&ch[0][i..], &ch[1][i..], &ch[2][i..]];
        tail::to_rgb(conv, tails, [&mut r[i..], &mut g[i..], &mut b[i..]]);
    }
}
