use std::path::PathBuf;

use pipeline::{config::ByteSize, fanout::QueueConfig};
use serde::{Deserialize, Serialize};

use crate::driver::BatchConfig;

/// `sinks.file` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub enabled: bool,
    pub path: PathBuf,
    /// Rotate when the file would grow past this size (0: never).
    pub max_size: ByteSize,
    /// Rotated files kept (`nightjar.log.1` … `.N`).
    pub max_backups: u32,
    /// Permission bits of a new file.
    pub mode: u32,
    pub queue: QueueConfig,
    pub batch: BatchConfig,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            enabled: true,
            path: PathBuf::from("/var/log/nightjar/nightjar.log"),
            max_size: ByteSize(100 << 20),
            max_backups: 5,
            mode: 0o600,
            queue: QueueConfig::default(),
            batch: BatchConfig::default(),
        }
    }
}
