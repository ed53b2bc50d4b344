//! `bench`: the protocol calls the engine exactly warm-up + runs per trial and keeps only the
//! measured runs; statistics on a scripted sequence equal hand-computed values; the memory
//! figure is positive and grows with model size.

use rtinfer::study::bench::{self, Protocol, Summary};

use crate::util;

#[test]
fn runs_are_counted_and_warmups_excluded() {
    let p = Protocol {
        warmup: 20,
        runs: 80,
        trials: 3,
    };
    let mut calls = 0u32;
    let samples = bench::measure(p, || {
        calls += 1;
        Ok::<_, ()>(f64::from(calls))
    })
    .expect("measure");
    assert_eq!(calls, 3 * 100);
    assert_eq!(samples.len(), 3 * 80);
    // Trial t's measured runs are calls 100 t + 21 ..= 100 t + 100.
    assert_eq!(samples[0], 21.0);
    assert_eq!(samples[79], 100.0);
    assert_eq!(samples[80], 121.0);
    assert_eq!(samples[239], 300.0);
}

/// Samples 1..=100 (shuffled): mean 50.5, sample variance n(n+1)/12 = 841.666..., and numpy's
/// linear percentiles: p50 at rank 49.5 -> 50.5, p90 at 89.1 -> 90.1, p99 at 98.01 -> 99.01.
#[test]
fn statistics_of_a_scripted_sequence() {
    let mut s: Vec<f64> = (1..=100).map(f64::from).collect();
    s.reverse();
    s.swap(3, 70);
    let m = Summary::of(&s).expect("summary");
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    assert_eq!(m.count, 100);
    assert!(close(m.mean, 50.5), "{m:?}");
    assert!(close(m.std, (100.0f64 * 101.0 / 12.0).sqrt()), "{m:?}");
    assert!(
        close(m.p50, 50.5) && close(m.p90, 90.1) && close(m.p99, 99.01),
        "{m:?}"
    );
    assert_eq!((m.min, m.max), (1.0, 100.0));
    assert!(Summary::of(&[]).is_none());
}

#[test]
fn status_file_parsing() {
    let text = "Name:\trtinfer\nVmHWM:\t  123456 kB\nVmRSS:\t   98765 kB\n";
    assert_eq!(bench::status_kib(text, "VmRSS:"), Some(98765));
    assert_eq!(bench::status_kib(text, "VmHWM:"), Some(123456));
    assert_eq!(bench::status_kib(text, "VmSwap:"), None);
}

#[test]
fn memory_grows_with_model_size() {
    let dir = util::tempdir();
    let mut last = 0.0;
    for ratio in [0.25, 0.5, 1.0] {
        let model = util::zoo_model(dir.path(), "vgg11", "cifar10", ratio);
        let o = util::rtinfer_ort()
            .arg("bench")
            .arg(&model)
            .args(["--trials", "2", "--warmup", "1", "--runs", "3", "--json"])
            .output()
            .expect("run bench");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_eq!(v["latency_ms"]["count"], 6);
        assert!(v["power"]["idle_w"].is_null());
        assert!(v["device_ms"].is_null(), "no device time on the CPU: {v}");
        assert!(
            v["engine_memory"].is_null(),
            "ONNX Runtime reports no engine memory: {v}"
        );
        assert_eq!(v["precision"], "fp32", "{v}");
        let mem = v["session_rss_mb"].as_f64().expect("memory");
        let peak = v["peak_rss_mb"].as_f64().expect("peak");
        assert!(mem > 0.0 && peak >= mem, "ratio {ratio}: {mem} / {peak}");
        assert!(mem > last, "ratio {ratio}: {mem} MiB not above {last}");
        last = mem;
    }
}

#[test]
fn csv_and_table_outputs() {
    let dir = util::tempdir();
    let model = util::zoo_model(dir.path(), "mobilenetv2", "cifar10", 0.25);
    let o = util::rtinfer_ort()
        .arg("bench")
        .arg(&model)
        .args(["--trials", "1", "--warmup", "1", "--runs", "2", "--csv"])
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0], bench::CSV_HEADER);
    assert_eq!(
        lines[1].split(',').count(),
        lines[0].split(',').count(),
        "{text}"
    );
}
