//! Starting the built sinks: each gets its buffer, its health and its driver task; the
//! fan-out gets one output per memory-buffered sink and one for all the disk-buffered ones
//! (their common writer: an event is in every disk buffer or in none).
use std::{path::Path, sync::Arc, time::Duration};

use pipeline::fanout::Output;
use tokio::{sync::watch, task::JoinHandle};

use crate::{
    buffer::{self, BufferReader, BufferStats, BufferType, DiskSpec},
    driver::{Driver, DriverReport},
    Built, Delivery, Sink, SinkHealth,
};

/// A sink running in its driver.
pub struct Running {
    pub name: &'static str,
    pub health: Arc<SinkHealth>,
    pub driver: JoinHandle<DriverReport>,
}

/// The fan-out output of the disk buffers' writer (in metrics: drops before any buffer).
pub const DISK_OUTPUT: &str = "disk_buffers";

struct Ready {
    name: &'static str,
    sink: Box<dyn Sink>,
    delivery: Delivery,
    health: Arc<SinkHealth>,
}

/// Opens each sink's buffer and spawns its driver. Returns the running sinks, the fan-out
/// outputs feeding them, and the sinks that could not start (name, reason).
pub fn start(
    built: Vec<Built>,
    data_dir: &Path,
    stop: &watch::Receiver<bool>,
) -> (Vec<Running>, Vec<Output>, Vec<(&'static str, String)>) {
    let (mut running, mut outputs, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    let mut ready = Vec::new();
    for b in built {
        match b.sink {
            Ok(sink) => {
                let d = b.delivery;
                let timeout = Duration::from_secs(d.health_timeout_secs.max(1));
                let health = Arc::new(SinkHealth::new(b.name, d.buffer.kind, timeout, BufferStats::named(b.name)));
                ready.push(Ready { name: b.name, sink, delivery: d, health });
            }
            Err(e) => failed.push((b.name, e.to_string())),
        }
    }
    let specs = ready
        .iter()
        .filter(|r| r.delivery.buffer.kind == BufferType::Disk)
        .map(|r| DiskSpec {
            name: r.name,
            cfg: r.delivery.buffer.clone(),
            stats: r.health.stats.clone(),
            counters: r.health.fanout.clone(),
        })
        .collect();
    let mut disk = buffer::open_disk(specs, data_dir);
    for r in ready {
        let reader: BufferReader = match r.delivery.buffer.kind {
            BufferType::Memory => {
                let (w, reader) = buffer::open_memory(r.name, &r.delivery.buffer, r.health.stats.clone());
                outputs.push(Output { name: r.name, tx: w.tx, policy: w.policy, counters: r.health.fanout.clone() });
                reader
            }
            BufferType::Disk => {
                let at = disk.readers.iter().position(|(n, _)| *n == r.name);
                match at.map(|i| disk.readers.swap_remove(i).1) {
                    Some(Ok((reader, recovered))) => {
                        if recovered.pending > 0 {
                            tracing::info!(
                                sink = r.name,
                                events = recovered.pending,
                                "disk buffer: delivering events an earlier run buffered"
                            );
                        }
                        reader
                    }
                    Some(Err(e)) => {
                        failed.push((r.name, crate::BuildError::Buffer { sink: r.name, source: e }.to_string()));
                        continue;
                    }
                    None => continue,
                }
            }
        };
        let d = r.delivery;
        let driver = Driver::new(r.sink, reader, d.batch, d.retry, r.health.clone(), stop.clone());
        running.push(Running { name: r.name, health: r.health, driver: tokio::spawn(driver.run()) });
    }
    if let Some(w) = disk.writer {
        outputs.push(Output::new(DISK_OUTPUT, w.tx, w.policy));
    }
    (running, outputs, failed)
}
