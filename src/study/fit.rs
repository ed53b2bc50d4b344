//! The study's scaling model: a least-squares line y = m x + b of latency (or memory) against
//! parameters, and Eq. 1, S ~ sqrt(P_t / P_o), which turns a target y into a width ratio.
//! Kept as plain functions on slices so the numbers can be checked by hand.

use serde::Serialize;
use statrs::distribution::{ContinuousCDF, StudentsT};

/// A fitted line with its correlation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LinearFit {
    pub slope: f64,
    pub bias: f64,
    /// Pearson correlation of x and y.
    pub r: f64,
    /// Two-sided p-value of r under H0: rho = 0 (t-distribution, n - 2 degrees of freedom);
    /// `None` with fewer than 3 points.
    pub p_value: Option<f64>,
    pub n: usize,
}

/// Why a line could not be fitted.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FitError {
    #[error("need at least 2 points to fit a line, got {n}")]
    TooFew { n: usize },
    #[error("x and y differ in length ({x} vs {y})")]
    Length { x: usize, y: usize },
    #[error("all x values are equal ({x}): the slope is undefined")]
    ConstantX { x: f64 },
}

/// Ordinary least squares of `ys` on `xs`, with Pearson's r and its p-value.
pub fn linear_fit(xs: &[f64], ys: &[f64]) -> Result<LinearFit, FitError> {
    if xs.len() != ys.len() {
        return Err(FitError::Length {
            x: xs.len(),
            y: ys.len(),
        });
    }
    let n = xs.len();
    if n < 2 {
        return Err(FitError::TooFew { n });
    }
    let nf = n as f64;
    let mx = xs.iter().sum::<f64>() / nf;
    let my = ys.iter().sum::<f64>() / nf;
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let syy: f64 = ys.iter().map(|y| (y - my).powi(2)).sum();
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    if sxx == 0.0 {
        return Err(FitError::ConstantX { x: mx });
    }
    let slope = sxy / sxx;
    let r = if syy == 0.0 {
        0.0
    } else {
        (sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0)
    };
    Ok(LinearFit {
        slope,
        bias: my - slope * mx,
        r,
        p_value: p_value(r, n),
        n,
    })
}

/// Two-sided p-value of a Pearson r from `n` points: t = r sqrt((n-2)/(1-r^2)).
pub fn p_value(r: f64, n: usize) -> Option<f64> {
    if n < 3 {
        return None;
    }
    if r.abs() >= 1.0 {
        return Some(0.0);
    }
    let df = (n - 2) as f64;
    let t = r.abs() * (df / (1.0 - r * r)).sqrt();
    let dist = StudentsT::new(0.0, 1.0, df).ok()?;
    Some((2.0 * (1.0 - dist.cdf(t))).clamp(0.0, 1.0))
}

/// What Eq. 1 says for one target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum Eq1 {
    /// `P_t = (y - b) / m` parameters meet the target; scale widths by `ratio` = sqrt(P_t/P_o).
    Reachable { p_target: f64, ratio: f64 },
    /// `y <= b` (or a non-positive slope): even a model with no parameters misses the target.
    Unreachable,
}

/// Eq. 1: the width ratio whose parameter count `P_t` meets target `y` on line `m x + b`, for
/// an original model of `p_original` parameters (parameters scale with the square of width).
pub fn eq1(m: f64, b: f64, y: f64, p_original: f64) -> Eq1 {
    if y <= b || m <= 0.0 || p_original <= 0.0 {
        return Eq1::Unreachable;
    }
    let p_target = (y - b) / m;
    Eq1::Reachable {
        p_target,
        ratio: (p_target / p_original).sqrt(),
    }
}

/// Which device a published fit was measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    Cpu,
    Gpu,
    Fpga,
}

/// Numeric precision of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Int8,
}

/// What the fitted y is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Mean latency in milliseconds.
    Latency,
    /// Memory in megabytes.
    Memory,
}

/// One row of the study's Tables 4 and 5 (x = parameters, 32x32 inputs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TableFit {
    pub m: f64,
    pub b: f64,
    pub r: f64,
}

/// Below this |r| the line explains too little of the spread to trust its ratio.
pub const WEAK_R: f64 = 0.7;

/// The study's published fit for a device, precision and metric; `None` where it has none.
pub fn table_fit(device: Device, precision: Precision, metric: Metric) -> Option<TableFit> {
    use {Device::*, Metric::*, Precision::*};
    let (m, b, r) = match (metric, device, precision) {
        (Latency, Cpu, Fp32) => (5.7e-6, 17.9, 0.786),
        (Latency, Cpu, Int8) => (2.2e-6, 9.7, 0.648),
        (Latency, Gpu, Fp32) => (1.6e-7, 0.96, 0.850),
        (Latency, Gpu, Int8) => (2.8e-8, 0.51, 0.546),
        (Latency, Fpga, Int8) => (1.7e-7, 0.69, 0.924),
        (Memory, Cpu, Fp32) => (4.2e-6, 9.3, 0.999),
        (Memory, Cpu, Int8) => (1.8e-6, 9.9, 0.991),
        (Memory, Gpu, Fp32) => (4.0e-6, 62.5, 0.391),
        (Memory, Gpu, Int8) => (1.0e-6, 1.3, 0.994),
        _ => return None,
    };
    Some(TableFit { m, b, r })
}

/// Natural-log least squares of `ln f = ln alpha + beta ln tau` (NeuralScale's power law).
pub fn power_law_fit(tau: &[f64], filters: &[f64]) -> Result<(f64, f64), FitError> {
    let pairs: Vec<(f64, f64)> = tau
        .iter()
        .zip(filters)
        .filter(|(t, f)| **t > 0.0 && **f > 0.0)
        .map(|(t, f)| (t.ln(), f.ln()))
        .collect();
    let (x, y): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
    let fit = linear_fit(&x, &y)?;
    Ok((fit.bias.exp(), fit.slope))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_line_has_r_one() {
        let f = linear_fit(&[1.0, 2.0, 3.0], &[3.0, 5.0, 7.0]).expect("fit");
        assert!((f.slope - 2.0).abs() < 1e-12 && (f.bias - 1.0).abs() < 1e-12);
        assert_eq!((f.r, f.p_value), (1.0, Some(0.0)));
    }
}
