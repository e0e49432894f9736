//! Elasticsearch sink: `_bulk` NDJSON (gzip), deterministic `_id`s with `create`, per-item
//! retries and a dead-letter file, index template at start. Split as Vector's sinks:
//! config → encoder → request_builder → service (tower) → sink; health checks at start.
pub mod config;
pub mod encoder;
pub mod request_builder;
pub mod service;
pub mod sink;
pub mod template;

#[cfg(test)]
mod integration_tests;

use std::sync::{Arc, Mutex};

pub use config::{DocSchema, ElasticsearchConfig};
use reqwest::header::CONTENT_TYPE;
pub use sink::ElasticsearchSink;

use self::{
    encoder::Encoder,
    request_builder::RequestBuilder,
    service::{BulkService, ClientError, EsClient, EsError},
    sink::DeadLetter,
};
use crate::Health;

/// Why the sink could not start; the message names the cause (never a credential).
#[derive(Debug, thiserror::Error)]
pub enum EsStartError {
    #[error("sink elasticsearch: {0}")]
    Config(String),
    #[error("sink elasticsearch: {0}")]
    Client(#[from] ClientError),
    #[error("sink elasticsearch: {0}")]
    Unreachable(EsError),
    #[error("sink elasticsearch: authentication refused by {url} (HTTP {status}): check sinks.elasticsearch.auth")]
    Auth { url: String, status: u16 },
    #[error("sink elasticsearch: cannot install index template {name}: {err}")]
    Template { name: String, err: EsError },
}

/// Builds the sink: checks the server answers and accepts the credentials, then installs
/// the index template.
pub async fn start(cfg: &ElasticsearchConfig) -> Result<ElasticsearchSink, EsStartError> {
    let data_stream = (!cfg.data_stream.is_empty()).then(|| cfg.data_stream.clone());
    if data_stream.is_none() {
        encoder::validate_index(&cfg.index).map_err(EsStartError::Config)?;
    }
    let client = EsClient::new(cfg)?;
    let root = client.url("/");
    match client
        .call(client.http.get(&root).timeout(std::time::Duration::from_millis(cfg.request.timeout_ms.max(1))), &root)
        .await
    {
        Ok(_) => {}
        Err(EsError::Status { status: status @ (401 | 403), url, .. }) => {
            return Err(EsStartError::Auth { url, status })
        }
        Err(e) => return Err(EsStartError::Unreachable(e)),
    }
    if cfg.install_template {
        let name = &cfg.template_name;
        let url = client.url(&format!("_index_template/{name}"));
        let body = template::index_template(cfg.schema, &cfg.index, data_stream.as_deref());
        let req = client.http.put(&url).header(CONTENT_TYPE, "application/json").body(body.to_string());
        client.call(req, &url).await.map_err(|err| EsStartError::Template { name: name.clone(), err })?;
        tracing::info!(sink = "elasticsearch", template = %name, "index template installed");
    }
    let svc = crate::retry::layered::<_, _, EsError>("elasticsearch", &cfg.request, BulkService::new(client, cfg.gzip));
    Ok(ElasticsearchSink {
        encoder: Encoder { index: cfg.index.clone(), data_stream, schema: cfg.schema },
        builder: RequestBuilder { max_events: cfg.bulk_max_events, max_bytes: cfg.bulk_max_bytes, gzip: cfg.gzip },
        svc,
        request: cfg.request.clone(),
        dead_letter: DeadLetter::new(cfg.dead_letter_path.clone()),
        health: Arc::new(Mutex::new(Health::Healthy)),
    })
}
