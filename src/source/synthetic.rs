//! A generated test pattern, so the daemon runs (and its tests run) with no camera or file.
//!
//! Scrolling colour bars with a bouncing white box: every frame differs from the previous one, so
//! a classifier's output and the preprocessing cache both see changing input, yet any frame can
//! be recomputed from its index alone (tests check pixels without storing video). Frames are
//! drawn in place into the caller's buffer; after the first frame nothing allocates.

use std::time::Duration;

use super::{Capture, Frame, Pacer, PixelFormat, Source, SourceError, SourceInfo};
use crate::time::MonoTime;

/// 75 % colour bars (white, yellow, cyan, green, magenta, red, blue, black), as in SMPTE/EBU.
pub const BARS: [[u8; 3]; 8] = [
    [191, 191, 191],
    [191, 191, 0],
    [0, 191, 191],
    [0, 191, 0],
    [191, 0, 191],
    [191, 0, 0],
    [0, 0, 191],
    [0, 0, 0],
];

/// Colour of the moving box.
pub const BOX: [u8; 3] = [255, 255, 255];

/// Paced test-pattern source.
#[derive(Debug)]
pub struct SyntheticSource {
    uri: String,
    width: u32,
    height: u32,
    pacer: Pacer,
    /// Index of the next frame to draw.
    index: u64,
}

impl SyntheticSource {
    /// A `width x height` pattern at `fps` (validated by the URI parser: non-zero, finite).
    pub fn new(uri: &str, width: u32, height: u32, fps: f64) -> SyntheticSource {
        SyntheticSource {
            uri: uri.to_owned(),
            width,
            height,
            pacer: Pacer::new(fps),
            index: 0,
        }
    }
}

impl Source for SyntheticSource {
    fn info(&self) -> SourceInfo {
        SourceInfo {
            uri: self.uri.clone(),
            width: self.width,
            height: self.height,
            format: PixelFormat::Rgb24,
            fps: Some(self.pacer.fps()),
        }
    }

    fn set_fps(&mut self, fps: f64) -> bool {
        self.pacer.set_fps(fps);
        true
    }

    fn next(&mut self, frame: &mut Frame, timeout: Duration) -> Result<Capture, SourceError> {
        if self.pacer.wait(timeout).is_none() {
            return Ok(Capture::Timeout);
        }
        frame.set_format(PixelFormat::Rgb24, self.width, self.height);
        draw(self.index, self.width, self.height, &mut frame.data);
        frame.captured_at = MonoTime::now();
        self.index += 1;
        Ok(Capture::Frame)
    }
}

/// Draws frame `index` of the pattern into `rgb` (`width * height * 3` bytes).
pub fn draw(index: u64, width: u32, height: u32, rgb: &mut [u8]) {
    let (w, h) = (width as usize, height as usize);
    if w == 0 || h == 0 || rgb.len() != w * h * 3 {
        return;
    }
    let scroll = (index % w as u64) as usize;
    for row in rgb.chunks_exact_mut(w * 3) {
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            px.copy_from_slice(&BARS[bar_at(x, scroll, w)]);
        }
    }
    let (bx, by, side) = box_at(index, w, h);
    for row in rgb.chunks_exact_mut(w * 3).skip(by).take(side) {
        for px in row.chunks_exact_mut(3).skip(bx).take(side) {
            px.copy_from_slice(&BOX);
        }
    }
}

/// Which bar covers column `x` when the bars have scrolled `scroll` pixels left.
pub fn bar_at(x: usize, scroll: usize, width: usize) -> usize {
    ((x + scroll) % width) * BARS.len() / width
}

/// Top-left corner and side of the box in frame `index`: it bounces off the edges, moving two
/// pixels a frame horizontally and one vertically.
pub fn box_at(index: u64, width: usize, height: usize) -> (usize, usize, usize) {
    let side = (width.min(height) / 4).max(1);
    let x = bounce(index.saturating_mul(2), width - side.min(width));
    let y = bounce(index, height - side.min(height));
    (x, y, side)
}

/// Position after `steps` unit steps on `0..=span` going back and forth.
fn bounce(steps: u64, span: usize) -> usize {
    if span == 0 {
        return 0;
    }
    let span = span as u64;
    let phase = steps % (2 * span);
    (if phase <= span {
        phase
    } else {
        2 * span - phase
    }) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounce_reverses_at_the_edges() {
        let path: Vec<usize> = (0..9).map(|s| bounce(s, 3)).collect();
        assert_eq!(path, [0, 1, 2, 3, 2, 1, 0, 1, 2]);
    }

    #[test]
    fn consecutive_frames_differ_and_box_is_drawn() {
        let (w, h) = (64u32, 48u32);
        let mut a = vec![0u8; 64 * 48 * 3];
        let mut b = a.clone();
        draw(0, w, h, &mut a);
        draw(1, w, h, &mut b);
        assert_ne!(a, b);
        let (bx, by, side) = box_at(1, 64, 48);
        assert_eq!(side, 12);
        let centre = ((by + side / 2) * 64 + bx + side / 2) * 3;
        assert_eq!(&b[centre..centre + 3], &BOX);
        // Column 0 of row 0 (outside the box at frame 1: it starts at x = 2) shows a bar.
        assert_eq!(&b[0..3], &BARS[bar_at(0, 1, 64)]);
    }
}
