//! Elasticsearch sink: `_bulk` NDJSON (gzip), deterministic `_id`s with `create`, item
//! results (429/5xx retried by the driver, refusals dead-lettered), index template at
//! start. Split as Vector's sinks: config → encoder → request_builder → service (tower) →
//! sink; the server is checked by [`crate::Sink::start`], so a server that is down when the
//! agent starts only delays delivery.
pub mod config;
pub mod encoder;
pub mod network;
pub mod request_builder;
pub mod service;
pub mod sink;
pub mod template;

#[cfg(test)]
mod tests;

pub use config::{DocSchema, ElasticsearchConfig};
pub use sink::ElasticsearchSink;

use self::{
    encoder::Encoder,
    request_builder::RequestBuilder,
    service::{BulkService, ClientError, EsClient},
    sink::DeadLetter,
};

/// A configuration the sink cannot use; the message names the cause (never a credential).
#[derive(Debug, thiserror::Error)]
pub enum EsStartError {
    #[error("sink elasticsearch: {0}")]
    Config(String),
    #[error("sink elasticsearch: {0}")]
    Client(#[from] ClientError),
}

/// Builds the sink from its config (no I/O: the server is checked when the sink starts).
pub fn build(cfg: &ElasticsearchConfig) -> Result<ElasticsearchSink, EsStartError> {
    let data_stream = (!cfg.data_stream.is_empty()).then(|| cfg.data_stream.clone());
    if data_stream.is_none() {
        encoder::validate_index(&cfg.index).map_err(EsStartError::Config)?;
    }
    config::validate_endpoint(&cfg.endpoint).map_err(EsStartError::Config)?;
    let client = EsClient::new(cfg)?;
    let svc = crate::retry::layered(&cfg.request, BulkService::new(client.clone(), cfg.gzip));
    Ok(ElasticsearchSink {
        encoder: Encoder { index: cfg.index.clone(), data_stream, schema: cfg.schema },
        builder: RequestBuilder { max_events: cfg.bulk_max_events, max_bytes: cfg.bulk_max_bytes, gzip: cfg.gzip },
        svc,
        client,
        cfg: cfg.clone(),
        dead_letter: DeadLetter::new(cfg.dead_letter_path.clone()),
    })
}
