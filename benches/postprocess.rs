//! How long postprocessing takes per frame against the 16.67 ms budget: top-5 of 1000 classes and
//! a YOLOv8-sized detect head (`[1, 84, 8400]`, 80 classes) with few, many and all candidates over
//! the threshold (the decode scan, the sort and class-wise NMS): `cargo bench --bench postprocess`.
//! Prints median and p99 per frame; asserts nothing.

use std::hint::black_box;
use std::time::{Duration, Instant};

use rtinfer::postprocess::{
    Activation, BoxMap, DetectOptions, Kind, Plan, PostprocessOptions, Scratch, Summary,
};

const ITERATIONS: usize = 300;

fn time(label: &str, mut f: impl FnMut()) {
    for _ in 0..10 {
        f();
    }
    let mut samples: Vec<Duration> = (0..ITERATIONS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label:<62} median {:7.3} ms   p99 {:7.3} ms",
        ms(samples[ITERATIONS / 2]),
        ms(samples[ITERATIONS * 99 / 100])
    );
}

/// A channels-first head of `n` candidates on a 640x640 input, `passing` of them with a class
/// score of 0.3..0.9 on a grid of 32-pixel boxes (neighbours overlap a little; every 8th repeats
/// its predecessor's box and class, so NMS suppresses it), the rest at 0.01.
fn head(n: usize, classes: usize, passing: usize) -> Vec<f32> {
    let attrs = 4 + classes;
    let mut h = vec![0.01f32; attrs * n];
    for i in 0..n {
        let j = if i % 8 == 7 { i - 1 } else { i };
        let (x, y) = ((j % 80) as f32 * 8.0 + 16.0, (j / 80) as f32 * 6.0 + 16.0);
        for (k, v) in [x, y, 32.0, 32.0].into_iter().enumerate() {
            h[k * n + i] = v;
        }
        if i < passing {
            h[(4 + j % classes) * n + i] = 0.3 + 0.6 * ((i * 7919) % 1000) as f32 / 1000.0;
        }
    }
    h
}

fn main() {
    let logits: Vec<f32> = (0..1000)
        .map(|i| ((i * 7919) % 1000) as f32 / 100.0)
        .collect();
    let classify = Plan::Classify(Activation::Softmax);
    let mut s = Scratch::for_plan(&classify, logits.len());
    let map = BoxMap::identity(640, 640);
    time("classify: softmax + top-5 of 1000", || {
        black_box(classify.run(black_box(&logits), &mut s, &map));
    });
    let (n, classes) = (8400, 80);
    let opts = PostprocessOptions {
        kind: Kind::Detect,
        detect: DetectOptions::default(),
        ..Default::default()
    };
    let plan = Plan::decide(&opts, &[1, (4 + classes) as i64, n as i64], None).expect("head");
    let mut s = Scratch::for_plan(&plan, 0);
    // 1280x720 letterboxed into 640x640.
    let map = BoxMap::new(
        [0.0, 140.0, 640.0, 360.0],
        [0.0, 0.0, 1280.0, 720.0],
        (1280, 720),
    );
    for passing in [0, 100, 1000, n] {
        let h = head(n, classes, passing);
        let mut kept = 0;
        time(
            &format!("detect [1, 84, 8400]: {passing} candidates pass 0.25"),
            || {
                kept = match plan.run(black_box(&h), &mut s, &map) {
                    Summary::Detect { count } => count,
                    _ => 0,
                };
            },
        );
        println!("{:<62} {kept} boxes kept (max_detections 100)", "");
    }
}
