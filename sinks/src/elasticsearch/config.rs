//! `sinks.elasticsearch`: what the user writes.
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

use crate::{
    buffer::BufferConfig,
    driver::BatchConfig,
    retry::{RequestConfig, RetryConfig},
    secret::SecretSource,
};

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
    #[serde(deserialize_with = "endpoint")]
    pub endpoint: String,
    /// Index name; strftime fields of the event's time (UTC): %Y %m %d %H.
    #[serde(deserialize_with = "index")]
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
    #[serde(deserialize_with = "crate::bounds::batch_events")]
    pub bulk_max_events: usize,
    /// Most bytes (uncompressed NDJSON) in one `_bulk` request.
    #[serde(deserialize_with = "crate::bounds::memory_bytes")]
    pub bulk_max_bytes: usize,
    /// Documents the server refuses for good (400 mapping errors) are appended here,
    /// one JSON line each with the server's reason.
    pub dead_letter_path: PathBuf,
    pub auth: AuthConfig,
    pub tls: TlsConfig,
    pub request: RequestConfig,
    pub buffer: BufferConfig,
    pub batch: BatchConfig,
    pub retry: RetryConfig,
    /// Degraded in `/healthz` and `nightjar status` when nothing was delivered for this long.
    #[serde(deserialize_with = "crate::bounds::secs")]
    pub health_timeout_secs: u64,
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
            buffer: BufferConfig::disk_default(),
            batch: BatchConfig { max_events: 4000, max_bytes: 0, max_age_ms: 1000 },
            retry: RetryConfig::default(),
            health_timeout_secs: 10,
        }
    }
}

/// Checks an endpoint is an http(s) URL with a host.
pub fn validate_endpoint(s: &str) -> Result<(), String> {
    match reqwest::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
        Ok(u) => Err(format!("endpoint {s:?} is not an http:// or https:// URL with a host (scheme {:?})", u.scheme())),
        Err(e) => Err(format!("endpoint {s:?} is not a URL ({e}): expected e.g. http://127.0.0.1:9200")),
    }
}

fn endpoint<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    validate_endpoint(&s).map_err(serde::de::Error::custom)?;
    Ok(s)
}

fn index<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    super::encoder::validate_index(&s).map_err(serde::de::Error::custom)?;
    Ok(s)
}

impl crate::Check for ElasticsearchConfig {
    /// A credential's environment variable that is not set is a configuration error, found
    /// with the config (a secret file is mounted where the agent runs: read at start).
    fn check(&self) -> Result<(), String> {
        let s = &self.auth.secret;
        if !self.enabled || self.auth.kind == AuthKind::None || s.env.is_empty() {
            return Ok(());
        }
        s.load("auth.secret").map(|_| ()).map_err(|e| e.to_string())
    }
}

crate::sink_config!(ElasticsearchConfig, "elasticsearch", |c| Ok(Box::new(super::build(c)?)));
