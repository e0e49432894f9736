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
//! Rows handed to the sink are in memory until their file closes, and count as delivered
//! (and leave the sink's buffer) only then: every open file is closed at once when one is
//! due, so rows settle in the order they came. `max_file_age_secs` bounds how long that
//! takes, `row_group_max_bytes` × open files bounds memory.
pub mod config;
pub mod encoder;
pub mod service;
pub mod sink;
#[cfg(test)]
mod tests;

use std::{io, path::PathBuf};

pub use config::ParquetConfig;
pub use service::partition_of;
pub use sink::ParquetSink;

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
