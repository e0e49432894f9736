//! Owns: the `Sink` trait and every sink (one folder each: stdout, rotated JSON file,
//! Parquet, Elasticsearch, Kafka), their buffers (memory or disk) and the driver that
//! batches, sends, retries and acknowledges. Must not know about: the sensor, BPF, or how
//! events were produced.

/// Implements [`SinkConfig`] for a sink's config: every sink's has the keys `enabled`,
/// `buffer`, `batch`, `retry` and `health_timeout_secs` (its [`Delivery`]); what differs
/// is its name and how it builds (`|c| expr`, `c` the config).
macro_rules! sink_config {
    ($ty:ty, $name:literal, |$c:ident| $build:expr) => {
        impl $crate::SinkConfig for $ty {
            const NAME: &'static str = $name;
            fn enabled(&self) -> bool {
                self.enabled
            }
            fn delivery(&self) -> $crate::Delivery {
                $crate::Delivery {
                    buffer: self.buffer.clone(),
                    batch: self.batch.clone(),
                    retry: self.retry.clone(),
                    health_timeout_secs: self.health_timeout_secs,
                }
            }
            fn build(&self) -> Result<Box<dyn $crate::Sink>, $crate::BuildError> {
                let $c = self;
                $build
            }
        }
    };
}
pub(crate) use sink_config;

pub mod blocking;
pub mod bounds;
pub mod buffer;
pub mod driver;
pub mod elasticsearch;
pub mod file;
pub mod health;
pub mod kafka;
pub mod parquet;
pub mod retry;
pub mod run;
pub mod secret;
pub mod stdout;
/// Real servers on loopback for tests (`test-servers` feature: the end-to-end tests).
#[cfg(any(test, feature = "test-servers"))]
pub mod test_servers;
#[cfg(test)]
mod test_util;

use std::{path::PathBuf, sync::Arc};

use async_trait::async_trait;
pub use health::{Health, SinkHealth};
use pipeline::Event;
use serde::{Deserialize, Serialize};

/// What a send achieved.
#[derive(Debug)]
pub enum SendOutcome {
    /// Every event of the batch is delivered.
    Delivered,
    /// The sink took the batch but it is not durable or visible yet (Parquet rows in an
    /// open file): [`Sink::settle`] reports it later.
    Held,
    /// Nothing was delivered, and trying again may work (connection refused, disk full).
    Retryable(String),
    /// Nothing was delivered, and trying again will not help.
    Fatal(String),
    /// Item by item (Elasticsearch `_bulk` item errors): some delivered, some
    /// dead-lettered or failed for good, and the items at `retry` (indices into the batch)
    /// may work later; the driver retries those.
    Partial { delivered: u64, dead_lettered: u64, failed: u64, retry: Vec<usize>, error: String },
}

/// Why a sink could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// The server is not there yet (down, unreachable): retried; events are buffered.
    Retryable(String),
    /// The server refuses this configuration (bad credentials...): the sink is disabled.
    Config(String),
}

/// A destination for events.
#[async_trait]
pub trait Sink: Send {
    /// Name used in metrics labels and logs (`stdout`, `file`, ...).
    fn name(&self) -> &'static str;
    /// Checks the destination before the first send (Elasticsearch: the server answers,
    /// accepts the credentials, has the template; Kafka: the brokers answer).
    async fn start(&mut self) -> Result<(), StartError> {
        Ok(())
    }
    /// Sends one batch. Never retries: the driver does.
    async fn send(&mut self, batch: &[Arc<Event>]) -> SendOutcome;
    /// Makes everything sent so far durable/visible.
    async fn flush(&mut self) -> Result<(), String>;
    /// How often the driver calls [`Sink::tick`] while the sink waits for events (None:
    /// never). For housekeeping that must not wait for the next batch: periodic fsync,
    /// closing files that reached their age, reopening after SIGHUP.
    fn tick_interval(&self) -> Option<std::time::Duration> {
        None
    }
    /// Periodic housekeeping; an error is logged and shown in the sink's health.
    async fn tick(&mut self) -> Result<(), String> {
        Ok(())
    }
    /// When every batch it answered [`SendOutcome::Held`] is settled (made durable, or
    /// lost): how many of those events were delivered and how many failed.
    fn settle(&mut self) -> Option<(u64, u64)> {
        None
    }
}

/// How a sink's events travel: its buffer, batches, retries and health timeout.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub buffer: buffer::BufferConfig,
    pub batch: driver::BatchConfig,
    pub retry: retry::RetryConfig,
    pub health_timeout_secs: u64,
}

/// What every sink's config offers: whether it is on, its delivery settings, and how to
/// build the sink (no I/O beyond opening local files; servers are checked by
/// [`Sink::start`], so a server that is down does not disable its sink).
pub trait SinkConfig {
    const NAME: &'static str;
    fn enabled(&self) -> bool;
    fn delivery(&self) -> Delivery;
    fn build(&self) -> Result<Box<dyn Sink>, BuildError>;
}

/// Checks across a sink's keys (and what its libraries would refuse), run when the config
/// is read so that `config --check` and `run` report them the same way, located.
pub trait Check {
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

fn checked<'de, D: serde::Deserializer<'de>, T: Deserialize<'de> + Check>(d: D) -> Result<T, D::Error> {
    let v = T::deserialize(d)?;
    v.check().map_err(serde::de::Error::custom)?;
    Ok(v)
}

/// `sinks:` section: one key per sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinksConfig {
    /// Where disk buffers live: one directory per sink (`<data_dir>/elasticsearch/`...).
    pub data_dir: PathBuf,
    pub stdout: stdout::StdoutConfig,
    pub file: file::FileConfig,
    pub parquet: parquet::ParquetConfig,
    #[serde(deserialize_with = "checked")]
    pub elasticsearch: elasticsearch::ElasticsearchConfig,
    #[serde(deserialize_with = "checked")]
    pub kafka: kafka::KafkaConfig,
}

impl Default for SinksConfig {
    fn default() -> Self {
        SinksConfig {
            data_dir: PathBuf::from("/var/lib/nightjar/buffer"),
            stdout: Default::default(),
            file: Default::default(),
            parquet: Default::default(),
            elasticsearch: Default::default(),
            kafka: Default::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    File(#[from] file::FileSinkError),
    #[error(transparent)]
    Parquet(#[from] parquet::ParquetSinkError),
    #[error(transparent)]
    Elasticsearch(#[from] elasticsearch::EsStartError),
    #[error(transparent)]
    Kafka(#[from] kafka::KafkaStartError),
    #[error("sink {sink}: {source}")]
    Buffer { sink: &'static str, source: buffer::DiskError },
}

/// A sink built from its config, with its delivery settings.
pub struct Built {
    pub name: &'static str,
    pub sink: Result<Box<dyn Sink>, BuildError>,
    pub delivery: Delivery,
}

fn built<C: SinkConfig>(c: &C) -> Option<Built> {
    c.enabled().then(|| Built { name: C::NAME, sink: c.build(), delivery: c.delivery() })
}

/// Builds every enabled sink. A sink that cannot be built is an error naming it.
pub fn build_all(cfg: &SinksConfig) -> Vec<Built> {
    [built(&cfg.stdout), built(&cfg.file), built(&cfg.parquet), built(&cfg.elasticsearch), built(&cfg.kafka)]
        .into_iter()
        .flatten()
        .collect()
}
