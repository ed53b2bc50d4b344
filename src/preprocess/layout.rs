//! Where each colour channel of a frame lives, how the reference conversion upsamples it, and the
//! matrix that turns resized channels into RGB: one table per [`PixelFormat`], so the resampler
//! itself knows nothing about pixel formats.

use super::taps::{SAMPLE_BITS, Up};
use crate::source::PixelFormat;
use crate::source::color::{Chroma, ColorRange};

/// How the row of an interleaved plane is split into one row per channel after the vertical
/// pass, so the horizontal pass reads each channel's samples contiguously.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Channels read the plane's row as it is (planar; RGB with weights spread over the triples).
    None,
    /// Even and odd samples (NV12's Cb Cr): parts 0 and 1.
    Halves,
    /// 4:2:2 packed: parts 0 and 1 are the even and odd samples; the chroma half of them (odd
    /// samples for YUYV, `luma_even`; even ones for UYVY) is split again into parts 2 (Cb) and
    /// 3 (Cr).
    Packed422 { luma_even: bool },
}

impl Split {
    /// Bytes per group of samples: a span must start and end on a group boundary.
    pub fn group(self) -> usize {
        match self {
            Split::None => 1,
            Split::Halves => 2,
            Split::Packed422 { .. } => 4,
        }
    }
}

/// A block of rows in the frame buffer that one vertical pass reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlaneDesc {
    /// Byte offset of the plane's first row in the frame.
    pub offset: usize,
    /// Bytes per row.
    pub stride: usize,
    pub rows: usize,
    /// How its rows spread over the frame's height.
    pub up_y: Up,
    pub split: Split,
}

/// One channel (Y, Cb, Cr or R, G, B) of a plane: sample `j` of a row is byte `j * step + offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChannelDesc {
    pub plane: usize,
    pub step: usize,
    pub offset: usize,
    /// Samples per row.
    pub samples: usize,
    /// How its samples spread over the frame's width.
    pub up_x: Up,
    /// The split part holding its samples contiguously (`None`: the plane's row itself, read
    /// with `step` and `offset`).
    pub part: Option<usize>,
}

/// Resized channels (Q7) to RGB8: `rgb[c] = (sum_k m[c][k] * (ch[k] - off[k]) + half) >> 20`,
/// clipped to 0..=255; coefficients are Q13, so a product of a Q7 sample is Q20.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv {
    pub m: [[i32; 3]; 3],
    pub off: [i32; 3],
}

/// Fractional bits of the conversion coefficients.
pub const COEF_BITS: u32 = 13;
/// Shift from a product (sample Q7 x coefficient Q13) to an integer.
pub const CONV_SHIFT: u32 = SAMPLE_BITS + COEF_BITS;

fn q13(x: f64) -> i32 {
    (x * f64::from(1u32 << COEF_BITS)).round() as i32
}

impl Conv {
    /// R, G, B channels taken as they are.
    pub const IDENTITY: Conv = Conv {
        m: [
            [1 << COEF_BITS, 0, 0],
            [0, 1 << COEF_BITS, 0],
            [0, 0, 1 << COEF_BITS],
        ],
        off: [0; 3],
    };

    /// BT.601 Y'CbCr to R'G'B' in `range`, as [`crate::source::color::Matrix`] (Kr = 0.299,
    /// Kb = 0.114); with `grey`, only Y (R = G = B).
    pub fn bt601(range: ColorRange, grey: bool) -> Conv {
        let (y_off, y_gain, c_gain) = match range {
            ColorRange::Limited => (16.0, 255.0 / 219.0, 255.0 / 224.0),
            ColorRange::Full => (0.0, 1.0, 1.0),
        };
        let g = q13(y_gain);
        let sample = |v: f64| (v * f64::from(1u32 << SAMPLE_BITS)) as i32;
        if grey {
            return Conv {
                m: [[g, 0, 0]; 3],
                off: [sample(y_off), 0, 0],
            };
        }
        Conv {
            m: [
                [g, 0, q13(1.402 * c_gain)],
                [g, -q13(0.344_136 * c_gain), -q13(0.714_136 * c_gain)],
                [g, q13(1.772 * c_gain), 0],
            ],
            off: [sample(y_off), sample(128.0), sample(128.0)],
        }
    }
}

/// The planes, channels and conversion of one frame layout.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameLayout {
    pub planes: Vec<PlaneDesc>,
    /// Y, Cb, Cr or R, G, B (one channel for grey).
    pub channels: Vec<ChannelDesc>,
    pub conv: Conv,
}

impl FrameLayout {
    pub fn of(format: PixelFormat, width: u32, height: u32) -> FrameLayout {
        let (w, h) = (width as usize, height as usize);
        let (cw2, ch2) = (w.div_ceil(2), h.div_ceil(2));
        let plane = |offset, stride, rows, up_y| PlaneDesc {
            offset,
            stride,
            rows,
            up_y,
            split: Split::None,
        };
        let split = |p: PlaneDesc, split| PlaneDesc { split, ..p };
        let channel = |plane, step, offset, samples, up_x| ChannelDesc {
            plane,
            step,
            offset,
            samples,
            up_x,
            part: None,
        };
        let part = |c: ChannelDesc, part| ChannelDesc {
            part: Some(part),
            ..c
        };
        let limited = Conv::bt601(ColorRange::Limited, false);
        match format {
            PixelFormat::Rgb24 | PixelFormat::Bgr24 => {
                let (r, b) = if format == PixelFormat::Rgb24 {
                    (0, 2)
                } else {
                    (2, 0)
                };
                FrameLayout {
                    planes: vec![plane(0, w * 3, h, Up::Same)],
                    channels: [r, 1, b].map(|o| channel(0, 3, o, w, Up::Same)).to_vec(),
                    conv: Conv::IDENTITY,
                }
            }
            PixelFormat::Yuyv | PixelFormat::Uyvy => {
                let luma_even = format == PixelFormat::Yuyv;
                let [y, cb, cr] = if luma_even { [0, 1, 3] } else { [1, 0, 2] };
                FrameLayout {
                    planes: vec![split(
                        plane(0, cw2 * 4, h, Up::Same),
                        Split::Packed422 { luma_even },
                    )],
                    channels: vec![
                        part(channel(0, 2, y, w, Up::Same), usize::from(!luma_even)),
                        part(channel(0, 4, cb, cw2, Up::Nearest(2)), 2),
                        part(channel(0, 4, cr, cw2, Up::Nearest(2)), 3),
                    ],
                    conv: limited,
                }
            }
            PixelFormat::Nv12 => FrameLayout {
                planes: vec![
                    plane(0, w, h, Up::Same),
                    split(
                        plane(
                            w * h,
                            cw2 * 2,
                            ch2,
                            Up::Cubic {
                                src: ch2,
                                groups: h,
                                group: 1,
                            },
                        ),
                        Split::Halves,
                    ),
                ],
                channels: vec![
                    channel(0, 1, 0, w, Up::Same),
                    part(channel(1, 2, 0, cw2, Up::Nearest(2)), 0),
                    part(channel(1, 2, 1, cw2, Up::Nearest(2)), 1),
                ],
                conv: limited,
            },
            PixelFormat::Yuv { chroma, range } => {
                let luma = plane(0, w, h, Up::Same);
                let y = channel(0, 1, 0, w, Up::Same);
                let (cw, rows, up_x, up_y) = match chroma {
                    Chroma::Mono => {
                        return FrameLayout {
                            planes: vec![luma],
                            channels: vec![y],
                            conv: Conv::bt601(range, true),
                        };
                    }
                    Chroma::C420 => (cw2, ch2, Up::Nearest(2), Up::Nearest(2)),
                    Chroma::C422 => (cw2, h, Up::Nearest(2), Up::Same),
                    Chroma::C444 => (w, h, Up::Same, Up::Same),
                    Chroma::C411 => {
                        let cw = w.div_ceil(4);
                        let up = Up::Cubic {
                            src: cw,
                            groups: cw2,
                            group: 2,
                        };
                        (cw, h, up, Up::Same)
                    }
                };
                let len = chroma.chroma_plane_len(width, height);
                FrameLayout {
                    planes: vec![
                        luma,
                        plane(w * h, cw, rows, up_y),
                        plane(w * h + len, cw, rows, up_y),
                    ],
                    channels: vec![y, channel(1, 1, 0, cw, up_x), channel(2, 1, 0, cw, up_x)],
                    conv: Conv::bt601(range, false),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::color::Matrix;

    /// The integer conversion on whole samples agrees with the capture-side one within rounding.
    #[test]
    fn conversion_matches_the_reference_matrix() {
        for range in [ColorRange::Limited, ColorRange::Full] {
            let conv = Conv::bt601(range, false);
            let m = Matrix::for_range(range);
            for y in (0..=255).step_by(7) {
                for u in (0..=255).step_by(11) {
                    for v in (0..=255).step_by(13) {
                        let ch = [y, u, v].map(|s: i32| s << SAMPLE_BITS);
                        let ours: Vec<i32> = (0..3)
                            .map(|c| {
                                let acc: i32 =
                                    (0..3).map(|k| conv.m[c][k] * (ch[k] - conv.off[k])).sum();
                                ((acc + (1 << (CONV_SHIFT - 1))) >> CONV_SHIFT).clamp(0, 255)
                            })
                            .collect();
                        let want = m.rgb(y as u8, u as u8, v as u8);
                        for c in 0..3 {
                            assert!(
                                (ours[c] - i32::from(want[c])).abs() <= 1,
                                "{range:?} {y},{u},{v} ch{c}: {} vs {}",
                                ours[c],
                                want[c]
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn planes_cover_the_frame_exactly() {
        for format in [
            PixelFormat::Nv12,
            PixelFormat::I420,
            PixelFormat::Yuyv,
            PixelFormat::Yuv {
                chroma: Chroma::C411,
                range: ColorRange::Limited,
            },
        ] {
            let l = FrameLayout::of(format, 10, 6);
            let last = l.planes.last().expect("a plane");
            assert_eq!(
                last.offset + last.stride * last.rows,
                format.frame_len(10, 6),
                "{format}"
            );
        }
    }
}
