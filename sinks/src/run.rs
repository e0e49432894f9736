//! Starting the built sinks: each gets its buffer, its health and its driver task; the
//! fan-out gets one output per sink.
use std::{path::Path, sync::Arc, time::Duration};

use pipeline::fanout::Output;
use tokio::{sync::watch, task::JoinHandle};

use crate::{buffer, driver::Driver, driver::DriverReport, Built, SinkHealth};

/// A sink running in its driver.
pub struct Running {
    pub name: &'static str,
    pub health: Arc<SinkHealth>,
    pub driver: JoinHandle<DriverReport>,
}

/// Opens each sink's buffer and spawns its driver. Returns the running sinks, the fan-out
/// outputs feeding them, and the sinks that could not start (name, reason).
pub fn start(
    built: Vec<Built>,
    data_dir: &Path,
    stop: &watch::Receiver<bool>,
) -> (Vec<Running>, Vec<Output>, Vec<(&'static str, String)>) {
    let (mut running, mut outputs, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for b in built {
        let sink = match b.sink {
            Ok(s) => s,
            Err(e) => {
                failed.push((b.name, e.to_string()));
                continue;
            }
        };
        let d = b.delivery;
        let opened = match buffer::open(b.name, &d.buffer, data_dir) {
            Ok(o) => o,
            Err(e) => {
                failed.push((b.name, crate::BuildError::Buffer { sink: b.name, source: e }.to_string()));
                continue;
            }
        };
        if opened.recovered.pending > 0 {
            tracing::info!(
                sink = b.name,
                events = opened.recovered.pending,
                "disk buffer: delivering events an earlier run buffered"
            );
        }
        let health = Arc::new(SinkHealth::new(
            b.name,
            d.buffer.kind,
            Duration::from_secs(d.health_timeout_secs.max(1)),
            opened.stats.clone(),
        ));
        let output = Output {
            name: b.name,
            tx: opened.writer.tx,
            policy: opened.writer.policy,
            counters: health.fanout.clone(),
        };
        let driver = Driver::new(sink, opened.reader, d.batch, d.retry, health.clone(), stop.clone());
        running.push(Running { name: b.name, health, driver: tokio::spawn(driver.run()) });
        outputs.push(output);
    }
    (running, outputs, failed)
}
