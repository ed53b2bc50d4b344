//! One completed frame as the outside world sees it: the JSON object the results file, the
//! `GET /results` stream and MQTT all carry, built in one place so the three never disagree and
//! a new postprocess kind (classes today; raw outputs or boxes later) is added once.
//!
//! Keys: `seq`, `model` (the generation's name), `captured_ms` and `done_ms` (CLOCK_MONOTONIC,
//! ms), `latency_ms` (end to end), `inference_ms`, `late`, and the result itself: `top`, the
//! best classes as `[class, probability]` pairs. A result kind added later puts its own key
//! beside `top` (e.g. `boxes`), so readers that know only `top` keep working.

use serde_json::{Value, json};

use crate::models::serving::Serving;
use crate::pipeline::FrameRecord;
use crate::slot::Outcome;
use crate::time::ms;

/// Whether a record is a result at all (a frame that was inferred, on time or late).
pub fn is_result(rec: &FrameRecord) -> bool {
    matches!(rec.outcome, Outcome::OnTime | Outcome::Late)
}

/// The model's name for a record (the generation that produced it).
pub fn model_name(serving: &Serving, rec: &FrameRecord) -> Option<String> {
    serving.generation_name(rec.model_gen)
}

/// The record as one JSON object; `model` is [`model_name`]'s answer, looked up once by the caller.
pub fn to_json(rec: &FrameRecord, model: Option<&str>) -> Value {
    let top: Vec<Value> = rec.top[..rec.top_len as usize]
        .iter()
        .map(|(c, p)| json!([c, p]))
        .collect();
    json!({
        "seq": rec.seq,
        "model": model,
        "captured_ms": rec.captured_at.as_nanos() as f64 / 1e6,
        "done_ms": rec.done_at.as_nanos() as f64 / 1e6,
        "latency_ms": ms(rec.times.end_to_end),
        "inference_ms": ms(rec.times.inference),
        "late": rec.outcome == Outcome::Late,
        "top": top,
    })
}
