//! The Parquet sink: events grouped by partition into open files; rows are held
//! ([`SendOutcome::Held`]) until their file is visible, then settled together.
use std::{
    collections::BTreeMap,
    fs::OpenOptions,
    os::unix::fs::OpenOptionsExt,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use parquet::{
    arrow::ArrowWriter,
    basic::{Compression, ZstdLevel},
    file::properties::WriterProperties,
};
use pipeline::{metrics::names, time::Timestamp, Event};

use super::{
    config::ParquetConfig,
    encoder as schema,
    service::{close_file, partition_of, remove_partial_files, OpenFile},
    ParquetSinkError,
};
use crate::{blocking::BlockingSink, file::OnError, SendOutcome};

/// Most files open at once (one per partition receiving events; late events for an older
/// hour open a second). Past it, every file is closed.
const MAX_OPEN_FILES: usize = 4;

pub struct ParquetSink {
    cfg: ParquetConfig,
    props: WriterProperties,
    /// Open files by partition (`dt=…/hour=…`).
    open: BTreeMap<String, OpenFile>,
    seq: u64,
    /// Rows taken (sent) but not yet in a visible file.
    held: u64,
    /// Rows settled since the last [`BlockingSink::settle`]: (visible, lost).
    settled: Option<(u64, u64)>,
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
        Ok(ParquetSink { cfg: cfg.clone(), props, open: BTreeMap::new(), seq: 0, held: 0, settled: None, recovered })
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

    #[cfg(test)]
    pub(super) fn open_files(&mut self) -> impl Iterator<Item = &mut OpenFile> {
        self.open.values_mut()
    }

    /// Closes every open file; the held rows are settled: visible, or lost (counted) for
    /// a file that could not be completed.
    fn close_all(&mut self) -> Result<(), ParquetSinkError> {
        let mut first_err = None;
        let mut lost = 0;
        for (_, f) in std::mem::take(&mut self.open) {
            let (tmp, rows) = (f.tmp.clone(), f.rows);
            if let Err(e) = close_file(f) {
                let _ = std::fs::remove_file(&tmp);
                tracing::error!(file = %tmp.display(), rows, error = %e,
                    "parquet sink: cannot complete a file; the rows it held are lost");
                lost += rows;
                first_err.get_or_insert(e);
            }
        }
        let held = std::mem::take(&mut self.held);
        let (v, l) = self.settled.unwrap_or((0, 0));
        self.settled = Some((v + held.saturating_sub(lost), l + lost.min(held)));
        first_err.map_or(Ok(()), Err)
    }

    /// Closes all files when one is due (age, or `all`).
    fn close_due(&mut self, all: bool) -> Result<(), ParquetSinkError> {
        let max_age = Duration::from_secs(self.cfg.max_file_age_secs);
        if all || self.open.values().any(|f| f.opened.elapsed() >= max_age) {
            return self.close_all();
        }
        Ok(())
    }

    fn write_partition(&mut self, partition: &str, events: &[&Event]) -> Result<bool, ParquetSinkError> {
        let batch = schema::to_record_batch(events.iter().copied())?;
        if !self.open.contains_key(partition) {
            if self.open.len() >= MAX_OPEN_FILES {
                self.close_all()?;
            }
            let f = self.open_file(partition)?;
            self.open.insert(partition.to_owned(), f);
        }
        let Some(f) = self.open.get_mut(partition) else { return Ok(false) };
        if let Err(source) = f.writer.write(&batch) {
            return Err(ParquetSinkError::Write { path: f.tmp.clone(), source });
        }
        f.rows += events.len() as u64;
        self.held += events.len() as u64;
        Ok((f.writer.bytes_written() + f.writer.in_progress_size()) as u64 >= self.cfg.max_file_size.0)
    }

    fn write_batch(&mut self, batch: &[Arc<Event>]) -> Result<(), ParquetSinkError> {
        self.close_due(false)?;
        // Group by partition, keeping the order of events within each.
        let mut groups: BTreeMap<String, Vec<&Event>> = BTreeMap::new();
        for e in batch {
            groups.entry(partition_of(e.time.unwrap_or_else(Timestamp::now))).or_default().push(e);
        }
        let mut full = false;
        for (p, events) in groups {
            full |= self.write_partition(&p, &events)?;
        }
        if full {
            self.close_all()?;
        }
        Ok(())
    }

    /// A write failed: the open files cannot be trusted; drop them and count their rows lost.
    fn abandon_all(&mut self, why: &str) {
        let mut lost = 0;
        for (_, f) in std::mem::take(&mut self.open) {
            let _ = std::fs::remove_file(&f.tmp);
            lost += f.rows;
        }
        if lost > 0 {
            tracing::error!(
                rows = lost,
                error = why,
                "parquet sink: open files abandoned; the rows they held are lost"
            );
            metrics::counter!(names::STAGE_DROPPED, "stage" => "sink_parquet", "reason" => "file_abandoned")
                .increment(lost);
        }
        let held = std::mem::take(&mut self.held);
        let (v, l) = self.settled.unwrap_or((0, 0));
        self.settled = Some((v, l + held));
    }
}

impl BlockingSink for ParquetSink {
    fn send(&mut self, batch: &[Arc<Event>]) -> SendOutcome {
        match self.write_batch(batch) {
            Ok(()) => SendOutcome::Held,
            Err(e) => {
                let msg = e.to_string();
                self.abandon_all(&msg);
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
    fn flush(&mut self) -> Result<(), String> {
        self.close_due(true).map_err(|e| e.to_string())
    }

    fn tick(&mut self) -> Result<(), String> {
        self.close_due(false).map_err(|e| e.to_string())
    }

    fn settle(&mut self) -> Option<(u64, u64)> {
        self.settled.take()
    }
}
