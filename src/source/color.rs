//! Planar YUV to packed RGB, BT.601, the way ffmpeg's default conversion does it.
//!
//! Users compare our frames with `ffmpeg -i x.y4m -pix_fmt rgb24`, and a classifier sees what
//! they see, so the goal is agreement with libswscale rather than the "best" filter: for 4:2:0 and
//! 4:2:2 swscale's unscaled converter repeats each chroma sample over its block (nearest), for
//! 4:4:4 and grey there is nothing to interpolate, and for 4:1:1 its generic scaler resamples the
//! chroma horizontally to half the luma width with a bicubic filter (B = 0, C = 0.6) and applies
//! each value to a pair of pixels. Arithmetic is fixed point (16 fractional bits) and writes into
//! the caller's buffer: nothing here allocates.

/// Whether luma spans 16..=235 (chroma 16..=240) or the whole 0..=255.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorRange {
    Limited,
    Full,
}

/// Chroma layout of an 8-bit planar frame (Y plane, then Cb, then Cr).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chroma {
    /// Half width, half height (every 4:2:0 siting: jpeg, mpeg2, paldv).
    C420,
    /// Quarter width, full height.
    C411,
    /// Half width, full height.
    C422,
    /// Full resolution.
    C444,
    /// Luma only.
    Mono,
}

impl Chroma {
    /// Size in bytes of one chroma plane (0 for grey).
    pub fn chroma_plane_len(self, width: u32, height: u32) -> usize {
        let (w, h) = (width as usize, height as usize);
        match self {
            Chroma::C420 => w.div_ceil(2) * h.div_ceil(2),
            Chroma::C411 => w.div_ceil(4) * h,
            Chroma::C422 => w.div_ceil(2) * h,
            Chroma::C444 => w * h,
            Chroma::Mono => 0,
        }
    }

    /// Bytes of Y + Cb + Cr for one frame.
    pub fn frame_len(self, width: u32, height: u32) -> usize {
        width as usize * height as usize + 2 * self.chroma_plane_len(width, height)
    }

    /// (horizontal, vertical) subsampling factors; `None` for grey.
    fn factors(self) -> Option<(usize, usize)> {
        match self {
            Chroma::C420 => Some((2, 2)),
            Chroma::C411 => Some((4, 1)),
            Chroma::C422 => Some((2, 1)),
            Chroma::C444 => Some((1, 1)),
            Chroma::Mono => None,
        }
    }
}

/// BT.601 YUV→RGB coefficients for one range, Q16 fixed point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matrix {
    y_offset: i32,
    y_gain: i32,
    v_to_r: i32,
    u_to_g: i32,
    v_to_g: i32,
    u_to_b: i32,
}

/// `x * 65536`, rounded, at compile time.
const fn q16(x: f64) -> i32 {
    (x * 65536.0 + 0.5) as i32
}

/// Full-range BT.601 (JFIF): Kr = 0.299, Kb = 0.114.
const FULL: Matrix = Matrix {
    y_offset: 0,
    y_gain: q16(1.0),
    v_to_r: q16(1.402),
    u_to_g: q16(0.344_136),
    v_to_g: q16(0.714_136),
    u_to_b: q16(1.772),
};

/// Limited-range BT.601: luma scaled by 255/219, chroma by 255/224.
const LIMITED: Matrix = Matrix {
    y_offset: 16,
    y_gain: q16(255.0 / 219.0),
    v_to_r: q16(1.402 * 255.0 / 224.0),
    u_to_g: q16(0.344_136 * 255.0 / 224.0),
    v_to_g: q16(0.714_136 * 255.0 / 224.0),
    u_to_b: q16(1.772 * 255.0 / 224.0),
};

impl Matrix {
    pub fn for_range(range: ColorRange) -> Matrix {
        match range {
            ColorRange::Limited => LIMITED,
            ColorRange::Full => FULL,
        }
    }

    /// One pixel: `u` and `v` are Cb and Cr in Q4 (value * 16) so interpolated chroma keeps
    /// its fraction.
    #[inline]
    pub fn rgb_q4(&self, y: u8, u_q4: i32, v_q4: i32) -> [u8; 3] {
        let luma = self.y_gain * (i32::from(y) - self.y_offset) + (1 << 15);
        let (u, v) = (u_q4 - 128 * 16, v_q4 - 128 * 16);
        // Q16 coefficients times Q4 chroma: shift the product down by 4 to stay in Q16.
        let r = luma + ((self.v_to_r * v) >> 4);
        let g = luma - ((self.u_to_g * u + self.v_to_g * v) >> 4);
        let b = luma + ((self.u_to_b * u) >> 4);
        [clamp_q16(r), clamp_q16(g), clamp_q16(b)]
    }

    /// One pixel from 8-bit Y, Cb, Cr.
    #[inline]
    pub fn rgb(&self, y: u8, u: u8, v: u8) -> [u8; 3] {
        self.rgb_q4(y, i32::from(u) * 16, i32::from(v) * 16)
    }

    /// Grey: `R = G = B = Y` stretched to full range when the source is limited.
    #[inline]
    pub fn grey(&self, y: u8) -> u8 {
        clamp_q16(self.y_gain * (i32::from(y) - self.y_offset) + (1 << 15))
    }
}

/// Q16 (already rounded) to a saturated byte.
#[inline]
fn clamp_q16(x: i32) -> u8 {
    (x >> 16).clamp(0, 255) as u8
}

/// Converts one planar frame (`src`: Y, Cb, Cr planes, `chroma.frame_len(w, h)` bytes or more,
/// trailing planes such as alpha ignored) into packed RGB (`dst`: exactly `w * h * 3` bytes).
///
/// Returns `false` (and leaves `dst` untouched) when a buffer has the wrong size.
pub fn yuv_to_rgb(
    chroma: Chroma,
    range: ColorRange,
    width: u32,
    height: u32,
    src: &[u8],
    dst: &mut [u8],
) -> bool {
    let (w, h) = (width as usize, height as usize);
    if src.len() < chroma.frame_len(width, height) || dst.len() != w * h * 3 {
        return false;
    }
    let m = Matrix::for_range(range);
    let (luma, rest) = src.split_at(w * h);
    let Some((sx, sy)) = chroma.factors() else {
        grey_to_rgb(&m, luma, dst);
        return true;
    };
    let cw = w.div_ceil(sx);
    let plane = chroma.chroma_plane_len(width, height);
    let (cb, cr) = (&rest[..plane], &rest[plane..2 * plane]);
    for (row, out) in dst.chunks_exact_mut(w * 3).enumerate() {
        let y_row = &luma[row * w..(row + 1) * w];
        let c_row = (row / sy) * cw;
        let (u_row, v_row) = (&cb[c_row..c_row + cw], &cr[c_row..c_row + cw]);
        if chroma == Chroma::C411 {
            row_411(&m, y_row, u_row, v_row, out);
        } else {
            row_nearest(&m, sx, y_row, u_row, v_row, out);
        }
    }
    true
}

fn grey_to_rgb(m: &Matrix, luma: &[u8], dst: &mut [u8]) {
    for (px, &y) in dst.chunks_exact_mut(3).zip(luma) {
        px.fill(m.grey(y));
    }
}

/// One row, each chroma sample repeated over `sx` pixels (swscale's unscaled path).
fn row_nearest(m: &Matrix, sx: usize, y_row: &[u8], u_row: &[u8], v_row: &[u8], out: &mut [u8]) {
    for (x, (px, &y)) in out.chunks_exact_mut(3).zip(y_row).enumerate() {
        let c = x / sx;
        px.copy_from_slice(&m.rgb(y, u_row[c], v_row[c]));
    }
}

/// One 4:1:1 row: chroma resampled to half the luma width with a cubic kernel (a = -0.6,
/// centre-aligned, edges clamped), each value covering two pixels.
fn row_411(m: &Matrix, y_row: &[u8], u_row: &[u8], v_row: &[u8], out: &mut [u8]) {
    let w = y_row.len();
    let (cw, half) = (u_row.len(), w.div_ceil(2));
    let scale = cw as f32 / half as f32;
    for (i, pair) in out.chunks_mut(6).enumerate() {
        let pos = (i as f32 + 0.5) * scale - 0.5;
        let u = cubic_at(u_row, pos);
        let v = cubic_at(v_row, pos);
        for (k, px) in pair.chunks_exact_mut(3).enumerate() {
            px.copy_from_slice(&m.rgb_q4(y_row[2 * i + k], u, v));
        }
    }
}

/// `row` sampled at fractional `pos` with a 4-tap Keys cubic (a = -0.6), in Q4.
fn cubic_at(row: &[u8], pos: f32) -> i32 {
    let last = row.len() as isize - 1;
    let i0 = pos.floor() as isize;
    let mut acc = 0.0f32;
    for k in -1..=2 {
        let i = (i0 + k).clamp(0, last) as usize;
        acc += f32::from(row[i]) * keys_cubic(pos - (i0 + k) as f32, -0.6);
    }
    ((acc * 16.0).round() as i32).clamp(0, 255 * 16)
}

/// The Keys cubic convolution kernel with parameter `a`.
fn keys_cubic(x: f32, a: f32) -> f32 {
    let x = x.abs();
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference BT.601 in floating point, straight from the definition
    /// (E'r = E'y + 2(1 - Kr) E'pr, E'b = E'y + 2(1 - Kb) E'pb, Kr = 0.299, Kb = 0.114).
    fn reference(y: u8, u: u8, v: u8, range: ColorRange) -> [f64; 3] {
        let (kr, kb) = (0.299, 0.114);
        let kg = 1.0 - kr - kb;
        let (ey, pb, pr) = match range {
            ColorRange::Full => (
                f64::from(y) / 255.0,
                (f64::from(u) - 128.0) / 255.0,
                (f64::from(v) - 128.0) / 255.0,
            ),
            ColorRange::Limited => (
                (f64::from(y) - 16.0) / 219.0,
                (f64::from(u) - 128.0) / 224.0,
                (f64::from(v) - 128.0) / 224.0,
            ),
        };
        let r = ey + 2.0 * (1.0 - kr) * pr;
        let b = ey + 2.0 * (1.0 - kb) * pb;
        let g = (ey - kr * r - kb * b) / kg;
        [r, g, b].map(|c| (c * 255.0).clamp(0.0, 255.0))
    }

    #[test]
    fn matrix_matches_the_definition_within_rounding() {
        for range in [ColorRange::Limited, ColorRange::Full] {
            let m = Matrix::for_range(range);
            for y in (0..=255u8).step_by(5) {
                for u in (0..=255u8).step_by(15) {
                    for v in (0..=255u8).step_by(15) {
                        let got = m.rgb(y, u, v);
                        let want = reference(y, u, v, range);
                        for c in 0..3 {
                            let err = (f64::from(got[c]) - want[c]).abs();
                            assert!(
                                err <= 0.51,
                                "{range:?} yuv({y},{u},{v}) ch{c}: got {} want {:.2}",
                                got[c],
                                want[c]
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn limited_black_and_white_map_to_extremes() {
        let m = Matrix::for_range(ColorRange::Limited);
        assert_eq!(m.rgb(16, 128, 128), [0, 0, 0]);
        assert_eq!(m.rgb(235, 128, 128), [255, 255, 255]);
        assert_eq!(m.grey(16), 0);
        assert_eq!(m.grey(235), 255);
        let full = Matrix::for_range(ColorRange::Full);
        assert_eq!(full.grey(16), 16);
    }

    #[test]
    fn frame_lengths_round_chroma_up() {
        assert_eq!(Chroma::C420.frame_len(5, 3), 15 + 2 * 3 * 2);
        assert_eq!(Chroma::C411.frame_len(6, 2), 12 + 2 * 2 * 2);
        assert_eq!(Chroma::C422.frame_len(3, 2), 6 + 2 * 2 * 2);
        assert_eq!(Chroma::C444.frame_len(2, 2), 12);
        assert_eq!(Chroma::Mono.frame_len(4, 4), 16);
    }

    #[test]
    fn c420_repeats_each_chroma_sample_over_its_block() {
        // 4x2 luma, one grey level; chroma 2x1: left block pure-ish red, right block blue.
        let mut src = vec![128u8; 8];
        src.extend_from_slice(&[90, 240]); // Cb
        src.extend_from_slice(&[240, 110]); // Cr
        let mut dst = vec![0u8; 4 * 2 * 3];
        assert!(yuv_to_rgb(
            Chroma::C420,
            ColorRange::Full,
            4,
            2,
            &src,
            &mut dst
        ));
        let m = Matrix::for_range(ColorRange::Full);
        let (left, right) = (m.rgb(128, 90, 240), m.rgb(128, 240, 110));
        for (i, px) in dst.chunks_exact(3).enumerate() {
            let want = if i % 4 < 2 { left } else { right };
            assert_eq!(px, want, "pixel {i}");
        }
    }

    #[test]
    fn c411_flat_chroma_stays_flat() {
        let mut src = vec![100u8; 8 * 2];
        src.extend_from_slice(&[60; 4]);
        src.extend_from_slice(&[200; 4]);
        let mut dst = vec![0u8; 8 * 2 * 3];
        assert!(yuv_to_rgb(
            Chroma::C411,
            ColorRange::Limited,
            8,
            2,
            &src,
            &mut dst
        ));
        let want = Matrix::for_range(ColorRange::Limited).rgb(100, 60, 200);
        assert!(dst.chunks_exact(3).all(|px| px == want));
    }

    #[test]
    fn wrong_buffer_sizes_are_refused() {
        let src = vec![0u8; 10];
        let mut dst = vec![0u8; 4 * 4 * 3];
        assert!(!yuv_to_rgb(
            Chroma::C420,
            ColorRange::Full,
            4,
            4,
            &src,
            &mut dst
        ));
        let src = vec![0u8; 24];
        let mut short = vec![0u8; 3];
        assert!(!yuv_to_rgb(
            Chroma::C420,
            ColorRange::Full,
            4,
            4,
            &src,
            &mut short
        ));
    }
}
