//! The human view of `/status` printed by `rtinfer status`.
//!
//! The table is read by someone diagnosing a live board, possibly against a daemon of another
//! version, in a state where half the figures do not exist yet (no model loaded, no frames, no
//! power meter). So it is driven by the JSON alone, looks every key up defensively, and prints
//! `-` for anything null, missing or of an unexpected type: it never fails and never panics,
//! whatever the daemon sends. Scripts should use `rtinfer status --json` instead.

use std::fmt::Write;

use serde_json::Value;

/// Width of the row labels.
const LABEL: usize = 11;
/// The latency stages as (JSON key, label).
const STAGES: [(&str, &str); 7] = [
    ("end_to_end", "end-to-end"),
    ("capture", "capture"),
    ("queue", "queue"),
    ("inference", "inference"),
    ("preprocess", "preprocess"),
    ("postprocess", "postprocess"),
    ("device", "device"),
];
/// The latency columns, in order.
const QUANTILES: [&str; 6] = ["p50", "p90", "p99", "p999", "max", "mean"];
/// How many top classes of the last result to show.
const TOP_CLASSES: usize = 5;

/// Renders a `/status` document as a table. Never panics; absent values print as `-`.
pub fn render(status: &Value) -> String {
    let mut out = String::new();
    let rows: [(&str, String); 7] = [
        ("state", state_row(status)),
        ("model", model_row(status)),
        ("source", source_row(status)),
        ("rate", rate_row(status)),
        ("frames", frames_row(status)),
        ("latency", "ms, recent window".to_string()),
        ("", latency_table(status.get("latency_ms"))),
    ];
    for (label, text) in rows {
        push_row(&mut out, label, &text);
    }
    push_row(&mut out, "last miss", &last_miss_row(status));
    if let Some(power) = field(status, "power") {
        push_row(&mut out, "power", &power_row(power));
    }
    push_row(&mut out, "system", &system_row(status));
    push_row(&mut out, "realtime", &realtime_row(status));
    push_row(&mut out, "swaps", &swaps_row(status));
    if field(status, "governor.enabled").and_then(Value::as_bool) == Some(true) {
        push_row(&mut out, "governor", &governor_row(status));
    }
    push_row(&mut out, "result", &result_row(status));
    out
}

fn push_row(out: &mut String, label: &str, text: &str) {
    if label.is_empty() {
        out.push_str(text);
    } else {
        let _ = writeln!(out, "{label:<LABEL$}{text}");
    }
}

/// The value at a dotted path, or `None` when any step is missing or null.
fn field<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(v, |v, key| v.get(key))
        .filter(|v| !v.is_null())
}

/// Any scalar as text: integers exact, other numbers with up to two decimals, booleans as
/// yes/no, arrays comma-joined; absent or null as `-`.
fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) if s.is_empty() => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => if *b { "yes" } else { "no" }.into(),
        Some(Value::Number(n)) => number(n),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| text(Some(x)))
            .collect::<Vec<_>>()
            .join(","),
        Some(other @ Value::Object(_)) => other.to_string(),
    }
}

fn number(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    match n.as_f64() {
        Some(x) => trim_zeros(format!("{x:.2}")),
        None => n.to_string(),
    }
}

fn trim_zeros(s: String) -> String {
    if !s.contains('.') {
        return s;
    }
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn get(v: &Value, path: &str) -> String {
    text(field(v, path))
}

/// A number with a unit, or `-` (no unit) when absent.
fn with_unit(v: &Value, path: &str, unit: &str) -> String {
    match field(v, path) {
        Some(x) if x.is_number() => format!("{}{unit}", text(Some(x))),
        other => text(other),
    }
}

/// Milliseconds with two decimals, as the latency table shows them.
fn ms(v: Option<&Value>) -> String {
    match v.and_then(Value::as_f64) {
        Some(x) => format!("{x:.2}"),
        None => "-".into(),
    }
}

fn state_row(s: &Value) -> String {
    let uptime = field(s, "uptime_s")
        .and_then(Value::as_f64)
        .map_or("-".into(), duration);
    format!("{}  uptime {uptime}", get(s, "state"))
}

/// Seconds as `3d 04h 05m`, `1h 02m 03s`, `2m 05s` or `42s`.
fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "-".into();
    }
    let t = secs as u64;
    let (d, h, m, s) = (t / 86_400, t / 3600 % 24, t / 60 % 60, t % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s:02}s"),
        (0, _, _) => format!("{h}h {m:02}m {s:02}s"),
        _ => format!("{d}d {h:02}h {m:02}m"),
    }
}

fn model_row(s: &Value) -> String {
    let shape = match field(s, "model.input_shape") {
        Some(Value::Array(dims)) => dims
            .iter()
            .map(|d| text(Some(d)))
            .collect::<Vec<_>>()
            .join("x"),
        other => text(other),
    };
    format!(
        "{}  backend {}  precision {}  input {shape}",
        get(s, "model.name"),
        get(s, "model.backend"),
        get(s, "model.precision"),
    )
}

fn source_row(s: &Value) -> String {
    let size = match (field(s, "source.width"), field(s, "source.height")) {
        (Some(w), Some(h)) => format!("{}x{}", text(Some(w)), text(Some(h))),
        _ => "-".into(),
    };
    let connected = match field(s, "source.connected").and_then(Value::as_bool) {
        Some(true) => "connected",
        Some(false) => "disconnected",
        None => "-",
    };
    format!(
        "{}  {size} @ {}  {connected}",
        get(s, "source.uri"),
        with_unit(s, "source.fps", " fps")
    )
}

fn rate_row(s: &Value) -> String {
    format!(
        "{} (target {})  budget {}",
        with_unit(s, "fps", " fps"),
        get(s, "target_fps"),
        with_unit(s, "budget_ms", " ms"),
    )
}

fn frames_row(s: &Value) -> String {
    let keys = [
        ("captured", "captured"),
        ("processed", "processed"),
        ("missed_deadline", "missed"),
        ("dropped", "dropped"),
        ("cancelled", "cancelled"),
        ("in_flight", "in flight"),
    ];
    let parts: Vec<String> = keys
        .iter()
        .map(|(key, label)| format!("{label} {}", get(s, &format!("frames.{key}"))))
        .collect();
    parts.join("  ")
}

/// One row per stage, one right-aligned column per quantile.
fn latency_table(latency: Option<&Value>) -> String {
    let mut out = format!("  {:<12}", "stage");
    for q in QUANTILES {
        let _ = write!(out, "{q:>9}");
    }
    out.push('\n');
    for (key, label) in STAGES {
        let stage = latency.and_then(|l| l.get(key));
        // The device row only for backends that measure a device time (TensorRT).
        if key == "device" && stage.and_then(|s| s.get("count")).and_then(Value::as_u64) == Some(0)
        {
            continue;
        }
        let _ = write!(out, "  {label:<12}");
        for q in QUANTILES {
            let _ = write!(out, "{:>9}", ms(stage.and_then(|st| st.get(q))));
        }
        out.push('\n');
    }
    out
}

fn last_miss_row(s: &Value) -> String {
    if field(s, "last_miss").is_none() {
        return "-".into();
    }
    format!(
        "seq {}  {} ms (+{} ms over budget)  at {}",
        get(s, "last_miss.seq"),
        ms(field(s, "last_miss.latency_ms")),
        ms(field(s, "last_miss.overshoot_ms")),
        get(s, "last_miss.at"),
    )
}

fn power_row(p: &Value) -> String {
    let connected = match p.get("connected").and_then(Value::as_bool) {
        Some(true) => "connected",
        Some(false) => "disconnected",
        None => "-",
    };
    format!(
        "{} {connected}  now {}  mean {}  idle {}  peak {}  {}/frame  {}/W",
        get(p, "meter"),
        with_unit(p, "watts", " W"),
        with_unit(p, "mean_watts", " W"),
        with_unit(p, "idle_watts", " W"),
        with_unit(p, "peak_watts", " W"),
        with_unit(p, "joules_per_frame", " J"),
        with_unit(p, "throughput_per_watt", " fps"),
    )
}

fn system_row(s: &Value) -> String {
    let rss = field(s, "system.rss_bytes")
        .or_else(|| field(s, "memory.rss_bytes"))
        .and_then(Value::as_f64)
        .map_or("-".into(), |b| format!("{:.1} MiB", b / (1024.0 * 1024.0)));
    format!(
        "rss {rss}  cpu load {}  temperature {}",
        get(s, "system.cpu_load"),
        with_unit(s, "system.temperature_c", " °C"),
    )
}

fn realtime_row(s: &Value) -> String {
    format!(
        "priority {}  cpus {}  memory locked {}",
        get(s, "realtime.priority"),
        get(s, "realtime.cpus"),
        get(s, "realtime.memory_locked"),
    )
}

fn swaps_row(s: &Value) -> String {
    let Some(swaps) = field(s, "swaps").and_then(Value::as_array) else {
        return "-".into();
    };
    match swaps.last() {
        None => "0".into(),
        Some(last) => format!(
            "{}  last: {} -> {} {} ({})  at {}",
            swaps.len(),
            get(last, "from"),
            get(last, "to"),
            get(last, "result"),
            get(last, "reason"),
            get(last, "at"),
        ),
    }
}

/// `rung 2/4 mnv2-0.75 [pinned]  window p99 9.10 ms  slowdown 1.42  steps 3 (1 up, 2 down)
/// last down at ...: over budget for 0.5 s`.
fn governor_row(s: &Value) -> String {
    let g = field(s, "governor").unwrap_or(&Value::Null);
    let rung = match field(g, "rung").and_then(Value::as_u64) {
        Some(r) => format!("{}/{}", r + 1, get(g, "rungs")),
        None => format!("-/{} (measuring)", get(g, "rungs")),
    };
    let pinned = if field(g, "pinned").is_some() {
        " [pinned]"
    } else {
        ""
    };
    let last = match field(g, "last_step") {
        Some(l) => {
            let reason = get(l, "reason");
            let short = reason.split(':').next().unwrap_or("-").to_string();
            format!(
                "  last {} to {} at {}: {short}",
                get(l, "direction"),
                get(l, "to"),
                get(l, "at")
            )
        }
        None => String::new(),
    };
    format!(
        "rung {rung} {}{pinned}  window p99 {} ms  slowdown {}  steps {} ({} up, {} down){last}",
        get(g, "model"),
        ms(field(g, "window.p99_ms")),
        get(g, "window.slowdown"),
        get(g, "steps_total"),
        get(g, "steps.up"),
        get(g, "steps.down"),
    )
}

fn result_row(s: &Value) -> String {
    let top = match field(s, "last_result.top").and_then(Value::as_array) {
        Some(top) if !top.is_empty() => top
            .iter()
            .take(TOP_CLASSES)
            .map(|c| format!("{} {}", get(c, "class"), get(c, "score")))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "-".into(),
    };
    format!("seq {}  top {top}", get(s, "last_result.seq"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration(42.9), "42s");
        assert_eq!(duration(125.0), "2m 05s");
        assert_eq!(duration(3723.0), "1h 02m 03s");
        assert_eq!(
            duration(2.0 * 86_400.0 + 3.0 * 3600.0 + 4.0 * 60.0),
            "2d 03h 04m"
        );
        assert_eq!(duration(-1.0), "-");
    }

    #[test]
    fn the_governor_row_shows_rung_steps_and_the_last_step() {
        let mut s = serde_json::json!({"governor": crate::governor::shared::disabled_json()});
        assert!(!render(&s).contains("governor"), "no row when it is off");
        s["governor"] = serde_json::json!({
            "enabled": true, "rung": 1, "rungs": 4, "model": "mnv2-0.5", "pinned": "mnv2-0.5",
            "window": {"p99_ms": 9.104, "slowdown": 1.4166},
            "steps": {"up": 1, "down": 2}, "steps_total": 3,
            "last_step": {"direction": "down", "to": "mnv2-0.5", "at": "2025-01-01T00:00:00Z",
                "reason": "over budget for 0.5 s: window p99 20 ms"},
        });
        let row = render(&s);
        let line = row
            .lines()
            .find(|l| l.starts_with("governor"))
            .expect("a governor row");
        assert!(line.contains("rung 2/4 mnv2-0.5 [pinned]"), "{line}");
        assert!(line.contains("window p99 9.10 ms  slowdown 1.42"), "{line}");
        assert!(line.contains("steps 3 (1 up, 2 down)"), "{line}");
        assert!(line.ends_with("over budget for 0.5 s"), "{line}");
        s["governor"]["rung"] = Value::Null;
        s["governor"]["window"] = Value::Null;
        assert!(render(&s).contains("rung -/4 (measuring)"));
    }

    #[test]
    fn scalars() {
        assert_eq!(text(Some(&serde_json::json!(60.0))), "60");
        assert_eq!(text(Some(&serde_json::json!(16.666_666))), "16.67");
        assert_eq!(text(Some(&serde_json::json!(12))), "12");
        assert_eq!(text(Some(&serde_json::json!(true))), "yes");
        assert_eq!(text(Some(&serde_json::json!([2, 3]))), "2,3");
        assert_eq!(text(None), "-");
    }
}
