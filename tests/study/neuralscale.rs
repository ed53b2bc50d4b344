//! NeuralScale layouts from the published fits: the parameter budget of the uniform model at
//! the same ratio is met within 1 % (by the generated model's own metadata), and FLOPs (counted
//! by `inspect` from the graph) exceed the uniform model's.

use rtinfer::study::inspect;
use rtinfer::study::neuralscale::{self, FitsFile};
use rtinfer::study::zoo::{self, Arch, Dataset, ZooSpec};

use crate::util;

fn fits_path() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/neuralscale_fits.json")
}

#[test]
fn published_fits_meet_the_budget_with_more_flops() {
    let published = FitsFile::published();
    assert_eq!(published.fits.len(), 3);
    for (arch, dataset) in [
        (Arch::Vgg11, Dataset::Cifar10),
        (Arch::MobileNetV2, Dataset::Cifar10),
        (Arch::MobileNetV2, Dataset::TinyImageNet),
    ] {
        for ratio in [0.25, 0.5, 0.75, 1.0] {
            let layout =
                neuralscale::zoo_widths(&fits_path(), arch, dataset, ratio).expect("layout");
            let generate = |widths| {
                let m = zoo::generate(&ZooSpec {
                    arch,
                    dataset,
                    ratio,
                    widths,
                    seed: 0,
                })
                .expect("generate");
                inspect::inspect(&m).expect("inspect")
            };
            let ns = generate(Some(layout.widths.clone()));
            let uni = generate(None);
            let (p_ns, p_uni) = (
                ns.params_torch.expect("params") as f64,
                uni.params_torch.expect("params") as f64,
            );
            let what = format!("{arch} {dataset} {ratio}: {:?}", layout.widths);
            assert!(
                (p_ns / p_uni - 1.0).abs() <= 0.01,
                "{what}: {p_ns} vs {p_uni}"
            );
            assert!(
                ns.flops > uni.flops,
                "{what}: {} vs {}",
                ns.flops,
                uni.flops
            );
        }
    }
}

#[test]
fn missing_fits_are_a_clear_error() {
    let dir = util::tempdir();
    for (arch, dataset) in [("resnet50", "cifar10"), ("vgg11", "tinyimagenet")] {
        let o = util::rtinfer()
            .args([
                "zoo",
                "--arch",
                arch,
                "--dataset",
                dataset,
                "--ratio",
                "0.5",
            ])
            .arg("--neuralscale")
            .arg(fits_path())
            .arg("-o")
            .arg(dir.path().join("x.onnx"))
            .output()
            .expect("run zoo");
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("no NeuralScale fit") && err.contains(arch),
            "{err}"
        );
    }
}

/// A trace drawn exactly from f = alpha tau^beta (unrounded) gives alpha and beta back.
#[test]
fn trace_fit_recovers_power_laws() {
    let dir = util::tempdir();
    let trace = dir.path().join("trace.csv");
    let (a, b) = ([2.0, 0.5], [0.3, 0.6]);
    let mut text = String::from("params,l1,l2\n");
    for tau in [1e4, 3e4, 1e5, 4e5, 1e6] {
        let f = |l: usize| a[l] * f64::powf(tau, b[l]);
        text.push_str(&format!("{tau},{},{}\n", f(0), f(1)));
    }
    std::fs::write(&trace, text).expect("write");
    let out = dir.path().join("fits.json");
    let o = util::rtinfer()
        .args(["advise", "--name", "vgg_test", "--fit-neuralscale"])
        .arg(&trace)
        .arg("-o")
        .arg(&out)
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let fits = FitsFile::read(&out).expect("read back");
    let f = &fits.fits["vgg_test"];
    for l in 0..2 {
        assert!((f.alpha[l] - a[l]).abs() < 1e-9 * a[l], "{:?}", f.alpha);
        assert!((f.beta[l] - b[l]).abs() < 1e-9, "{:?}", f.beta);
    }
}
