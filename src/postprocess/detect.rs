//! The de-facto YOLO head, decoded: boxes above a confidence, class-wise NMS, mapped back into
//! the source frame's pixels.
//!
//! Exported YOLO detectors end in one tensor of N candidates with 4 box values (cx, cy, w, h in
//! model-input pixels), an optional objectness and C class scores, either channels-first
//! (`[1, 4+C, N]`, YOLOv8/v11) or channels-last (`[1, N, 5+C]`, YOLOv5/v7). Which one a model is
//! cannot always be read from the shape, so the rule is fixed and said at load (`describe`), and
//! `postprocess.layout` / `postprocess.objectness` override it. NMS runs in model coordinates,
//! as the exporters' own code does; only the kept boxes are mapped through the preprocessor's
//! placement (region in the input, source window) and clipped to the frame. Every buffer is
//! sized at load ([`DetectBuffers`]), so a frame allocates nothing.

use crate::invalid_key::InvalidKey;

/// The most boxes `postprocess.max_detections` may keep per frame (Ultralytics' own default
/// `max_det`); results carry them from a ring sized by it.
pub const MAX_DETECTIONS: usize = 300;

/// One box in source pixels (model pixels before mapping), `x1 <= x2`, `y1 <= y2`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Detection {
    pub class: u32,
    pub score: f32,
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl Detection {
    fn area(&self) -> f32 {
        (self.x2 - self.x1).max(0.0) * (self.y2 - self.y1).max(0.0)
    }

    /// `{"class": .., "score": .., "box": [x1, y1, x2, y2]}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "class": self.class,
            "score": self.score,
            "box": [self.x1, self.y1, self.x2, self.y2],
        })
    }
}

/// Intersection over union of two boxes (0 when both are empty).
pub fn iou(a: &Detection, b: &Detection) -> f32 {
    let w = (a.x2.min(b.x2) - a.x1.max(b.x1)).max(0.0);
    let h = (a.y2.min(b.y2) - a.y1.max(b.y1)).max(0.0);
    let inter = w * h;
    let union = a.area() + b.area() - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// `postprocess.layout`: which axis holds the 4+C (or 5+C) values of a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeadLayout {
    /// The shorter axis (a head has far fewer values per candidate than candidates).
    #[default]
    Auto,
    /// `[1, 4+C, N]` (YOLOv8/v11).
    ChannelsFirst,
    /// `[1, N, 4+C]` (YOLOv5/v7).
    ChannelsLast,
}

/// `postprocess.objectness`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Objectness {
    /// Channels-last heads have it (YOLOv5/v7), channels-first ones do not (YOLOv8/v11).
    #[default]
    Auto,
    Yes,
    No,
}

/// `postprocess.box_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BoxFormat {
    /// Centre x, centre y, width, height (every YOLO export).
    #[default]
    CxCyWh,
    /// Corners x1, y1, x2, y2 (heads exported with their decoding folded in).
    Xyxy,
}

/// The `detect` keys of `[postprocess]`, checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectOptions {
    pub layout: HeadLayout,
    pub objectness: Objectness,
    pub box_format: BoxFormat,
    /// `postprocess.confidence`: a box's score (objectness x class) must reach it.
    pub confidence: f32,
    /// `postprocess.iou`: a box overlapping a kept box of its class by more is suppressed.
    pub iou: f32,
    /// `postprocess.max_detections`: at most this many boxes per frame, best first.
    pub max_detections: usize,
}

impl Default for DetectOptions {
    fn default() -> DetectOptions {
        DetectOptions {
            layout: HeadLayout::Auto,
            objectness: Objectness::Auto,
            box_format: BoxFormat::CxCyWh,
            confidence: 0.25,
            iou: 0.45,
            max_detections: 100,
        }
    }
}

/// `postprocess.objectness` as written: `true`, `false` or `"auto"`.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum BoolOrAuto {
    Bool(bool),
    Word(String),
}

/// The `detect` keys as written (flattened into `[postprocess]`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RawDetect {
    pub layout: Option<String>,
    pub objectness: Option<BoolOrAuto>,
    pub box_format: Option<String>,
    pub confidence: Option<f64>,
    pub iou: Option<f64>,
    pub max_detections: Option<i64>,
}

impl RawDetect {
    /// The first key given, for the refusal of detect keys under another kind.
    pub fn first_given(&self) -> Option<&'static str> {
        [
            ("postprocess.layout", self.layout.is_some()),
            ("postprocess.objectness", self.objectness.is_some()),
            ("postprocess.box_format", self.box_format.is_some()),
            ("postprocess.confidence", self.confidence.is_some()),
            ("postprocess.iou", self.iou.is_some()),
            ("postprocess.max_detections", self.max_detections.is_some()),
        ]
        .into_iter()
        .find_map(|(k, given)| given.then_some(k))
    }

    pub fn check(&self) -> Result<DetectOptions, InvalidKey> {
        let d = DetectOptions::default();
        let layout = match self.layout.as_deref() {
            None | Some("auto") => HeadLayout::Auto,
            Some("channels-first") => HeadLayout::ChannelsFirst,
            Some("channels-last") => HeadLayout::ChannelsLast,
            Some(o) => {
                return Err(InvalidKey::new(
                    "postprocess.layout",
                    format!(
                        "'{o}' is not one of auto, channels-first ([1, 4+C, N]), channels-last ([1, N, 4+C])"
                    ),
                ));
            }
        };
        let objectness = match &self.objectness {
            None => Objectness::Auto,
            Some(BoolOrAuto::Bool(true)) => Objectness::Yes,
            Some(BoolOrAuto::Bool(false)) => Objectness::No,
            Some(BoolOrAuto::Word(w)) if w == "auto" => Objectness::Auto,
            Some(BoolOrAuto::Word(w)) => {
                return Err(InvalidKey::new(
                    "postprocess.objectness",
                    format!("'{w}' is not one of true, false, \"auto\""),
                ));
            }
        };
        let box_format = match self.box_format.as_deref() {
            None | Some("cxcywh") => BoxFormat::CxCyWh,
            Some("xyxy") => BoxFormat::Xyxy,
            Some(o) => {
                return Err(InvalidKey::new(
                    "postprocess.box_format",
                    format!("'{o}' is not one of cxcywh, xyxy"),
                ));
            }
        };
        let unit = |key: &'static str, v: Option<f64>, default: f32| match v {
            None => Ok(default),
            Some(v) if v.is_finite() && (0.0..=1.0).contains(&v) => Ok(v as f32),
            Some(v) => Err(InvalidKey::new(key, format!("{v} is not between 0 and 1"))),
        };
        let confidence = unit("postprocess.confidence", self.confidence, d.confidence)?;
        let iou = unit("postprocess.iou", self.iou, d.iou)?;
        let max_detections = match self.max_detections {
            None => d.max_detections,
            Some(v) if (1..=MAX_DETECTIONS as i64).contains(&v) => v as usize,
            Some(v) => {
                return Err(InvalidKey::new(
                    "postprocess.max_detections",
                    format!("{v} is not between 1 and {MAX_DETECTIONS}"),
                ));
            }
        };
        Ok(DetectOptions {
            layout,
            objectness,
            box_format,
            confidence,
            iou,
            max_detections,
        })
    }
}

/// Why an output cannot be decoded as a detection head. Every variant names the shape.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DetectError {
    #[error(
        "postprocess.kind = 'detect' needs a [1, 4+C, N] or [1, N, 4+C] output; this one is {shape:?}"
    )]
    NotAHead { shape: Vec<i64> },
    #[error(
        "output {shape:?} is square, so which axis holds the candidates is ambiguous: set postprocess.layout = \"channels-first\" ([1, 4+C, N]) or \"channels-last\" ([1, N, 4+C])"
    )]
    Ambiguous { shape: Vec<i64> },
    #[error(
        "output {shape:?} read {layout} has {attrs} values per candidate, fewer than the {need} of 4 box values{obj} and one class: check postprocess.layout and postprocess.objectness"
    )]
    TooFewValues {
        shape: Vec<i64>,
        layout: &'static str,
        attrs: usize,
        need: usize,
        obj: &'static str,
    },
}

/// How the head is read, decided once per model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectPlan {
    /// Candidates.
    pub n: usize,
    /// Values per candidate (4 + objectness + classes).
    pub attrs: usize,
    pub channels_first: bool,
    pub objectness: bool,
    pub box_format: BoxFormat,
    /// Scores are logits (`postprocess.scores = "logits"`): sigmoid before the threshold.
    pub logits: bool,
    pub confidence: f32,
    pub iou: f32,
    pub max_detections: usize,
}

impl DetectPlan {
    /// Reads the head's shape (batch 1) as the options say.
    pub fn decide(
        opts: &DetectOptions,
        shape: &[i64],
        logits: bool,
    ) -> Result<DetectPlan, DetectError> {
        let dims: &[i64] = match shape {
            [1, a, b] | [a, b] => &[*a, *b],
            _ => {
                return Err(DetectError::NotAHead {
                    shape: shape.into(),
                });
            }
        };
        let (a, b) = (dims[0], dims[1]);
        if a <= 0 || b <= 0 {
            return Err(DetectError::NotAHead {
                shape: shape.into(),
            });
        }
        let channels_first = match opts.layout {
            HeadLayout::ChannelsFirst => true,
            HeadLayout::ChannelsLast => false,
            HeadLayout::Auto if a == b => {
                return Err(DetectError::Ambiguous {
                    shape: shape.into(),
                });
            }
            HeadLayout::Auto => a < b,
        };
        let (attrs, n) = match channels_first {
            true => (a as usize, b as usize),
            false => (b as usize, a as usize),
        };
        let objectness = match opts.objectness {
            Objectness::Yes => true,
            Objectness::No => false,
            Objectness::Auto => !channels_first,
        };
        let need = 5 + objectness as usize;
        if attrs < need {
            return Err(DetectError::TooFewValues {
                shape: shape.into(),
                layout: if channels_first {
                    "channels-first"
                } else {
                    "channels-last"
                },
                attrs,
                need,
                obj: if objectness { ", objectness" } else { "" },
            });
        }
        Ok(DetectPlan {
            n,
            attrs,
            channels_first,
            objectness,
            box_format: opts.box_format,
            logits,
            confidence: opts.confidence,
            iou: opts.iou,
            max_detections: opts.max_detections,
        })
    }

    pub fn classes(&self) -> usize {
        self.attrs - 4 - self.objectness as usize
    }

    /// One line for the start-up log.
    pub fn describe(&self) -> String {
        format!(
            "detect ({} candidates, {} classes, {}, {} objectness, boxes {}, scores {}; confidence {}, iou {}, at most {})",
            self.n,
            self.classes(),
            if self.channels_first {
                "channels-first [1, 4+C, N]"
            } else {
                "channels-last [1, N, 4+C]"
            },
            if self.objectness { "with" } else { "no" },
            match self.box_format {
                BoxFormat::CxCyWh => "cx,cy,w,h",
                BoxFormat::Xyxy => "x1,y1,x2,y2",
            },
            if self.logits {
                "logits (sigmoid)"
            } else {
                "probabilities"
            },
            self.confidence,
            self.iou,
            self.max_detections
        )
    }

    /// Decodes `out` (the head, `n * attrs` values) into `buf.kept`, best first, mapped by `map`.
    /// Returns how many boxes were kept. No allocation: `buf` was sized by
    /// [`DetectBuffers::for_plan`].
    pub fn run(&self, out: &[f32], map: &BoxMap, buf: &mut DetectBuffers) -> usize {
        let DetectBuffers {
            candidates,
            kept,
            best,
        } = buf;
        candidates.clear();
        kept.clear();
        if out.len() < self.n * self.attrs {
            return 0;
        }
        let first_class = 4 + self.objectness as usize;
        // Channels-first: each class is a contiguous row, so the best class of every candidate
        // is found row by row (a candidate's own values are `n` apart: one cache line each).
        let rows = self.channels_first && best.len() == self.n;
        if rows {
            let n = self.n;
            for (b, &v) in best
                .iter_mut()
                .zip(&out[first_class * n..(first_class + 1) * n])
            {
                *b = (v, 0);
            }
            for k in first_class + 1..self.attrs {
                let c = (k - first_class) as u32;
                for (b, &v) in best.iter_mut().zip(&out[k * n..(k + 1) * n]) {
                    if v > b.0 {
                        *b = (v, c);
                    }
                }
            }
        }
        let (n, attrs) = (self.n, self.attrs);
        let at = |i: usize, k: usize| -> f32 {
            if self.channels_first {
                out[k * n + i]
            } else {
                out[i * attrs + k]
            }
        };
        let act = |v: f32| if self.logits { sigmoid(v) } else { v };
        for i in 0..n {
            let obj = if self.objectness {
                let o = act(at(i, 4));
                if o.is_nan() || o < self.confidence {
                    continue;
                }
                o
            } else {
                1.0
            };
            let (top, class) = if rows {
                best.get(i).copied().unwrap_or((f32::NEG_INFINITY, 0))
            } else {
                let (mut top, mut class) = (f32::NEG_INFINITY, 0u32);
                for k in first_class..attrs {
                    let v = at(i, k);
                    if v > top {
                        top = v;
                        class = (k - first_class) as u32;
                    }
                }
                (top, class)
            };
            // The activation is monotonic: the best logit is the best probability.
            let score = obj * act(top);
            if score.is_nan()
                || score < self.confidence
                || candidates.len() == candidates.capacity()
            {
                continue;
            }
            let (p, q, r, s) = (at(i, 0), at(i, 1), at(i, 2), at(i, 3));
            let (x1, y1, x2, y2) = match self.box_format {
                BoxFormat::CxCyWh => (p - r / 2.0, q - s / 2.0, p + r / 2.0, q + s / 2.0),
                BoxFormat::Xyxy => (p.min(r), q.min(s), p.max(r), q.max(s)),
            };
            candidates.push(Detection {
                class,
                score,
                x1,
                y1,
                x2,
                y2,
            });
        }
        nms(candidates, self.iou, self.max_detections, kept);
        for d in kept.iter_mut() {
            map.apply(d);
        }
        kept.len()
    }
}

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

/// Greedy class-wise NMS: `candidates` sorted best first (in place, no allocation), then each is
/// kept unless a kept box of its class overlaps it by more than `iou`, until `max` are kept.
pub fn nms(candidates: &mut [Detection], iou_max: f32, max: usize, kept: &mut Vec<Detection>) {
    kept.clear();
    candidates.sort_unstable_by(|a, b| b.score.total_cmp(&a.score));
    let max = max.min(kept.capacity());
    for c in candidates.iter() {
        if kept.len() >= max {
            break;
        }
        if kept
            .iter()
            .any(|k| k.class == c.class && iou(k, c) > iou_max)
        {
            continue;
        }
        kept.push(*c);
    }
}

/// The buffers one detect plan needs, sized at load: every candidate, and the kept boxes.
#[derive(Debug, Default)]
pub struct DetectBuffers {
    candidates: Vec<Detection>,
    kept: Vec<Detection>,
    /// Channels-first: each candidate's best class score and class.
    best: Vec<(f32, u32)>,
}

impl DetectBuffers {
    pub fn for_plan(plan: &DetectPlan) -> DetectBuffers {
        DetectBuffers {
            candidates: Vec::with_capacity(plan.n),
            kept: Vec::with_capacity(plan.max_detections),
            best: match plan.channels_first {
                true => vec![(0.0, 0); plan.n],
                false => Vec::new(),
            },
        }
    }

    /// The boxes the last frame kept, best first.
    pub fn kept(&self) -> &[Detection] {
        &self.kept
    }
}

/// Model-input pixels to source-frame pixels: the inverse of the preprocessor's placement (the
/// source window `crop` resampled into `region` of the input), clipped to the frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxMap {
    sx: f64,
    sy: f64,
    ox: f64,
    oy: f64,
    /// The frame's size.
    w: f64,
    h: f64,
}

impl BoxMap {
    /// `region` (x, y, w, h) in the model input holds the source window `crop` (left, top, w, h)
    /// of a `frame` (w, h).
    pub fn new(region: [f64; 4], crop: [f64; 4], frame: (u32, u32)) -> BoxMap {
        let [rx, ry, rw, rh] = region;
        let [cl, ct, cw, ch] = crop;
        let sx = if rw > 0.0 { cw / rw } else { 1.0 };
        let sy = if rh > 0.0 { ch / rh } else { 1.0 };
        BoxMap {
            sx,
            sy,
            ox: cl - rx * sx,
            oy: ct - ry * sy,
            w: frame.0 as f64,
            h: frame.1 as f64,
        }
    }

    /// No mapping (model pixels are the frame's), clipped to `w x h`.
    pub fn identity(w: u32, h: u32) -> BoxMap {
        BoxMap::new(
            [0.0, 0.0, w as f64, h as f64],
            [0.0, 0.0, w as f64, h as f64],
            (w, h),
        )
    }

    pub fn apply(&self, d: &mut Detection) {
        let x = |v: f32| (self.ox + v as f64 * self.sx).clamp(0.0, self.w) as f32;
        let y = |v: f32| (self.oy + v as f64 * self.sy).clamp(0.0, self.h) as f32;
        (d.x1, d.y1, d.x2, d.y2) = (x(d.x1), y(d.y1), x(d.x2), y(d.y2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(class: u32, score: f32, x1: f32, y1: f32, x2: f32, y2: f32) -> Detection {
        Detection {
            class,
            score,
            x1,
            y1,
            x2,
            y2,
        }
    }

    #[test]
    fn iou_matches_hand_computed_values() {
        let a = det(0, 1.0, 0.0, 0.0, 10.0, 10.0);
        // Half overlap along x: intersection 50, union 150.
        let b = det(0, 1.0, 5.0, 0.0, 15.0, 10.0);
        assert!((iou(&a, &b) - 50.0 / 150.0).abs() < 1e-6);
        // A 2x2 box inside: 4 / 100.
        let c = det(0, 1.0, 2.0, 2.0, 4.0, 4.0);
        assert!((iou(&a, &c) - 0.04).abs() < 1e-6);
        assert_eq!(iou(&a, &a), 1.0);
        // Touching edges and disjoint boxes do not overlap; empty boxes give 0, not NaN.
        assert_eq!(iou(&a, &det(0, 1.0, 10.0, 0.0, 20.0, 10.0)), 0.0);
        assert_eq!(iou(&a, &det(0, 1.0, 30.0, 30.0, 40.0, 40.0)), 0.0);
        let e = det(0, 1.0, 3.0, 3.0, 3.0, 3.0);
        assert_eq!(iou(&e, &e), 0.0);
        // Corner overlap: 5x5 = 25 of 100 + 100 - 25 = 175.
        let d = det(0, 1.0, 5.0, 5.0, 15.0, 15.0);
        assert!((iou(&a, &d) - 25.0 / 175.0).abs() < 1e-6);
    }

    #[test]
    fn nms_is_class_wise_greedy_best_first_and_capped() {
        let mut c = vec![
            det(0, 0.6, 1.0, 0.0, 11.0, 10.0), // IoU with the 0.9 box: 90/110 = 0.818
            det(0, 0.9, 0.0, 0.0, 10.0, 10.0),
            det(1, 0.8, 1.0, 0.0, 11.0, 10.0), // other class: kept although it overlaps
            det(0, 0.7, 5.0, 0.0, 15.0, 10.0), // IoU 50/150 = 0.33 <= 0.45: kept
            det(0, 0.5, 50.0, 50.0, 60.0, 60.0),
        ];
        let mut kept = Vec::with_capacity(10);
        nms(&mut c, 0.45, 10, &mut kept);
        let scores: Vec<f32> = kept.iter().map(|d| d.score).collect();
        assert_eq!(scores, [0.9, 0.8, 0.7, 0.5]);
        // A lower iou suppresses the 0.33 overlap too.
        nms(&mut c, 0.3, 10, &mut kept);
        let scores: Vec<f32> = kept.iter().map(|d| d.score).collect();
        assert_eq!(scores, [0.9, 0.8, 0.5]);
        // The cap keeps the best.
        nms(&mut c, 0.45, 2, &mut kept);
        let scores: Vec<f32> = kept.iter().map(|d| d.score).collect();
        assert_eq!(scores, [0.9, 0.8]);
    }

    fn plan(shape: &[i64], layout: HeadLayout, obj: Objectness) -> Result<DetectPlan, DetectError> {
        let o = DetectOptions {
            layout,
            objectness: obj,
            ..Default::default()
        };
        DetectPlan::decide(&o, shape, false)
    }

    #[test]
    fn the_layout_is_read_from_the_shorter_axis_or_refused_naming_the_key() {
        let v8 = plan(&[1, 84, 8400], HeadLayout::Auto, Objectness::Auto).unwrap();
        assert!(v8.channels_first && !v8.objectness);
        assert_eq!((v8.n, v8.classes()), (8400, 80));
        let v5 = plan(&[1, 25200, 85], HeadLayout::Auto, Objectness::Auto).unwrap();
        assert!(!v5.channels_first && v5.objectness);
        assert_eq!((v5.n, v5.classes()), (25200, 80));
        let e = plan(&[1, 6, 6], HeadLayout::Auto, Objectness::Auto).unwrap_err();
        assert!(e.to_string().contains("postprocess.layout"), "{e}");
        let forced = plan(&[1, 6, 6], HeadLayout::ChannelsLast, Objectness::No).unwrap();
        assert_eq!((forced.n, forced.classes()), (6, 2));
        assert!(matches!(
            plan(&[1, 3, 100], HeadLayout::Auto, Objectness::Auto),
            Err(DetectError::TooFewValues { .. })
        ));
        assert!(matches!(
            plan(&[1, 1, 84, 8400], HeadLayout::Auto, Objectness::Auto),
            Err(DetectError::NotAHead { .. })
        ));
    }

    #[test]
    fn decoding_reads_both_layouts_with_and_without_objectness() {
        // Two candidates, two classes; candidate 0: box (50, 40, 20, 10), class 1 at 0.8;
        // candidate 1: class 0 at 0.2 (under the threshold).
        let cands = [
            [50.0, 40.0, 20.0, 10.0, 0.1, 0.8],
            [10.0, 10.0, 4.0, 4.0, 0.2, 0.1],
        ];
        let last: Vec<f32> = cands.iter().flatten().copied().collect();
        let mut first = vec![0.0; 12];
        for (i, c) in cands.iter().enumerate() {
            for (k, v) in c.iter().enumerate() {
                first[k * 2 + i] = *v;
            }
        }
        let map = BoxMap::identity(100, 100);
        for (shape, data, layout) in [
            ([1, 6, 2], &first, HeadLayout::ChannelsFirst),
            ([1, 2, 6], &last, HeadLayout::ChannelsLast),
        ] {
            let p = plan(&shape, layout, Objectness::No).unwrap();
            let mut b = DetectBuffers::for_plan(&p);
            assert_eq!(p.run(data, &map, &mut b), 1);
            assert_eq!(b.kept()[0], det(1, 0.8, 40.0, 35.0, 60.0, 45.0));
        }
        // Objectness: the fifth value multiplies; 0.1 x 0.8 falls under 0.25, 0.5 x 0.8 passes.
        let obj = [50.0, 40.0, 20.0, 10.0, 0.5, 0.1, 0.8];
        let p = plan(&[1, 1, 7], HeadLayout::ChannelsLast, Objectness::Yes).unwrap();
        let mut b = DetectBuffers::for_plan(&p);
        assert_eq!(p.run(&obj, &map, &mut b), 1);
        assert!((b.kept()[0].score - 0.4).abs() < 1e-6);
        assert_eq!(b.kept()[0].class, 1);
        let mut low = obj;
        low[4] = 0.1;
        assert_eq!(p.run(&low, &map, &mut b), 0);
    }

    #[test]
    fn box_maps_invert_stretch_crop_and_letterbox_placements() {
        // Stretch 640x480 into 320x320: x doubles, y x1.5.
        let m = BoxMap::new(
            [0.0, 0.0, 320.0, 320.0],
            [0.0, 0.0, 640.0, 480.0],
            (640, 480),
        );
        let mut d = det(0, 1.0, 10.0, 20.0, 100.0, 200.0);
        m.apply(&mut d);
        assert_eq!((d.x1, d.y1, d.x2, d.y2), (20.0, 30.0, 200.0, 300.0));
        // Letterbox 640x480 into 320x320: scale 0.5, picture at y 40..280.
        let m = BoxMap::new(
            [0.0, 40.0, 320.0, 240.0],
            [0.0, 0.0, 640.0, 480.0],
            (640, 480),
        );
        let mut d = det(0, 1.0, 10.0, 50.0, 100.0, 290.0);
        m.apply(&mut d);
        // y 290 lies in the padding: clipped to the frame's bottom.
        assert_eq!((d.x1, d.y1, d.x2, d.y2), (20.0, 20.0, 200.0, 480.0));
        // Centre crop of 640x480 into 320x320: window 480x480 from x 80, scale 1.5.
        let m = BoxMap::new(
            [0.0, 0.0, 320.0, 320.0],
            [80.0, 0.0, 480.0, 480.0],
            (640, 480),
        );
        let mut d = det(0, 1.0, 0.0, 100.0, 320.0, 200.0);
        m.apply(&mut d);
        assert_eq!((d.x1, d.y1, d.x2, d.y2), (80.0, 150.0, 560.0, 300.0));
    }

    #[test]
    fn the_keys_are_checked_and_named() {
        let bad = |r: RawDetect| r.check().unwrap_err().key;
        let r = RawDetect::default;
        assert_eq!(
            bad(RawDetect {
                confidence: Some(1.5),
                ..r()
            }),
            "postprocess.confidence"
        );
        assert_eq!(
            bad(RawDetect {
                iou: Some(f64::NAN),
                ..r()
            }),
            "postprocess.iou"
        );
        assert_eq!(
            bad(RawDetect {
                max_detections: Some(0),
                ..r()
            }),
            "postprocess.max_detections"
        );
        assert_eq!(
            bad(RawDetect {
                max_detections: Some(MAX_DETECTIONS as i64 + 1),
                ..r()
            }),
            "postprocess.max_detections"
        );
        assert_eq!(
            bad(RawDetect {
                objectness: Some(BoolOrAuto::Word("yes".into())),
                ..r()
            }),
            "postprocess.objectness"
        );
        assert_eq!(
            bad(RawDetect {
                layout: Some("nchw".into()),
                ..r()
            }),
            "postprocess.layout"
        );
        assert_eq!(
            bad(RawDetect {
                box_format: Some("xywh".into()),
                ..r()
            }),
            "postprocess.box_format"
        );
        assert_eq!(r().check().unwrap(), DetectOptions::default());
        let ok = RawDetect {
            objectness: Some(BoolOrAuto::Bool(true)),
            max_detections: Some(7),
            confidence: Some(0.5),
            ..r()
        }
        .check()
        .unwrap();
        assert_eq!(ok.objectness, Objectness::Yes);
        assert_eq!((ok.max_detections, ok.confidence), (7, 0.5));
    }
}
