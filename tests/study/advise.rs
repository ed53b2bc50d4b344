//! `advise`: Eq. 1 on known inputs, the least-squares fit against hand-computed values, the
//! unreachable case, and the measured search on injected ratio-dependent latencies.

use rtinfer::study::advise::{self, Grid};
use rtinfer::study::fit::{self, Device, Eq1, Metric, Precision};

use crate::util;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[test]
fn eq1_on_known_inputs() {
    // (9 - 1) / 2 = 4 parameters; sqrt(4 / 16) = 0.5.
    let Eq1::Reachable { p_target, ratio } = fit::eq1(2.0, 1.0, 9.0, 16.0) else {
        panic!("reachable");
    };
    assert!(close(p_target, 4.0) && close(ratio, 0.5));
    // Table 4 CPU fp32: (23.6 - 17.9) / 5.7e-6 = 1e6; sqrt(1e6 / 4e6) = 0.5.
    let t = fit::table_fit(Device::Cpu, Precision::Fp32, Metric::Latency).expect("row");
    assert_eq!((t.m, t.b, t.r), (5.7e-6, 17.9, 0.786));
    let Eq1::Reachable { p_target, ratio } = fit::eq1(t.m, t.b, 23.6, 4e6) else {
        panic!("reachable");
    };
    assert!(
        close(p_target, 1e6) && close(ratio, 0.5),
        "{p_target} {ratio}"
    );
    assert_eq!(fit::eq1(t.m, t.b, 17.9, 4e6), Eq1::Unreachable);
    assert!(fit::table_fit(Device::Fpga, Precision::Fp32, Metric::Latency).is_none());
}

/// x = 1..5, y = 2 4 5 4 5: Sxx = 10, Sxy = 6, Syy = 6 -> slope 0.6, bias 2.2,
/// r = 6 / sqrt(60), t = sqrt(4.5) on 3 degrees of freedom, whose CDF has the closed form
/// 1/2 + (u / (1 + u^2) + atan u) / pi with u = t / sqrt 3.
#[test]
fn least_squares_against_hand_values() {
    let f = fit::linear_fit(&[1.0, 2.0, 3.0, 4.0, 5.0], &[2.0, 4.0, 5.0, 4.0, 5.0]).expect("fit");
    assert!(close(f.slope, 0.6) && close(f.bias, 2.2), "{f:?}");
    assert!(close(f.r, 6.0 / 60f64.sqrt()), "{f:?}");
    let u = 4.5f64.sqrt() / 3f64.sqrt();
    let cdf = 0.5 + (u / (1.0 + u * u) + u.atan()) / std::f64::consts::PI;
    let p = f.p_value.expect("p");
    assert!((p - 2.0 * (1.0 - cdf)).abs() < 1e-9, "{p}");
    assert!(fit::linear_fit(&[1.0, 1.0], &[2.0, 3.0]).is_err());
}

#[test]
fn a_sweep_with_both_precisions_is_fitted_one_precision_at_a_time() {
    let dir = util::tempdir();
    let csv = dir.path().join("sweep.csv");
    // fp32 rows: mean_ms = 2e-6 x + 1; int8 rows (and TensorRT's "mixed"): 1e-6 x + 0.5.
    std::fs::write(
        &csv,
        "name,params,precision,mean_ms\n\
         a,1000000,fp32,3\nb,2000000,fp32,5\nc,3000000,fp32,7\n\
         a8,1000000,int8,1.5\nb8,2000000,mixed,2.5\nc8,3000000,int8,3.5\n",
    )
    .expect("write");
    let fit = |p: &str| {
        let o = util::rtinfer()
            .args(["advise", "--latency-ms", "5", "--params", "8e6", "--json"])
            .args(["--precision", p, "--fit"])
            .arg(&csv)
            .output()
            .expect("run");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        (
            v["slope"].as_f64().expect("slope"),
            v["r"].as_f64().expect("r"),
        )
    };
    let (m, r) = fit("fp32");
    assert!(close(m, 2e-6) && close(r, 1.0), "fp32: {m} {r}");
    let (m, r) = fit("int8");
    assert!(close(m, 1e-6) && close(r, 1.0), "int8: {m} {r}");
}

#[test]
fn fit_from_a_sweep_csv_and_unreachable_targets() {
    let dir = util::tempdir();
    let csv = dir.path().join("sweep.csv");
    // mean_ms = 2e-6 x + 1 exactly: r = 1; 5 ms -> P_t = 2e6; P_o = 8e6 -> S = 0.5.
    std::fs::write(
        &csv,
        "name,params,mean_ms\na,1000000,3\n\"b,2\",2000000,5\nc,3000000,7\n",
    )
    .expect("write");
    let o = util::rtinfer()
        .args([
            "advise",
            "--latency-ms",
            "5",
            "--params",
            "8e6",
            "--json",
            "--fit",
        ])
        .arg(&csv)
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert!(close(v["slope"].as_f64().expect("slope"), 2e-6), "{v}");
    assert!(
        close(v["result"]["ratio"].as_f64().expect("ratio"), 0.5),
        "{v}"
    );
    assert!(close(v["r"].as_f64().expect("r"), 1.0));
    let o = util::rtinfer()
        .args(["advise", "--latency-ms", "16.67", "--params", "1e6"])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && text.contains("unreachable"), "{text}");
    let o = util::rtinfer()
        .args(["advise", "--device", "gpu", "--precision", "int8"])
        .args(["--latency-ms", "1", "--params", "1e6"])
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&o.stdout).contains("weak correlation"));
}

/// Injected latency 20 ms x ratio: the largest ratio on the 0.01 grid with 20 r <= 16.67 is
/// 0.83 (0.84 gives 16.8); a step at 0.4 gives 0.39; everything too slow gives none.
#[test]
fn search_on_injected_latencies() {
    let grid = Grid::new(0.1, 1.0, 0.01).expect("grid");
    let mut probed = 0;
    let out = advise::search(grid, 16.67, |r| {
        probed += 1;
        Ok(20.0 * r)
    })
    .expect("search");
    assert_eq!(out.ratio, Some(0.83));
    assert!(close(out.p99_ms.expect("p99"), 16.6));
    assert!(probed <= 2 + 7, "{probed} probes for 91 ratios");
    let step = advise::search(grid, 16.67, |r| Ok(if r < 0.4 { 10.0 } else { 30.0 }));
    assert_eq!(step.expect("search").ratio, Some(0.39));
    let none = advise::search(grid, 16.67, |_| Ok(100.0)).expect("search");
    assert_eq!((none.ratio, none.probes.len()), (None, 1));
    let all = advise::search(grid, 16.67, |_| Ok(1.0)).expect("search");
    assert_eq!(all.ratio, Some(1.0));
}

/// The CLI search end to end on real benches, with targets no timing can contradict: a huge
/// budget takes the largest ratio after probing both ends; an impossible one is unreachable
/// after probing the smallest.
#[test]
fn cli_search_extremes() {
    let run = |target: &str| {
        let o = util::rtinfer_ort()
            .args([
                "advise",
                "--search",
                "--arch",
                "mobilenetv2",
                "--dataset",
                "cifar10",
            ])
            .args([
                "--min-ratio",
                "0.25",
                "--max-ratio",
                "0.5",
                "--trials",
                "1",
                "--json",
            ])
            .args(["--target-ms", target])
            .output()
            .expect("run advise");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).expect("json")
    };
    let easy = run("100000");
    assert_eq!(easy["ratio"], 0.5, "{easy}");
    assert_eq!(easy["probes"].as_array().map(Vec::len), Some(2));
    let hard = run("0.000001");
    assert!(hard["ratio"].is_null(), "{hard}");
    assert_eq!(hard["probes"][0][0], 0.25);
}
