//! The four per-frame kernels of preprocessing, each in portable Rust (the reference) and in
//! SIMD for the instruction sets we run on, behind one safe entry point per kernel.
//!
//! 1. [`vertical`]: rows of a plane (bytes) weighted into one row of Q7 samples;
//! 2. [`horizontal`]: a Q7 row weighted into the output samples of one channel;
//! 3. [`split2`]: an interleaved row (YUYV, NV12's CbCr) into one row per channel;
//! 4. [`to_rgb`]: three resized channels (Y'CbCr or RGB) to RGB8 through an integer matrix, and
//!    [`to_tensor_f32`], the same fused with the normalisation table lookup into f32 rows.
//!
//! Everything is integer up to the table lookup, so every implementation gives bit-identical
//! results: the tests compare each
//! instruction set the CPU has against the portable code, and the aarch64 build does the same
//! under qemu. The instruction set is picked once, when a [`Preprocessor`] is built
//! ([`Isa::best`]): AVX2 or SSE4.1 on x86_64 by run-time detection, NEON on aarch64 (part of its
//! baseline).
//!
//! [`Preprocessor`]: super::Preprocessor

use super::layout::{CONV_SHIFT, Conv};
use super::taps::{HTaps, SAMPLE_BITS, WEIGHT_BITS};

#[cfg(target_arch = "aarch64")]
use super::simd_neon as neon;
#[cfg(target_arch = "x86_64")]
use super::simd_x86 as x86;

/// Largest Q7 sample: 255.
pub const SAMPLE_MAX: i32 = 255 << SAMPLE_BITS;

/// An instruction set the kernels run with. Only [`Isa::best`], [`Isa::scalar`] and
/// [`Isa::available`] make one, so holding an `Isa` means the CPU supports it: that is what the
/// SIMD entry points rely on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Isa(Kind);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Sse41,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "aarch64")]
    Neon,
}

impl Isa {
    /// Portable Rust, no SIMD intrinsics (the reference the others are tested against).
    pub fn scalar() -> Isa {
        Isa(Kind::Scalar)
    }

    /// The widest instruction set this CPU runs.
    pub fn best() -> Isa {
        Isa::available().into_iter().last().unwrap_or(Isa::scalar())
    }

    /// Every instruction set this CPU runs, narrowest first (scalar is always there).
    pub fn available() -> Vec<Isa> {
        #[allow(unused_mut)]
        let mut all = vec![Isa(Kind::Scalar)];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("sse4.1") {
                all.push(Isa(Kind::Sse41));
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                all.push(Isa(Kind::Avx2));
            }
        }
        #[cfg(target_arch = "aarch64")]
        all.push(Isa(Kind::Neon));
        all
    }

    /// The instruction set called `name` (`scalar`, `sse4.1`, `avx2`, `neon`), if this CPU runs it.
    pub fn named(name: &str) -> Option<Isa> {
        Isa::available().into_iter().find(|i| i.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self.0 {
            Kind::Scalar => "scalar",
            #[cfg(target_arch = "x86_64")]
            Kind::Sse41 => "sse4.1",
            #[cfg(target_arch = "x86_64")]
            Kind::Avx2 => "avx2",
            #[cfg(target_arch = "aarch64")]
            Kind::Neon => "neon",
        }
    }
}

/// Vertical pass: `out[x] = clip((sum_k w[k] * src[(row + k) * stride + x] + half) >> 7)` for
/// `k < w.len()`, in Q7 (weights Q14, see [`super::taps`]).
///
/// # Panics
/// When a row it would read lies outside `src` (a bug in the plan, never data-dependent).
pub fn vertical(isa: Isa, src: &[u8], row: usize, stride: usize, w: &[i16], out: &mut [i16]) {
    let n = w.len();
    if n == 0 || out.is_empty() {
        out.fill(0);
        return;
    }
    let last = (row + n - 1) * stride + out.len();
    assert!(last <= src.len(), "vertical pass reads past the plane");
    let src = &src[row * stride..last];
    match isa.0 {
        Kind::Scalar => vertical_scalar(src, stride, w, out),
        #[cfg(target_arch = "x86_64")]
        Kind::Sse41 => x86::vertical_sse41(src, stride, w, out),
        #[cfg(target_arch = "x86_64")]
        Kind::Avx2 => x86::vertical_avx2(src, stride, w, out),
        #[cfg(target_arch = "aarch64")]
        Kind::Neon => neon::vertical(src, stride, w, out),
    }
}

/// The rounding and clipping of a Q14 x Q(s) sum down to Q(s): `clip((acc + half) >> 14)`.
#[inline]
pub fn q14_to_sample(acc: i32) -> i16 {
    ((acc + (1 << (WEIGHT_BITS - 1))) >> WEIGHT_BITS).clamp(0, SAMPLE_MAX) as i16
}

pub(crate) fn vertical_scalar(src: &[u8], stride: usize, w: &[i16], out: &mut [i16]) {
    // Q14 x Q0 products, shifted to Q7: (acc + 2^6) >> 7.
    let shift = WEIGHT_BITS - SAMPLE_BITS;
    for (x, o) in out.iter_mut().enumerate() {
        let acc: i32 = w
            .iter()
            .enumerate()
            .map(|(k, &wk)| i32::from(wk) * i32::from(src[k * stride + x]))
            .sum();
        *o = ((acc + (1 << (shift - 1))) >> shift).clamp(0, SAMPLE_MAX) as i16;
    }
}

/// Horizontal pass: `out[i] = clip((sum_k w[i * taps + k] * src[start[i] + k] + half) >> 14)`
/// for `k < taps`, Q7 in and out (see [`HTaps`]).
///
/// # Panics
/// When `src` is shorter than the taps reach or `out` does not have one sample per output (a
/// bug in the plan).
pub fn horizontal(isa: Isa, src: &[i16], h: &HTaps, out: &mut [i16]) {
    assert!(
        h.reach() <= src.len() && out.len() == h.outputs(),
        "horizontal pass reads past the row"
    );
    match isa.0 {
        Kind::Scalar => horizontal_scalar(src, h, out),
        #[cfg(target_arch = "x86_64")]
        Kind::Sse41 => x86::horizontal_sse41(src, h, out),
        #[cfg(target_arch = "x86_64")]
        Kind::Avx2 => x86::horizontal_avx2(src, h, out),
        #[cfg(target_arch = "aarch64")]
        Kind::Neon => neon::horizontal(src, h, out),
    }
}

fn horizontal_scalar(src: &[i16], h: &HTaps, out: &mut [i16]) {
    let taps = h.taps();
    for ((o, &s), wi) in out
        .iter_mut()
        .zip(h.start())
        .zip(h.weights().chunks_exact(taps))
    {
        let acc: i32 = wi
            .iter()
            .zip(&src[s..s + taps])
            .map(|(&a, &b)| i32::from(a) * i32::from(b))
            .sum();
        *o = q14_to_sample(acc);
    }
}

/// Deinterleaves `src` into its even and odd samples (`src.len() / 2` each; an odd last
/// sample is ignored).
///
/// # Panics
/// When `even` or `odd` is not `src.len() / 2` long.
pub fn split2(isa: Isa, src: &[i16], even: &mut [i16], odd: &mut [i16]) {
    assert!(
        even.len() == src.len() / 2 && odd.len() == even.len(),
        "split halves of the row"
    );
    match isa.0 {
        Kind::Scalar => split2_scalar(src, even, odd),
        #[cfg(target_arch = "x86_64")]
        Kind::Sse41 => x86::split2_sse41(src, even, odd),
        #[cfg(target_arch = "x86_64")]
        Kind::Avx2 => x86::split2_avx2(src, even, odd),
        #[cfg(target_arch = "aarch64")]
        Kind::Neon => neon::split2(src, even, odd),
    }
}

pub(crate) fn split2_scalar(src: &[i16], even: &mut [i16], odd: &mut [i16]) {
    for ((pair, e), o) in src.chunks_exact(2).zip(even.iter_mut()).zip(odd.iter_mut()) {
        *e = pair[0];
        *o = pair[1];
    }
}

/// Three resized channels (Q7) to RGB8 rows through `conv` (see [`Conv`]).
///
/// # Panics
/// When the rows differ in length.
pub fn to_rgb(isa: Isa, conv: &Conv, ch: [&[i16]; 3], rgb: [&mut [u8]; 3]) {
    let n = ch[0].len();
    assert!(
        ch.iter().all(|c| c.len() == n) && rgb.iter().all(|c| c.len() == n),
        "conversion rows of one length"
    );
    match isa.0 {
        Kind::Scalar => to_rgb_scalar(conv, ch, rgb),
        #[cfg(target_arch = "x86_64")]
        Kind::Sse41 => x86::to_rgb_sse41(conv, ch, rgb),
        #[cfg(target_arch = "x86_64")]
        Kind::Avx2 => x86::to_rgb_avx2(conv, ch, rgb),
        #[cfg(target_arch = "aarch64")]
        Kind::Neon => neon::to_rgb(conv, ch, rgb),
    }
}

/// One pixel of [`to_rgb`].
#[inline]
pub fn convert_pixel(conv: &Conv, s: [i32; 3]) -> [u8; 3] {
    let half = 1 << (CONV_SHIFT - 1);
    std::array::from_fn(|c| {
        let acc = conv.m[c][0] * (s[0] - conv.off[0])
            + conv.m[c][1] * (s[1] - conv.off[1])
            + conv.m[c][2] * (s[2] - conv.off[2]);
        ((acc + half) >> CONV_SHIFT).clamp(0, 255) as u8
    })
}

pub(crate) fn to_rgb_scalar(conv: &Conv, ch: [&[i16]; 3], rgb: [&mut [u8]; 3]) {
    let [r, g, b] = rgb;
    for i in 0..ch[0].len() {
        let px = convert_pixel(
            conv,
            [
                i32::from(ch[0][i]),
                i32::from(ch[1][i]),
                i32::from(ch[2][i]),
            ],
        );
        r[i] = px[0];
        g[i] = px[1];
        b[i] = px[2];
    }
}

/// Three resized channels (Q7) through `conv` to RGB8, then each model channel `k` looked up in
/// `lut[k]` (its normalisation table) from RGB channel `from[k]`, into `out[k]`: [`to_rgb`] and
/// the table lookup in one pass, for f32 planar (NCHW) inputs.
///
/// # Panics
/// When the rows differ in length or `from` names no RGB channel.
pub fn to_tensor_f32(
    isa: Isa,
    conv: &Conv,
    ch: [&[i16]; 3],
    lut: [&[f32; 256]; 3],
    from: [usize; 3],
    out: [&mut [f32]; 3],
) {
    let n = ch[0].len();
    assert!(
        ch.iter().all(|c| c.len() == n) && out.iter().all(|c| c.len() == n),
        "rows of one length"
    );
    assert!(from.iter().all(|f| *f < 3), "an RGB channel");
    match isa.0 {
        Kind::Scalar => to_tensor_f32_scalar(conv, ch, lut, from, out),
        #[cfg(target_arch = "x86_64")]
        Kind::Avx2 => x86::to_tensor_f32_avx2(conv, ch, lut, from, out),
        // Without a gather: the instruction set's conversion into a small stack buffer, then
        // the table lookups.
        #[allow(unreachable_patterns)]
        _ => {
            const CHUNK: usize = 64;
            let mut rgb = [[0u8; CHUNK]; 3];
            let [o0, o1, o2] = out;
            let mut i = 0;
            while i < n {
                let m = CHUNK.min(n - i);
                let c = [&ch[0][i..i + m], &ch[1][i..i + m], &ch[2][i..i + m]];
                let [r, g, b] = &mut rgb;
                to_rgb(isa, conv, c, [&mut r[..m], &mut g[..m], &mut b[..m]]);
                for (k, dst) in [&mut *o0, &mut *o1, &mut *o2].into_iter().enumerate() {
                    let (table, src) = (lut[k], &rgb[from[k]][..m]);
                    for (d, v) in dst[i..i + m].iter_mut().zip(src) {
                        *d = table[*v as usize];
                    }
                }
                i += m;
            }
        }
    }
}

pub(crate) fn to_tensor_f32_scalar(
    conv: &Conv,
    ch: [&[i16]; 3],
    lut: [&[f32; 256]; 3],
    from: [usize; 3],
    out: [&mut [f32]; 3],
) {
    let [o0, o1, o2] = out;
    for i in 0..ch[0].len() {
        let px = convert_pixel(
            conv,
            [
                i32::from(ch[0][i]),
                i32::from(ch[1][i]),
                i32::from(ch[2][i]),
            ],
        );
        o0[i] = lut[0][px[from[0]] as usize];
        o1[i] = lut[1][px[from[1]] as usize];
        o2[i] = lut[2][px[from[2]] as usize];
    }
}

/// The portable kernels, for the SIMD modules' loop tails.
pub(crate) mod tail {
    pub(crate) use super::split2_scalar as split2;
    #[cfg(target_arch = "x86_64")]
    pub(crate) use super::to_tensor_f32_scalar as to_tensor_f32;
    pub(crate) use super::{to_rgb_scalar as to_rgb, vertical_scalar as vertical};
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic byte pattern with every value and sharp steps.
    fn bytes(n: usize, seed: u32) -> Vec<u8> {
        let mut s = seed.wrapping_mul(2_654_435_761).max(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 3) as u8
            })
            .collect()
    }

    fn weights(n: usize, seed: u32) -> Vec<i16> {
        // Mixed signs (Lanczos-like lobes) summing to 1 << 14, each within i16.
        let raw: Vec<i32> = bytes(n, seed)
            .iter()
            .enumerate()
            .map(|(k, b)| {
                if k % 2 == 0 {
                    64 + i32::from(*b % 64)
                } else {
                    -i32::from(*b % 16)
                }
            })
            .collect();
        let sum: i32 = raw.iter().sum();
        let mut w: Vec<i16> = raw.iter().map(|r| (r * 16384 / sum) as i16).collect();
        let s: i32 = w.iter().map(|v| i32::from(*v)).sum();
        w[0] = (i32::from(w[0]) + 16384 - s) as i16;
        w
    }

    #[test]
    fn every_instruction_set_matches_the_portable_kernels() {
        for isa in Isa::available() {
            for (n, width) in [(1, 1), (2, 17), (3, 33), (11, 100), (70, 257)] {
                let stride = width + 5;
                let src = bytes(stride * (n + 2), n as u32);
                let w = weights(n, width as u32);
                let (mut a, mut b) = (vec![0i16; width], vec![0i16; width]);
                vertical(Isa::scalar(), &src, 1, stride, &w, &mut a);
                vertical(isa, &src, 1, stride, &w, &mut b);
                assert_eq!(a, b, "{} vertical n{n} w{width}", isa.name());
            }
            for (taps, outs) in [(16, 1), (32, 7), (48, 33)] {
                let src: Vec<i16> = bytes(300, taps as u32)
                    .iter()
                    .map(|b| i16::from(*b) << 7)
                    .collect();
                let start: Vec<usize> = (0..outs).map(|i| (i * 7) % (300 - taps)).collect();
                let w: Vec<i16> = (0..outs)
                    .flat_map(|i| weights(taps, i as u32 + 3))
                    .collect();
                let h = HTaps::from_parts(start, w, taps);
                let (mut a, mut b) = (vec![0i16; outs], vec![0i16; outs]);
                horizontal(Isa::scalar(), &src, &h, &mut a);
                horizontal(isa, &src, &h, &mut b);
                assert_eq!(a, b, "{} horizontal taps{taps}", isa.name());
            }
            for n in [1, 7, 8, 16, 33, 100] {
                let src: Vec<i16> = bytes(2 * n + 1, n as u32)
                    .iter()
                    .map(|b| i16::from(*b) * 100)
                    .collect();
                let (mut e, mut o) = (vec![0i16; n], vec![0i16; n]);
                split2(isa, &src, &mut e, &mut o);
                for i in 0..n {
                    assert_eq!(
                        (e[i], o[i]),
                        (src[2 * i], src[2 * i + 1]),
                        "{} split2",
                        isa.name()
                    );
                }
            }
            for n in [1, 8, 15, 16, 37, 224] {
                let ch: Vec<Vec<i16>> = (0..3)
                    .map(|c| {
                        bytes(n, c + n as u32)
                            .iter()
                            .map(|b| i16::from(*b) << 7 | i16::from(*b >> 1))
                            .collect()
                    })
                    .collect();
                let conv = Conv::bt601(crate::source::color::ColorRange::Limited, false);
                let mut a = vec![vec![0u8; n]; 3];
                let mut b = vec![vec![0u8; n]; 3];
                let [a0, a1, a2] = &mut a[..] else { panic!() };
                to_rgb(Isa::scalar(), &conv, [&ch[0], &ch[1], &ch[2]], [a0, a1, a2]);
                let [b0, b1, b2] = &mut b[..] else { panic!() };
                to_rgb(isa, &conv, [&ch[0], &ch[1], &ch[2]], [b0, b1, b2]);
                assert_eq!(a, b, "{} to_rgb n{n}", isa.name());
                let luts: Vec<[f32; 256]> = (0..3)
                    .map(|k| std::array::from_fn(|v| (v as f32 / 255.0 - 0.1 * k as f32) / 0.3))
                    .collect();
                let lut = [&luts[0], &luts[1], &luts[2]];
                let mut t = vec![vec![0f32; n]; 3];
                let mut u = vec![vec![0f32; n]; 3];
                let [t0, t1, t2] = &mut t[..] else { panic!() };
                let ch3 = [&ch[0][..], &ch[1][..], &ch[2][..]];
                to_tensor_f32(Isa::scalar(), &conv, ch3, lut, [2, 1, 0], [t0, t1, t2]);
                let [u0, u1, u2] = &mut u[..] else { panic!() };
                to_tensor_f32(isa, &conv, ch3, lut, [2, 1, 0], [u0, u1, u2]);
                assert_eq!(t, u, "{} to_tensor_f32 n{n}", isa.name());
            }
        }
    }

    #[test]
    fn best_is_the_widest_available() {
        let all = Isa::available();
        assert_eq!(all[0], Isa::scalar());
        assert_eq!(Isa::best(), *all.last().expect("scalar at least"));
        assert_eq!(Isa::named("scalar"), Some(Isa::scalar()));
        assert_eq!(Isa::named("mmx"), None);
    }
}
