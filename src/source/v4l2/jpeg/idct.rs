//! Inverse DCTs of one dequantised 8x8 block, at full size and scaled (libjpeg's DCT scaling).
//!
//! Full size is libjpeg's accurate integer IDCT (`jidctint.c`, the "islow" method: 13-bit
//! constants, two passes): within one level of the exact transform, as libjpeg-turbo and ffmpeg
//! are, so decodes compare level for level. Scaled outputs (4x4, 2x2, 1x1 from a block) are the
//! full-size output averaged over 2x2, 4x4, 8x8 squares, computed straight from the
//! coefficients (as libjpeg's `jidctred.c` does): a box-downscaled picture for a fraction of the
//! transform and of the writes. Arithmetic is 64-bit so no input, however hostile, overflows
//! (coefficients are clamped to +-2^15 before they get here).

/// Samples per side of a block's output at each scale: 8 (full), 4, 2, 1.
pub type Side = usize;

const CONST_BITS: u32 = 13;
const PASS1_BITS: u32 = 2;
const FIX_0_298631336: i64 = 2446;
const FIX_0_390180644: i64 = 3196;
const FIX_0_541196100: i64 = 4433;
const FIX_0_765366865: i64 = 6270;
const FIX_0_899976223: i64 = 7373;
const FIX_1_175875602: i64 = 9633;
const FIX_1_501321110: i64 = 12299;
const FIX_1_847759065: i64 = 15137;
const FIX_1_961570560: i64 = 16069;
const FIX_2_053119869: i64 = 16819;
const FIX_2_562915447: i64 = 20995;
const FIX_3_072711026: i64 = 25172;

#[inline]
fn descale(x: i64, n: u32) -> i64 {
    (x + (1 << (n - 1))) >> n
}

#[inline]
fn clamp_sample(x: i64) -> u8 {
    (x + 128).clamp(0, 255) as u8
}

/// One 8-point 1-D IDCT (`jidctint.c`), inputs `x[0..8]` at stride `s`, unscaled outputs.
#[inline(always)]
fn idct8(x: [i64; 8]) -> [i64; 8] {
    // Even part.
    let z1 = (x[2] + x[6]) * FIX_0_541196100;
    let tmp2 = z1 - x[6] * FIX_1_847759065;
    let tmp3 = z1 + x[2] * FIX_0_765366865;
    let tmp0 = (x[0] + x[4]) << CONST_BITS;
    let tmp1 = (x[0] - x[4]) << CONST_BITS;
    let tmp10 = tmp0 + tmp3;
    let tmp13 = tmp0 - tmp3;
    let tmp11 = tmp1 + tmp2;
    let tmp12 = tmp1 - tmp2;
    // Odd part.
    let (t0, t1, t2, t3) = (x[7], x[5], x[3], x[1]);
    let z1 = t0 + t3;
    let z2 = t1 + t2;
    let z3 = t0 + t2;
    let z4 = t1 + t3;
    let z5 = (z3 + z4) * FIX_1_175875602;
    let t0 = t0 * FIX_0_298631336;
    let t1 = t1 * FIX_2_053119869;
    let t2 = t2 * FIX_3_072711026;
    let t3 = t3 * FIX_1_501321110;
    let z1 = -z1 * FIX_0_899976223;
    let z2 = -z2 * FIX_2_562915447;
    let z3 = -z3 * FIX_1_961570560 + z5;
    let z4 = -z4 * FIX_0_390180644 + z5;
    let t0 = t0 + z1 + z3;
    let t1 = t1 + z2 + z4;
    let t2 = t2 + z2 + z3;
    let t3 = t3 + z1 + z4;
    [
        tmp10 + t3,
        tmp11 + t2,
        tmp12 + t1,
        tmp13 + t0,
        tmp13 - t0,
        tmp12 - t1,
        tmp11 - t2,
        tmp10 - t3,
    ]
}

/// Full-size IDCT of `block` (natural order, dequantised) into 8 rows of `out` at `stride`,
/// keeping the first `w` columns and `h` rows (edge blocks are clipped).
pub fn idct_8x8(block: &[i32; 64], out: &mut [u8], stride: usize, w: usize, h: usize) {
    let mut ws = [0i64; 64];
    for c in 0..8 {
        let col = |r: usize| i64::from(block[r * 8 + c]);
        if (1..8).all(|r| block[r * 8 + c] == 0) {
            let dc = col(0) << PASS1_BITS;
            for r in 0..8 {
                ws[r * 8 + c] = dc;
            }
            continue;
        }
        let y = idct8([
            col(0),
            col(1),
            col(2),
            col(3),
            col(4),
            col(5),
            col(6),
            col(7),
        ]);
        for r in 0..8 {
            ws[r * 8 + c] = descale(y[r], CONST_BITS - PASS1_BITS);
        }
    }
    for r in 0..h {
        let row: [i64; 8] = ws[r * 8..r * 8 + 8].try_into().expect("8 values");
        let dst = &mut out[r * stride..r * stride + w];
        if row[1..].iter().all(|v| *v == 0) {
            dst.fill(clamp_sample(descale(row[0], PASS1_BITS + 3)));
            continue;
        }
        let y = idct8(row);
        for (d, v) in dst.iter_mut().zip(y) {
            *d = clamp_sample(descale(v, CONST_BITS + PASS1_BITS + 3));
        }
    }
}

/// The scaled transforms' weights: row `n` of `N` (4 or 2) is the 8-point inverse transform's
/// basis averaged over output samples `kn .. kn + k` (`k = 8 / N`), Q13, with `c'(0) = 1`,
/// `c'(u) = sqrt(2)`: `m[n][u] = 1/k sum_j c'(u) cos((2(kn + j) + 1) u pi / 16)`. The scaled
/// output is thus the box average of the full-size output (before clamping), as libjpeg's
/// `jidctred.c` computes it (and OpenCV's `IMREAD_REDUCED_*` through it).
#[derive(Debug, Clone)]
pub struct Scaled {
    m4: [[i64; 8]; 4],
    m2: [[i64; 8]; 2],
}

impl Default for Scaled {
    fn default() -> Scaled {
        fn rows<const N: usize>() -> [[i64; 8]; N] {
            let k = 8 / N;
            let mut m = [[0i64; 8]; N];
            for (n, row) in m.iter_mut().enumerate() {
                for (u, w) in row.iter_mut().enumerate() {
                    let c = if u == 0 {
                        1.0
                    } else {
                        std::f64::consts::SQRT_2
                    };
                    let sum: f64 = (0..k)
                        .map(|j| {
                            let x = (2 * (k * n + j) + 1) as f64;
                            (x * u as f64 * std::f64::consts::PI / 16.0).cos()
                        })
                        .sum();
                    *w = (c * sum / k as f64 * f64::from(1 << CONST_BITS)).round() as i64;
                }
            }
            m
        }
        Scaled {
            m4: rows::<4>(),
            m2: rows::<2>(),
        }
    }
}

/// Scaled IDCT: `N x N` samples (N = 4 or 2) from the block, through the weights `m`; the
/// block's non-zero coefficients are all in its top-left `rows x cols`.
fn idct_scaled<const N: usize>(
    block: &[i32; 64],
    (rows, cols): (usize, usize),
    m: &[[i64; 8]; N],
    out: &mut [u8],
    stride: usize,
    w: usize,
    h: usize,
) {
    // Columns: t[y][u] = sum_v m[y][v] F[v][u], Q13; a column with nothing but DC is flat.
    let (rows, cols) = (rows.min(8), cols.min(8));
    let mut t = [[0i64; 8]; N];
    for u in 0..cols {
        let col = |v: usize| i64::from(block[v * 8 + u]);
        if rows == 1 {
            let dc = col(0) << CONST_BITS;
            for ty in t.iter_mut() {
                ty[u] = dc;
            }
            continue;
        }
        for (y, ty) in t.iter_mut().enumerate() {
            ty[u] = (0..rows).map(|v| m[y][v] * col(v)).sum();
        }
    }
    // Rows, then 1/8 (the 8-point coefficients' scale) and Q26 off.
    for (y, ty) in t.iter().enumerate().take(h) {
        let dst = &mut out[y * stride..y * stride + w];
        if cols == 1 {
            dst.fill(clamp_sample(descale(ty[0], CONST_BITS + 3)));
            continue;
        }
        for (x, d) in dst.iter_mut().enumerate() {
            let s: i64 = (0..cols).map(|u| m[x][u] * ty[u]).sum();
            *d = clamp_sample(descale(s, 2 * CONST_BITS + 3));
        }
    }
}

/// The block at `side` samples per side (8, 4, 2 or 1) into `out`, clipped to `w x h`; its
/// non-zero coefficients are all in the top-left `extent` (rows, columns).
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn idct(
    block: &[i32; 64],
    extent: (usize, usize),
    scaled: &Scaled,
    side: Side,
    out: &mut [u8],
    stride: usize,
    w: usize,
    h: usize,
) {
    match side {
        8 => idct_8x8(block, out, stride, w, h),
        4 => idct_scaled::<4>(block, extent, &scaled.m4, out, stride, w, h),
        2 => idct_scaled::<2>(block, extent, &scaled.m2, out, stride, w, h),
        _ => {
            // DC only: the block's mean.
            if w > 0 && h > 0 {
                out[0] = clamp_sample(descale(i64::from(block[0]), 3));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact 8x8 inverse transform (f64, `f = 1/8 sum c'(u) c'(v) F cos cos`) averaged
    /// over `8/n x 8/n` squares, plus 128, clamped.
    fn reference(block: &[i32; 64], n: usize) -> Vec<f64> {
        let c = |u: usize| if u == 0 { 1.0 } else { 2f64.sqrt() };
        let pi = std::f64::consts::PI;
        let mut full = [0.0; 64];
        for y in 0..8 {
            for x in 0..8 {
                let mut s = 0.0;
                for v in 0..8 {
                    for u in 0..8 {
                        let cy = ((2 * y + 1) as f64 * v as f64 * pi / 16.0).cos();
                        let cx = ((2 * x + 1) as f64 * u as f64 * pi / 16.0).cos();
                        s += c(u) * c(v) * f64::from(block[v * 8 + u]) * cx * cy;
                    }
                }
                full[y * 8 + x] = s / 8.0;
            }
        }
        let k = 8 / n;
        let mut out = vec![0.0; n * n];
        for y in 0..n {
            for x in 0..n {
                let mut s = 0.0;
                for yy in 0..k {
                    for xx in 0..k {
                        s += full[(y * k + yy) * 8 + x * k + xx];
                    }
                }
                out[y * n + x] = (s / (k * k) as f64 + 128.0).clamp(0.0, 255.0);
            }
        }
        out
    }

    /// A small deterministic generator (no dependency): xorshift.
    fn blocks() -> impl Iterator<Item = [i32; 64]> {
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        (0..2000).map(move |i| {
            let mut b = [0i32; 64];
            for (k, v) in b.iter_mut().enumerate() {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                // Energy falls with frequency as in pictures; some blocks are DC-only or sparse.
                let f = 1 + (k / 8 + k % 8) as i64;
                let amp = if i % 5 == 0 && k > 0 { 0 } else { 600 / f };
                *v = ((s % (2 * amp as u64 + 1)) as i64 - amp) as i32;
            }
            b
        })
    }

    #[test]
    fn every_scale_is_within_one_level_of_the_exact_transform() {
        for n in [8usize, 4, 2, 1] {
            let mut worst = 0.0f64;
            for block in blocks() {
                let mut out = [0u8; 64];
                idct(&block, (8, 8), &Scaled::default(), n, &mut out, n, n, n);
                // The extent of the non-zero coefficients gives the same samples.
                let extent = (0..64)
                    .filter(|i| block[*i] != 0)
                    .fold((1, 1), |(r, c), i| (r.max(i / 8 + 1), c.max(i % 8 + 1)));
                let mut again = [0u8; 64];
                idct(&block, extent, &Scaled::default(), n, &mut again, n, n, n);
                assert_eq!(out, again);
                let exact = reference(&block, n);
                for (o, e) in out[..n * n].iter().zip(&exact) {
                    worst = worst.max((f64::from(*o) - e).abs());
                }
            }
            assert!(worst <= 1.0, "{n}x{n}: worst {worst}");
        }
    }

    #[test]
    fn hostile_coefficients_do_not_overflow() {
        let mut out = [0u8; 64];
        for v in [i32::from(i16::MAX) * 2, -(1 << 15)] {
            let block = [v; 64];
            for n in [8, 4, 2, 1] {
                idct(&block, (8, 8), &Scaled::default(), n, &mut out, 8, n, n);
            }
        }
    }
}
