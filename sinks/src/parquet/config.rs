use std::path::PathBuf;

use pipeline::{config::ByteSize, fanout::QueueConfig};
use serde::{Deserialize, Serialize};

use crate::{driver::BatchConfig, file::OnError};

/// `sinks.parquet` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParquetConfig {
    pub enabled: bool,
    /// Root directory of the Hive-partitioned dataset (`dt=YYYY-MM-DD/hour=HH/*.parquet`).
    pub path: PathBuf,
    /// Most rows in one row group.
    pub row_group_rows: usize,
    /// A row group is closed when its encoded size reaches this (it is held in memory
    /// until then, once per open file).
    pub row_group_max_bytes: ByteSize,
    /// A file is closed (and becomes visible) when it reaches this size...
    pub max_file_size: ByteSize,
    /// ...or this age, in seconds, whichever comes first.
    pub max_file_age_secs: u64,
    /// zstd level, 1 (fast) to 22 (small).
    pub zstd_level: i32,
    /// Permission bits of the files.
    pub mode: u32,
    pub on_error: OnError,
    pub queue: QueueConfig,
    pub batch: BatchConfig,
}

impl Default for ParquetConfig {
    fn default() -> Self {
        ParquetConfig {
            enabled: false,
            path: PathBuf::from("/var/lib/nightjar/parquet"),
            row_group_rows: 10_000,
            row_group_max_bytes: ByteSize(16 << 20),
            max_file_size: ByteSize(128 << 20),
            max_file_age_secs: 300,
            zstd_level: 3,
            mode: 0o600,
            on_error: OnError::Retry,
            queue: QueueConfig::default(),
            batch: BatchConfig { max_events: 2048, max_bytes: 0, max_age_ms: 1000, max_retries: 5 },
        }
    }
}
