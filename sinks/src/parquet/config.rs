use std::path::PathBuf;

use pipeline::config::ByteSize;
use serde::{Deserialize, Serialize};

use crate::{buffer::BufferConfig, driver::BatchConfig, file::OnError, retry::RetryConfig};

/// `sinks.parquet` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParquetConfig {
    pub enabled: bool,
    /// Root directory of the Hive-partitioned dataset (`dt=YYYY-MM-DD/hour=HH/*.parquet`).
    pub path: PathBuf,
    /// Most rows in one row group.
    #[serde(deserialize_with = "crate::bounds::batch_events")]
    pub row_group_rows: usize,
    /// A row group is closed when its encoded size reaches this (it is held in memory
    /// until then, once per open file).
    #[serde(deserialize_with = "crate::bounds::memory_size")]
    pub row_group_max_bytes: ByteSize,
    /// A file is closed (and becomes visible) when it reaches this size...
    #[serde(deserialize_with = "crate::bounds::disk_size")]
    pub max_file_size: ByteSize,
    /// ...or this age, in seconds, whichever comes first.
    #[serde(deserialize_with = "crate::bounds::secs")]
    pub max_file_age_secs: u64,
    /// zstd level, 1 (fast) to 22 (small).
    pub zstd_level: i32,
    /// Permission bits of the files.
    #[serde(deserialize_with = "crate::bounds::mode")]
    pub mode: u32,
    pub on_error: OnError,
    pub buffer: BufferConfig,
    pub batch: BatchConfig,
    pub retry: RetryConfig,
    /// Degraded in `/healthz` and `nightjar status` when nothing was delivered for this long.
    #[serde(deserialize_with = "crate::bounds::secs")]
    pub health_timeout_secs: u64,
}

crate::sink_config!(ParquetConfig, "parquet", |c| {
    let s = super::ParquetSink::new(c)?;
    let tick = std::time::Duration::from_secs(c.max_file_age_secs.clamp(1, 10));
    Ok(Box::new(crate::blocking::OffThread::new("parquet", s, Some(tick))))
});

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
            buffer: BufferConfig::default(),
            batch: BatchConfig { max_events: 2048, max_bytes: 0, max_age_ms: 1000 },
            retry: RetryConfig::default(),
            health_timeout_secs: 10,
        }
    }
}
