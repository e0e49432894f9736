//! Owns: the `Sink` trait and every sink (one folder each: stdout, rotated JSON file,
//! Parquet), and the driver that batches a sink's queue and retries its sends.
//! Must not know about: the sensor, BPF, or how events were produced.

pub mod driver;
pub mod elasticsearch;
pub mod file;
pub mod kafka;
pub mod parquet;
pub mod retry;
pub mod secret;
pub mod stdout;
#[cfg(test)]
mod test_servers;
#[cfg(test)]
mod test_util;

use std::sync::Arc;

use async_trait::async_trait;
use pipeline::Event;

/// What a send achieved.
#[derive(Debug)]
pub enum SendOutcome {
    /// Every event of the batch is delivered.
    Delivered,
    /// Nothing was delivered, and trying again may work (connection refused, disk full).
    Retryable(String),
    /// Nothing was delivered, and trying again will not help.
    Fatal(String),
    /// The sink is done with the batch, item by item (Elasticsearch `_bulk` item errors,
    /// Kafka delivery reports): it retried what it could itself; the driver does not retry.
    Partial {
        delivered: u64,
        /// Items that can never succeed, written to the sink's dead-letter file.
        dead_lettered: u64,
        /// Items neither delivered nor dead-lettered (retries exhausted, dead-letter write failed).
        failed: u64,
    },
}

/// Health as `nightjar status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Health {
    Healthy,
    Degraded(String),
}

/// A destination for events.
#[async_trait]
pub trait Sink: Send {
    /// Name used in metrics labels and logs (`stdout`, `file`, ...).
    fn name(&self) -> &'static str;
    /// Sends one batch.
    async fn send(&mut self, batch: &[Arc<Event>]) -> SendOutcome;
    /// Makes everything sent so far durable/visible.
    async fn flush(&mut self) -> Result<(), String>;
    fn health(&self) -> Health;
    /// How often the driver calls [`Sink::tick`] while the sink waits for events (None:
    /// never). For housekeeping that must not wait for the next batch: periodic fsync,
    /// closing files that reached their age, reopening after SIGHUP.
    fn tick_interval(&self) -> Option<std::time::Duration> {
        None
    }
    /// Periodic housekeeping; an error is logged and reflected in `health`.
    async fn tick(&mut self) -> Result<(), String> {
        Ok(())
    }
}

use pipeline::fanout::QueueConfig;
use serde::{Deserialize, Serialize};

/// `sinks:` section: one key per sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SinksConfig {
    pub stdout: stdout::StdoutConfig,
    pub file: file::FileConfig,
    pub parquet: parquet::ParquetConfig,
    pub elasticsearch: elasticsearch::ElasticsearchConfig,
    pub kafka: kafka::KafkaConfig,
}

/// A sink's health shared with `nightjar status` while the sink runs in its driver.
pub type HealthHandle = std::sync::Arc<std::sync::Mutex<Health>>;

/// A sink built from config, with its queue and batch settings.
pub struct BuiltSink {
    pub sink: Box<dyn Sink>,
    /// Live health (remote sinks); None: the sink reports through its metrics only.
    pub health: Option<HealthHandle>,
    pub queue: QueueConfig,
    pub batch: driver::BatchConfig,
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
}

/// Builds the enabled remote sinks (Elasticsearch, Kafka): each checks its server at
/// start, concurrently. A sink that cannot start is an error naming it and the cause;
/// the others are unaffected.
pub async fn build_remote(cfg: &SinksConfig) -> Vec<(&'static str, Result<BuiltSink, BuildError>)> {
    let es = async {
        if !cfg.elasticsearch.enabled {
            return None;
        }
        Some(elasticsearch::start(&cfg.elasticsearch).await.map_err(BuildError::from).map(|s| BuiltSink {
            health: Some(s.health_handle()),
            sink: Box::new(s) as Box<dyn Sink>,
            queue: cfg.elasticsearch.queue.clone(),
            batch: cfg.elasticsearch.batch.clone(),
        }))
    };
    let kafka = async {
        if !cfg.kafka.enabled {
            return None;
        }
        Some(kafka::start(&cfg.kafka).await.map_err(BuildError::from).map(|s| BuiltSink {
            health: Some(s.health_handle()),
            sink: Box::new(s) as Box<dyn Sink>,
            queue: cfg.kafka.queue.clone(),
            batch: cfg.kafka.batch.clone(),
        }))
    };
    let (es, kafka) = tokio::join!(es, kafka);
    let mut out = Vec::new();
    out.extend(es.map(|r| ("elasticsearch", r)));
    out.extend(kafka.map(|r| ("kafka", r)));
    out
}

/// Builds every enabled sink. A sink that cannot start is an error naming it.
pub fn build_all(cfg: &SinksConfig) -> Vec<(&'static str, Result<BuiltSink, BuildError>)> {
    let mut out = Vec::new();
    if cfg.stdout.enabled {
        out.push((
            "stdout",
            Ok(BuiltSink {
                sink: Box::new(stdout::StdoutSink::new(&cfg.stdout)) as Box<dyn Sink>,
                health: None,
                queue: cfg.stdout.queue.clone(),
                batch: cfg.stdout.batch.clone(),
            }),
        ));
    }
    if cfg.file.enabled {
        out.push((
            "file",
            file::FileSink::new(&cfg.file).map_err(BuildError::from).map(|s| BuiltSink {
                sink: Box::new(s) as Box<dyn Sink>,
                health: None,
                queue: cfg.file.queue.clone(),
                batch: cfg.file.batch.clone(),
            }),
        ));
    }
    if cfg.parquet.enabled {
        out.push((
            "parquet",
            parquet::ParquetSink::new(&cfg.parquet).map_err(BuildError::from).map(|s| BuiltSink {
                sink: Box::new(s) as Box<dyn Sink>,
                health: None,
                queue: cfg.parquet.queue.clone(),
                batch: cfg.parquet.batch.clone(),
            }),
        ));
    }
    out
}
