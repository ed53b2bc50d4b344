//! One completed frame as the outside world sees it: the JSON object the results file, the
//! `GET /results` stream and MQTT all carry, built in one place so the three never disagree and
//! a new postprocess kind (classes today; raw outputs or boxes later) is added once.
//!
//! Keys: `seq`, `model` (the generation's name), `captured_ms` and `done_ms` (CLOCK_MONOTONIC,
//! ms), `latency_ms` (end to end), `inference_ms`, `late`, and the result itself: `top`, the
//! best classes as `[class, probability]` pairs (empty for a raw output), `labels` (their names
//! in the same order when the model has names, else `null`), `kind` (`classify` or
//! `raw` or `detect`), `raw` (`null`, or a raw output's `{shape, min, max, mean, argmax}`),
//! `detections` (`null`, or how many boxes a detector kept) and `boxes` (`null`, or those boxes
//! as `{class, score, box: [x1, y1, x2, y2]}` (plus `label` when the model has names) in source
//! pixels, best first; `null` with a count
//! when the stats thread fell so far behind that the frame's boxes were overwritten). A result
//! kind puts its own key beside `top`, so readers that know only `top` keep working.

use serde_json::{Value, json};

use crate::backend::labels::Labels;
use crate::models::serving::{Generation, Serving};
use crate::pipeline::FrameRecord;
use crate::postprocess::{BoxRing, Detection};
use crate::slot::Outcome;
use crate::time::ms;

/// Whether a record is a result at all (a frame that was inferred, on time or late).
pub fn is_result(rec: &FrameRecord) -> bool {
    matches!(rec.outcome, Outcome::OnTime | Outcome::Late)
}

/// The model of a record (the generation that produced it): its name and class names.
pub fn model_of(serving: &Serving, rec: &FrameRecord) -> Option<Generation> {
    serving.generation_of(rec.model_gen)
}

/// The boxes of a batch of records, read back from the pipeline's ring once for every reader
/// (the stats, the results file, subscribers, MQTT). Reused from batch to batch.
#[derive(Default)]
pub struct BatchBoxes {
    all: Vec<Detection>,
    /// Per record of the batch: its range in `all`, `None` when it has none (or lost them).
    spans: Vec<Option<(usize, usize)>>,
}

impl BatchBoxes {
    pub fn with_capacity(records: usize) -> BatchBoxes {
        BatchBoxes {
            all: Vec::new(),
            spans: Vec::with_capacity(records),
        }
    }

    /// Reads the boxes of every detect record of `batch` from `ring`.
    pub fn fill(&mut self, ring: &BoxRing, batch: &[FrameRecord]) {
        self.all.clear();
        self.spans.clear();
        for rec in batch {
            let start = self.all.len();
            let span = (rec.detections.is_some()
                && is_result(rec)
                && ring.read(rec.model_gen, rec.seq, &mut self.all))
            .then_some((start, self.all.len()));
            self.spans.push(span);
        }
    }

    /// The boxes of the batch's `i`th record; `None` for a record without (or with lost) boxes.
    pub fn of(&self, i: usize) -> Option<&[Detection]> {
        self.spans
            .get(i)
            .copied()
            .flatten()
            .map(|(a, b)| &self.all[a..b])
    }
}

/// The record as one JSON object; `model` is [`model_of`]'s answer, looked up once by the caller;
/// `boxes` a detector's boxes (see [`BatchBoxes`]).
pub fn to_json(
    rec: &FrameRecord,
    model: Option<&Generation>,
    boxes: Option<&[Detection]>,
) -> Value {
    let top: Vec<Value> = rec.top[..rec.top_len as usize]
        .iter()
        .map(|(c, p)| json!([c, p]))
        .collect();
    let labels = model.and_then(|m| m.labels.as_deref());
    json!({
        "seq": rec.seq,
        "model": model.map(|m| m.name.as_str()),
        "captured_ms": rec.captured_at.as_nanos() as f64 / 1e6,
        "done_ms": rec.done_at.as_nanos() as f64 / 1e6,
        "latency_ms": ms(rec.times.end_to_end),
        "inference_ms": ms(rec.times.inference),
        "late": rec.outcome == Outcome::Late,
        "top": top,
        "labels": top_labels(rec, labels),
        "kind": rec.kind_name(),
        "raw": rec.raw.as_ref().map(crate::postprocess::RawSummary::to_json),
        "detections": rec.detections,
        "boxes": boxes_json(rec, boxes, labels),
    })
}

/// The names of `top`'s classes, in its order (`null` for a class without one), or `null` when
/// the model has no names.
pub fn top_labels(rec: &FrameRecord, labels: Option<&Labels>) -> Value {
    let Some(l) = labels else {
        return Value::Null;
    };
    rec.top[..rec.top_len as usize]
        .iter()
        .map(|(c, _)| json!(l.get(*c)))
        .collect()
}

/// `boxes` of a result: the array for a detector whose boxes arrived, `null` otherwise; each box
/// gains `label` when the model has names.
pub fn boxes_json(
    rec: &FrameRecord,
    boxes: Option<&[Detection]>,
    labels: Option<&Labels>,
) -> Value {
    match (rec.detections, boxes) {
        (Some(_), Some(b)) => b
            .iter()
            .map(|d| {
                let mut j = d.to_json();
                if let (Some(l), Value::Object(o)) = (labels, &mut j) {
                    o.insert("label".into(), json!(l.get(d.class)));
                }
                j
            })
            .collect(),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rec(seq: u64, detections: Option<u16>, outcome: Outcome) -> FrameRecord {
        FrameRecord {
            seq,
            model_gen: 3,
            captured_at: crate::time::MonoTime::from_nanos(1),
            done_at: crate::time::MonoTime::from_nanos(2),
            times: Default::default(),
            outcome,
            budget: Duration::from_millis(16),
            top: [(0, 0.0); crate::pipeline::TOP_K],
            top_len: 0,
            raw: None,
            detections,
        }
    }

    #[test]
    fn a_batch_reads_each_records_boxes_once_and_a_lost_frame_says_null() {
        let ring = BoxRing::new();
        let b = |x: f32| Detection {
            class: 2,
            score: 0.5,
            x1: x,
            y1: 1.0,
            x2: x + 1.0,
            y2: 2.0,
        };
        ring.publish(3, 10, &[b(1.0), b(5.0)]);
        ring.publish(3, 11, &[]);
        ring.publish(3, 12, &[b(9.0)]);
        // Frame 13's slot was taken by frame 13 + 64 before the stats thread came.
        ring.publish(
            3,
            13 + crate::postprocess::ring::RING_SLOTS as u64,
            &[b(0.0)],
        );
        let batch = [
            rec(10, Some(2), Outcome::OnTime),
            rec(11, Some(0), Outcome::Late),
            rec(9, None, Outcome::OnTime),
            rec(12, Some(1), Outcome::OnTime),
            rec(13, Some(1), Outcome::OnTime),
        ];
        let mut boxes = BatchBoxes::with_capacity(8);
        boxes.fill(&ring, &batch);
        assert_eq!(boxes.of(0), Some(&[b(1.0), b(5.0)][..]));
        assert_eq!(boxes.of(1), Some(&[][..]));
        assert_eq!(boxes.of(2), None);
        assert_eq!(boxes.of(3), Some(&[b(9.0)][..]));
        assert_eq!(boxes.of(4), None);
        let m = Generation {
            name: "m".into(),
            labels: None,
        };
        let j = |i: usize| to_json(&batch[i], Some(&m), boxes.of(i));
        assert_eq!(j(0)["kind"], "detect");
        assert_eq!(j(0)["detections"], 2);
        assert_eq!(
            j(0)["boxes"],
            json!([
                {"class": 2, "score": 0.5, "box": [1.0, 1.0, 2.0, 2.0]},
                {"class": 2, "score": 0.5, "box": [5.0, 1.0, 6.0, 2.0]},
            ])
        );
        assert_eq!(j(1)["boxes"], json!([]));
        // A classifier has neither; a detector's lost frame keeps its count, boxes null.
        assert_eq!(
            (j(2)["detections"].clone(), j(2)["boxes"].clone()),
            (Value::Null, Value::Null)
        );
        assert_eq!(j(2)["kind"], "classify");
        assert_eq!(
            (j(4)["detections"].clone(), j(4)["boxes"].clone()),
            (json!(1), Value::Null)
        );
        // Refilled for the next batch, nothing of the last one stays.
        boxes.fill(&ring, &batch[2..3]);
        assert_eq!(boxes.of(0), None);
        assert_eq!(boxes.of(1), None);
    }
}
