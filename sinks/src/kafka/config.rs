//! `sinks.kafka`: what the user writes.
use std::{collections::BTreeMap, path::PathBuf};

use serde::{Deserialize, Serialize};

use crate::{
    buffer::BufferConfig,
    driver::BatchConfig,
    retry::{RequestConfig, RetryConfig},
    secret::SecretSource,
};

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
    #[serde(deserialize_with = "crate::bounds::millis")]
    pub linger_ms: u64,
    /// Most bytes in one produce batch per partition.
    #[serde(deserialize_with = "batch_size")]
    pub batch_size: u64,
    /// How long librdkafka keeps retrying a message before its delivery report fails
    /// (then the sink's own retries start, see `request`).
    #[serde(deserialize_with = "crate::bounds::millis")]
    pub message_timeout_ms: u64,
    pub security: KafkaSecurity,
    /// Any other librdkafka producer property, passed through as is (wins over the above).
    pub options: BTreeMap<String, String>,
    /// concurrency: messages awaiting their delivery report at once; timeout_ms: longest
    /// wait for one report (must exceed message_timeout_ms).
    pub request: RequestConfig,
    pub buffer: BufferConfig,
    pub batch: BatchConfig,
    pub retry: RetryConfig,
    /// Degraded in `/healthz` and `nightjar status` when nothing was delivered for this long.
    #[serde(deserialize_with = "crate::bounds::secs")]
    pub health_timeout_secs: u64,
}

fn batch_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    crate::bounds::memory_bytes(d).map(|v| v as u64)
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
            request: RequestConfig { concurrency: 100_000, timeout_ms: 330_000 },
            buffer: BufferConfig::disk_default(),
            batch: BatchConfig { max_events: 4000, max_bytes: 0, max_age_ms: 100 },
            retry: RetryConfig::default(),
            health_timeout_secs: 10,
        }
    }
}

impl crate::Check for KafkaConfig {
    /// What librdkafka and the sink would refuse at start: checked with the config.
    fn check(&self) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        // A secret file is mounted where the agent runs, maybe not where the config is
        // checked: only a missing environment variable is a config error here.
        let pw = &self.security.sasl_password;
        if self.security.protocol.starts_with("sasl") && !pw.env.is_empty() && std::env::var_os(&pw.env).is_none() {
            return Err(format!("security.sasl_password: environment variable {} is not set", pw.env));
        }
        super::check_config(self).map_err(|e| e.to_string().trim_start_matches("sink kafka: ").to_owned())
    }
}

crate::sink_config!(KafkaConfig, "kafka", |c| Ok(Box::new(super::build(c)?)));
