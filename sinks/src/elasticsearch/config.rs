//! `sinks.elasticsearch`: what the user writes.
use std::path::PathBuf;

use pipeline::fanout::QueueConfig;
use serde::{Deserialize, Serialize};

use crate::{driver::BatchConfig, retry::RequestConfig, secret::SecretSource};

/// Shape of the documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocSchema {
    /// Tetragon's export JSON as is (plus `@timestamp` in a data stream).
    Tetragon,
    /// An Elastic Common Schema view: event.*, process.*, user.*, host.*, container.*, orchestrator.*.
    Ecs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    None,
    /// `Authorization: Basic` with `user` and the secret as password.
    Basic,
    /// `Authorization: ApiKey` with the secret (the encoded `id:api_key`).
    ApiKey,
    /// `Authorization: Bearer` with the secret as token.
    Bearer,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub kind: AuthKind,
    pub user: String,
    pub secret: SecretSource,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig { kind: AuthKind::None, user: String::new(), secret: SecretSource::default() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file of the CA(s) that signed the server's certificate ("": system roots).
    pub ca_file: PathBuf,
    /// Verify the server's certificate and name. Turning it off is logged as a warning.
    pub verify: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig { ca_file: PathBuf::new(), verify: true }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ElasticsearchConfig {
    pub enabled: bool,
    /// Base URL: http://host:9200 or https://...
    pub endpoint: String,
    /// Index name; strftime fields of the event's time (UTC): %Y %m %d %H.
    pub index: String,
    /// When not empty, write to this data stream instead (`create`, `@timestamp` added).
    pub data_stream: String,
    pub schema: DocSchema,
    /// Install (overwrite) the index template at start.
    pub install_template: bool,
    pub template_name: String,
    /// gzip request bodies.
    pub gzip: bool,
    /// Most documents in one `_bulk` request (a driver batch is split into requests
    /// sent concurrently, up to `request.concurrency`).
    pub bulk_max_events: usize,
    /// Most bytes (uncompressed NDJSON) in one `_bulk` request.
    pub bulk_max_bytes: usize,
    /// Documents the server refuses for good (400 mapping errors) are appended here,
    /// one JSON line each with the server's reason.
    pub dead_letter_path: PathBuf,
    pub auth: AuthConfig,
    pub tls: TlsConfig,
    pub request: RequestConfig,
    pub queue: QueueConfig,
    pub batch: BatchConfig,
}

impl Default for ElasticsearchConfig {
    fn default() -> Self {
        ElasticsearchConfig {
            enabled: false,
            endpoint: "http://127.0.0.1:9200".into(),
            index: "nightjar-%Y.%m.%d".into(),
            data_stream: String::new(),
            schema: DocSchema::Tetragon,
            install_template: true,
            template_name: "nightjar".into(),
            gzip: true,
            bulk_max_events: 1000,
            bulk_max_bytes: 5 << 20,
            dead_letter_path: PathBuf::from("/var/log/nightjar/elasticsearch-dead-letter.log"),
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
            request: RequestConfig::default(),
            queue: QueueConfig::default(),
            batch: BatchConfig { max_events: 4000, max_bytes: 0, max_age_ms: 1000, max_retries: 5 },
        }
    }
}
