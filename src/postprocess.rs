//! What a model's output means, decided once per model, and the per-frame summary of it.
//!
//! Models in the wild end in many ways: logits, a final Softmax (applying softmax again turns a
//! 0.9998 into 0.731 and caps every score there), a Sigmoid, a detector's probability map, a
//! recogniser's sequence. `[postprocess]` says which output and what it is; `auto` reads the
//! graph (a final Softmax/LogSoftmax/Sigmoid means probabilities) and the shape (`[1, C]`/`[C]`
//! is classification, anything else is `raw`: the shape and a compact summary, never "classes").
//! `detect` decodes a YOLO head into boxes in source pixels (`detect`); the boxes reach the
//! stats thread through a ring beside the records (`ring`). The decision is a [`Plan`] made at
//! load time; [`Plan::run`] allocates nothing per frame.

pub mod detect;
pub mod ring;

pub use detect::{BoxMap, DetectBuffers, DetectError, DetectOptions, DetectPlan, Detection};
pub use ring::BoxRing;

use crate::invalid_key::InvalidKey;

/// How many classes a result keeps.
pub const TOP_K: usize = 5;
/// The most dims a raw result's shape keeps.
pub const MAX_RANK: usize = 6;

/// `postprocess.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    /// Classification for a `[1, C]`/`[C]` output, raw otherwise.
    #[default]
    Auto,
    Classify,
    Raw,
    /// A YOLO head: boxes ([`detect`]).
    Detect,
}

/// `postprocess.scores`: what a classifier's output holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scores {
    /// From the graph: a final Softmax/LogSoftmax/Sigmoid means probabilities, else logits.
    #[default]
    Auto,
    Probabilities,
    Logits,
}

/// `[postprocess]`, checked.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PostprocessOptions {
    /// The output to read (`None`: the first, said in the log when there are several).
    pub output: Option<String>,
    pub kind: Kind,
    pub scores: Scores,
    /// The `detect` keys (defaults unless `kind = "detect"`).
    pub detect: DetectOptions,
}

/// `[postprocess]` as written.
#[derive(Debug, Default, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawPostprocess {
    pub output: Option<String>,
    /// auto | classify | raw | detect
    pub kind: Option<String>,
    /// auto | probabilities | logits
    pub scores: Option<String>,
    /// detect: auto | channels-first | channels-last
    pub layout: Option<String>,
    /// detect: true | false | "auto"
    pub objectness: Option<detect::BoolOrAuto>,
    /// detect: cxcywh | xyxy
    pub box_format: Option<String>,
    /// detect: 0..=1 (0.25)
    pub confidence: Option<f64>,
    /// detect: 0..=1 (0.45)
    pub iou: Option<f64>,
    /// detect: 1..=300 (100)
    pub max_detections: Option<i64>,
}

impl RawPostprocess {
    /// Checks the section; an error names its key.
    pub fn check(self) -> Result<PostprocessOptions, InvalidKey> {
        let kind = match self.kind.as_deref() {
            None | Some("auto") => Kind::Auto,
            Some("classify") => Kind::Classify,
            Some("raw") => Kind::Raw,
            Some("detect") => Kind::Detect,
            Some(o) => {
                return Err(InvalidKey::new(
                    "postprocess.kind",
                    format!("'{o}' is not one of auto, classify, raw, detect"),
                ));
            }
        };
        let raw_detect = detect::RawDetect {
            layout: self.layout,
            objectness: self.objectness,
            box_format: self.box_format,
            confidence: self.confidence,
            iou: self.iou,
            max_detections: self.max_detections,
        };
        if kind != Kind::Detect
            && let Some(key) = raw_detect.first_given()
        {
            return Err(InvalidKey::new(
                key,
                "is read only with postprocess.kind = \"detect\"",
            ));
        }
        let detect = raw_detect.check()?;
        let scores = match self.scores.as_deref() {
            None | Some("auto") => Scores::Auto,
            Some("probabilities") => Scores::Probabilities,
            Some("logits") => Scores::Logits,
            Some(o) => {
                return Err(InvalidKey::new(
                    "postprocess.scores",
                    format!("'{o}' is not one of auto, probabilities, logits"),
                ));
            }
        };
        if let Some(o) = &self.output
            && o.is_empty()
        {
            return Err(InvalidKey::new(
                "postprocess.output",
                "empty; name one of the model's outputs",
            ));
        }
        Ok(PostprocessOptions {
            output: self.output,
            kind,
            scores,
            detect,
        })
    }
}

/// What turns a classifier's output into probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Logits: softmax.
    Softmax,
    /// Log-probabilities (LogSoftmax): exp.
    Exp,
    /// Already probabilities (Softmax, Sigmoid): as they are.
    Identity,
}

/// What the pipeline does with the output, decided once per model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Plan {
    Classify(Activation),
    Raw { shape: [u32; MAX_RANK], rank: u8 },
    Detect(DetectPlan),
}

impl Plan {
    /// Decides from the options, the output's (resolved, batch 1) shape and the operator that
    /// produces it (`None`: unknown, e.g. a TensorRT plan). Only `detect` can refuse a shape.
    pub fn decide(
        opts: &PostprocessOptions,
        shape: &[i64],
        final_op: Option<&str>,
    ) -> Result<Plan, DetectError> {
        let classify = match opts.kind {
            Kind::Classify => true,
            Kind::Raw => false,
            Kind::Auto => is_class_vector(shape),
            Kind::Detect => {
                // Exported YOLO heads end in a Sigmoid: probabilities unless told otherwise.
                let logits = opts.scores == Scores::Logits;
                return DetectPlan::decide(&opts.detect, shape, logits).map(Plan::Detect);
            }
        };
        if !classify {
            let mut s = [0u32; MAX_RANK];
            let rank = shape.len().min(MAX_RANK);
            for (d, v) in s.iter_mut().zip(shape) {
                *d = (*v).clamp(0, u32::MAX as i64) as u32;
            }
            return Ok(Plan::Raw {
                shape: s,
                rank: rank as u8,
            });
        }
        Ok(Plan::Classify(match opts.scores {
            Scores::Probabilities => Activation::Identity,
            Scores::Logits => Activation::Softmax,
            Scores::Auto => match final_op {
                Some("Softmax" | "Sigmoid" | "HardSigmoid") => Activation::Identity,
                Some("LogSoftmax") => Activation::Exp,
                _ => Activation::Softmax,
            },
        }))
    }

    /// `classify`, `raw` or `detect`: the results' `kind`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Plan::Classify(_) => "classify",
            Plan::Raw { .. } => "raw",
            Plan::Detect(_) => "detect",
        }
    }

    /// One line for the start-up log.
    pub fn describe(&self) -> String {
        match self {
            Plan::Classify(Activation::Softmax) => "classify (logits: softmax)".into(),
            Plan::Classify(Activation::Exp) => "classify (log-probabilities: exp)".into(),
            Plan::Classify(Activation::Identity) => {
                "classify (already probabilities: no softmax)".into()
            }
            Plan::Raw { shape, rank } => format!(
                "raw (shape {:?}: min/max/mean/argmax per frame, no classes)",
                &shape[..*rank as usize]
            ),
            Plan::Detect(d) => d.describe(),
        }
    }

    /// Postprocesses `scores` with `scratch` ([`Scratch::for_plan`] of this plan); `map` places
    /// a detector's boxes in the frame. No allocation.
    pub fn run(&self, scores: &[f32], scratch: &mut Scratch, map: &BoxMap) -> Summary {
        match self {
            Plan::Classify(act) => {
                let mut top = [(0u32, 0f32); TOP_K];
                let len = classify(*act, scores, &mut scratch.probs, &mut top);
                Summary::Classes { top, len }
            }
            Plan::Raw { shape, rank } => Summary::Raw(RawSummary::of(scores, *shape, *rank)),
            Plan::Detect(d) => Summary::Detect {
                count: d.run(scores, map, &mut scratch.detect) as u16,
            },
        }
    }
}

/// The buffers a plan works in, sized at load for the output's length.
#[derive(Debug, Default)]
pub struct Scratch {
    probs: Vec<f32>,
    detect: DetectBuffers,
}

impl Scratch {
    /// For `plan` on an output of `len` values.
    pub fn for_plan(plan: &Plan, len: usize) -> Scratch {
        match plan {
            Plan::Detect(d) => Scratch {
                probs: Vec::new(),
                detect: DetectBuffers::for_plan(d),
            },
            _ => Scratch {
                probs: vec![0.0; len],
                detect: DetectBuffers::default(),
            },
        }
    }

    /// The boxes of the last `detect` frame, best first.
    pub fn detections(&self) -> &[Detection] {
        self.detect.kept()
    }
}

/// `[C]`, `[1, C]` or `[1, C, 1, 1]`: one score per class.
fn is_class_vector(shape: &[i64]) -> bool {
    let big: Vec<i64> = shape.iter().copied().filter(|d| *d != 1).collect();
    match shape.len() {
        1 | 2 => big.len() <= 1,
        4 => big.len() <= 1 && shape.get(1).is_some_and(|c| *c > 1),
        _ => false,
    }
}

/// The per-frame result of a plan. `Copy`, so a record carrying it allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Summary {
    /// (class, probability) best first; `len` entries are valid.
    Classes {
        top: [(u32, f32); TOP_K],
        len: u8,
    },
    Raw(RawSummary),
    /// Boxes kept (in the plan's [`Scratch::detections`]).
    Detect {
        count: u16,
    },
}

impl Default for Summary {
    fn default() -> Summary {
        Summary::Classes {
            top: [(0, 0.0); TOP_K],
            len: 0,
        }
    }
}

impl Summary {
    /// The classes, best first (empty for a raw output).
    pub fn top(&self) -> &[(u32, f32)] {
        match self {
            Summary::Classes { top, len } => &top[..*len as usize],
            Summary::Raw(_) | Summary::Detect { .. } => &[],
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match self {
            Summary::Classes { .. } => "classify",
            Summary::Raw(_) => "raw",
            Summary::Detect { .. } => "detect",
        }
    }

    /// The raw output's summary, when it is one.
    pub fn raw(&self) -> Option<&RawSummary> {
        match self {
            Summary::Raw(r) => Some(r),
            Summary::Classes { .. } | Summary::Detect { .. } => None,
        }
    }
}

/// A raw output in a few numbers: its shape, min, max, mean and the flat index of its maximum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawSummary {
    pub shape: [u32; MAX_RANK],
    pub rank: u8,
    pub min: f32,
    pub max: f32,
    pub mean: f32,
    pub argmax: u32,
}

impl RawSummary {
    fn of(values: &[f32], shape: [u32; MAX_RANK], rank: u8) -> RawSummary {
        let (mut min, mut max, mut sum, mut argmax) = (f32::INFINITY, f32::NEG_INFINITY, 0f64, 0);
        for (i, &v) in values.iter().enumerate() {
            if v > max {
                max = v;
                argmax = i as u32;
            }
            min = min.min(v);
            sum += v as f64;
        }
        let mean = if values.is_empty() {
            0.0
        } else {
            (sum / values.len() as f64) as f32
        };
        RawSummary {
            shape,
            rank,
            min,
            max,
            mean,
            argmax,
        }
    }

    pub fn shape(&self) -> &[u32] {
        &self.shape[..self.rank as usize]
    }

    /// `{"shape": [...], "min": .., "max": .., "mean": .., "argmax": ..}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "shape": self.shape(),
            "min": self.min,
            "max": self.max,
            "mean": self.mean,
            "argmax": self.argmax,
        })
    }
}

/// Turns `scores` into probabilities in `probs` (as `act` says) and keeps the `TOP_K` best in
/// `top`, best first. Returns how many entries of `top` are valid. No allocation.
pub fn classify(
    act: Activation,
    scores: &[f32],
    probs: &mut [f32],
    top: &mut [(u32, f32); TOP_K],
) -> u8 {
    let n = scores.len().min(probs.len());
    if n == 0 {
        return 0;
    }
    match act {
        Activation::Softmax => {
            let max = scores[..n]
                .iter()
                .copied()
                .fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f32;
            for (p, s) in probs[..n].iter_mut().zip(&scores[..n]) {
                *p = (s - max).exp();
                sum += *p;
            }
            let inv = if sum > 0.0 && sum.is_finite() {
                1.0 / sum
            } else {
                0.0
            };
            probs[..n].iter_mut().for_each(|p| *p *= inv);
        }
        Activation::Exp => {
            for (p, s) in probs[..n].iter_mut().zip(&scores[..n]) {
                *p = s.exp();
            }
        }
        Activation::Identity => probs[..n].copy_from_slice(&scores[..n]),
    }
    let mut len = 0usize;
    for (i, &v) in probs[..n].iter().enumerate() {
        if len < TOP_K {
            top[len] = (i as u32, v);
            len += 1;
        } else if v > top[TOP_K - 1].1 {
            top[TOP_K - 1] = (i as u32, v);
        } else {
            continue;
        }
        // Bubble the new entry up to keep `top[..len]` sorted, best first.
        let mut j = len - 1;
        while j > 0 && top[j].1 > top[j - 1].1 {
            top.swap(j, j - 1);
            j -= 1;
        }
    }
    len as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kind: Kind, scores: Scores) -> PostprocessOptions {
        PostprocessOptions {
            output: None,
            kind,
            scores,
            detect: DetectOptions::default(),
        }
    }

    /// [`Plan::decide`] for the kinds that cannot refuse.
    fn dec(o: &PostprocessOptions, shape: &[i64], op: Option<&str>) -> Plan {
        Plan::decide(o, shape, op).expect("only detect refuses")
    }

    /// [`Plan::run`] with scratch sized for `scores`.
    fn run(p: &Plan, scores: &[f32]) -> Summary {
        let mut s = Scratch::for_plan(p, scores.len());
        p.run(scores, &mut s, &BoxMap::identity(1, 1))
    }

    #[test]
    fn a_final_softmax_is_never_applied_twice() {
        // The case: a 2-class model ending in Softmax, 0.99976 reported as 0.731.
        let auto = dec(&opts(Kind::Auto, Scores::Auto), &[1, 2], Some("Softmax"));
        assert_eq!(auto, Plan::Classify(Activation::Identity));
        let s = run(&auto, &[0.99976, 0.00024]);
        assert_eq!(s.top()[0], (0, 0.99976));
        // Logits still get softmax; the override wins over the graph.
        let logits = dec(&opts(Kind::Auto, Scores::Auto), &[1, 2], Some("Gemm"));
        assert_eq!(logits, Plan::Classify(Activation::Softmax));
        let forced = dec(&opts(Kind::Auto, Scores::Logits), &[1, 2], Some("Softmax"));
        assert_eq!(forced, Plan::Classify(Activation::Softmax));
        let probs_forced = dec(
            &opts(Kind::Auto, Scores::Probabilities),
            &[1, 2],
            Some("Gemm"),
        );
        assert_eq!(probs_forced, Plan::Classify(Activation::Identity));
        let log = dec(&opts(Kind::Auto, Scores::Auto), &[2], Some("LogSoftmax"));
        let s = run(&log, &[(0.75f32).ln(), (0.25f32).ln()]);
        assert!((s.top()[0].1 - 0.75).abs() < 1e-6, "{s:?}");
    }

    #[test]
    fn a_map_is_raw_never_classes() {
        let p = dec(
            &opts(Kind::Auto, Scores::Auto),
            &[1, 1, 4, 5],
            Some("Sigmoid"),
        );
        assert_eq!(p.kind_name(), "raw");
        let mut map = [0.1f32; 20];
        map[13] = 0.9;
        map[2] = -0.5;
        let s = run(&p, &map);
        assert!(s.top().is_empty(), "a map has no classes");
        let r = s.raw().expect("raw");
        assert_eq!(r.shape(), &[1, 1, 4, 5]);
        assert_eq!((r.argmax, r.min, r.max), (13, -0.5, 0.9));
        assert!((r.mean - (0.1 * 18.0 + 0.9 - 0.5) / 20.0).abs() < 1e-6);
        // A sequence output [1, T, C] is raw too; [1, C, 1, 1] is a class vector.
        assert_eq!(
            dec(&opts(Kind::Auto, Scores::Auto), &[1, 40, 6625], None).kind_name(),
            "raw"
        );
        assert_eq!(
            dec(&opts(Kind::Auto, Scores::Auto), &[1, 10, 1, 1], None).kind_name(),
            "classify"
        );
        assert_eq!(
            dec(&opts(Kind::Raw, Scores::Auto), &[1, 10], None).kind_name(),
            "raw"
        );
    }

    #[test]
    fn softmax_and_top_k_match_a_sort() {
        let scores: Vec<f32> = (0..37)
            .map(|i| ((i * 7919) % 37) as f32 * 0.3 - 4.0)
            .collect();
        let mut probs = vec![0.0; scores.len()];
        let mut top = [(0, 0.0); TOP_K];
        assert_eq!(
            classify(Activation::Softmax, &scores, &mut probs, &mut top),
            5
        );
        let sum: f32 = probs.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "probabilities sum to {sum}");
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
        let expect: Vec<u32> = order[..5].iter().map(|i| *i as u32).collect();
        let got: Vec<u32> = top.iter().map(|t| t.0).collect();
        assert_eq!(got, expect);
        assert!(top.windows(2).all(|w| w[0].1 >= w[1].1));
    }

    #[test]
    fn the_section_names_its_bad_key() {
        let bad = |k: Option<&str>, s: Option<&str>| {
            RawPostprocess {
                kind: k.map(Into::into),
                scores: s.map(Into::into),
                ..Default::default()
            }
            .check()
            .unwrap_err()
            .key
        };
        assert_eq!(bad(Some("classes"), None), "postprocess.kind");
        assert_eq!(bad(None, Some("probs")), "postprocess.scores");
        // The detect keys under another kind are refused by name, not ignored.
        let stray = RawPostprocess {
            kind: Some("classify".into()),
            iou: Some(0.5),
            ..Default::default()
        };
        assert_eq!(stray.check().unwrap_err().key, "postprocess.iou");
        let det = RawPostprocess {
            kind: Some("detect".into()),
            confidence: Some(-0.1),
            ..Default::default()
        };
        assert_eq!(det.check().unwrap_err().key, "postprocess.confidence");
        let ok = RawPostprocess {
            kind: Some("detect".into()),
            max_detections: Some(3),
            ..Default::default()
        }
        .check()
        .expect("valid");
        assert_eq!((ok.kind, ok.detect.max_detections), (Kind::Detect, 3));
    }

    #[test]
    fn detect_reads_the_head_and_refuses_what_it_cannot_read() {
        let mut o = opts(Kind::Detect, Scores::Auto);
        let p = Plan::decide(&o, &[1, 84, 8400], Some("Concat")).expect("a v8 head");
        assert_eq!(p.kind_name(), "detect");
        let Plan::Detect(d) = p else { panic!("{p:?}") };
        assert!(!d.logits, "exported heads hold probabilities");
        o.scores = Scores::Logits;
        let Ok(Plan::Detect(d)) = Plan::decide(&o, &[1, 84, 8400], None) else {
            panic!()
        };
        assert!(d.logits);
        assert!(Plan::decide(&o, &[1, 1000], None).is_err());
        // A detect frame keeps its boxes in the scratch, logits through a sigmoid.
        let head = [10.0, 10.0, 4.0, 4.0, 0.0, 3.0]; // [1, 1, 6] channels-last, no objectness
        o.detect.layout = detect::HeadLayout::ChannelsLast;
        o.detect.objectness = detect::Objectness::No;
        let p = Plan::decide(&o, &[1, 1, 6], None).expect("head");
        let mut s = Scratch::for_plan(&p, head.len());
        let sum = p.run(&head, &mut s, &BoxMap::identity(100, 100));
        assert_eq!(sum, Summary::Detect { count: 1 });
        assert_eq!(sum.kind_name(), "detect");
        let d = s.detections()[0];
        assert_eq!(d.class, 1);
        assert!((d.score - 1.0 / (1.0 + (-3.0f32).exp())).abs() < 1e-6);
        assert_eq!((d.x1, d.y1, d.x2, d.y2), (8.0, 8.0, 12.0, 12.0));
    }
}
