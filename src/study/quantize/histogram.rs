//! Streaming activation statistics: memory is one fixed histogram per tensor whatever the number
//! of calibration samples, so a board can calibrate on thousands of camera frames.
//!
//! Values are binned by magnitude, positives and negatives apart, over `[0, top)` where `top` is
//! a power of two. When a larger value arrives `top` doubles and neighbouring bins merge, which
//! is exact (no re-binning error accumulates) and keeps at least half the bins in use.

/// Bins per sign.
pub const BINS: usize = 4096;

/// Magnitude histogram over `[0, top)` with [`BINS`] equal bins.
#[derive(Debug, Clone)]
struct MagHist {
    bins: Vec<u64>,
    top: f32,
}

impl MagHist {
    fn new() -> Self {
        MagHist {
            bins: vec![0; BINS],
            top: 0.0,
        }
    }

    fn width(&self) -> f32 {
        self.top / BINS as f32
    }

    fn grow_to(&mut self, m: f32) {
        if self.top == 0.0 {
            self.top = 2f32.powi(m.max(1e-30).log2().floor() as i32 + 1);
        }
        while m >= self.top {
            for i in 0..BINS / 2 {
                self.bins[i] = self.bins[2 * i] + self.bins[2 * i + 1];
            }
            self.bins[BINS / 2..].fill(0);
            self.top *= 2.0;
        }
    }

    fn add(&mut self, m: f32) {
        if m >= self.top {
            self.grow_to(m);
        }
        let i = ((m / self.width()) as usize).min(BINS - 1);
        self.bins[i] += 1;
    }

    /// The same counts with `top` raised to `top` (a power of two >= the current one).
    fn rescaled(&self, top: f32) -> MagHist {
        let mut h = self.clone();
        if h.top == 0.0 {
            h.top = top;
        }
        while h.top < top {
            h.grow_to(h.top);
        }
        h
    }
}

/// Everything collected about one tensor.
#[derive(Debug, Clone)]
pub struct TensorStats {
    pub min: f32,
    pub max: f32,
    pub count: u64,
    /// Exact zeros (ReLU outputs are half zeros): kept out of the histograms, where their spike
    /// in the first bin would drag the entropy threshold down to the smallest candidate.
    zeros: u64,
    /// `None` when only min/max are wanted.
    hist: Option<(MagHist, MagHist)>,
}

/// How a range is chosen from the statistics (`--method`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Method {
    #[default]
    MinMax,
    /// Keep the central `p` percent of the values (e.g. 99.999).
    Percentile(f64),
    /// TensorRT's entropy calibration: the clipping threshold minimising the KL divergence
    /// between the clipped distribution and its quantized version.
    Entropy,
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "minmax" => Ok(Method::MinMax),
            "percentile" => Ok(Method::Percentile(99.999)),
            "entropy" | "kl" => Ok(Method::Entropy),
            o => Err(format!(
                "unknown calibration method '{o}' (expected minmax, percentile or entropy)"
            )),
        }
    }
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::MinMax => "minmax",
            Method::Percentile(_) => "percentile",
            Method::Entropy => "entropy",
        }
    }
}

impl TensorStats {
    pub fn new(method: Method) -> Self {
        TensorStats {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            count: 0,
            zeros: 0,
            hist: (method != Method::MinMax).then(|| (MagHist::new(), MagHist::new())),
        }
    }

    /// Adds a batch of values (non-finite ones are ignored).
    pub fn add(&mut self, values: &[f32]) {
        for &v in values.iter().filter(|v| v.is_finite()) {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
            self.count += 1;
            if let Some((pos, neg)) = &mut self.hist {
                if v == 0.0 {
                    self.zeros += 1;
                } else if v > 0.0 {
                    pos.add(v);
                } else {
                    neg.add(-v);
                }
            }
        }
    }

    /// The range `method` selects; `None` before any finite value.
    pub fn range(&self, method: Method) -> Option<(f32, f32)> {
        if self.count == 0 {
            return None;
        }
        let full = (self.min, self.max);
        let Some((pos, neg)) = &self.hist else {
            return Some(full);
        };
        match method {
            Method::MinMax => Some(full),
            Method::Percentile(p) => {
                let cut = ((100.0 - p) / 200.0).clamp(0.0, 0.5);
                let lo = quantile(pos, neg, self.zeros, cut).max(self.min);
                let hi = quantile(pos, neg, self.zeros, 1.0 - cut).min(self.max);
                Some((lo.min(hi), hi))
            }
            Method::Entropy => {
                let top = pos.top.max(neg.top);
                let (p, n) = (pos.rescaled(top), neg.rescaled(top));
                let mag: Vec<u64> = p.bins.iter().zip(&n.bins).map(|(a, b)| a + b).collect();
                let levels = if self.min >= 0.0 { 255 } else { 128 };
                let t = entropy_threshold(&mag, levels) * p.width();
                Some((self.min.max(-t), self.max.min(t)))
            }
        }
    }
}

/// The value below which fraction `q` of all values lie, at a bin edge rounded outwards (down
/// for the lower quantile, up for the upper one).
fn quantile(pos: &MagHist, neg: &MagHist, zeros: u64, q: f64) -> f32 {
    let total: u64 = pos.bins.iter().chain(&neg.bins).sum::<u64>() + zeros;
    let target = (q * total as f64).ceil().max(1.0) as u64;
    let lower = q < 0.5;
    let mut seen = 0u64;
    for i in (0..BINS).rev() {
        seen += neg.bins[i];
        if seen >= target {
            let edge = if lower { i + 1 } else { i };
            return -(edge as f32) * neg.width();
        }
    }
    seen += zeros;
    if seen >= target {
        return 0.0;
    }
    for i in 0..BINS {
        seen += pos.bins[i];
        if seen >= target {
            let edge = if lower { i } else { i + 1 };
            return edge as f32 * pos.width();
        }
    }
    pos.top
}

/// Most candidate thresholds tried (evenly spaced) so a tensor costs O(256 x bins).
const MAX_CANDIDATES: usize = 256;

/// TensorRT's calibration search over a magnitude histogram: returns the threshold in bins.
pub fn entropy_threshold(hist: &[u64], levels: usize) -> f32 {
    let used = hist.iter().rposition(|&c| c > 0).map_or(0, |i| i + 1);
    if used <= levels {
        return used.max(1) as f32;
    }
    let step = (used - levels).div_ceil(MAX_CANDIDATES).max(1);
    let mut best = (f64::INFINITY, used);
    let mut i = levels;
    while i <= used {
        let kl = kl_for_threshold(hist, i, levels);
        if kl < best.0 {
            best = (kl, i);
        }
        if i == used {
            break;
        }
        i = (i + step).min(used);
    }
    best.1 as f32
}

/// KL(P || Q): P = the first `i` bins with the outliers folded into the last, Q = the first `i`
/// bins (without outliers) merged into `levels` groups, each group's mass spread over its
/// non-empty bins. Where P has mass and Q has none (the outliers landing in an empty last bin)
/// Q gets a small epsilon, as in TensorRT's and MXNet's smoothing, so clipping is not free.
fn kl_for_threshold(hist: &[u64], i: usize, levels: usize) -> f64 {
    const EPS: f64 = 1e-7;
    let outliers: u64 = hist[i..].iter().sum();
    let p_total: f64 = hist.iter().sum::<u64>() as f64;
    let q_total: f64 = hist[..i].iter().sum::<u64>() as f64;
    let mut kl = 0.0;
    for g in 0..levels {
        let start = g * i / levels;
        let end = ((g + 1) * i / levels).max(start + 1).min(i);
        let nonzero = (start..end).filter(|&j| hist[j] > 0).count();
        let mass: f64 = (start..end).map(|j| hist[j] as f64).sum();
        for (j, &h) in hist.iter().enumerate().take(end).skip(start) {
            let pj = (h + if j == i - 1 { outliers } else { 0 }) as f64 / p_total;
            if pj == 0.0 {
                continue;
            }
            let qj = if h > 0 && q_total > 0.0 {
                mass / nonzero as f64 / q_total
            } else {
                EPS
            };
            kl += pj * (pj / qj).ln();
        }
    }
    kl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growing_merges_bins_without_losing_counts() {
        let mut s = TensorStats::new(Method::Percentile(100.0));
        s.add(&[0.1, 0.2, 0.3]);
        s.add(&[100.0, -5.0]);
        let (pos, neg) = s.hist.as_ref().unwrap();
        assert_eq!(pos.bins.iter().sum::<u64>(), 4);
        assert_eq!(neg.bins.iter().sum::<u64>(), 1);
        assert_eq!(pos.top, 128.0);
        assert_eq!((s.min, s.max), (-5.0, 100.0));
    }

    #[test]
    fn percentile_drops_rare_outliers() {
        // 100 000 values uniform in [0, 1) and one at 1000: 99.99 % keeps about [0, 1].
        let mut s = TensorStats::new(Method::Percentile(99.99));
        let v: Vec<f32> = (0..100_000).map(|i| i as f32 / 100_000.0).collect();
        s.add(&v);
        s.add(&[1000.0]);
        let (lo, hi) = s.range(Method::Percentile(99.99)).unwrap();
        assert_eq!(lo, 0.0);
        assert!((0.99..1.1).contains(&hi), "hi {hi}");
        assert_eq!(s.range(Method::MinMax).unwrap().1, 1000.0);
    }

    #[test]
    fn entropy_clips_a_long_tail_but_not_a_uniform_range() {
        let mut uniform = TensorStats::new(Method::Entropy);
        let v: Vec<f32> = (0..50_000).map(|i| i as f32 / 50_000.0 * 4.0).collect();
        uniform.add(&v);
        let (_, hi) = uniform.range(Method::Entropy).unwrap();
        assert!(hi > 3.9, "uniform data should keep its range, got {hi}");

        // Pareto-like 1/u - 1: the bulk below 10, a tail up to 50 000.
        let mut tail = TensorStats::new(Method::Entropy);
        let v: Vec<f32> = (1..=50_000).map(|i| 50_000.0 / i as f32 - 1.0).collect();
        tail.add(&v);
        let (_, hi) = tail.range(Method::Entropy).unwrap();
        assert!(hi < tail.max * 0.2, "threshold {hi} of max {}", tail.max);
    }
}
