//! `GET /metrics`: the daemon's figures in Prometheus text format 0.0.4, named Triton-style.
//!
//! Every board of a fleet can then be scraped by one Prometheus. Frame results are one counter
//! with disjoint `result` labels (`on_time`, `late`, `dropped`, `cancelled`), so they sum to the
//! frames that finished. Latency is a summary per stage: quantiles over the recent window (10 s,
//! like `/status` `latency_ms`), `_sum`/`_count` cumulative since start.
//!
//! Names follow Prometheus' conventions (base units: `_seconds`, `_watts`, `_bytes`, `_joules`;
//! `promtool check metrics` is clean, a test runs it), so `/status`'s milliseconds are divided by
//! 1000 here. The names before that (`rtinfer_latency_ms`, `rtinfer_budget_ms`,
//! `rtinfer_inference_ms_max`) are not served any more: promtool flags them, and the recording
//! rules in `packaging/prometheus/rtinfer-rules.yml` rebuild them on the Prometheus side for one
//! release.

use std::fmt::Write;

use super::Shared;
use crate::stats::{Percentiles, StageLatencies};
use crate::time::MonoTime;

/// Content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders every metric.
pub fn render(s: &Shared) -> String {
    let mut out = String::with_capacity(4096);
    let c = s.slot.counters();
    let sys = s.system();
    let (window, lifetime, fps, detections) = {
        let mut st = s.stats();
        let sum = st.latency.summary(MonoTime::now());
        // A detector's boxes: (kept since start, in the last result), once a detector ran.
        let last = st.last_result.and_then(|r| r.detections);
        let detections = (last.is_some() || st.detections_total > 0)
            .then(|| (st.detections_total, last.unwrap_or(0)));
        (sum.window, sum.lifetime, sum.fps, detections)
    };
    gauge(&mut out, "rtinfer_up", "1 while the daemon runs.", 1.0);
    let _ = writeln!(
        out,
        "# HELP rtinfer_frames_total Frames by how they ended (disjoint)."
    );
    let _ = writeln!(out, "# TYPE rtinfer_frames_total counter");
    for (result, n) in [
        ("on_time", c.processed - c.missed_deadline.min(c.processed)),
        ("late", c.missed_deadline),
        ("dropped", c.dropped),
        ("cancelled", c.cancelled),
    ] {
        let _ = writeln!(out, "rtinfer_frames_total{{result=\"{result}\"}} {n}");
    }
    counter(
        &mut out,
        "rtinfer_frames_captured_total",
        "Frames captured by the source.",
        c.captured as f64,
    );
    counter(
        &mut out,
        "rtinfer_source_skipped_frames_total",
        "Frames the source read but could not decode (a camera's corrupt MJPEG).",
        s.source_health.skipped_frames() as f64,
    );
    gauge(
        &mut out,
        "rtinfer_frames_in_flight",
        "Frames waiting or being inferred.",
        c.in_flight as f64,
    );
    latency_summary(&mut out, &window, &lifetime);
    if let Some((total, last)) = detections {
        counter(
            &mut out,
            "rtinfer_detections_total",
            "Boxes a detector kept (postprocess.kind = detect), over every result since start.",
            total as f64,
        );
        gauge(
            &mut out,
            "rtinfer_detections",
            "Boxes in the last result (0 when the serving model is not a detector).",
            last as f64,
        );
    }
    if let Some(max) = window.inference.max {
        gauge(
            &mut out,
            "rtinfer_inference_max_seconds",
            "Slowest inference in the recent window.",
            max / 1000.0,
        );
    }
    gauge(
        &mut out,
        "rtinfer_budget_seconds",
        "Per-frame budget.",
        s.ctl.budget().as_secs_f64(),
    );
    if let Some(f) = fps {
        gauge(
            &mut out,
            "rtinfer_fps",
            "Processed frames per second over the recent window.",
            f,
        );
    }
    if let Some(m) = s.serving.model() {
        let _ = writeln!(out, "# HELP rtinfer_model_info The model serving now.");
        let _ = writeln!(out, "# TYPE rtinfer_model_info gauge");
        let _ = writeln!(
            out,
            "rtinfer_model_info{{name=\"{}\",backend=\"{}\",precision=\"{}\"}} 1",
            escape(&m.name),
            m.backend.name(),
            m.precision.name()
        );
        if let Some(p) = m.params {
            gauge(
                &mut out,
                "rtinfer_model_params",
                "Parameters of the model serving now.",
                p as f64,
            );
        }
    }
    if let Some(g) = &s.governor {
        let v = g.view();
        if let Some(r) = v.rung {
            gauge(
                &mut out,
                "rtinfer_governor_rung",
                "The governor's serving rung (0 = the fastest model of the ladder).",
                r as f64,
            );
        }
        gauge(
            &mut out,
            "rtinfer_governor_rungs",
            "Rungs on the governor's ladder.",
            v.ladder.len() as f64,
        );
        gauge(
            &mut out,
            "rtinfer_governor_pinned",
            "1 while a rung is pinned.",
            f64::from(u8::from(v.pinned.is_some())),
        );
        let _ = writeln!(
            out,
            "# HELP rtinfer_governor_steps_total Governor steps by direction (up = a larger model)."
        );
        let _ = writeln!(out, "# TYPE rtinfer_governor_steps_total counter");
        let _ = writeln!(
            out,
            "rtinfer_governor_steps_total{{direction=\"up\"}} {}",
            v.steps_up
        );
        let _ = writeln!(
            out,
            "rtinfer_governor_steps_total{{direction=\"down\"}} {}",
            v.steps_down
        );
    }
    let (ok, rejected) = s.registry().swap_totals();
    let _ = writeln!(out, "# HELP rtinfer_swaps_total Model swaps by result.");
    let _ = writeln!(out, "# TYPE rtinfer_swaps_total counter");
    let _ = writeln!(out, "rtinfer_swaps_total{{result=\"ok\"}} {ok}");
    let _ = writeln!(out, "rtinfer_swaps_total{{result=\"rejected\"}} {rejected}");
    if let Some(p) = s.power().map(|p| p.snapshot(MonoTime::now(), fps)) {
        let _ = writeln!(
            out,
            "# HELP rtinfer_power_connected 1 while the power meter delivers samples."
        );
        let _ = writeln!(out, "# TYPE rtinfer_power_connected gauge");
        let _ = writeln!(out, "rtinfer_power_connected {}", u8::from(p.connected));
        for (name, help, v) in [
            ("rtinfer_power_watts", "Power now (W).", p.watts),
            (
                "rtinfer_power_mean_watts",
                "Mean power over the recent window (W).",
                p.mean_watts,
            ),
            (
                "rtinfer_power_idle_watts",
                "Idle power measured before the model ran (W).",
                p.idle_watts,
            ),
            (
                "rtinfer_power_peak_watts",
                "Peak power over the recent window (W).",
                p.peak_watts,
            ),
            (
                "rtinfer_power_dynamic_watts",
                "Peak minus idle power (W).",
                p.dynamic_watts,
            ),
            (
                "rtinfer_throughput_per_watt",
                "Processed fps per watt of peak power.",
                p.throughput_per_watt,
            ),
            (
                "rtinfer_joules_per_frame",
                "Mean watts / processed fps over the window (J).",
                p.joules_per_frame,
            ),
        ] {
            if let Some(v) = v {
                gauge(&mut out, name, help, v);
            }
        }
        counter(
            &mut out,
            "rtinfer_energy_joules_total",
            "Energy measured since start (J).",
            p.energy_j,
        );
        counter(
            &mut out,
            "rtinfer_power_bad_frames_total",
            "Meter frames dropped as garbage.",
            p.bad_frames as f64,
        );
    }
    if let Some(rss) = sys.rss_bytes {
        gauge(
            &mut out,
            "rtinfer_rss_bytes",
            "Resident memory of the daemon.",
            rss as f64,
        );
    }
    if let Some(t) = sys.temperature_c {
        gauge(
            &mut out,
            "rtinfer_temperature_celsius",
            "Hottest thermal zone.",
            t,
        );
    }
    out
}

fn latency_summary(out: &mut String, window: &StageLatencies, lifetime: &StageLatencies) {
    let _ = writeln!(
        out,
        "# HELP rtinfer_latency_seconds Latency per stage: quantiles over the recent window, sum and count since start."
    );
    let _ = writeln!(out, "# TYPE rtinfer_latency_seconds summary");
    let stages: [(&str, &Percentiles, &Percentiles); 7] = [
        ("end_to_end", &window.end_to_end, &lifetime.end_to_end),
        ("capture", &window.capture, &lifetime.capture),
        ("queue", &window.queue, &lifetime.queue),
        ("inference", &window.inference, &lifetime.inference),
        ("preprocess", &window.preprocess, &lifetime.preprocess),
        ("postprocess", &window.postprocess, &lifetime.postprocess),
        ("device", &window.device, &lifetime.device),
    ];
    // `device` only for backends that measure it (TensorRT): no all-NaN series for the others.
    for (stage, w, l) in stages
        .into_iter()
        .filter(|(s, _, l)| *s != "device" || l.count > 0)
    {
        for (q, v) in [
            ("0.5", w.p50),
            ("0.9", w.p90),
            ("0.95", w.p95),
            ("0.99", w.p99),
            ("0.999", w.p999),
        ] {
            let v = v.map_or_else(|| "NaN".to_string(), |ms| num(ms / 1000.0));
            let _ = writeln!(
                out,
                "rtinfer_latency_seconds{{stage=\"{stage}\",quantile=\"{q}\"}} {v}"
            );
        }
        let sum = l.mean.unwrap_or(0.0) * l.count as f64 / 1000.0;
        let _ = writeln!(
            out,
            "rtinfer_latency_seconds_sum{{stage=\"{stage}\"}} {}",
            num(sum)
        );
        let _ = writeln!(
            out,
            "rtinfer_latency_seconds_count{{stage=\"{stage}\"}} {}",
            l.count
        );
    }
}

fn gauge(out: &mut String, name: &str, help: &str, v: f64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
        num(v)
    );
}

fn counter(out: &mut String, name: &str, help: &str, v: f64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
        num(v)
    );
}

fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

/// Label values escape backslash, double quote and newline.
pub fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("x\ny"), "x\\ny");
        assert_eq!(num(f64::NAN), "NaN");
        assert_eq!(num(1.5), "1.5");
    }
}
