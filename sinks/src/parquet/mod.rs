//! Parquet sink: events as a Hive-partitioned Parquet dataset, for data teams.
//!
//! `path/dt=YYYY-MM-DD/hour=HH/part-<unix ms>-<pid>-<n>.parquet`, partitioned by the
//! event's own time (UTC; the wall clock for an event without one). The schema is in
//! [`schema`] (and `README.md` beside this file); zstd; row groups bounded by rows and
//! bytes; a file is closed by size or age, or at shutdown.
//!
//! Readers never see a partial file: a file is written as `.part-….parquet.tmp` (hidden,
//! and not matching `*.parquet`), and renamed only after its footer is written and it is
//! fsync'ed. A process killed mid-file leaves that temporary file behind; the next start
//! removes it, logs it, and counts it in
//! `nightjar_stage_dropped_total{stage="sink_parquet",reason="partial_file"}`: its rows
//! were only in memory and are lost (Parquet cannot be read without its footer).
//!
//! Rows handed to the sink are in memory until their file closes: `max_file_age_secs`
//! bounds how many a crash can cost, `row_group_max_bytes` × open files bounds memory.
pub mod config;
pub mod schema;
#[cfg(test)]
mod tests;

use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions},
    io,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
pub use config::ParquetConfig;
use parquet::{
    arrow::ArrowWriter,
    basic::{Compression, ZstdLevel},
    file::properties::WriterProperties,
};
use pipeline::{metrics::names, time::Timestamp, Event};

use crate::{file::OnError, Health, SendOutcome, Sink};

/// Most files open at once (one per partition receiving events; late events for an older
/// hour open a second). Past it, the oldest is closed.
const MAX_OPEN_FILES: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum ParquetSinkError {
    #[error("parquet sink: cannot create directory {dir}: {source}")]
    Dir { dir: PathBuf, source: io::Error },
    #[error("parquet sink: cannot create {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("parquet sink: cannot write {path}: {source}")]
    Write { path: PathBuf, source: parquet::errors::ParquetError },
    #[error("parquet sink: cannot finish {path}: {source}")]
    Finish { path: PathBuf, source: io::Error },
    #[error("parquet sink: cannot build the record batch: {0}")]
    Encode(#[from] arrow_schema::ArrowError),
    #[error("parquet sink: invalid config: {0}")]
    Config(String),
}

/// A file being written.
struct OpenFile {
    writer: ArrowWriter<File>,
    tmp: PathBuf,
    dest: PathBuf,
    opened: Instant,
    rows: u64,
}

pub struct ParquetSink {
    cfg: ParquetConfig,
    props: WriterProperties,
    /// Open files by partition (`dt=…/hour=…`).
    open: BTreeMap<String, OpenFile>,
    seq: u64,
    last_error: Option<String>,
    /// What the start-up scan found: partial files removed.
    pub recovered: Vec<PathBuf>,
}

impl ParquetSink {
    /// Creates the root directory and removes partial files an earlier run left.
    pub fn new(cfg: &ParquetConfig) -> Result<Self, ParquetSinkError> {
        let level =
            ZstdLevel::try_new(cfg.zstd_level).map_err(|e| ParquetSinkError::Config(format!("zstd_level: {e}")))?;
        if cfg.row_group_rows == 0 || cfg.row_group_max_bytes.0 == 0 {
            return Err(ParquetSinkError::Config("row_group_rows and row_group_max_bytes must be > 0".into()));
        }
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_row_count(Some(cfg.row_group_rows))
            .set_max_row_group_bytes(Some(cfg.row_group_max_bytes.0 as usize))
            .set_created_by(format!("nightjar {}", env!("CARGO_PKG_VERSION")))
            .build();
        std::fs::create_dir_all(&cfg.path).map_err(|source| ParquetSinkError::Dir { dir: cfg.path.clone(), source })?;
        let recovered = remove_partial_files(&cfg.path);
        Ok(ParquetSink { cfg: cfg.clone(), props, open: BTreeMap::new(), seq: 0, last_error: None, recovered })
    }

    fn open_file(&mut self, partition: &str) -> Result<OpenFile, ParquetSinkError> {
        let dir = self.cfg.path.join(partition);
        std::fs::create_dir_all(&dir).map_err(|source| ParquetSinkError::Dir { dir: dir.clone(), source })?;
        self.seq += 1;
        let ms = Timestamp::now().unix_nanos() / 1_000_000;
        let name = format!("part-{ms}-{}-{:04}.parquet", std::process::id(), self.seq);
        let tmp = dir.join(format!(".{name}.tmp"));
        let dest = dir.join(name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(self.cfg.mode)
            .open(&tmp)
            .map_err(|source| ParquetSinkError::Create { path: tmp.clone(), source })?;
        let writer = ArrowWriter::try_new(file, schema::schema(), Some(self.props.clone()))
            .map_err(|source| ParquetSinkError::Write { path: tmp.clone(), source })?;
        Ok(OpenFile { writer, tmp, dest, opened: Instant::now(), rows: 0 })
    }

    /// Writes the footer, fsyncs, renames into place, fsyncs the directory.
    fn close_file(f: OpenFile) -> Result<u64, ParquetSinkError> {
        let OpenFile { mut writer, tmp, dest, rows, .. } = f;
        let finish = |e: io::Error| ParquetSinkError::Finish { path: tmp.clone(), source: e };
        writer.finish().map_err(|source| ParquetSinkError::Write { path: tmp.clone(), source })?;
        writer.inner().sync_all().map_err(finish)?;
        drop(writer);
        std::fs::rename(&tmp, &dest).map_err(finish)?;
        if let Some(dir) = dest.parent() {
            File::open(dir).and_then(|d| d.sync_all()).map_err(finish)?;
        }
        tracing::debug!(file = %dest.display(), rows, "parquet file complete");
        Ok(rows)
    }

    /// Gives up a file that failed: removes it and counts the rows it held as failed.
    fn abandon(&self, f: OpenFile, why: &str) {
        let _ = std::fs::remove_file(&f.tmp);
        if f.rows > 0 {
            metrics::counter!(names::SINK_EVENTS, "sink" => "parquet", "outcome" => "failed").increment(f.rows);
            tracing::error!(file = %f.tmp.display(), rows = f.rows, error = why,
                "parquet sink: file abandoned; the rows it held are lost");
        }
    }

    /// Completes a file; if that fails, removes it and counts its rows as failed.
    fn complete(f: OpenFile) -> Result<(), ParquetSinkError> {
        let (tmp, rows) = (f.tmp.clone(), f.rows);
        Self::close_file(f).map(|_| ()).inspect_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            metrics::counter!(names::SINK_EVENTS, "sink" => "parquet", "outcome" => "failed").increment(rows);
            tracing::error!(file = %tmp.display(), rows, error = %e,
                "parquet sink: cannot complete a file; the rows it held are lost");
        })
    }

    /// Closes files that reached their age (or all of them).
    fn close_aged(&mut self, all: bool) -> Result<(), ParquetSinkError> {
        let max_age = Duration::from_secs(self.cfg.max_file_age_secs);
        let due: Vec<String> =
            self.open.iter().filter(|(_, f)| all || f.opened.elapsed() >= max_age).map(|(k, _)| k.clone()).collect();
        let mut first_err = None;
        for k in due {
            if let Some(f) = self.open.remove(&k) {
                if let Err(e) = Self::complete(f) {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn write_partition(&mut self, partition: &str, events: &[&Event]) -> Result<(), ParquetSinkError> {
        let batch = schema::to_record_batch(events.iter().copied())?;
        if !self.open.contains_key(partition) {
            if self.open.len() >= MAX_OPEN_FILES {
                let oldest = self.open.iter().min_by_key(|(_, f)| f.opened).map(|(k, _)| k.clone());
                if let Some(f) = oldest.and_then(|k| self.open.remove(&k)) {
                    Self::complete(f)?;
                }
            }
            let f = self.open_file(partition)?;
            self.open.insert(partition.to_owned(), f);
        }
        let Some(f) = self.open.get_mut(partition) else { return Ok(()) };
        if let Err(source) = f.writer.write(&batch) {
            let err = ParquetSinkError::Write { path: f.tmp.clone(), source };
            if let Some(f) = self.open.remove(partition) {
                self.abandon(f, &err.to_string());
            }
            return Err(err);
        }
        f.rows += events.len() as u64;
        if (f.writer.bytes_written() + f.writer.in_progress_size()) as u64 >= self.cfg.max_file_size.0 {
            if let Some(f) = self.open.remove(partition) {
                Self::complete(f)?;
            }
        }
        Ok(())
    }

    fn write_batch(&mut self, batch: &[Arc<Event>]) -> Result<(), ParquetSinkError> {
        self.close_aged(false)?;
        // Group by partition, keeping the order of events within each.
        let mut groups: BTreeMap<String, Vec<&Event>> = BTreeMap::new();
        for e in batch {
            groups.entry(partition_of(e.time.unwrap_or_else(Timestamp::now))).or_default().push(e);
        }
        for (p, events) in groups {
            self.write_partition(&p, &events)?;
        }
        Ok(())
    }
}

/// `dt=YYYY-MM-DD/hour=HH` of a time (UTC).
pub fn partition_of(t: Timestamp) -> String {
    let nanos = t.unix_nanos();
    let secs = i64::try_from(nanos.div_euclid(1_000_000_000)).unwrap_or(0);
    match chrono::DateTime::from_timestamp(secs, 0) {
        Some(dt) => dt.format("dt=%Y-%m-%d/hour=%H").to_string(),
        None => "dt=1970-01-01/hour=00".to_owned(),
    }
}

/// Removes `.*.parquet.tmp` files under `root` (two partition levels deep); returns them.
fn remove_partial_files(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: u32, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for entry in rd.flatten() {
            let p = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if is_dir && depth < 2 {
                walk(&p, depth + 1, out);
            } else if !is_dir && name.starts_with(".part-") && name.ends_with(".parquet.tmp") {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                match std::fs::remove_file(&p) {
                    Ok(()) => {
                        tracing::warn!(file = %p.display(), bytes = size,
                            "parquet sink: removed a partial file left by an unclean stop; its rows were lost");
                        pipeline::metrics::count_stage_drop("sink_parquet", "partial_file", 1);
                        out.push(p);
                    }
                    Err(e) => {
                        tracing::error!(file = %p.display(), error = %e, "parquet sink: cannot remove a partial file")
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(root, 0, &mut out);
    out
}

#[async_trait]
impl Sink for ParquetSink {
    fn name(&self) -> &'static str {
        "parquet"
    }

    async fn send(&mut self, batch: &[Arc<Event>]) -> SendOutcome {
        match self.write_batch(batch) {
            Ok(()) => {
                self.last_error = None;
                SendOutcome::Delivered
            }
            Err(e) => {
                let msg = e.to_string();
                self.last_error = Some(msg.clone());
                match (self.cfg.on_error, &e) {
                    (_, ParquetSinkError::Encode(_) | ParquetSinkError::Config(_)) | (OnError::Drop, _) => {
                        SendOutcome::Fatal(msg)
                    }
                    (OnError::Retry, _) => SendOutcome::Retryable(msg),
                }
            }
        }
    }

    /// Closes every open file, so everything sent so far is in complete, visible files.
    async fn flush(&mut self) -> Result<(), String> {
        self.close_aged(true).map_err(|e| e.to_string())
    }

    fn health(&self) -> Health {
        match &self.last_error {
            None => Health::Healthy,
            Some(e) => Health::Degraded(e.clone()),
        }
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(Duration::from_secs(self.cfg.max_file_age_secs.clamp(1, 10)))
    }

    async fn tick(&mut self) -> Result<(), String> {
        self.close_aged(false).map_err(|e| e.to_string())
    }
}
