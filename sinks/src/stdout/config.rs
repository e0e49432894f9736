use pipeline::fanout::QueuePolicy;
use serde::{Deserialize, Serialize};

use crate::{buffer::BufferConfig, driver::BatchConfig, retry::RetryConfig};

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
    /// Memory, dropping (counted) when full by default: a terminal or pipe that stops
    /// reading never holds up the other sinks.
    pub buffer: BufferConfig,
    pub batch: BatchConfig,
    pub retry: RetryConfig,
    /// Degraded in `/healthz` and `nightjar status` when nothing was delivered for this long.
    #[serde(deserialize_with = "crate::bounds::secs")]
    pub health_timeout_secs: u64,
}

impl Default for StdoutConfig {
    fn default() -> Self {
        StdoutConfig {
            enabled: true,
            format: StdoutFormat::Compact,
            buffer: BufferConfig::memory(10_000, QueuePolicy::DropNewest),
            batch: BatchConfig::default(),
            retry: RetryConfig::default(),
            health_timeout_secs: 10,
        }
    }
}

crate::sink_config!(StdoutConfig, "stdout", |c| Ok(Box::new(crate::blocking::OffThread::new(
    "stdout",
    super::StdoutSink::new(c),
    None
))));
