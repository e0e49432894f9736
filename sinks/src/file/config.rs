use std::path::PathBuf;

use pipeline::config::ByteSize;
use serde::{Deserialize, Serialize};

use crate::{buffer::BufferConfig, driver::BatchConfig, retry::RetryConfig};

/// When the file sink asks the kernel to put written data on disk (`fdatasync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// Never (the kernel writes back on its own; a SIGKILL loses nothing, a power cut may).
    Never,
    /// After every batch: slowest, nothing acknowledged is lost on a power cut.
    Batch,
    /// At most every `fsync_interval_ms`, when a batch is written or the sink is idle.
    Interval,
}

/// What a failed write (disk full, permission denied, directory gone) does with the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Retry the batch with backoff (`retry`), until it is written unless
    /// `retry.max_retries` says otherwise; the buffer holds what comes meanwhile.
    Retry,
    /// Count the batch failed at once and go on with the next one.
    Drop,
}

/// `sinks.file` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub enabled: bool,
    pub path: PathBuf,
    /// Rotate when the file would grow past this size (0: never).
    #[serde(deserialize_with = "crate::bounds::file_size")]
    pub max_size: ByteSize,
    /// Rotate when the file is older than this many seconds (0: never); checked when a
    /// batch is written, so an idle sink does not make empty files.
    #[serde(deserialize_with = "crate::bounds::secs")]
    pub rotate_interval_secs: u64,
    /// Rotated files kept (`nightjar.log.1[.gz]` … `.N`); 0 keeps none.
    #[serde(deserialize_with = "backups")]
    pub max_backups: u32,
    /// Gzip rotated files (`nightjar.log.1.gz`), in the background.
    pub compress: bool,
    /// Permission bits of a new file (and of its backups).
    #[serde(deserialize_with = "crate::bounds::mode")]
    pub mode: u32,
    pub fsync: FsyncPolicy,
    /// Period of `fsync: interval`, milliseconds.
    #[serde(deserialize_with = "crate::bounds::millis")]
    pub fsync_interval_ms: u64,
    /// Close and reopen the file on SIGHUP, after an external logrotate moved it away.
    pub reopen_on_sighup: bool,
    pub on_error: OnError,
    pub buffer: BufferConfig,
    pub batch: BatchConfig,
    pub retry: RetryConfig,
    /// Degraded in `/healthz` and `nightjar status` when nothing was delivered for this long.
    #[serde(deserialize_with = "crate::bounds::secs")]
    pub health_timeout_secs: u64,
}

fn backups<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let v = crate::bounds::count(d)?;
    if v > 1000 {
        return Err(serde::de::Error::custom(format!("{v} is out of range: expected 0 to 1000 backups")));
    }
    Ok(v)
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            enabled: true,
            path: PathBuf::from("/var/log/nightjar/nightjar.log"),
            max_size: ByteSize(100 << 20),
            rotate_interval_secs: 0,
            max_backups: 5,
            compress: true,
            mode: 0o600,
            fsync: FsyncPolicy::Interval,
            fsync_interval_ms: 1000,
            reopen_on_sighup: true,
            on_error: OnError::Retry,
            buffer: BufferConfig::default(),
            batch: BatchConfig::default(),
            retry: RetryConfig::default(),
            health_timeout_secs: 10,
        }
    }
}

crate::sink_config!(FileConfig, "file", |c| {
    let s = super::FileSink::new(c)?;
    let tick = s.tick_interval();
    Ok(Box::new(crate::blocking::OffThread::new("file", s, Some(tick))))
});
