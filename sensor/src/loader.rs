//! Loads the embedded eBPF object, attaches the hooks, reads the ring buffer and hands
//! decoded records to the process layer, which emits pipeline events.
use std::time::Duration;

use aya::{
    maps::{PerCpuArray, RingBuf},
    programs::TracePoint,
    Ebpf, EbpfLoader,
};
use nightjar_common::{cause, kind, missed_index};
use pipeline::{config::ByteSize, event::*, time::Timestamp, Event};
use serde::{Deserialize, Serialize};
use tokio::{io::unix::AsyncFd, sync::mpsc};

use crate::{
    decode::{self, Record},
    probe::KernelFeatures,
};

/// The embedded eBPF object, built by build.rs from `sensor-bpf/`.
static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/nightjar.bpf.o"));

/// `sensor:` section of the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SensorConfig {
    /// Size of the BPF ring buffer (a power of two, at least one page).
    pub ring_buffer_size: ByteSize,
    /// Longest argument block reported per exec; longer ones are cut and flagged.
    pub args_max_bytes: u32,
    /// Scan /proc at start so processes older than the agent have parents.
    pub proc_scan: bool,
    /// Mount tracefs when it is missing.
    pub mount_tracefs: bool,
}

impl Default for SensorConfig {
    fn default() -> Self {
        SensorConfig { ring_buffer_size: ByteSize(8 << 20), args_max_bytes: 1024, proc_scan: true, mount_tracefs: true }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    #[error("sensor.ring_buffer_size must be a power of two of at least 4096 bytes, got {0}")]
    RingSize(u64),
    #[error("the sensor needs root (or CAP_BPF + CAP_PERFMON); running as euid {0}")]
    NotRoot(u32),
    #[error("kernel probe: {0}")]
    Probe(#[from] crate::probe::ProbeError),
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("eBPF program {name}: {source}")]
    Program { name: &'static str, source: aya::programs::ProgramError },
    #[error("eBPF map {name}: {source}")]
    Map { name: &'static str, source: aya::maps::MapError },
    #[error("eBPF map {0} is missing from the object")]
    MissingMap(&'static str),
    #[error("eBPF program {0} is missing from the object")]
    MissingProgram(&'static str),
    #[error("ring buffer: {0}")]
    Io(#[from] std::io::Error),
}

/// Tracepoints the base sensor attaches: (program, category, tracepoint).
const PROCESS_HOOKS: [(&str, &str, &str); 3] = [
    ("sched_process_exec", "sched", "sched_process_exec"),
    ("sched_process_exit", "sched", "sched_process_exit"),
    ("sched_process_fork", "sched", "sched_process_fork"),
];

/// A loaded, attached sensor. Dropping it detaches every program.
pub struct Sensor {
    ebpf: Ebpf,
    pub features: KernelFeatures,
    node_name: String,
}

impl Sensor {
    /// Probes the kernel, loads the programs and attaches the process hooks.
    pub fn load(cfg: &SensorConfig, node_name: &str) -> Result<Self, SensorError> {
        let size = cfg.ring_buffer_size.0;
        if size < 4096 || !size.is_power_of_two() || size > u32::MAX as u64 {
            return Err(SensorError::RingSize(size));
        }
        let features = crate::probe::probe(cfg.mount_tracefs)?;
        if features.euid != 0 {
            return Err(SensorError::NotRoot(features.euid));
        }
        let mut ebpf = EbpfLoader::new().map_max_entries("EVENTS", size as u32).load(BPF_OBJECT)?;
        for (prog, category, tp) in PROCESS_HOOKS {
            let p: &mut TracePoint = ebpf
                .program_mut(prog)
                .ok_or(SensorError::MissingProgram(prog))?
                .try_into()
                .map_err(|source| SensorError::Program { name: prog, source })?;
            p.load().map_err(|source| SensorError::Program { name: prog, source })?;
            p.attach(category, tp).map_err(|source| SensorError::Program { name: prog, source })?;
            tracing::info!(program = prog, hook = %format!("tracepoint:{category}:{tp}"), "attached");
        }
        Ok(Sensor { ebpf, features, node_name: node_name.to_owned() })
    }

    /// Reads records until `tx` closes or `shutdown` fires. With a full channel it waits
    /// (backpressure): the ring buffer then fills and the kernel counts what it cannot keep.
    pub async fn run(
        mut self,
        tx: mpsc::Sender<Event>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), SensorError> {
        let ring = RingBuf::try_from(self.ebpf.take_map("EVENTS").ok_or(SensorError::MissingMap("EVENTS"))?)
            .map_err(|source| SensorError::Map { name: "EVENTS", source })?;
        let missed: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.take_map("MISSED").ok_or(SensorError::MissingMap("MISSED"))?)
                .map_err(|source| SensorError::Map { name: "MISSED", source })?;
        // SAFETY: the RingBuf owns its map fd for as long as the AsyncFd owns the RingBuf,
        // and as_raw_fd always returns that same descriptor.
        let mut fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| SensorError::Io(e.into_parts().1))?;
        let mut missed_tick = tokio::time::interval(Duration::from_secs(1));
        let mut batch: Vec<Record> = Vec::with_capacity(256);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                _ = missed_tick.tick() => export_missed(&missed),
                guard = fd.readable_mut() => {
                    let mut guard = guard?;
                    let ring = guard.get_inner_mut();
                    while batch.len() < 256 {
                        let Some(item) = ring.next() else { break };
                        match decode::decode(&item) {
                            Ok(r) => batch.push(r),
                            Err(e) => {
                                pipeline::metrics::count_stage_drop("sensor_decode", "malformed_record", 1);
                                tracing::warn!(error = %e, "dropped a malformed ring-buffer record");
                            }
                        }
                    }
                    if batch.len() < 256 {
                        guard.clear_ready();
                    }
                }
            }
            for r in batch.drain(..) {
                if let Some(ev) = self.to_event(r) {
                    if tx.send(ev).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
        export_missed(&missed);
        Ok(())
    }

    fn to_event(&self, r: Record) -> Option<Event> {
        let now = Timestamp::now();
        match r {
            Record::Exec(e) => {
                pipeline::metrics::count_exec();
                let process = Process {
                    pid: Some(e.fixed.pid),
                    tid: Some(e.fixed.tid),
                    uid: Some(e.fixed.uid),
                    binary: Some(decode::cstr(&e.fixed.comm)),
                    ..Default::default()
                };
                let kind =
                    EventKind::ProcessExec(Box::new(ProcessExec { process: Some(process), ..Default::default() }));
                Some(Event::new(kind, &self.node_name, now))
            }
            Record::Exit(x) => {
                let process = Process { pid: Some(x.pid), tid: Some(x.tid), ..Default::default() };
                let kind = EventKind::ProcessExit(Box::new(ProcessExit {
                    process: Some(process),
                    status: Some((x.exit_code >> 8) & 0xff),
                    ..Default::default()
                }));
                Some(Event::new(kind, &self.node_name, now))
            }
            Record::Fork(_) => None,
        }
    }
}

const KIND_NAMES: [(u16, &str); 3] = [(kind::EXEC, "exec"), (kind::EXIT, "exit"), (kind::FORK, "fork")];
const CAUSE_NAMES: [(u32, &str); 2] = [(cause::RINGBUF_FULL, "ringbuf_full"), (cause::SCRATCH, "scratch")];

/// Sums the kernel's per-CPU missed counters into `nightjar_missed_events_total`.
fn export_missed(missed: &PerCpuArray<aya::maps::MapData, u64>) {
    for (k, kname) in KIND_NAMES {
        for (c, cname) in CAUSE_NAMES {
            if let Ok(vals) = missed.get(&missed_index(k, c), 0) {
                let total: u64 = vals.iter().sum();
                pipeline::metrics::set_missed(cname, kname, total);
            }
        }
    }
}
