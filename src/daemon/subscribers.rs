//! `GET /results`: every result from now on, to whoever subscribes, without the pipeline ever
//! knowing.
//!
//! The pipeline only `try_send`s records to the stats thread; the stats thread, after it has
//! released the stats lock, hands each batch to [`Subscribers::publish`], which serialises a
//! record once and pushes it into every matching subscriber's bounded [`Feed`] without blocking.
//! The status server's poll loop writes the feeds out. A slow or stuck subscriber therefore only
//! loses records (counted per subscriber, `/status` `subscribers`); the stats thread never waits
//! for a socket and the pipeline never waits for the stats thread.
//!
//! Subscribers are capped at [`MAX_SUBSCRIBERS`] per daemon (Unix socket and TCP together); more
//! get 429 with `Retry-After`. They do not count against the status server's 64 polling
//! connections, so a dashboard streaming results cannot lock Prometheus out.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde_json::{Value, json};

use super::record;
use crate::models::serving::Serving;
use crate::pipeline::FrameRecord;
use crate::status::http::{Request, Response};
use crate::status::server::{Origin, RETRY_AFTER_S};
use crate::status::stream::Feed;
use crate::time::rfc3339;

/// Subscribers at once, over both listeners.
pub const MAX_SUBSCRIBERS: usize = 16;

/// What a subscriber asked for: `?model=NAME` (only that model's results), `?every=N` (every
/// N-th of those).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub model: Option<String>,
    pub every: u64,
}

/// How records are framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line (`application/x-ndjson`).
    Ndjson,
    /// Server-Sent Events (`text/event-stream`): `id: SEQ`, `data: JSON`, blank line.
    Sse,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Ndjson => "application/x-ndjson",
            Format::Sse => "text/event-stream",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Ndjson => "ndjson",
            Format::Sse => "sse",
        }
    }
}

struct Sub {
    id: u64,
    feed: Arc<Feed>,
    filter: Filter,
    format: Format,
    origin: Origin,
    since: SystemTime,
    /// Results that matched the model filter (for `every`).
    matched: u64,
}

#[derive(Default)]
struct Inner {
    subs: Vec<Sub>,
    next_id: u64,
    /// Subscribers that have ended, and the records they lost in all.
    ended: u64,
    ended_dropped: u64,
}

/// The daemon's result subscribers.
#[derive(Default)]
pub struct Subscribers {
    inner: Mutex<Inner>,
}

impl Subscribers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a subscriber; `None` when [`MAX_SUBSCRIBERS`] are streaming already.
    pub fn subscribe(&self, filter: Filter, format: Format, origin: Origin) -> Option<Arc<Feed>> {
        let mut inner = self.lock();
        forget_ended(&mut inner);
        if inner.subs.len() >= MAX_SUBSCRIBERS {
            return None;
        }
        inner.next_id += 1;
        let feed = Feed::new();
        let id = inner.next_id;
        inner.subs.push(Sub {
            id,
            feed: Arc::clone(&feed),
            filter,
            format,
            origin,
            since: SystemTime::now(),
            matched: 0,
        });
        log::info!(
            "results subscriber {id} ({} over {origin:?})",
            format.name()
        );
        Some(feed)
    }

    /// Hands a batch of records to every subscriber whose filter it matches (never blocks).
    pub fn publish(&self, serving: &Serving, batch: &[FrameRecord], boxes: &record::BatchBoxes) {
        let mut inner = self.lock();
        if inner.subs.is_empty() {
            return;
        }
        let mut ndjson = Vec::new();
        let mut sse = Vec::new();
        for (i, rec) in batch.iter().enumerate() {
            if !record::is_result(rec) {
                continue;
            }
            let model = record::model_of(serving, rec);
            let json = record::to_json(rec, model.as_ref(), boxes.of(i)).to_string();
            ndjson.clear();
            sse.clear();
            for sub in &mut inner.subs {
                if sub
                    .filter
                    .model
                    .as_ref()
                    .is_some_and(|m| model.as_ref().map(|g| g.name.as_str()) != Some(m.as_str()))
                {
                    continue;
                }
                sub.matched += 1;
                if (sub.matched - 1) % sub.filter.every != 0 {
                    continue;
                }
                let bytes = match sub.format {
                    Format::Ndjson => {
                        if ndjson.is_empty() {
                            ndjson.extend_from_slice(json.as_bytes());
                            ndjson.push(b'\n');
                        }
                        &ndjson
                    }
                    Format::Sse => {
                        if sse.is_empty() {
                            sse.extend_from_slice(
                                format!("id: {}\ndata: {json}\n\n", rec.seq).as_bytes(),
                            );
                        }
                        &sse
                    }
                };
                sub.feed.push(bytes);
            }
        }
        forget_ended(&mut inner);
    }

    /// `/status` `subscribers`.
    pub fn status_json(&self) -> Value {
        let mut inner = self.lock();
        forget_ended(&mut inner);
        let list: Vec<Value> = inner
            .subs
            .iter()
            .map(|s| {
                let st = s.feed.stats();
                json!({
                    "id": s.id,
                    "format": s.format.name(),
                    "origin": match s.origin { Origin::Unix => "unix", Origin::Tcp => "tcp" },
                    "model": s.filter.model,
                    "every": s.filter.every,
                    "since": rfc3339(s.since),
                    "sent": st.delivered,
                    "queued": st.queued,
                    "dropped": st.dropped,
                })
            })
            .collect();
        json!({
            "max": MAX_SUBSCRIBERS,
            "active": list,
            "ended": inner.ended,
            "ended_dropped": inner.ended_dropped,
        })
    }
}

/// Removes subscribers whose connection has ended, keeping their totals.
fn forget_ended(inner: &mut Inner) {
    let (mut ended, mut dropped) = (0, 0);
    inner.subs.retain(|s| {
        let st = s.feed.stats();
        if st.closed {
            ended += 1;
            dropped += st.dropped;
            log::info!(
                "results subscriber {} ended ({} sent, {} lost)",
                s.id,
                st.delivered,
                st.dropped
            );
        }
        !st.closed
    });
    inner.ended += ended;
    inner.ended_dropped += dropped;
}

/// `GET /results[?model=NAME&every=N]`: a stream, or the error to send instead.
pub fn answer(subs: &Subscribers, req: &Request, origin: Origin) -> Response {
    let filter = match parse_query(req.query.as_deref()) {
        Ok(f) => f,
        Err(e) => return Response::error(400, &e),
    };
    let format = if req
        .header("Accept")
        .is_some_and(|a| a.contains("text/event-stream"))
    {
        Format::Sse
    } else {
        Format::Ndjson
    };
    match subs.subscribe(filter, format, origin) {
        Some(feed) => Response::streaming(format.content_type(), feed),
        None => Response::error(
            429,
            &format!(
                "{MAX_SUBSCRIBERS} results subscribers are streaming already; retry after \
                 {RETRY_AFTER_S} s"
            ),
        )
        .with_header("Retry-After", &RETRY_AFTER_S.to_string()),
    }
}

/// `model=NAME&every=N`, both optional.
pub fn parse_query(query: Option<&str>) -> Result<Filter, String> {
    let mut f = Filter {
        model: None,
        every: 1,
    };
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "model" => {
                let bytes = crate::status::router::percent_decode(value)
                    .ok_or("model: bad percent-encoding")?;
                let name = String::from_utf8(bytes).map_err(|_| "model: not UTF-8")?;
                if name.is_empty() {
                    return Err("model must name a model".into());
                }
                f.model = Some(name);
            }
            "every" => {
                f.every = value
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or(format!("every must be a positive integer, not '{value}'"))?;
            }
            _ => {
                return Err(format!(
                    "unknown parameter '{key}' (expected model or every)"
                ));
            }
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query() {
        assert_eq!(
            parse_query(Some("model=mobilenet%20v2&every=3")),
            Ok(Filter {
                model: Some("mobilenet v2".into()),
                every: 3
            })
        );
        assert_eq!(parse_query(None).map(|f| f.every), Ok(1));
        assert!(parse_query(Some("every=0")).is_err());
        assert!(parse_query(Some("colour=red")).is_err());
    }

    #[test]
    fn the_cap_answers_429_and_an_ended_subscriber_frees_its_place() {
        let subs = Subscribers::default();
        let f = || Filter {
            model: None,
            every: 1,
        };
        let feeds: Vec<_> = (0..MAX_SUBSCRIBERS)
            .map(|_| {
                subs.subscribe(f(), Format::Ndjson, Origin::Unix)
                    .expect("room")
            })
            .collect();
        assert!(subs.subscribe(f(), Format::Ndjson, Origin::Unix).is_none());
        feeds[0].close();
        assert!(subs.subscribe(f(), Format::Sse, Origin::Tcp).is_some());
        assert_eq!(subs.status_json()["ended"], 1);
    }
}
