//! Everything that depends on the frame's size and layout, made when the first such frame
//! arrives (or ahead of time), and the per-frame walk over the model's rows.
//!
//! One output row at a time: each plane of the frame gets one vertical pass over just the rows
//! and columns that output row reads (a crop reads only what it keeps), each channel one
//! horizontal pass, then the row's channels become RGB and are normalised straight into the
//! engine's tensor. The scratch is a few rows, so it stays in the first-level cache, and no
//! full-frame image (RGB or resized) ever exists.

use super::kernels::{self, Isa};
use super::layout::{Conv, FrameLayout, Split};
use super::taps::{HTaps, Taps, VTaps};
use super::{Align, Element, Norm, PreprocessOptions, Rect, ResizeMode};
use crate::source::PixelFormat;
use crate::tensor::{InputSpec, Layout};

/// The plan for one frame geometry and layout.
#[derive(Debug)]
pub struct Plan {
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    /// Where the picture goes in the model input.
    pub region: Rect,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// An RGB frame window that maps 1:1 onto the region: normalised straight from the frame,
    /// from this top-left corner.
    Direct {
        x0: usize,
        y0: usize,
    },
    Resample(Resample),
}

/// One vertical pass: the rows of a plane weighted into `row`, then split per channel.
#[derive(Debug)]
struct PlanePass {
    /// Byte offset in the frame of the plane's first read column (row 0).
    offset: usize,
    stride: usize,
    /// Bytes of each row the pass covers.
    width: usize,
    vert: VTaps,
    split: Split,
    /// `width` samples, then zeros: the padded taps of the horizontal passes may read them.
    row: Vec<i16>,
    /// The split rows ([`Split`]), each followed by zeros for the same reason.
    parts: Vec<Vec<i16>>,
}

impl PlanePass {
    /// The row a channel reads: the plane's own or one of its split parts.
    fn channel_row(&self, part: Option<usize>) -> &[i16] {
        part.map_or(&self.row, |p| &self.parts[p])
    }

    fn channel_row_mut(&mut self, part: Option<usize>) -> &mut Vec<i16> {
        match part {
            Some(p) => &mut self.parts[p],
            None => &mut self.row,
        }
    }

    /// Splits the vertical pass's row into the channel rows.
    fn split_row(&mut self, isa: Isa) {
        let half = self.width / 2;
        match self.split {
            Split::None => {}
            Split::Halves => {
                let (even, odd) = self.parts.split_at_mut(1);
                let src = &self.row[..self.width];
                kernels::split2(isa, src, &mut even[0][..half], &mut odd[0][..half]);
            }
            Split::Packed422 { luma_even } => {
                let (halves, chroma) = self.parts.split_at_mut(2);
                let (even, odd) = halves.split_at_mut(1);
                let src = &self.row[..self.width];
                kernels::split2(isa, src, &mut even[0][..half], &mut odd[0][..half]);
                let c = if luma_even { &odd[0] } else { &even[0] };
                let (cb, cr) = chroma.split_at_mut(1);
                let q = half / 2;
                kernels::split2(isa, &c[..half], &mut cb[0][..q], &mut cr[0][..q]);
            }
        }
    }
}

/// One horizontal pass: a channel of a plane's row into the output row.
#[derive(Debug)]
struct ChannelPass {
    plane: usize,
    part: Option<usize>,
    horiz: HTaps,
}

#[derive(Debug)]
struct Resample {
    planes: Vec<PlanePass>,
    channels: Vec<ChannelPass>,
    conv: Conv,
    /// One output row per channel (Q7).
    chan: Vec<i16>,
    /// One output row of R, of G, of B.
    rgb: Vec<u8>,
}

/// The part of the source that is resampled, in (possibly fractional) source pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Crop {
    pub left: f64,
    pub top: f64,
    pub w: f64,
    pub h: f64,
}

/// Placement of a `src_w x src_h` frame in a `dst_w x dst_h` input: (region in the input,
/// source window that fills it). `align` places a letterboxed picture (the other modes fill the
/// whole input).
pub fn fit(
    src_w: usize,
    src_h: usize,
    dst_w: usize,
    dst_h: usize,
    mode: ResizeMode,
    align: Align,
) -> (Rect, Crop) {
    let (sw, sh, dw, dh) = (src_w as f64, src_h as f64, dst_w as f64, dst_h as f64);
    let full_src = Crop {
        left: 0.0,
        top: 0.0,
        w: sw,
        h: sh,
    };
    let full_dst = Rect {
        x: 0,
        y: 0,
        w: dst_w,
        h: dst_h,
    };
    match mode {
        ResizeMode::Stretch => (full_dst, full_src),
        ResizeMode::CenterCrop => {
            let scale = (dw / sw).max(dh / sh);
            let (cw, ch) = ((dw / scale).min(sw), (dh / scale).min(sh));
            (
                full_dst,
                Crop {
                    left: (sw - cw) / 2.0,
                    top: (sh - ch) / 2.0,
                    w: cw,
                    h: ch,
                },
            )
        }
        ResizeMode::Letterbox => {
            let scale = (dw / sw).min(dh / sh);
            let w = ((sw * scale).round() as usize).clamp(1, dst_w);
            let h = ((sh * scale).round() as usize).clamp(1, dst_h);
            (
                Rect {
                    x: align.x.offset(w, dst_w),
                    y: align.y.offset(h, dst_h),
                    w,
                    h,
                },
                full_src,
            )
        }
    }
}

impl Plan {
    pub fn new(
        width: u32,
        height: u32,
        format: PixelFormat,
        spec: &InputSpec,
        opts: &PreprocessOptions,
    ) -> Plan {
        let (w, h) = (width as usize, height as usize);
        let (region, crop) = fit(
            w,
            h,
            spec.width as usize,
            spec.height as usize,
            opts.resize,
            opts.align,
        );
        let aligned = |v: f64| (v - v.round()).abs() < 1e-9;
        let identity = crop.w == region.w as f64
            && crop.h == region.h as f64
            && aligned(crop.left)
            && aligned(crop.top);
        let kind = if identity && format == PixelFormat::Rgb24 {
            Kind::Direct {
                x0: crop.left.round() as usize,
                y0: crop.top.round() as usize,
            }
        } else {
            Kind::Resample(Resample::new(w, h, format, &crop, &region, opts))
        };
        Plan {
            width,
            height,
            format,
            region,
            kind,
        }
    }

    /// Writes the frame `data` (this plan's geometry and layout, length checked by the caller)
    /// into the tensor `out`.
    pub fn run<T: Element>(
        &mut self,
        isa: Isa,
        data: &[u8],
        spec: &InputSpec,
        norm: &Norm,
        out: &mut [T],
    ) {
        let dst = Dest {
            width: spec.width as usize,
            height: spec.height as usize,
            layout: spec.layout,
            region: self.region,
        };
        if dst.region
            != (Rect {
                x: 0,
                y: 0,
                w: dst.width,
                h: dst.height,
            })
        {
            write_fill(out, &dst, norm);
        }
        match &mut self.kind {
            &mut Kind::Direct { x0, y0 } => {
                let stride = self.width as usize * 3;
                for y in 0..dst.region.h {
                    let start = (y0 + y) * stride + x0 * 3;
                    T::write_packed_row(out, &dst, y, &data[start..start + dst.region.w * 3], norm);
                }
            }
            Kind::Resample(r) => r.run(isa, data, &dst, norm, out),
        }
    }
}

impl Resample {
    fn new(
        w: usize,
        h: usize,
        format: PixelFormat,
        crop: &Crop,
        region: &Rect,
        opts: &PreprocessOptions,
    ) -> Resample {
        let horiz = Taps::new(w, crop.left, crop.w, region.w, opts.filter);
        let vert = Taps::new(h, crop.top, crop.h, region.h, opts.filter);
        let layout = FrameLayout::of(format, w as u32, h as u32);
        let folded: Vec<Taps> = layout
            .channels
            .iter()
            .map(|c| horiz.fold(c.up_x, c.samples))
            .collect();
        let mut planes: Vec<PlanePass> = layout
            .planes
            .iter()
            .enumerate()
            .map(|(p, plane)| {
                let (first, end) = layout
                    .channels
                    .iter()
                    .zip(&folded)
                    .filter(|(c, _)| c.plane == p)
                    .map(|(c, t)| HTaps::extent(t, c.step, c.offset))
                    .fold((usize::MAX, 0), |(f, e), (f2, e2)| (f.min(f2), e.max(e2)));
                // Split rows start and end on whole groups (a YUYV macropixel, a CbCr pair).
                let group = plane.split.group();
                let first = first / group * group;
                let end = end.div_ceil(group) * group;
                let width = end - first;
                let parts = match plane.split {
                    Split::None => vec![],
                    Split::Halves => vec![vec![0; width / 2]; 2],
                    Split::Packed422 { .. } => vec![
                        vec![0; width / 2],
                        vec![0; width / 2],
                        vec![0; width / 4],
                        vec![0; width / 4],
                    ],
                };
                PlanePass {
                    offset: plane.offset + first,
                    stride: plane.stride,
                    width,
                    vert: VTaps::new(&vert.fold(plane.up_y, plane.rows)),
                    split: plane.split,
                    row: vec![0; width],
                    parts,
                }
            })
            .collect();
        let channels: Vec<ChannelPass> = layout
            .channels
            .iter()
            .zip(&folded)
            .map(|(c, t)| {
                let first = planes[c.plane].offset - layout.planes[c.plane].offset;
                // A split channel's row holds its samples from `first / step` on, one apart.
                let horiz = match c.part {
                    Some(_) => HTaps::new(t, 1, 0, first / c.step),
                    None => HTaps::new(t, c.step, c.offset, first),
                };
                ChannelPass {
                    plane: c.plane,
                    part: c.part,
                    horiz,
                }
            })
            .collect();
        // A horizontal pass reads its padded taps from any start: its row has room for them.
        for pass in &channels {
            let row = planes[pass.plane].channel_row_mut(pass.part);
            let need = row.len() + pass.horiz.taps();
            row.resize(need, 0);
        }
        Resample {
            planes,
            channels,
            conv: layout.conv,
            chan: vec![0; 3 * region.w],
            rgb: vec![0; 3 * region.w],
        }
    }

    fn run<T: Element>(&mut self, isa: Isa, data: &[u8], dst: &Dest, norm: &Norm, out: &mut [T]) {
        let Resample {
            planes,
            channels,
            conv,
            chan,
            rgb,
        } = self;
        let w = dst.region.w;
        for y in 0..dst.region.h {
            for p in planes.iter_mut() {
                let (row, weights) = p.vert.row(y);
                let width = p.width;
                kernels::vertical(
                    isa,
                    &data[p.offset..],
                    row,
                    p.stride,
                    weights,
                    &mut p.row[..width],
                );
                p.split_row(isa);
            }
            for (c, pass) in channels.iter().enumerate() {
                kernels::horizontal(
                    isa,
                    planes[pass.plane].channel_row(pass.part),
                    &pass.horiz,
                    &mut chan[c * w..(c + 1) * w],
                );
            }
            // A grey frame has one channel: the matrix reads only the first.
            let n = channels.len();
            let ch = |c: usize| &chan[(c % n) * w..(c % n + 1) * w];
            if T::write_channels_row(out, dst, y, [ch(0), ch(1), ch(2)], conv, norm, isa) {
                continue;
            }
            let (r, gb) = rgb.split_at_mut(w);
            let (g, b) = gb.split_at_mut(w);
            kernels::to_rgb(isa, conv, [ch(0), ch(1), ch(2)], [r, g, b]);
            T::write_planar_row(
                out,
                dst,
                y,
                [&rgb[..w], &rgb[w..2 * w], &rgb[2 * w..]],
                norm,
            );
        }
    }
}

/// Where the fitted picture goes in the model input.
pub struct Dest {
    pub width: usize,
    pub height: usize,
    pub layout: Layout,
    pub region: Rect,
}

impl Dest {
    /// Index in one channel plane of the first pixel of picture row `y`.
    #[inline]
    pub fn row_start(&self, y: usize) -> usize {
        (self.region.y + y) * self.width + self.region.x
    }
}

fn write_fill<T: Element>(out: &mut [T], dst: &Dest, norm: &Norm) {
    let fill = norm.fill.map(|x| T::encode(x, norm.scale));
    match (norm.grey, dst.layout) {
        (true, _) => out.fill(fill[0]),
        (false, Layout::Nchw) => {
            for (plane, value) in out.chunks_exact_mut(dst.width * dst.height).zip(fill) {
                plane.fill(value);
            }
        }
        (false, Layout::Nhwc) => {
            for px in out.chunks_exact_mut(3) {
                px.copy_from_slice(&fill);
            }
        }
    }
}
