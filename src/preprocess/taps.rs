//! Resampling weights: computed once per (frame size, layout, model size) in real numbers, folded
//! onto subsampled chroma, then quantised to the fixed point the kernels run in.
//!
//! The reference a camera frame is held to is "convert the whole frame to RGB the way ffmpeg
//! does, then resize": ffmpeg repeats each 4:2:0 / 4:2:2 chroma sample over its block (and
//! interpolates NV12's rows and 4:1:1's columns with a cubic). Upsampling is linear, and so is
//! resampling, so the two compose into one set of weights over the chroma plane itself:
//! `w'(j) = sum_x w(x) * up(x, j)`. Resizing the small chroma plane with `w'` gives exactly what
//! resizing the upsampled plane with `w` would, without ever building the upsampled plane; only
//! the final rounding and clipping differ from the reference.
//!
//! Weights become Q14 `i16`s whose sum is exactly 1 << 14 for every output sample, so a flat
//! colour stays exactly flat through both passes; each pass rounds to Q7 (seven fractional bits,
//! clipped to 0..=255 as Pillow and `fast_image_resize` clip between passes).

use super::Filter;

/// Fractional bits of the weights.
pub const WEIGHT_BITS: u32 = 14;
/// Fractional bits of the samples between passes and after them.
pub const SAMPLE_BITS: u32 = 7;
/// Horizontal weights are padded with zeros to a multiple of this many taps, so the kernels run
/// whole vectors (8 `i16` lanes of SSE and NEON; AVX2 takes 16 at a time, then 8) with no
/// scalar remainder.
pub const TAP_ALIGN: usize = 8;

/// One axis of weights in real numbers: output `i` is `sum_k weights[i][k] * in[start[i] + k]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Taps {
    pub start: Vec<usize>,
    pub weights: Vec<Vec<f64>>,
}

/// How the reference conversion spreads the samples of a subsampled axis over full resolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Up {
    /// Full resolution already.
    Same,
    /// Each sample repeated over `n` pixels (swscale's unscaled 4:2:0 / 4:2:2 converters).
    Nearest(usize),
    /// A 4-tap Keys cubic (a = -0.6, centre-aligned, edges clamped) from `src` samples to
    /// `groups` positions, each position covering `group` pixels (swscale's generic scaler:
    /// NV12 rows with group 1, 4:1:1 columns resampled to half width with group 2).
    Cubic {
        src: usize,
        groups: usize,
        group: usize,
    },
}

impl Up {
    /// The samples full-resolution pixel `x` is made of, as `(sample, weight)`.
    fn of(self, x: usize) -> impl Iterator<Item = (usize, f64)> {
        let mut out = [(0usize, 0.0f64); 4];
        let n = match self {
            Up::Same => {
                out[0] = (x, 1.0);
                1
            }
            Up::Nearest(f) => {
                out[0] = (x / f, 1.0);
                1
            }
            Up::Cubic { src, groups, group } => {
                let pos = (((x / group) as f64) + 0.5) * (src as f64 / groups as f64) - 0.5;
                let i0 = pos.floor() as isize;
                for (k, o) in out.iter_mut().enumerate() {
                    let i = i0 + k as isize - 1;
                    let w = keys_cubic(pos - i as f64, -0.6);
                    *o = (i.clamp(0, src as isize - 1) as usize, w);
                }
                4
            }
        };
        out.into_iter().take(n)
    }
}

/// The Keys cubic convolution kernel with parameter `a`.
fn keys_cubic(x: f64, a: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

impl Taps {
    /// Weights mapping input samples `in0 .. in0 + in_len` (fractional) of an axis of `in_size`
    /// samples onto `out_size` samples. The antialiased filters are widened by the scale when
    /// downscaling (Pillow's and `fast_image_resize`'s convolution); the kernel may read input
    /// just outside the window (as a resize-then-crop would) but never outside `0 .. in_size`.
    /// The nearest and OpenCV filters pick their samples as Pillow and `cv2.resize` do.
    pub fn new(in_size: usize, in0: f64, in_len: f64, out_size: usize, filter: Filter) -> Taps {
        let scale = in_len / out_size as f64;
        let filter_scale = if filter.antialiased() {
            scale.max(1.0)
        } else {
            1.0
        };
        let support = filter.support() * filter_scale;
        let last = in_size - 1;
        // OpenCV's own arithmetic: the inverse of dst/src in double, the linear position in float.
        let cv_scale = 1.0 / (out_size as f64 / in_len);
        let mut taps = Taps {
            start: Vec::with_capacity(out_size),
            weights: Vec::with_capacity(out_size),
        };
        // Pillow's NEAREST steps from the first centre by adding the scale (ImagingScaleAffine),
        // so an exact `.0` position can land just below: follow its arithmetic to the bit.
        let mut pillow_x = in0 + scale * 0.5;
        for i in 0..out_size {
            let centre = in0 + (i as f64 + 0.5) * scale;
            let (start, w) = match filter {
                Filter::Nearest => {
                    let x = pillow_x;
                    pillow_x += scale;
                    ((x.floor().max(0.0) as usize).min(last), vec![1.0])
                }
                Filter::NearestOpenCv => {
                    let x = in0 + i as f64 * cv_scale;
                    ((x.floor().max(0.0) as usize).min(last), vec![1.0])
                }
                Filter::BilinearOpenCv => opencv_linear(in0, i, cv_scale, last),
                _ => kernel(centre, support, filter_scale, in_size, filter),
            };
            taps.start.push(start);
            taps.weights.push(w);
        }
        taps
    }

    /// The same resampling expressed over the samples of a subsampled axis of `src_len` samples
    /// that `up` spreads over this axis (see the module docs).
    pub fn fold(&self, up: Up, src_len: usize) -> Taps {
        if up == Up::Same {
            return self.clone();
        }
        let mut folded = Taps {
            start: Vec::with_capacity(self.start.len()),
            weights: Vec::with_capacity(self.start.len()),
        };
        let mut acc = vec![0.0f64; src_len];
        for (&start, weights) in self.start.iter().zip(&self.weights) {
            let (mut lo, mut hi) = (usize::MAX, 0);
            for (k, &w) in weights.iter().enumerate() {
                for (j, u) in up.of(start + k) {
                    acc[j] += w * u;
                    lo = lo.min(j);
                    hi = hi.max(j + 1);
                }
            }
            folded.start.push(lo);
            folded
                .weights
                .push(acc[lo..hi].iter_mut().map(std::mem::take).collect());
        }
        folded
    }

    /// The input samples any output reads: `(first, end)`.
    #[cfg(test)]
    fn span(&self) -> (usize, usize) {
        let first = self.start.iter().copied().min().unwrap_or(0);
        let end = self
            .start
            .iter()
            .zip(&self.weights)
            .map(|(s, w)| s + w.len())
            .max()
            .unwrap_or(0);
        (first, end)
    }
}

/// OpenCV `INTER_LINEAR`'s two taps for output `i`: the source position `(i + 0.5) * scale - 0.5`
/// (computed in `f32` as `cv::resize` does), its floor and the fraction; before the first pixel
/// or from the last one on, the edge pixel alone.
fn opencv_linear(in0: f64, i: usize, scale: f64, last: usize) -> (usize, Vec<f64>) {
    let pos = ((i as f64 + 0.5) * scale - 0.5) as f32;
    let floor = pos.floor();
    let frac = f64::from(pos - floor);
    let x = in0 + f64::from(floor);
    // A crop's window may start mid-pixel: the integer part shifts the taps, the rest blends.
    let (x, frac) = {
        let whole = x.floor();
        let f = frac + (x - whole);
        if f >= 1.0 {
            (whole + 1.0, f - 1.0)
        } else {
            (whole, f)
        }
    };
    if x < 0.0 {
        (0, vec![1.0])
    } else if x as usize >= last {
        (last, vec![1.0])
    } else if frac == 0.0 {
        (x as usize, vec![1.0])
    } else {
        (x as usize, vec![1.0 - frac, frac])
    }
}

/// The normalised, trimmed weights of one output sample centred at `centre`.
fn kernel(
    centre: f64,
    support: f64,
    filter_scale: f64,
    in_size: usize,
    filter: Filter,
) -> (usize, Vec<f64>) {
    let lo = ((centre - support).floor().max(0.0) as usize).min(in_size - 1);
    let hi = ((centre + support).ceil().max(0.0) as usize).clamp(lo + 1, in_size);
    let weight = |x: usize| filter.weight((x as f64 + 0.5 - centre) / filter_scale);
    let sum: f64 = (lo..hi).map(weight).sum();
    if sum == 0.0 {
        // Cannot happen for a centre inside the input; take the nearest sample rather than black.
        return (
            (centre.floor().max(0.0) as usize).clamp(lo, hi - 1),
            vec![1.0],
        );
    }
    // sin(pi * k) is not exactly 0 in floating point: flush such dust so it is trimmed.
    let w: Vec<f64> = (lo..hi)
        .map(|x| {
            let v = weight(x) / sum;
            if v.abs() < 1e-7 { 0.0 } else { v }
        })
        .collect();
    let first = w.iter().position(|v| *v != 0.0).unwrap_or(0);
    let end = w
        .iter()
        .rposition(|v| *v != 0.0)
        .map_or(w.len(), |p| p + 1)
        .max(first + 1);
    (lo + first, w[first..end].to_vec())
}

/// Quantises one output's weights to Q14 summing to exactly `1 << 14` (the rounding error goes
/// to the largest weight), then trims zeros at both ends. Returns (offset of the first kept
/// weight, weights).
fn quantise(weights: &[f64]) -> (usize, Vec<i16>) {
    let one = f64::from(1u32 << WEIGHT_BITS);
    let mut q: Vec<i32> = weights.iter().map(|w| (w * one).round() as i32).collect();
    let sum: i32 = q.iter().sum();
    if let Some(big) = weights
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .map(|(i, _)| i)
    {
        q[big] += (1 << WEIGHT_BITS) - sum;
    }
    let first = q.iter().position(|v| *v != 0).unwrap_or(0);
    let end = q
        .iter()
        .rposition(|v| *v != 0)
        .map_or(q.len(), |p| p + 1)
        .max(first + 1);
    let kept = q[first..end]
        .iter()
        .map(|v| (*v).clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16)
        .collect();
    (first, kept)
}

/// Vertical weights: output row `i` is `sum_k weights[i][k] * row[start[i] + k]`, unpadded.
#[derive(Debug)]
pub struct VTaps {
    pub start: Vec<usize>,
    pub len: Vec<usize>,
    /// `stride` weights per output row, the first `len[i]` of which are used.
    pub weights: Vec<i16>,
    pub stride: usize,
}

impl VTaps {
    pub fn new(taps: &Taps) -> VTaps {
        let quantised: Vec<(usize, Vec<i16>)> = taps
            .start
            .iter()
            .zip(&taps.weights)
            .map(|(s, w)| {
                let (first, q) = quantise(w);
                (s + first, q)
            })
            .collect();
        let stride = quantised.iter().map(|(_, q)| q.len()).max().unwrap_or(1);
        let mut v = VTaps {
            start: Vec::with_capacity(quantised.len()),
            len: Vec::with_capacity(quantised.len()),
            weights: vec![0; stride * quantised.len()],
            stride,
        };
        for (i, (start, q)) in quantised.into_iter().enumerate() {
            v.start.push(start);
            v.len.push(q.len());
            v.weights[i * stride..i * stride + q.len()].copy_from_slice(&q);
        }
        v
    }

    #[inline]
    pub fn row(&self, i: usize) -> (usize, &[i16]) {
        let w = &self.weights[i * self.stride..i * self.stride + self.len[i]];
        (self.start[i], w)
    }
}

/// Horizontal weights over a row: the samples of a channel sit at `j * step + offset` (step 1
/// once split per channel; a channel interleaved with others gets zero weights in between).
/// Every output has `taps` weights (a multiple of [`TAP_ALIGN`], zero-padded) from `start[i]`,
/// relative to the first sample of the row. Immutable once made, with the furthest sample any
/// output reads (`reach`) computed once: the kernels check one number per call.
#[derive(Debug)]
pub struct HTaps {
    start: Vec<usize>,
    weights: Vec<i16>,
    taps: usize,
    reach: usize,
}

impl HTaps {
    /// The packed positions `taps` reads for a channel at `step`/`offset`: `(first, end)`.
    pub fn extent(taps: &Taps, step: usize, offset: usize) -> (usize, usize) {
        let mut first = usize::MAX;
        let mut end = 0;
        for (s, w) in taps.start.iter().zip(&taps.weights) {
            let (k0, q) = quantise(w);
            first = first.min((s + k0) * step + offset);
            end = end.max((s + k0 + q.len() - 1) * step + offset + 1);
        }
        (first.min(end), end)
    }

    /// Quantised weights of a channel at `step`/`offset` in a row whose first sample is `base`.
    pub fn new(taps: &Taps, step: usize, offset: usize, base: usize) -> HTaps {
        let quantised: Vec<(usize, Vec<i16>)> = taps
            .start
            .iter()
            .zip(&taps.weights)
            .map(|(s, w)| {
                let (k0, q) = quantise(w);
                ((s + k0) * step + offset - base, q)
            })
            .collect();
        let widest = quantised
            .iter()
            .map(|(_, q)| (q.len() - 1) * step + 1)
            .max()
            .unwrap_or(1);
        let padded = widest.div_ceil(TAP_ALIGN) * TAP_ALIGN;
        let mut start = Vec::with_capacity(quantised.len());
        let mut weights = vec![0; padded * quantised.len()];
        for (i, (s, q)) in quantised.into_iter().enumerate() {
            start.push(s);
            let row = &mut weights[i * padded..(i + 1) * padded];
            for (k, w) in q.into_iter().enumerate() {
                row[k * step] = w;
            }
        }
        HTaps::from_parts(start, weights, padded)
    }

    /// Weights made elsewhere (tests): `taps` per output, from `start[i]`.
    ///
    /// # Panics
    /// When `taps` is not a positive multiple of [`TAP_ALIGN`] or `weights` does not hold
    /// `taps` per output.
    pub fn from_parts(start: Vec<usize>, weights: Vec<i16>, taps: usize) -> HTaps {
        assert!(taps > 0 && taps.is_multiple_of(TAP_ALIGN), "taps padded");
        assert_eq!(weights.len(), start.len() * taps, "taps per output");
        let reach = start.iter().map(|s| s + taps).max().unwrap_or(0);
        HTaps {
            start,
            weights,
            taps,
            reach,
        }
    }

    pub fn start(&self) -> &[usize] {
        &self.start
    }

    /// `taps` weights per output, output after output.
    pub fn weights(&self) -> &[i16] {
        &self.weights
    }

    pub fn taps(&self) -> usize {
        self.taps
    }

    pub fn outputs(&self) -> usize {
        self.start.len()
    }

    /// One past the furthest sample an output reads: the row must be at least this long.
    pub fn reach(&self) -> usize {
        self.reach
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bilinear_taps_sum_to_one_and_stay_inside() {
        for (in_size, out) in [(640, 224), (7, 31), (480, 224), (3, 1)] {
            let t = Taps::new(in_size, 0.0, in_size as f64, out, Filter::Bilinear);
            for i in 0..out {
                let sum: f64 = t.weights[i].iter().sum();
                assert!(
                    (sum - 1.0).abs() < 1e-9,
                    "{in_size}->{out} tap {i} sums to {sum}"
                );
                assert!(t.start[i] + t.weights[i].len() <= in_size);
            }
        }
    }

    #[test]
    fn same_size_taps_are_identity() {
        let t = Taps::new(10, 0.0, 10.0, 10, Filter::Lanczos3);
        for i in 0..10 {
            assert_eq!((t.start[i], &t.weights[i][..]), (i, &[1.0][..]));
        }
        let v = VTaps::new(&t);
        assert_eq!(v.row(3), (3, &[1 << WEIGHT_BITS as i16][..]));
    }

    #[test]
    fn upscale_by_two_interpolates_midpoints() {
        // Output centres at input 0.25, 0.75, 1.25, 1.75 (in pixel-centre units -0.25, 0.25, ...).
        let t = Taps::new(2, 0.0, 2.0, 4, Filter::Bilinear);
        assert_eq!((t.start[1], &t.weights[1][..]), (0, &[0.75, 0.25][..]));
        assert_eq!((t.start[2], &t.weights[2][..]), (0, &[0.25, 0.75][..]));
    }

    #[test]
    fn nearest_folding_adds_the_weights_of_each_block() {
        // Full-resolution weights over pixels 3..7 fold onto chroma samples 1..4 (pixel / 2).
        let t = Taps {
            start: vec![3],
            weights: vec![vec![0.1, 0.2, 0.3, 0.4]],
        };
        let f = t.fold(Up::Nearest(2), 4);
        assert_eq!(f.start, [1]);
        let want = [0.1, 0.5, 0.4];
        for (g, w) in f.weights[0].iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{:?}", f.weights[0]);
        }
    }

    #[test]
    fn cubic_folding_keeps_the_sum_and_clamps_at_the_edges() {
        let t = Taps::new(10, 0.0, 10.0, 3, Filter::Bilinear);
        let up = Up::Cubic {
            src: 5,
            groups: 10,
            group: 1,
        };
        let f = t.fold(up, 5);
        for (s, w) in f.start.iter().zip(&f.weights) {
            let sum: f64 = w.iter().sum();
            assert!((sum - 1.0).abs() < 1e-9, "{sum}");
            assert!(s + w.len() <= 5);
        }
        assert_eq!(f.span().0, 0);
    }

    #[test]
    fn quantised_weights_sum_to_exactly_one() {
        for (in_size, out) in [(1920, 224), (1080, 32), (97, 13)] {
            let t = Taps::new(in_size, 0.0, in_size as f64, out, Filter::Lanczos3);
            let v = VTaps::new(&t);
            for i in 0..out {
                let sum: i32 = v.row(i).1.iter().map(|w| i32::from(*w)).sum();
                assert_eq!(sum, 1 << WEIGHT_BITS, "{in_size}->{out} row {i}");
            }
        }
    }

    #[test]
    fn packed_weights_interleave_zeros_and_pad() {
        let t = Taps {
            start: vec![1],
            weights: vec![vec![0.25, 0.75]],
        };
        // A channel every 4 bytes from byte 3 (YUYV's Cr): samples 1 and 2 at bytes 7 and 11.
        assert_eq!(HTaps::extent(&t, 4, 3), (7, 12));
        let h = HTaps::new(&t, 4, 3, 7);
        assert_eq!((h.taps(), h.reach()), (8, 8));
        assert_eq!(h.start(), [0]);
        assert_eq!(&h.weights()[..5], &[4096, 0, 0, 0, 12288]);
        assert!(h.weights()[5..].iter().all(|w| *w == 0));
    }
}
