//! What the daemon says about itself: the `/status` document (DESIGN.md's contract: every key
//! present, null when it does not apply yet), `/healthz`, and the summary printed at exit.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};

use super::Shared;
use super::shared::ActivateError;
use crate::governor::Request as GovernorRequest;
use crate::models::loader::LoaderMsg;
use crate::state::State;
use crate::status::http::{Request, Response};
use crate::status::router::{Route, route};
use crate::status::server::{Handler, Origin};
use crate::time::{MonoTime, ms};

/// Answers the status socket's routes from the daemon's shared state.
pub struct StatusHandler {
    shared: Arc<Shared>,
}

impl StatusHandler {
    pub fn new(shared: Arc<Shared>) -> StatusHandler {
        StatusHandler { shared }
    }
}

impl Handler for StatusHandler {
    fn handle(&self, req: &Request, origin: Origin) -> Response {
        match route(req) {
            Ok(Route::Status) => Response::json(200, &status_json(&self.shared)),
            Ok(Route::Healthz) => {
                let (ok, why) = health(&self.shared);
                Response::json(
                    if ok { 200 } else { 503 },
                    &json!({"healthy": ok, "reason": why}),
                )
            }
            Ok(Route::Models) => match &self.shared.models_config() {
                Some(m) => Response::json(200, &self.shared.registry().listing(&m.watch_dir)),
                None => Response::error(404, "no watch folder is configured (--models DIR)"),
            },
            Ok(Route::Activate { model }) => activate(&self.shared, &model, origin),
            Ok(Route::GovernorPin { model }) => {
                governor(&self.shared, GovernorRequest::Pin(model), origin)
            }
            Ok(Route::GovernorUnpin) => governor(&self.shared, GovernorRequest::Unpin, origin),
            Ok(Route::Results) => super::subscribers::answer(&self.shared.subscribers, req, origin),
            Ok(Route::Page) => super::page::answer(),
            Ok(Route::Metrics) => Response::text(
                200,
                super::metrics::CONTENT_TYPE,
                super::metrics::render(&self.shared),
            ),
            Err(resp) => resp,
        }
    }
}

/// `POST /models/NAME/activate`: queue a (re)load of a file in the watch folder. Control is only
/// offered on the Unix socket, never over TCP.
fn activate(s: &Shared, name: &str, origin: Origin) -> Response {
    if origin != Origin::Unix {
        return Response::error(403, "model control is only available on the Unix socket");
    }
    let Some(m) = &s.models_config() else {
        return Response::error(404, "no watch folder is configured (--models DIR)");
    };
    if !m.watch_dir.join(name).is_file() {
        return Response::error(404, &format!("no file {name} in {}", m.watch_dir.display()));
    }
    match s.request_activate(name) {
        Ok(replaced) => Response::json(202, &json!({"queued": name, "replaces": replaced})),
        // The same request again before the loader took the first: nothing more to queue.
        Err(e @ ActivateError::Queued(crate::models::QueueError::AlreadyQueued { .. })) => {
            Response::error(409, &e.to_string())
        }
        Err(e) => Response::error(503, &e.to_string()),
    }
}

/// `POST /governor/pin` and `/unpin`: queued for the governor on the loader thread. Like model
/// control, only on the Unix socket.
fn governor(s: &Shared, req: GovernorRequest, origin: Origin) -> Response {
    if origin != Origin::Unix {
        return Response::error(403, "governor control is only available on the Unix socket");
    }
    let Some(g) = &s.governor else {
        return Response::error(
            404,
            "the governor is not enabled ([governor] enabled = true in the config)",
        );
    };
    let answer = match &req {
        GovernorRequest::Pin(Some(name)) => {
            let v = g.view();
            match v.find(name) {
                Some(i) => json!({"pinned": v.ladder[i].name}),
                None => {
                    let names: Vec<&str> = v.ladder.iter().map(|r| r.name.as_str()).collect();
                    return Response::error(
                        404,
                        &format!("no rung {name} on the ladder ({})", names.join(", ")),
                    );
                }
            }
        }
        GovernorRequest::Pin(None) => {
            let v = g.view();
            match v.rung.and_then(|r| v.ladder.get(r)) {
                Some(r) => json!({"pinned": r.name}),
                None => return Response::error(409, "nothing serves yet: name the rung to pin"),
            }
        }
        GovernorRequest::Unpin => json!({"unpinned": true}),
    };
    match s.request_loader(LoaderMsg::Governor(req)) {
        Ok(()) => Response::json(202, &answer),
        Err(e) => Response::error(503, &e.to_string()),
    }
}

/// Frames flow within budget: something was processed in the last second (or five frame periods,
/// if longer) and the last processed frame met its deadline.
pub fn health(s: &Shared) -> (bool, String) {
    let state = s.state();
    if state != State::Running {
        return (false, format!("state is {}", state.name()));
    }
    let st = s.stats();
    let now = MonoTime::now();
    let period = crate::units::period(s.live().target_fps);
    let window = (period * 5).max(Duration::from_secs(1));
    match (st.last_done, &st.last_result) {
        (Some(t), Some(last)) if now.saturating_since(t) <= window => {
            if last.times.end_to_end <= last.budget {
                (true, "frames flow within budget".into())
            } else {
                (
                    false,
                    format!(
                        "last frame took {:.2} ms, budget {:.2} ms",
                        ms(last.times.end_to_end),
                        ms(last.budget)
                    ),
                )
            }
        }
        _ => (false, "no frame processed recently".into()),
    }
}

/// The `/status` document.
pub fn status_json(s: &Shared) -> Value {
    let now = MonoTime::now();
    let counters = s.slot.counters();
    let sys = s.system();
    let mut st = s.stats();
    let summary = st.latency.summary(now);
    let swaps: Vec<Value> = s.registry().swaps().map(|w| w.to_json()).collect();
    // Loads that were abandoned and could not be cancelled, and whether the loader waits.
    let loader = s.models_config().map(|_| {
        let r = s.registry();
        json!({"stuck_loads": r.stuck_loads, "blocked": r.blocked})
    });
    let live = s.live().clone();
    let (model, memory) = s.serving.model_and_memory();
    let last_miss = st.last_miss.as_ref().map(|l| {
        json!({"seq": l.seq, "latency_ms": ms(l.latency), "overshoot_ms": ms(l.overshoot), "at": crate::time::rfc3339(l.at)})
    });
    let last_result = st.last_result.as_ref().map(|r| {
        let model = s.serving.generation_of(r.model_gen);
        let labels = model.as_ref().and_then(|m| m.labels.as_deref());
        let top: Vec<Value> = r.top[..r.top_len as usize]
            .iter()
            .map(|(c, p)| match labels {
                Some(l) => json!({"class": c, "label": l.get(*c), "score": p}),
                None => json!({"class": c, "score": p}),
            })
            .collect();
        let boxes = super::record::boxes_json(
            r,
            st.last_boxes_arrived.then_some(&st.last_boxes[..]),
            labels,
        );
        json!({"seq": r.seq, "model": model.map(|m| m.name), "top": top,
            "kind": r.kind_name(), "raw": r.raw.as_ref().map(crate::postprocess::RawSummary::to_json),
            "detections": r.detections, "boxes": boxes})
    });
    json!({
        "uptime_s": now.saturating_since(s.started).as_secs_f64(),
        "state": super::power::state(s).name(),
        "budget_ms": ms(s.ctl.budget()),
        "target_fps": live.target_fps,
        "fps": summary.fps,
        "model": model.map(|m| json!({
            "name": m.name,
            "path": m.path,
            "file_present": m.path.is_file(),
            "backend": m.backend.name(),
            "precision": m.precision.name(),
            "input_shape": match m.input.layout {
                crate::tensor::Layout::Nchw => [1, m.input.channels, m.input.height, m.input.width],
                crate::tensor::Layout::Nhwc => [1, m.input.height, m.input.width, m.input.channels],
            },
            "params": m.params,
            "labels": m.labels.as_ref().map(|l| json!({
                "count": l.names.len(), "source": l.source.to_string()})),
            "outputs": m.outputs.iter().enumerate().map(|(i, o)| json!({
                "name": o.name, "shape": o.shape, "dtype": o.element.name(),
                "used": i == m.output})).collect::<Vec<_>>(),
            "output_shape": m.output_shape,
            "can_cancel": m.can_cancel,
            "memory": memory.as_ref().map(|e| json!({
                "serialized_bytes": e.serialized_bytes, "persistent_bytes": e.persistent_bytes,
                "activation_bytes": e.activation_bytes, "total_bytes": e.total_bytes(),
                "persistent_source": e.persistent_source})),
        })),
        "frames": {
            "captured": counters.captured,
            "processed": counters.processed,
            "missed_deadline": counters.missed_deadline,
            "dropped": counters.dropped,
            "failed": counters.failed,
            "cancelled": counters.cancelled,
            "in_flight": counters.in_flight,
            "records_lost": s.ctl.records_lost.load(Ordering::Relaxed),
        },
        "latency_ms": summary.window,
        "latency_ms_lifetime": summary.lifetime,
        "last_miss": last_miss,
        "source": {
            "uri": s.source_health.uri(),
            "connected": s.source_health.connected(),
            "skipped_frames": s.source_health.skipped_frames(),
            "width": s.source.width,
            "height": s.source.height,
            "fps": s.source_health.fps(),
            "interval_jitter_ms_p99": s.source_health.jitter_p99_ms(),
        },
        "realtime": s.realtime.to_json(),
        "system": {"rss_bytes": sys.rss_bytes, "cpu_load": sys.cpu_load, "temperature_c": sys.temperature_c},
        "memory": {"rss_bytes": sys.rss_bytes},
        "power": s.power().map(|p| p.snapshot(now, summary.fps)),
        "swaps": swaps,
        "governor": s.governor.as_ref().map_or_else(
            crate::governor::shared::disabled_json,
            |g| g.to_json(),
        ),
        "results": s.config.results.as_ref().map(|p| s.results.to_json(p)),
        "loader": loader,
        "config": {
            "path": s.config.path,
            "loaded_at": live.loaded_at,
            "restart_required": live.restart_required,
        },
        "last_result": last_result,
        "subscribers": s.subscribers.status_json(),
        "mqtt": s.mqtt().map(|m| m.status_json()),
    })
}

/// The lines printed when a run ends: frames, misses, end-to-end percentiles over the lifetime.
pub fn final_summary(s: &Shared) -> String {
    let c = s.slot.counters();
    let mut st = s.stats();
    let sum = st.latency.summary(MonoTime::now());
    let e2e = &sum.lifetime.end_to_end;
    let inf = &sum.lifetime.inference;
    let f = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
    format!(
        "frames: captured {} processed {} missed_deadline {} dropped {} cancelled {} in_flight {}\n\
         end-to-end ms: p50 {} p99 {} max {}\n\
         inference ms:  p50 {} p99 {} max {}\n\
         budget {:.2} ms, uptime {:.1} s",
        c.captured,
        c.processed,
        c.missed_deadline,
        c.dropped,
        c.cancelled,
        c.in_flight,
        f(e2e.p50),
        f(e2e.p99),
        f(e2e.max),
        f(inf.p50),
        f(inf.p99),
        f(inf.max),
        ms(s.ctl.budget()),
        MonoTime::now().saturating_since(s.started).as_secs_f64(),
    ) + &super::power::summary_line(s, c.processed)
        + &results_line(s)
}

/// `results: N written, M lost (error)` when the results file lost lines, else nothing.
fn results_line(s: &Shared) -> String {
    match &s.config.results {
        Some(p) if s.results.lost() > 0 => format!(
            "\nresults {}: {} written, {} lost ({})",
            p.display(),
            s.results.written(),
            s.results.lost(),
            s.results.error().unwrap_or_default()
        ),
        _ => String::new(),
    }
}
