use pipeline::fanout::QueueConfig;
use serde::{Deserialize, Serialize};

use crate::driver::BatchConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StdoutFormat {
    Json,
    Compact,
}

/// `sinks.stdout` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StdoutConfig {
    pub enabled: bool,
    pub format: StdoutFormat,
    pub queue: QueueConfig,
    pub batch: BatchConfig,
}

impl Default for StdoutConfig {
    fn default() -> Self {
        StdoutConfig {
            enabled: true,
            format: StdoutFormat::Compact,
            queue: QueueConfig::default(),
            batch: BatchConfig::default(),
        }
    }
}
