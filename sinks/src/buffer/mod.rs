//! Per-sink buffers between the fan-out and the sink's driver, chosen by config as in
//! Vector: `memory` (a bounded channel of events) or `disk` (a write-ahead log under
//! `sinks.data_dir/<sink>/`, see [`disk`]). Either way the fan-out only waits for room in
//! that one buffer, and the buffer lets go of an event's source token once the event is
//! durable: written to the disk buffer, or (memory) delivered by the sink. The disk
//! buffers of a data dir share one writer ([`group`]) and one commit point ([`commit`]):
//! an event is in all of their logs or in none.
mod commit;
pub mod disk;
mod group;
#[cfg(test)]
mod tests;

use std::{
    path::Path,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use pipeline::{
    ack::Ack,
    config::ByteSize,
    fanout::{Entry, OutputCounters, QueuePolicy},
    metrics::names,
    Event,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use disk::{DiskError, Recovered};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BufferType {
    Memory,
    Disk,
}

/// When the disk buffer asks the kernel to put what it wrote on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskFsync {
    /// Never: a crash of the agent loses nothing (the kernel has it), a power cut may.
    Never,
    /// At most every `fsync_interval_ms` (and when the writer goes idle).
    Interval,
    /// After every write: nothing acknowledged is lost on a power cut; slowest.
    Always,
}

/// `sinks.<name>.buffer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BufferConfig {
    #[serde(rename = "type")]
    pub kind: BufferType,
    /// memory: most events held.
    #[serde(deserialize_with = "crate::bounds::events")]
    pub max_events: usize,
    /// disk: most bytes on disk (records of events not yet acknowledged by the sink).
    #[serde(deserialize_with = "crate::bounds::disk_size")]
    pub max_size: ByteSize,
    /// block | drop_newest (counted in nightjar_sink_events_total{outcome="dropped"}).
    pub when_full: QueuePolicy,
    /// disk: never | interval | always.
    pub fsync: DiskFsync,
    #[serde(deserialize_with = "crate::bounds::millis")]
    pub fsync_interval_ms: u64,
}

impl BufferConfig {
    pub fn memory(max_events: usize, when_full: QueuePolicy) -> Self {
        BufferConfig { kind: BufferType::Memory, max_events, when_full, ..Self::disk_default() }
    }

    /// The remote sinks' default: 1 GiB on disk, blocking when full.
    pub fn disk_default() -> Self {
        BufferConfig {
            kind: BufferType::Disk,
            max_events: 10_000,
            max_size: ByteSize(1 << 30),
            when_full: QueuePolicy::Block,
            fsync: DiskFsync::Interval,
            fsync_interval_ms: 1000,
        }
    }
}

impl Default for BufferConfig {
    fn default() -> Self {
        Self::memory(10_000, QueuePolicy::Block)
    }
}

/// Live figures of one buffer (status, metrics, shutdown report).
#[derive(Debug, Default)]
pub struct BufferStats {
    pub events: AtomicU64,
    pub bytes: AtomicU64,
    /// Taken in by the buffer (memory: queued; disk: written to the log).
    pub accepted: AtomicU64,
    /// Refused by a full (or failed) disk buffer.
    pub dropped: AtomicU64,
    pub corrupt: AtomicU64,
    pub replayed: AtomicU64,
    name: std::sync::OnceLock<&'static str>,
}

impl BufferStats {
    /// The figures of sink `name`'s buffer.
    pub fn named(name: &'static str) -> Arc<BufferStats> {
        let s = Arc::new(BufferStats::default());
        let _ = s.name.set(name);
        s
    }
    fn label(&self) -> &'static str {
        self.name.get().copied().unwrap_or("?")
    }
    fn set(&self, events: u64, bytes: u64) {
        self.events.store(events, Ordering::Relaxed);
        self.bytes.store(bytes, Ordering::Relaxed);
        metrics::gauge!(names::BUFFER_EVENTS, "sink" => self.label()).set(events as f64);
        metrics::gauge!(names::BUFFER_BYTES, "sink" => self.label()).set(bytes as f64);
    }
    fn written(&self, n: u64) {
        self.accepted.fetch_add(n, Ordering::Relaxed);
    }
    fn dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }
    fn corrupt(&self, n: u64) {
        self.corrupt.fetch_add(n, Ordering::Relaxed);
    }
}

/// What lets a batch go once the sink is done with it.
#[derive(Debug)]
pub enum AckToken {
    /// The source tokens of the events (dropped when the batch is settled).
    Memory(Vec<Ack>),
    /// Every record below this id.
    Disk(u64),
}

/// A batch taken from a buffer.
pub struct Batch {
    pub events: Vec<Arc<Event>>,
    pub token: AckToken,
    /// When the oldest event of the batch entered the buffer (unix ms).
    pub oldest_ms: u64,
}

enum Kind {
    /// The channel, and an entry taken by [`BufferReader::wait`] not yet batched.
    Memory(mpsc::Receiver<Entry>, Option<Entry>),
    Disk(Option<disk::DiskReader>),
}

/// The driver's side of a buffer.
pub struct BufferReader {
    kind: Kind,
    stats: Arc<BufferStats>,
    pub is_disk: bool,
}

/// The fan-out's side of a buffer: a channel and the policy it applies there (a disk
/// buffer's staging channel always blocks; the log applies `when_full` itself).
pub struct BufferWriter {
    pub tx: mpsc::Sender<Entry>,
    pub policy: QueuePolicy,
}

/// A buffer ready for use, and what its disk log held from an earlier run.
pub struct Opened {
    pub writer: BufferWriter,
    pub reader: BufferReader,
    pub recovered: Recovered,
    pub stats: Arc<BufferStats>,
}

/// Publishes a buffer's bounds (one of the two is 0: the other kind's).
fn announce(name: &'static str, cfg: &BufferConfig) {
    let (events, bytes) = match cfg.kind {
        BufferType::Memory => (cfg.max_events as f64, 0.0),
        BufferType::Disk => (0.0, cfg.max_size.0 as f64),
    };
    metrics::gauge!(names::BUFFER_MAX_EVENTS, "sink" => name).set(events);
    metrics::gauge!(names::BUFFER_MAX_BYTES, "sink" => name).set(bytes);
    // Nothing borrowed or waiting in the fan-out yet: the series exist from the start, so
    // the dashboard and the borrowing alert see every sink.
    metrics::gauge!(names::BUFFER_BORROWED_BYTES, "sink" => name).set(0.0);
    metrics::gauge!(names::FANOUT_OVERFLOW, "sink" => name).set(0.0);
}

/// Opens a memory buffer for sink `name`.
pub fn open_memory(name: &'static str, cfg: &BufferConfig, stats: Arc<BufferStats>) -> (BufferWriter, BufferReader) {
    announce(name, cfg);
    stats.set(0, 0);
    let (tx, rx) = mpsc::channel(cfg.max_events.max(1));
    (BufferWriter { tx, policy: cfg.when_full }, BufferReader { kind: Kind::Memory(rx, None), stats, is_disk: false })
}

/// A disk buffer to open with the others of its data dir.
pub struct DiskSpec {
    pub name: &'static str,
    pub cfg: BufferConfig,
    pub stats: Arc<BufferStats>,
    /// The fan-out's counts for this sink (the group writer counts what it takes).
    pub counters: Arc<OutputCounters>,
}

/// A disk buffer's reader and what its log held from an earlier run, or why it did not open.
pub type OpenedDisk = Result<(BufferReader, Recovered), DiskError>;

/// The disk buffers of one data dir: their one writer (the fan-out's output for all of
/// them; None if none opened) and each sink's reader, or why it could not open.
pub struct DiskGroup {
    pub writer: Option<BufferWriter>,
    pub readers: Vec<(&'static str, OpenedDisk)>,
}

/// Opens the disk buffers of `specs` under `data_dir/<name>/`, recovered up to their
/// common commit point, and starts their writer.
pub fn open_disk(specs: Vec<DiskSpec>, data_dir: &Path) -> DiskGroup {
    let mut readers = Vec::new();
    let fail = |e: &DiskError| match e {
        DiskError::Locked { dir } => DiskError::Locked { dir: dir.clone() },
        DiskError::Io { dir, what, source } => {
            DiskError::Io { dir: dir.clone(), what, source: std::io::Error::new(source.kind(), source.to_string()) }
        }
    };
    let io = |what: &'static str| move |source| DiskError::Io { dir: data_dir.to_path_buf(), what, source };
    let commit = std::fs::create_dir_all(data_dir).map_err(io("create the directory")).and_then(|_| {
        commit::CommitFile::open(&data_dir.join("commit")).map_err(|e| match e {
            None => DiskError::Locked { dir: data_dir.to_path_buf() },
            Some(source) => io("open the commit file")(source),
        })
    });
    let commit = match commit {
        Ok(c) => c,
        Err(e) => {
            let readers = specs.iter().map(|s| (s.name, Err(fail(&e)))).collect();
            return DiskGroup { writer: None, readers };
        }
    };
    let mut members = Vec::new();
    let mut idle = Duration::from_secs(1);
    for s in specs {
        announce(s.name, &s.cfg);
        let max = s.cfg.max_size.0.max(1 << 16);
        let interval = Duration::from_millis(s.cfg.fsync_interval_ms.max(1));
        let dc = disk::DiskConfig {
            dir: data_dir.join(s.name),
            max_bytes: max,
            segment_bytes: (max / 8).clamp(64 << 10, 32 << 20),
            when_full: s.cfg.when_full,
            fsync: s.cfg.fsync,
            fsync_interval: interval,
        };
        match disk::open_member(s.name, dc, s.stats.clone(), commit.get(s.name)) {
            Ok((member, reader, recovered)) => {
                s.stats.replayed.store(recovered.pending, Ordering::Relaxed);
                idle = idle.min(interval.max(Duration::from_millis(10)));
                members.push((member, s.counters));
                let reader = BufferReader { kind: Kind::Disk(Some(reader)), stats: s.stats, is_disk: true };
                readers.push((s.name, Ok((reader, recovered))));
            }
            Err(e) => readers.push((s.name, Err(e))),
        }
    }
    if members.is_empty() {
        return DiskGroup { writer: None, readers };
    }
    match group::spawn(members, commit, idle) {
        Ok(tx) => DiskGroup { writer: Some(BufferWriter { tx, policy: QueuePolicy::Block }), readers },
        Err(e) => {
            let e = io("start the writer thread")(e);
            DiskGroup { writer: None, readers: readers.into_iter().map(|(n, _)| (n, Err(fail(&e)))).collect() }
        }
    }
}

/// Opens the buffer of one sink `name` (a disk one under `data_dir/<name>/`, as the only
/// member of its group).
pub fn open(name: &'static str, cfg: &BufferConfig, data_dir: &Path) -> Result<Opened, DiskError> {
    let stats = BufferStats::named(name);
    if cfg.kind == BufferType::Memory {
        let (writer, reader) = open_memory(name, cfg, stats.clone());
        return Ok(Opened { writer, reader, recovered: Recovered::default(), stats });
    }
    let spec = DiskSpec { name, cfg: cfg.clone(), stats: stats.clone(), counters: Arc::default() };
    let mut g = open_disk(vec![spec], data_dir);
    let (_, opened) = g.readers.pop().expect("one spec, one reader");
    let (reader, recovered) = opened?;
    let writer = g.writer.expect("a writer when the member opened");
    Ok(Opened { writer, reader, recovered, stats })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl BufferReader {
    pub fn stats(&self) -> &Arc<BufferStats> {
        &self.stats
    }

    /// Waits until an event is there (or the buffer is closed). Cancel-safe.
    pub async fn wait(&mut self) {
        match &mut self.kind {
            Kind::Memory(rx, stash) => {
                if stash.is_none() {
                    // None (closed and empty) is for next() to say.
                    *stash = rx.recv().await;
                }
            }
            Kind::Disk(Some(r)) => r.readable().await,
            Kind::Disk(None) => {}
        }
    }

    /// The next batch: waits for a first event, then up to `max` events or until
    /// `max_age` has passed. None: the buffer is closed and empty.
    pub async fn next(&mut self, max: usize, max_age: Duration) -> Option<Batch> {
        let max = max.max(1);
        match &mut self.kind {
            Kind::Memory(rx, stash) => {
                let first = match stash.take() {
                    Some(e) => e,
                    None => rx.recv().await?,
                };
                let oldest_ms = now_ms();
                let deadline = tokio::time::Instant::now() + max_age;
                let mut events = Vec::with_capacity(max.min(4096));
                let mut acks = Vec::new();
                let mut next = Some(first);
                while let Some(e) = next.take() {
                    events.push(e.event);
                    acks.extend(e.ack);
                    if events.len() >= max {
                        break;
                    }
                    next = match rx.try_recv() {
                        Ok(e) => Some(e),
                        Err(mpsc::error::TryRecvError::Disconnected) => None,
                        Err(mpsc::error::TryRecvError::Empty) => {
                            tokio::time::timeout_at(deadline, rx.recv()).await.ok().flatten()
                        }
                    };
                }
                self.stats.set(rx.len() as u64, 0);
                Some(Batch { events, token: AckToken::Memory(acks), oldest_ms })
            }
            Kind::Disk(slot) => {
                let deadline = tokio::time::Instant::now() + max_age;
                let mut events: Vec<Arc<Event>> = Vec::new();
                let (mut oldest_ms, mut upto) = (0, None);
                loop {
                    {
                        let r = slot.as_ref()?;
                        if events.is_empty() {
                            r.readable().await;
                        } else if tokio::time::timeout_at(deadline, r.readable()).await.is_err() {
                            break;
                        }
                    }
                    let mut reader = slot.take()?;
                    let want = max - events.len();
                    let (reader, out) = tokio::task::spawn_blocking(move || {
                        let out = reader.read(want);
                        (reader, out)
                    })
                    .await
                    .ok()?;
                    *slot = Some(reader);
                    if oldest_ms == 0 {
                        oldest_ms = out.records.first().map(|r| r.ts_ms).unwrap_or(0);
                    }
                    upto = Some(out.next_id);
                    events.extend(out.records.into_iter().map(|r| r.event));
                    if events.len() >= max
                        || out.ended
                        || (!events.is_empty() && tokio::time::Instant::now() >= deadline)
                    {
                        break;
                    }
                }
                let upto = upto.unwrap_or(0);
                if events.is_empty() {
                    // Closed; records skipped as corrupt at the very end are acknowledged.
                    self.ack(AckToken::Disk(upto)).await;
                    return None;
                }
                Some(Batch { events, token: AckToken::Disk(upto), oldest_ms })
            }
        }
    }

    /// Lets a settled batch go: its source tokens (memory) or its records (disk).
    pub async fn ack(&mut self, token: AckToken) {
        match (token, &mut self.kind) {
            (AckToken::Memory(acks), _) => drop(acks),
            (AckToken::Disk(upto), Kind::Disk(Some(r))) => {
                let shared = r.shared.clone();
                let _ = tokio::task::spawn_blocking(move || shared.ack(upto)).await;
            }
            (AckToken::Disk(_), _) => {}
        }
    }

    /// The sink is gone for good: memory buffers close (the fan-out counts what it can no
    /// longer queue), a disk buffer keeps what it has for the next start and refuses more.
    pub fn close(&mut self) {
        match &mut self.kind {
            Kind::Memory(rx, _) => rx.close(),
            Kind::Disk(Some(r)) => r.shared.close(),
            Kind::Disk(None) => {}
        }
    }

    /// Events still in the buffer: in memory (lost if the agent stops now), or on disk
    /// (delivered after the next start).
    pub fn pending(&self) -> u64 {
        match &self.kind {
            Kind::Memory(rx, stash) => rx.len() as u64 + stash.is_some() as u64,
            Kind::Disk(Some(r)) => r.shared.pending(),
            Kind::Disk(None) => self.stats.events.load(Ordering::Relaxed),
        }
    }
}
