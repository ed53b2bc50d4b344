//! `[mqtt]`: every result published to a broker, the way camera systems hand detections on.
//!
//! The stats thread offers each result's JSON (the record of `daemon/record.rs`) with
//! [`Publisher::offer`], which never blocks: rumqttc's client queues it on a bounded channel and
//! a full queue (broker slow or gone) loses the record, counted. rumqttc's event loop runs on its
//! own thread and reconnects after a broker restart with a backoff (0.5 s doubling to 10 s), so
//! neither the pipeline nor the stats thread ever waits for the network. QoS 0 or 1; a QoS 1
//! message not yet acknowledged when the connection drops is lost with it (clean session).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{Client, Event, MqttOptions as Options, Packet, QoS};
use serde_json::{Value, json};

use crate::invalid_key::InvalidKey;

/// Default topic.
pub const DEFAULT_TOPIC: &str = "rtinfer/results";
/// Messages rumqttc queues before `offer` starts losing them.
pub const QUEUE: usize = 1024;
const KEEP_ALIVE: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// `[mqtt]` as written.
#[derive(Debug, Default, Clone, serde::Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RawMqtt {
    /// `mqtt://HOST:PORT` (port 1883 when omitted); unset = no publishing.
    pub broker: Option<String>,
    /// Topic of every result (default `rtinfer/results`).
    pub topic: Option<String>,
    /// 0 (at most once, default) or 1 (at least once).
    pub qos: Option<u8>,
    /// Client id (default `rtinfer-PID`).
    pub client_id: Option<String>,
}

/// A checked `[mqtt]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttOptions {
    pub broker: String,
    pub host: String,
    pub port: u16,
    pub topic: String,
    pub qos: u8,
    pub client_id: String,
}

impl RawMqtt {
    /// Checks the section; `None` when no broker is configured.
    pub fn check(self) -> Result<Option<MqttOptions>, InvalidKey> {
        let Some(broker) = self.broker else {
            return Ok(None);
        };
        let (host, port) = parse_broker(&broker).map_err(|e| InvalidKey::new("mqtt.broker", e))?;
        let topic = self.topic.unwrap_or_else(|| DEFAULT_TOPIC.to_string());
        if topic.is_empty() || topic.contains(['+', '#', '\0']) {
            return Err(InvalidKey::new(
                "mqtt.topic",
                format!("'{topic}' is not a topic to publish to (empty, or has + # NUL)"),
            ));
        }
        let qos = self.qos.unwrap_or(0);
        if qos > 1 {
            return Err(InvalidKey::new(
                "mqtt.qos",
                format!("{qos} (expected 0 or 1)"),
            ));
        }
        let client_id = self
            .client_id
            .unwrap_or_else(|| format!("rtinfer-{}", std::process::id()));
        if client_id.is_empty() || client_id.len() > 23 * 4 {
            return Err(InvalidKey::new("mqtt.client_id", "empty or too long"));
        }
        Ok(Some(MqttOptions {
            broker,
            host,
            port,
            topic,
            qos,
            client_id,
        }))
    }
}

/// `mqtt://host[:port]` or `tcp://host[:port]`.
fn parse_broker(url: &str) -> Result<(String, u16), String> {
    let rest = match url.split_once("://") {
        Some(("mqtt" | "tcp", rest)) => rest,
        Some(("mqtts" | "ssl", _)) => {
            return Err(format!(
                "{url}: TLS brokers are not supported by this build"
            ));
        }
        _ => return Err(format!("'{url}' (expected mqtt://HOST[:PORT])")),
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h,
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or(format!("{url}: bad port '{p}'"))?,
        ),
        _ => (rest, 1883),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains('/') {
        return Err(format!("{url}: no host"));
    }
    Ok((host.to_string(), port))
}

#[derive(Default)]
struct Counters {
    connected: AtomicBool,
    offered: AtomicU64,
    dropped: AtomicU64,
    acked: AtomicU64,
    reconnects: AtomicU64,
    stop: AtomicBool,
    last_error: Mutex<Option<String>>,
}

/// A running publisher.
pub struct Publisher {
    options: MqttOptions,
    client: Client,
    qos: QoS,
    counters: Arc<Counters>,
}

impl Publisher {
    /// Starts the connection thread; connecting happens there (a broker that is down now is
    /// retried, never waited for).
    pub fn start(options: MqttOptions) -> std::io::Result<Publisher> {
        let mut o = Options::new(&options.client_id, &options.host, options.port);
        o.set_keep_alive(KEEP_ALIVE);
        let (client, mut connection) = Client::new(o, QUEUE);
        let counters = Arc::new(Counters::default());
        let c = Arc::clone(&counters);
        let broker = options.broker.clone();
        std::thread::Builder::new()
            .name("rtinfer-mqtt".into())
            .spawn(move || {
                crate::rt::run_in_background();
                let mut backoff = FIRST_BACKOFF;
                for event in connection.iter() {
                    if c.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    match event {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            if c.reconnects.fetch_add(1, Ordering::Relaxed) == 0 {
                                log::info!("mqtt: connected to {broker}");
                            } else {
                                log::info!("mqtt: connected to {broker} again");
                            }
                            c.connected.store(true, Ordering::Relaxed);
                            backoff = FIRST_BACKOFF;
                        }
                        Ok(Event::Incoming(Packet::PubAck(_))) => {
                            c.acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            let was = c.connected.swap(false, Ordering::Relaxed);
                            let text = e.to_string();
                            let mut last = c.last_error.lock().unwrap_or_else(|p| p.into_inner());
                            // Once per loss, not once per retry.
                            if was || last.is_none() {
                                log::warn!("mqtt: {broker}: {text}; retrying in {backoff:?}");
                            }
                            *last = Some(text);
                            drop(last);
                            std::thread::sleep(backoff);
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                    }
                }
            })?;
        let qos = if options.qos == 1 {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        };
        Ok(Publisher {
            options,
            client,
            qos,
            counters,
        })
    }

    /// Queues one message; never blocks. A full queue loses it (counted).
    pub fn offer(&self, payload: Vec<u8>) {
        self.counters.offered.fetch_add(1, Ordering::Relaxed);
        if self
            .client
            .try_publish(&self.options.topic, self.qos, false, payload)
            .is_err()
        {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Asks the connection thread to end (it notices at its next event, at most a keep-alive
    /// later) and disconnects cleanly when connected.
    pub fn stop(&self) {
        self.counters.stop.store(true, Ordering::Relaxed);
        let _ = self.client.try_disconnect();
    }

    /// `/status` `mqtt`.
    pub fn status_json(&self) -> Value {
        let c = &self.counters;
        json!({
            "broker": self.options.broker,
            "topic": self.options.topic,
            "qos": self.options.qos,
            "connected": c.connected.load(Ordering::Relaxed),
            "offered": c.offered.load(Ordering::Relaxed),
            "dropped": c.dropped.load(Ordering::Relaxed),
            "acked": c.acked.load(Ordering::Relaxed),
            "connects": c.reconnects.load(Ordering::Relaxed),
            "last_error": *c.last_error.lock().unwrap_or_else(|p| p.into_inner()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(broker: &str) -> RawMqtt {
        RawMqtt {
            broker: Some(broker.into()),
            ..RawMqtt::default()
        }
    }

    #[test]
    fn brokers() {
        let o = raw("mqtt://127.0.0.1:18830")
            .check()
            .expect("ok")
            .expect("some");
        assert_eq!((o.host.as_str(), o.port, o.qos), ("127.0.0.1", 18830, 0));
        assert_eq!(o.topic, DEFAULT_TOPIC);
        let o = raw("mqtt://broker.local")
            .check()
            .expect("ok")
            .expect("some");
        assert_eq!(o.port, 1883);
        let o = raw("mqtt://[::1]:1884").check().expect("ok").expect("some");
        assert_eq!((o.host.as_str(), o.port), ("::1", 1884));
        for bad in [
            "broker:1883",
            "mqtts://x",
            "mqtt://",
            "mqtt://x:0",
            "mqtt://x:y",
        ] {
            let e = raw(bad).check().expect_err(bad);
            assert_eq!(e.key, "mqtt.broker", "{bad}");
        }
        assert_eq!(RawMqtt::default().check(), Ok(None));
        let e = RawMqtt {
            qos: Some(2),
            ..raw("mqtt://x")
        }
        .check()
        .expect_err("qos 2");
        assert_eq!(e.key, "mqtt.qos");
        let e = RawMqtt {
            topic: Some("a/#".into()),
            ..raw("mqtt://x")
        }
        .check()
        .expect_err("wildcard");
        assert_eq!(e.key, "mqtt.topic");
    }
}
