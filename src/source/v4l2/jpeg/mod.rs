//! An allocation-free baseline JPEG decoder for what UVC cameras send, writing planar YCbCr.
//!
//! General decoders allocate their working state per frame and hand back interleaved pixels;
//! a camera sends the same kind of frame 60 times a second, and the frame path resizes planar
//! YCbCr natively. So this decoder keeps every table in fixed-size arrays that live across frames
//! and writes each block's samples straight into the frame's planes (full-range 4:2:2, 4:2:0,
//! 4:4:4 or grey, chroma left at its coded resolution), optionally at 1/2, 1/4 or 1/8 size
//! (libjpeg's DCT scaling, see [`idct`]) when the model needs far fewer pixels than the camera
//! sends. It covers the frames cameras make: 8-bit baseline sequential Huffman (SOF0/SOF1), one
//! or three components in one interleaved scan, restart intervals, and AVI1 frames without
//! Huffman tables (the standard tables of T.81 K.3 are assumed). Anything else (progressive,
//! arithmetic, 12-bit, multi-scan, 4:4:0, ...) is [`JpegError::Unsupported`], and the caller
//! falls back to a general decoder; damage is [`JpegError::Corrupt`] / [`JpegError::Truncated`]
//! for that frame only.

mod huffman;
pub mod idct;

use huffman::{Bits, Huffman};

use crate::source::color::{Chroma, ColorRange};
use crate::source::{Frame, PixelFormat};

/// Why a frame was not decoded by this decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JpegError {
    /// A valid JPEG this decoder does not handle (a general decoder may).
    #[error("JPEG frame uses {0}, which the baseline decoder does not handle")]
    Unsupported(&'static str),
    #[error("JPEG frame is corrupt: {0}")]
    Corrupt(&'static str),
    #[error("JPEG frame is truncated")]
    Truncated,
    #[error("JPEG frame is {got_w}x{got_h}, the stream is {width}x{height}")]
    Size {
        got_w: u32,
        got_h: u32,
        width: u32,
        height: u32,
    },
}

/// Zig-zag index -> natural (row-major) index.
const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// Dequantised coefficients are clamped to this magnitude (valid 8-bit data stays below 2^14).
const COEF_MAX: i64 = 1 << 15;

#[derive(Debug, Clone, Copy, Default)]
struct Component {
    id: u8,
    h: usize,
    v: usize,
    tq: usize,
    td: usize,
    ta: usize,
    pred: i32,
    /// Where its plane starts in the frame, its width and height (at the output scale).
    offset: usize,
    pw: usize,
    ph: usize,
}

/// The decoder and every table it needs, reused from frame to frame (box it: ~20 KiB).
#[derive(Debug)]
pub struct Decoder {
    quant: [[u16; 64]; 4],
    quant_set: [bool; 4],
    dc: [Huffman; 4],
    ac: [Huffman; 4],
    /// The standard tables (T.81 K.3), restored at each frame for frames that define none.
    std_dc: [Huffman; 2],
    std_ac: [Huffman; 2],
    /// The scaled IDCTs' weights.
    scaled: idct::Scaled,
    /// Tables 0 and 1 (DC, AC) that the last frame's DHT replaced.
    replaced: [[bool; 2]; 2],
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder::new()
    }
}

/// What a frame's header says (and how it is laid out once decoded).
#[derive(Debug, Clone, Copy)]
pub struct FrameHeader {
    pub width: u32,
    pub height: u32,
    pub chroma: Chroma,
}

fn be16(d: &[u8], i: usize) -> usize {
    usize::from(d[i]) << 8 | usize::from(d[i + 1])
}

impl Decoder {
    pub fn new() -> Decoder {
        let mut std_dc: [Huffman; 2] = Default::default();
        let mut std_ac: [Huffman; 2] = Default::default();
        // STANDARD_DHT: four tables after the marker and length, each class/id, 16 counts,
        // the symbols.
        let mut i = 4;
        let dht = &super::mjpeg::STANDARD_DHT;
        while i < dht.len() {
            let class_id = dht[i];
            let counts: [u8; 16] = dht[i + 1..i + 17].try_into().expect("16 counts");
            let n: usize = counts.iter().map(|c| usize::from(*c)).sum();
            let t = if class_id >> 4 == 0 {
                &mut std_dc[usize::from(class_id & 15)]
            } else {
                &mut std_ac[usize::from(class_id & 15)]
            };
            t.build(&counts, &dht[i + 17..i + 17 + n])
                .expect("the standard tables are valid");
            i += 17 + n;
        }
        Decoder {
            quant: [[0; 64]; 4],
            quant_set: [false; 4],
            dc: [
                std_dc[0].clone(),
                std_dc[1].clone(),
                Huffman::default(),
                Huffman::default(),
            ],
            ac: [
                std_ac[0].clone(),
                std_ac[1].clone(),
                Huffman::default(),
                Huffman::default(),
            ],
            std_dc,
            std_ac,
            scaled: idct::Scaled::default(),
            replaced: [[false; 2]; 2],
        }
    }

    /// Decodes `jpeg`, which must be `width x height`, into `frame` at 1/`scale` size (1, 2, 4
    /// or 8; each side rounds up). Allocates only when the frame's buffer must grow.
    pub fn decode(
        &mut self,
        jpeg: &[u8],
        width: u32,
        height: u32,
        scale: u32,
        frame: &mut Frame,
    ) -> Result<FrameHeader, JpegError> {
        if jpeg.len() < 4 || jpeg[0] != 0xFF || jpeg[1] != 0xD8 {
            return Err(JpegError::Corrupt("no SOI marker"));
        }
        self.quant_set = [false; 4];
        for i in 0..2 {
            if std::mem::take(&mut self.replaced[0][i]) {
                self.dc[i] = self.std_dc[i].clone();
            }
            if std::mem::take(&mut self.replaced[1][i]) {
                self.ac[i] = self.std_ac[i].clone();
            }
        }
        for i in 2..4 {
            self.dc[i].defined = false;
            self.ac[i].defined = false;
        }
        let mut comps = [Component::default(); 3];
        let mut ncomp = 0usize;
        let mut header: Option<FrameHeader> = None;
        let mut restart = 0usize;
        let mut i = 2;
        loop {
            // Markers may be preceded by any number of fill bytes.
            while jpeg.get(i) == Some(&0xFF) && jpeg.get(i + 1) == Some(&0xFF) {
                i += 1;
            }
            if i + 4 > jpeg.len() {
                return Err(JpegError::Truncated);
            }
            if jpeg[i] != 0xFF {
                return Err(JpegError::Corrupt("bytes between marker segments"));
            }
            let marker = jpeg[i + 1];
            if matches!(marker, 0xD8 | 0xD9) {
                return Err(JpegError::Corrupt("no scan before the end of the frame"));
            }
            let len = be16(jpeg, i + 2);
            if len < 2 {
                return Err(JpegError::Corrupt(
                    "a marker segment shorter than its length",
                ));
            }
            let seg = jpeg.get(i + 4..i + 2 + len).ok_or(JpegError::Truncated)?;
            match marker {
                0xC0 | 0xC1 => {
                    let h = parse_sof(seg, &mut comps)?;
                    ncomp = if h.chroma == Chroma::Mono { 1 } else { 3 };
                    if (h.width, h.height) != (width, height) {
                        return Err(JpegError::Size {
                            got_w: h.width,
                            got_h: h.height,
                            width,
                            height,
                        });
                    }
                    header = Some(h);
                }
                0xC2 => return Err(JpegError::Unsupported("progressive coding")),
                0xC3 | 0xC5..=0xC7 | 0xCB | 0xCD..=0xCF => {
                    return Err(JpegError::Unsupported("lossless or hierarchical coding"));
                }
                0xC9 | 0xCA => return Err(JpegError::Unsupported("arithmetic coding")),
                0xC4 => self.parse_dht(seg)?,
                0xCC => return Err(JpegError::Unsupported("arithmetic coding")),
                0xDB => self.parse_dqt(seg)?,
                0xDD => {
                    if seg.len() < 2 {
                        return Err(JpegError::Corrupt("a short DRI segment"));
                    }
                    restart = be16(seg, 0);
                }
                0xDA => {
                    let h = header.ok_or(JpegError::Corrupt("a scan before the frame header"))?;
                    self.start_scan(seg, &mut comps[..ncomp])?;
                    let scan_start = i + 2 + len;
                    self.decode_scan(
                        jpeg,
                        scan_start,
                        h,
                        &mut comps[..ncomp],
                        restart,
                        scale,
                        frame,
                    )?;
                    return Ok(h);
                }
                0xD0..=0xD7 | 0x01 => return Err(JpegError::Corrupt("a stray marker")),
                _ => {} // APPn, COM, DNL and the rest: skipped
            }
            i += 2 + len;
        }
    }

    fn parse_dqt(&mut self, mut seg: &[u8]) -> Result<(), JpegError> {
        while !seg.is_empty() {
            let (pq, tq) = (seg[0] >> 4, usize::from(seg[0] & 15));
            if tq > 3 || pq > 1 {
                return Err(JpegError::Corrupt("a DQT names no valid table"));
            }
            let n = if pq == 0 { 64 } else { 128 };
            let body = seg.get(1..1 + n).ok_or(JpegError::Corrupt("a short DQT"))?;
            for k in 0..64 {
                self.quant[tq][k] = if pq == 0 {
                    u16::from(body[k])
                } else {
                    (u16::from(body[2 * k]) << 8) | u16::from(body[2 * k + 1])
                };
            }
            self.quant_set[tq] = true;
            seg = &seg[1 + n..];
        }
        Ok(())
    }

    fn parse_dht(&mut self, mut seg: &[u8]) -> Result<(), JpegError> {
        while !seg.is_empty() {
            if seg.len() < 17 {
                return Err(JpegError::Corrupt("a short DHT"));
            }
            let (class, id) = (seg[0] >> 4, usize::from(seg[0] & 15));
            if class > 1 || id > 3 {
                return Err(JpegError::Corrupt("a DHT names no valid table"));
            }
            let counts: [u8; 16] = seg[1..17].try_into().expect("16 counts");
            let n: usize = counts.iter().map(|c| usize::from(*c)).sum();
            let symbols = seg
                .get(17..17 + n)
                .ok_or(JpegError::Corrupt("a short DHT"))?;
            if id < 2 {
                self.replaced[usize::from(class)][id] = true;
            }
            let t = if class == 0 {
                &mut self.dc[id]
            } else {
                &mut self.ac[id]
            };
            t.build(&counts, symbols)?;
            seg = &seg[17 + n..];
        }
        Ok(())
    }

    fn start_scan(&self, seg: &[u8], comps: &mut [Component]) -> Result<(), JpegError> {
        let ns = usize::from(*seg.first().ok_or(JpegError::Corrupt("a short SOS"))?);
        if seg.len() < 1 + 2 * ns + 3 {
            return Err(JpegError::Corrupt("a short SOS"));
        }
        if ns != comps.len() {
            return Err(JpegError::Unsupported("components in separate scans"));
        }
        let spectral = &seg[1 + 2 * ns..];
        if spectral != [0, 63, 0] {
            return Err(JpegError::Unsupported(
                "a scan that is not baseline sequential",
            ));
        }
        // The scan may list the components in any order; blocks follow the scan's order.
        let mut order = [0usize; 3];
        for (k, o) in order.iter_mut().take(ns).enumerate() {
            let (id, tables) = (seg[1 + 2 * k], seg[2 + 2 * k]);
            *o = comps
                .iter()
                .position(|c| c.id == id)
                .ok_or(JpegError::Corrupt("a scan names no component of the frame"))?;
            let c = &comps[*o];
            let (td, ta) = (usize::from(tables >> 4), usize::from(tables & 15));
            if td > 3 || ta > 3 || !self.dc[td].defined || !self.ac[ta].defined {
                return Err(JpegError::Corrupt("a scan uses an undefined Huffman table"));
            }
            if !self.quant_set[c.tq] {
                return Err(JpegError::Corrupt(
                    "a component uses an undefined quantisation table",
                ));
            }
        }
        // Re-read the table choices into the components (ids are unique, see parse_sof).
        for k in 0..ns {
            let tables = seg[2 + 2 * k];
            let c = &mut comps[order[k]];
            c.td = usize::from(tables >> 4);
            c.ta = usize::from(tables & 15);
        }
        if ns == 3 && order != [0, 1, 2] {
            return Err(JpegError::Unsupported(
                "a scan that reorders the components",
            ));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn decode_scan(
        &self,
        jpeg: &[u8],
        start: usize,
        h: FrameHeader,
        comps: &mut [Component],
        restart: usize,
        scale: u32,
        frame: &mut Frame,
    ) -> Result<(), JpegError> {
        let scale = scale.clamp(1, 8).next_power_of_two().min(8) as usize;
        let side = 8 / scale;
        let (ow, oh) = (
            (h.width as usize).div_ceil(scale),
            (h.height as usize).div_ceil(scale),
        );
        let format = PixelFormat::Yuv {
            chroma: h.chroma,
            range: ColorRange::Full,
        };
        frame.set_format(format, ow as u32, oh as u32);
        let hmax = comps.iter().map(|c| c.h).max().unwrap_or(1);
        let vmax = comps.iter().map(|c| c.v).max().unwrap_or(1);
        let luma = ow * oh;
        let (cw, ch) = match h.chroma {
            Chroma::C420 => (ow.div_ceil(2), oh.div_ceil(2)),
            Chroma::C422 => (ow.div_ceil(2), oh),
            _ => (ow, oh),
        };
        for (k, c) in comps.iter_mut().enumerate() {
            c.pred = 0;
            (c.offset, c.pw, c.ph) = match k {
                0 => (0, ow, oh),
                _ => (luma + (k - 1) * cw * ch, cw, ch),
            };
        }
        let single = comps.len() == 1;
        let (mcus_x, mcus_y) = if single {
            (
                (h.width as usize).div_ceil(8),
                (h.height as usize).div_ceil(8),
            )
        } else {
            (
                (h.width as usize).div_ceil(8 * hmax),
                (h.height as usize).div_ceil(8 * vmax),
            )
        };
        let total = mcus_x * mcus_y;
        let mut bits = Bits::new(jpeg, start);
        let mut block = [0i32; 64];
        let mut next_rst = 0u8;
        let data = &mut frame.data[..];
        for m in 0..total {
            if restart > 0 && m > 0 && m % restart == 0 {
                bits.restart(next_rst)?;
                next_rst = (next_rst + 1) & 7;
                for c in comps.iter_mut() {
                    c.pred = 0;
                }
            }
            let (mx, my) = (m % mcus_x, m / mcus_x);
            for c in comps.iter_mut() {
                let (bh, bv) = if single { (1, 1) } else { (c.h, c.v) };
                for by in 0..bv {
                    for bx in 0..bh {
                        let extent = self.decode_block(&mut bits, c, &mut block, side)?;
                        let x = (mx * bh + bx) * side;
                        let y = (my * bv + by) * side;
                        if x < c.pw && y < c.ph {
                            let (w, hh) = ((c.pw - x).min(side), (c.ph - y).min(side));
                            let at = c.offset + y * c.pw + x;
                            idct::idct(
                                &block,
                                extent,
                                &self.scaled,
                                side,
                                &mut data[at..],
                                c.pw,
                                w,
                                hh,
                            );
                        }
                    }
                }
            }
            if bits.overran() {
                return Err(JpegError::Truncated);
            }
        }
        Ok(())
    }

    /// One block's coefficients, dequantised, in natural order (at 1/8 only the DC is kept; the
    /// rest is decoded and dropped). Returns the rows and columns that hold non-zero
    /// coefficients (`(r, c)`: all are in the top-left `r x c`), which the scaled IDCTs skip past.
    #[inline]
    fn decode_block(
        &self,
        bits: &mut Bits<'_>,
        c: &mut Component,
        block: &mut [i32; 64],
        side: usize,
    ) -> Result<(usize, usize), JpegError> {
        let q = &self.quant[c.tq];
        let (mut rows, mut cols) = (1, 1);
        block.fill(0);
        bits.ensure();
        let s = u32::from(bits.decode(&self.dc[c.td])?);
        if s > 11 {
            return Err(JpegError::Corrupt("a DC difference over 11 bits"));
        }
        c.pred = (c.pred + bits.receive_extend(s)).clamp(-(1 << 16), 1 << 16);
        block[0] = dequant(c.pred, q[0]);
        let ac = &self.ac[c.ta];
        let mut k = 1;
        while k < 64 {
            bits.ensure();
            let rs = bits.decode(ac)?;
            let (r, s) = (usize::from(rs >> 4), u32::from(rs & 15));
            if s == 0 {
                if r != 15 {
                    break; // end of block
                }
                k += 16;
                continue;
            }
            k += r;
            if k > 63 {
                return Err(JpegError::Corrupt("coefficients past the end of a block"));
            }
            let v = bits.receive_extend(s);
            let n = ZIGZAG[k];
            if side > 1 {
                block[n] = dequant(v, q[k]);
                rows = rows.max(n / 8 + 1);
                cols = cols.max(n % 8 + 1);
            }
            k += 1;
        }
        if k > 64 {
            return Err(JpegError::Corrupt("coefficients past the end of a block"));
        }
        Ok((rows, cols))
    }
}

#[inline]
fn dequant(v: i32, q: u16) -> i32 {
    (i64::from(v) * i64::from(q)).clamp(-COEF_MAX, COEF_MAX) as i32
}

/// Parses SOF0/SOF1 into `comps`; the frame's layout in our planes.
fn parse_sof(seg: &[u8], comps: &mut [Component; 3]) -> Result<FrameHeader, JpegError> {
    if seg.len() < 6 {
        return Err(JpegError::Corrupt("a short SOF"));
    }
    if seg[0] != 8 {
        return Err(JpegError::Unsupported(
            "a sample precision other than 8 bits",
        ));
    }
    let height = be16(seg, 1) as u32;
    let width = be16(seg, 3) as u32;
    if width == 0 || height == 0 {
        return Err(JpegError::Unsupported(
            "a height given later (DNL) or an empty frame",
        ));
    }
    let nf = usize::from(seg[5]);
    if nf != 1 && nf != 3 {
        return Err(JpegError::Unsupported(
            "a component count other than 1 or 3",
        ));
    }
    if seg.len() < 6 + 3 * nf {
        return Err(JpegError::Corrupt("a short SOF"));
    }
    for (k, c) in comps.iter_mut().take(nf).enumerate() {
        let b = &seg[6 + 3 * k..9 + 3 * k];
        *c = Component {
            id: b[0],
            h: usize::from(b[1] >> 4),
            v: usize::from(b[1] & 15),
            tq: usize::from(b[2]),
            ..Component::default()
        };
        if !(1..=4).contains(&c.h) || !(1..=4).contains(&c.v) || c.tq > 3 {
            return Err(JpegError::Corrupt(
                "a component's sampling or table is out of range",
            ));
        }
    }
    if nf == 3
        && (comps[0].id == comps[1].id || comps[0].id == comps[2].id || comps[1].id == comps[2].id)
    {
        return Err(JpegError::Corrupt("two components share an id"));
    }
    let chroma = if nf == 1 {
        Chroma::Mono
    } else {
        let (y, cb, cr) = (comps[0], comps[1], comps[2]);
        let ratio = |l: usize, c: usize| l.is_multiple_of(c).then_some(l / c);
        let hr = ratio(y.h, cb.h);
        let vr = ratio(y.v, cb.v);
        if (cb.h, cb.v) != (cr.h, cr.v) || y.h < cb.h || y.v < cb.v {
            return Err(JpegError::Unsupported("this chroma sampling"));
        }
        match (hr, vr) {
            (Some(1), Some(1)) => Chroma::C444,
            (Some(2), Some(1)) => Chroma::C422,
            (Some(2), Some(2)) => Chroma::C420,
            _ => return Err(JpegError::Unsupported("this chroma sampling")),
        }
    };
    Ok(FrameHeader {
        width,
        height,
        chroma,
    })
}
