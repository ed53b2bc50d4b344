//! The study's charts as SVG (plotters' SVG backend without its font stack, so the binary needs
//! no fontconfig on a board): latency per model against the 16.67 ms line (Fig. 3), latency or
//! memory against parameters with the fitted line, accuracy against latency, width profiles.

use std::path::Path;

use plotters::prelude::*;

/// Drawing a chart failed (the message names the file).
#[derive(Debug, thiserror::Error)]
#[error("cannot draw chart {path}: {reason}")]
pub struct PlotError {
    pub path: String,
    pub reason: String,
}

fn err(path: &Path) -> impl Fn(String) -> PlotError + '_ {
    move |reason| PlotError {
        path: path.display().to_string(),
        reason,
    }
}

const SIZE: (u32, u32) = (800, 500);

/// Range covering `v` with a 5 % margin (never empty).
fn span(v: impl Iterator<Item = f64> + Clone, floor_zero: bool) -> std::ops::Range<f64> {
    let lo = v.clone().fold(f64::INFINITY, f64::min);
    let hi = v.fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() && hi.is_finite() {
        (lo, hi)
    } else {
        (0.0, 1.0)
    };
    let pad = ((hi - lo) * 0.05).max(1e-9);
    let lo = if floor_zero { lo.min(0.0) } else { lo - pad };
    lo..hi + pad
}

/// Points `(x, y)` with labels on the axes, plus optional horizontal line `hline` (a budget)
/// and optional fitted line `y = m x + b`.
pub struct Scatter<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub points: &'a [(f64, f64)],
    pub hline: Option<(f64, &'a str)>,
    pub fit: Option<(f64, f64, &'a str)>,
    /// Join the points in order (a profile) instead of drawing markers only.
    pub joined: bool,
    /// A second set of points (e.g. p99 beside the mean) and its legend label.
    pub extra: Option<(&'a [(f64, f64)], &'a str)>,
}

/// Draws a [`Scatter`] into an SVG file.
pub fn scatter(path: &Path, s: &Scatter<'_>) -> Result<(), PlotError> {
    let e = err(path);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let xr = span(s.points.iter().map(|p| p.0), false);
    let mut ys: Vec<f64> = s.points.iter().map(|p| p.1).collect();
    if let Some((pts, _)) = s.extra {
        ys.extend(pts.iter().map(|p| p.1));
    }
    if let Some((y, _)) = s.hline {
        ys.push(y);
    }
    let yr = span(ys.into_iter(), true);
    let mut chart = ChartBuilder::on(&root)
        .caption(s.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(xr.clone(), yr)
        .map_err(|x| e(x.to_string()))?;
    chart
        .configure_mesh()
        .x_desc(s.x_label)
        .y_desc(s.y_label)
        .draw()
        .map_err(|x| e(x.to_string()))?;
    if s.joined {
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), &BLUE))
            .map_err(|x| e(x.to_string()))?;
    }
    chart
        .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, BLUE.filled())))
        .map_err(|x| e(x.to_string()))?;
    if let Some((pts, label)) = s.extra {
        chart
            .draw_series(
                pts.iter()
                    .map(|&p| TriangleMarker::new(p, 4, MAGENTA.filled())),
            )
            .map_err(|x| e(x.to_string()))?
            .label(label)
            .legend(|(x, y)| TriangleMarker::new((x + 10, y), 4, MAGENTA.filled()));
    }
    if let Some((y, label)) = s.hline {
        chart
            .draw_series(LineSeries::new([(xr.start, y), (xr.end, y)], &RED))
            .map_err(|x| e(x.to_string()))?
            .label(label)
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED));
    }
    if let Some((m, b, label)) = s.fit {
        let line = [(xr.start, m * xr.start + b), (xr.end, m * xr.end + b)];
        chart
            .draw_series(LineSeries::new(line, &GREEN))
            .map_err(|x| e(x.to_string()))?
            .label(label)
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], GREEN));
    }
    if s.hline.is_some() || s.fit.is_some() || s.extra.is_some() {
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()
            .map_err(|x| e(x.to_string()))?;
    }
    root.present().map_err(|x| e(x.to_string()))
}

/// The layer-width profile (output channels per conv, in order).
pub fn width_profile(path: &Path, title: &str, widths: &[u64]) -> Result<(), PlotError> {
    let points: Vec<(f64, f64)> = widths
        .iter()
        .enumerate()
        .map(|(i, &w)| (i as f64, w as f64))
        .collect();
    scatter(
        path,
        &Scatter {
            title,
            x_label: "conv layer",
            y_label: "output channels",
            points: &points,
            hline: None,
            fit: None,
            joined: true,
            extra: None,
        },
    )
}

/// Points `(latency, accuracy)` with a vertical budget line at `x = budget`.
pub fn vline_scatter(
    path: &Path,
    title: &str,
    points: &[(f64, f64)],
    budget: f64,
    label: &str,
) -> Result<(), PlotError> {
    let e = err(path);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let xr = span(points.iter().map(|p| p.0).chain([budget]), true);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(xr, 0.0..1.05)
        .map_err(|x| e(x.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("mean latency (ms)")
        .y_desc("top-1 accuracy")
        .draw()
        .map_err(|x| e(x.to_string()))?;
    chart
        .draw_series(points.iter().map(|&p| Circle::new(p, 3, BLUE.filled())))
        .map_err(|x| e(x.to_string()))?;
    chart
        .draw_series(LineSeries::new([(budget, 0.0), (budget, 1.05)], &RED))
        .map_err(|x| e(x.to_string()))?
        .label(label)
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED));
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()
        .map_err(|x| e(x.to_string()))?;
    root.present().map_err(|x| e(x.to_string()))
}
