//! The memory floor the daemon is compared with: this process does only what no daemon can
//! avoid (ONNX Runtime loaded, one session of the model built with the daemon's own backend
//! settings, the heap trimmed after the load as the daemon does, one inference every 16.67 ms)
//! and prints its resident memory by mapping. `scripts/bench_memory.sh` runs it beside the daemon.
//!
//!   cargo run --release --example memory_floor -- MODEL.onnx [SECONDS]

use std::path::PathBuf;

use anyhow::Context;
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: memory_floor MODEL.onnx [SECONDS]";
    let model = PathBuf::from(args.next().context(usage)?);
    let secs: f64 = args.next().map_or(Ok(17.0), |s| s.parse())?;
    let mut raw = rtinfer::config::RawConfig::default();
    raw.run.model = Some(model.clone());
    let cfg = rtinfer::config::Config::from_raw(raw, None)?;
    let backend = rtinfer::backend::open(&cfg.backend, &model)?;
    let mut engine = backend.load(&model, &cfg.backend.load_options())?;
    rtinfer::rt::trim_heap();
    let period = Duration::from_secs_f64(1.0 / 60.0);
    let t0 = Instant::now();
    let mut next = t0;
    while t0.elapsed().as_secs_f64() < secs {
        engine.run()?;
        next += period;
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    let status = std::fs::read_to_string("/proc/self/status")?;
    for line in status.lines() {
        if ["VmRSS:", "RssAnon:", "RssFile:", "Threads:"]
            .iter()
            .any(|k| line.starts_with(k))
        {
            println!("{line}");
        }
    }
    Ok(())
}
