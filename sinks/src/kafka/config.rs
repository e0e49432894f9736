//! `sinks.kafka`: what the user writes.
use std::{collections::BTreeMap, path::PathBuf};

use pipeline::fanout::QueueConfig;
use serde::{Deserialize, Serialize};

use crate::{driver::BatchConfig, retry::RequestConfig, secret::SecretSource};

/// What the message key is taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyField {
    /// The event's node name (all events of a node in one partition, in order).
    NodeName,
    /// `namespace/pod` of the process (node name when it has no pod).
    NamespacePod,
    /// The process's exec_id (node name when it has none).
    ExecId,
    /// No key (round-robin/sticky partitioning).
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSecurity {
    /// plaintext | ssl | sasl_plaintext | sasl_ssl (ssl needs the `kafka-tls` build feature).
    pub protocol: String,
    /// PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512 (SCRAM needs the `kafka-tls` build feature).
    pub sasl_mechanism: String,
    pub sasl_username: String,
    pub sasl_password: SecretSource,
    /// PEM CA file for ssl / sasl_ssl ("": system roots). Verification is always on
    /// unless `options` says otherwise.
    pub ca_file: PathBuf,
}

impl Default for KafkaSecurity {
    fn default() -> Self {
        KafkaSecurity {
            protocol: "plaintext".into(),
            sasl_mechanism: "PLAIN".into(),
            sasl_username: String::new(),
            sasl_password: SecretSource::default(),
            ca_file: PathBuf::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    pub enabled: bool,
    /// bootstrap.servers: host:port[,host:port...]
    pub brokers: String,
    /// Topic; `{type}` is replaced by the event type (process_exec, process_kprobe, ...).
    pub topic: String,
    pub key: KeyField,
    /// Add headers event_type, node_name and (when present) policy_name.
    pub headers: bool,
    /// acks: all | 1 | 0 (idempotence needs all).
    pub acks: String,
    pub idempotence: bool,
    /// none | gzip | snappy | lz4 | zstd
    pub compression: String,
    pub linger_ms: u64,
    /// Most bytes in one produce batch per partition.
    pub batch_size: u64,
    /// How long librdkafka keeps retrying a message before its delivery report fails
    /// (then the sink's own retries start, see `request`).
    pub message_timeout_ms: u64,
    pub security: KafkaSecurity,
    /// Any other librdkafka producer property, passed through as is (wins over the above).
    pub options: BTreeMap<String, String>,
    /// concurrency: messages awaiting their delivery report at once; timeout_ms: longest
    /// wait for one report (must exceed message_timeout_ms); retries after a failed report.
    pub request: RequestConfig,
    pub queue: QueueConfig,
    pub batch: BatchConfig,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            enabled: false,
            brokers: "127.0.0.1:9092".into(),
            topic: "nightjar".into(),
            key: KeyField::NodeName,
            headers: true,
            acks: "all".into(),
            idempotence: true,
            compression: "zstd".into(),
            linger_ms: 5,
            batch_size: 1_000_000,
            message_timeout_ms: 300_000,
            security: KafkaSecurity::default(),
            options: BTreeMap::new(),
            request: RequestConfig { concurrency: 100_000, timeout_ms: 330_000, ..RequestConfig::default() },
            queue: QueueConfig::default(),
            batch: BatchConfig { max_events: 4000, max_bytes: 0, max_age_ms: 100, max_retries: 5 },
        }
    }
}
