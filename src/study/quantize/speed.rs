//! Is the int8 model faster here? Quantizing is done for speed, and on some CPUs and models int8
//! is slower than fp32 (the issue saw 1.6x slower written without a word): after writing,
//! `quantize` times both in ONNX Runtime on this machine and says why when int8 loses.

use std::time::Instant;

use ort::session::builder::GraphOptimizationLevel;

use super::QuantizeError;
use super::ort_run;

/// Runs of each model before timing (first-run allocation, caches, thread pool start-up).
pub const WARMUP_RUNS: usize = 5;
/// Timed runs of each model; the figure is their median.
pub const TIMED_RUNS: usize = 30;
/// Below this fp32 latency a model is "tiny": Q/DQ and requantisation overheads dominate.
pub const TINY_FP32_MS: f64 = 1.0;

/// Median latencies of one batch-1 inference, fp32 and int8, measured in one run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Speed {
    pub fp32_ms: f64,
    pub int8_ms: f64,
    pub runs: usize,
}

impl Speed {
    /// int8 / fp32: above 1, int8 is slower.
    pub fn ratio(&self) -> f64 {
        self.int8_ms / self.fp32_ms
    }
}

/// What may explain a slow int8 model, gathered by `quantize`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Context {
    /// The int8 dot-product instruction set this CPU has (`avx512vnni`, `avxvnni`, `dotprod`),
    /// `None` when it has none.
    pub int8_dot: Option<&'static str>,
    /// The model's default-domain opset.
    pub opset: i64,
    /// Per-channel weights were asked for (or implied by `--symmetric`) but the opset forced
    /// per-tensor.
    pub per_tensor_forced: bool,
    /// Convolutions ONNX Runtime still runs in float in the int8 model.
    pub float_convs: usize,
    /// The model was written in the symmetric (TensorRT) form.
    pub symmetric: bool,
}

/// The int8 dot-product instructions of this CPU, by the name `is_*_feature_detected!` knows.
pub fn int8_dot_instructions() -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512vnni") {
            return Some("avx512vnni");
        }
        if std::arch::is_x86_feature_detected!("avxvnni") {
            return Some("avxvnni");
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("dotprod") {
            return Some("dotprod");
        }
    }
    None
}

/// The warning to print when int8 is slower than fp32 (`None` when it is not), naming the likely
/// causes this run can see.
pub fn slower_warning(speed: &Speed, cx: &Context) -> Option<String> {
    if speed.ratio() <= 1.0 {
        return None;
    }
    let mut causes = Vec::new();
    if cx.int8_dot.is_none() {
        causes.push(format!(
            "this CPU has no int8 dot-product instructions ({}), so int8 convolutions are \
             widened to 16-bit multiplies and gain little over fp32 SIMD",
            if cfg!(target_arch = "aarch64") {
                "Arm dotprod"
            } else {
                "AVX512-VNNI or AVX-VNNI"
            }
        ));
    }
    if speed.fp32_ms < TINY_FP32_MS {
        causes.push(format!(
            "the model is tiny (fp32 runs in {:.3} ms): quantizing and dequantizing between \
             ops costs about as much as the arithmetic int8 saves",
            speed.fp32_ms
        ));
    }
    if cx.float_convs > 0 {
        causes.push(format!(
            "ONNX Runtime runs {} convolution(s) in float with Q/DQ conversions around them",
            cx.float_convs
        ));
    }
    if cx.symmetric {
        causes.push(
            "the symmetric form is written for TensorRT; ONNX Runtime's CPU kernels fuse only \
             part of it"
                .to_string(),
        );
    }
    if cx.per_tensor_forced || cx.opset < super::qdq::PER_CHANNEL_OPSET {
        causes.push(format!(
            "opset {} < {} forces per-tensor weights and older Q/DQ fusions (upgrade the model's \
             opset)",
            cx.opset,
            super::qdq::PER_CHANNEL_OPSET
        ));
    }
    let why = if causes.is_empty() {
        "no likely cause seen here; measure on the target board".to_string()
    } else {
        format!("likely: {}", causes.join("; "))
    };
    Some(format!(
        "the int8 model is {:.2}x SLOWER than fp32 on this machine (median of {} runs, batch 1: \
         int8 {:.3} ms, fp32 {:.3} ms); {why}. Keep the fp32 model here, or measure on the board \
         the int8 model is meant for (--no-bench skips this check)",
        speed.ratio(),
        speed.runs,
        speed.int8_ms,
        speed.fp32_ms,
    ))
}

/// Times the fp32 model `float` and the int8 model `int8` (model bytes) in ONNX Runtime, batch 1
/// on `x` (the first input's elements), alternating the two so that load on the machine
/// falls on both alike. Medians of [`TIMED_RUNS`] after [`WARMUP_RUNS`].
pub fn measure(
    what: &str,
    float: &[u8],
    int8: &[u8],
    x: Option<&[f32]>,
    threads: usize,
) -> Result<Speed, QuantizeError> {
    let runner = |bytes: &[u8]| -> Result<ort_run::Runner, QuantizeError> {
        let s = ort_run::session(what, bytes, GraphOptimizationLevel::All, threads, None)?;
        let shape = ort_run::input_shape(what, &s)?;
        ort_run::Runner::new(what, s, &shape)
    };
    let mut f = runner(float)?;
    let mut q = runner(int8)?;
    let len = f.input_len();
    let zeros;
    let x = match x.filter(|x| x.len() == len) {
        Some(x) => x,
        None => {
            zeros = vec![0f32; len];
            &zeros
        }
    };
    let (mut tf, mut tq) = (Vec::new(), Vec::new());
    for i in 0..WARMUP_RUNS + TIMED_RUNS {
        for (r, times) in [(&mut f, &mut tf), (&mut q, &mut tq)] {
            let t = Instant::now();
            r.run(x, |_, _| {})?;
            if i >= WARMUP_RUNS {
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    Ok(Speed {
        fp32_ms: median(&mut tf),
        int8_ms: median(&mut tq),
        runs: TIMED_RUNS,
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> Context {
        Context {
            int8_dot: Some("avx512vnni"),
            opset: 13,
            per_tensor_forced: false,
            float_convs: 0,
            symmetric: false,
        }
    }

    fn speed(fp32_ms: f64, int8_ms: f64) -> Speed {
        Speed {
            fp32_ms,
            int8_ms,
            runs: 30,
        }
    }

    #[test]
    fn faster_or_equal_int8_gets_no_warning() {
        assert_eq!(slower_warning(&speed(4.0, 2.0), &cx()), None);
        assert_eq!(slower_warning(&speed(4.0, 4.0), &cx()), None);
        let none = Context {
            int8_dot: None,
            opset: 11,
            float_convs: 3,
            ..cx()
        };
        assert_eq!(slower_warning(&speed(0.1, 0.05), &none), None);
    }

    #[test]
    fn slower_int8_names_figures_and_every_visible_cause() {
        let w = slower_warning(&speed(2.0, 3.2), &cx()).expect("slower");
        assert!(w.contains("1.60x SLOWER"), "{w}");
        assert!(
            w.contains("int8 3.200 ms, fp32 2.000 ms") && w.contains("30 runs"),
            "{w}"
        );
        assert!(w.contains("no likely cause"), "{w}");

        let no_vnni = Context {
            int8_dot: None,
            ..cx()
        };
        let w = slower_warning(&speed(2.0, 3.2), &no_vnni).unwrap();
        assert!(w.contains("no int8 dot-product instructions"), "{w}");
        assert!(!w.contains("tiny"), "{w}");

        let w = slower_warning(&speed(0.2, 0.3), &cx()).unwrap();
        assert!(w.contains("tiny (fp32 runs in 0.200 ms)"), "{w}");
        assert!(!w.contains("dot-product"), "{w}");

        let old = Context {
            opset: 11,
            per_tensor_forced: true,
            float_convs: 2,
            symmetric: true,
            ..cx()
        };
        let w = slower_warning(&speed(5.0, 6.0), &old).unwrap();
        for part in [
            "opset 11 < 13",
            "2 convolution(s) in float",
            "symmetric form",
        ] {
            assert!(w.contains(part), "{part}: {w}");
        }
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
