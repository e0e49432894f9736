//! One batch: encode, split into `_bulk` requests sent concurrently through the tower
//! stack, then item by item: 2xx and 409 (same `_id` already there) are delivered,
//! 429/5xx go back to the driver (which retries them), anything else goes to the
//! dead-letter file.
use std::{io::Write, path::PathBuf, sync::Arc};

use async_trait::async_trait;
use futures_util::{stream::FuturesUnordered, StreamExt};
use pipeline::Event;
use reqwest::header::CONTENT_TYPE;
use tower::{util::BoxCloneService, BoxError, ServiceExt};

use super::{
    config::ElasticsearchConfig,
    encoder::{Encoder, Item},
    request_builder::RequestBuilder,
    service::{BulkRequest, BulkResponse, EsClient, EsError},
    template,
};
use crate::{
    retry::{retryable, Classify},
    SendOutcome, Sink, StartError,
};

pub type BulkSvc = BoxCloneService<BulkRequest, BulkResponse, BoxError>;

const NAME: &str = "elasticsearch";

/// Appends refused documents, one JSON line each with the server's reason.
pub struct DeadLetter {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl DeadLetter {
    pub fn new(path: PathBuf) -> Self {
        DeadLetter { path, file: None }
    }

    fn write(&mut self, item: &Item, status: u16, error: &serde_json::Value) -> std::io::Result<()> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            use std::os::unix::fs::OpenOptionsExt;
            self.file = Some(std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(&self.path)?);
        }
        let doc: serde_json::Value = serde_json::from_slice(item.document()).unwrap_or(serde_json::Value::Null);
        let line = serde_json::json!({
            "time": pipeline::time::Timestamp::now(),
            "sink": NAME, "index": item.index, "_id": item.id, "status": status, "error": error, "document": doc,
        });
        let mut buf = serde_json::to_vec(&line).unwrap_or_default();
        buf.push(b'\n');
        match &mut self.file {
            Some(f) => f.write_all(&buf),
            None => Ok(()),
        }
    }
}

pub struct ElasticsearchSink {
    pub(super) encoder: Encoder,
    pub(super) builder: RequestBuilder,
    pub(super) svc: BulkSvc,
    pub(super) client: EsClient,
    pub(super) cfg: ElasticsearchConfig,
    pub(super) dead_letter: DeadLetter,
}

impl ElasticsearchSink {
    /// GET / (is it there, does it take the credentials), then the index template.
    async fn check(client: EsClient, cfg: ElasticsearchConfig, data_stream: Option<String>) -> Result<(), StartError> {
        let client = &client;
        let root = client.url("/");
        let timeout = std::time::Duration::from_millis(cfg.request.timeout_ms.max(1));
        match client.call(client.http.get(&root).timeout(timeout), &root).await {
            Ok(_) => {}
            Err(EsError::Status { status: status @ (401 | 403), url, .. }) => {
                return Err(StartError::Config(format!(
                    "authentication refused by {url} (HTTP {status}): check sinks.elasticsearch.auth"
                )))
            }
            Err(e) => return Err(StartError::Retryable(e.to_string())),
        }
        if cfg.install_template {
            let name = &cfg.template_name;
            let url = client.url(&format!("_index_template/{name}"));
            let body = template::index_template(cfg.schema, &cfg.index, data_stream.as_deref());
            let req =
                client.http.put(&url).header(CONTENT_TYPE, "application/json").body(body.to_string()).timeout(timeout);
            match client.call(req, &url).await {
                Ok(_) => tracing::info!(sink = NAME, template = %name, "index template installed"),
                Err(e @ EsError::Status { status: 400..=499, .. }) if !e.is_retryable() => {
                    return Err(StartError::Config(format!("cannot install index template {name}: {e}")))
                }
                Err(e) => return Err(StartError::Retryable(format!("cannot install index template {name}: {e}"))),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for ElasticsearchSink {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn start(&mut self) -> Result<(), StartError> {
        Self::check(self.client.clone(), self.cfg.clone(), self.encoder.data_stream.clone()).await
    }

    /// One round: every item once. 2xx and 409 (that `_id` is there) are delivered,
    /// 429/5xx and retryable request errors go back to the driver to retry, anything else
    /// is dead-lettered.
    async fn send(&mut self, batch: &[Arc<Event>]) -> SendOutcome {
        let items: Vec<Item> = batch.iter().map(|e| self.encoder.encode(e)).collect();
        let all: Vec<usize> = (0..items.len()).collect();
        let (mut delivered, mut dead, mut failed) = (0u64, 0u64, 0u64);
        let mut last_err = String::new();
        let mut futs: FuturesUnordered<_> = self
            .builder
            .build(&items, &all)
            .into_iter()
            .map(|r| {
                let svc = self.svc.clone();
                async move {
                    let which = r.items.clone();
                    (which, svc.oneshot(r).await)
                }
            })
            .collect();
        let mut retry = Vec::new();
        while let Some((which, res)) = futs.next().await {
            match res {
                Ok(resp) => {
                    for (&k, ir) in which.iter().zip(resp.items) {
                        match ir.status {
                            200..=299 | 409 => delivered += 1,
                            429 | 500..=599 => {
                                last_err = format!("item status {}: {}", ir.status, ir.error.unwrap_or_default());
                                retry.push(k);
                            }
                            status => {
                                let err = ir.error.unwrap_or_default();
                                tracing::warn!(sink = NAME, _id = %items[k].id, status, error = %err, "document refused, dead-lettered");
                                match self.dead_letter.write(&items[k], status, &err) {
                                    Ok(()) => dead += 1,
                                    Err(e) => {
                                        tracing::error!(sink = NAME, path = %self.dead_letter.path.display(), error = %e, "cannot write the dead-letter file; document lost");
                                        failed += 1;
                                    }
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    last_err = e.to_string();
                    if retryable::<EsError>(&e) {
                        retry.extend(which.iter().copied());
                    } else {
                        tracing::error!(sink = NAME, events = which.len(), error = %e, "request refused");
                        failed += which.len() as u64;
                    }
                }
            }
        }
        let n = items.len() as u64;
        if retry.len() as u64 == n && n > 0 {
            return SendOutcome::Retryable(last_err);
        }
        if failed == n && n > 0 {
            return SendOutcome::Fatal(last_err);
        }
        if dead == 0 && failed == 0 && retry.is_empty() {
            return SendOutcome::Delivered;
        }
        retry.sort_unstable();
        SendOutcome::Partial { delivered, dead_lettered: dead, failed, retry, error: last_err }
    }

    async fn flush(&mut self) -> Result<(), String> {
        match &mut self.dead_letter.file {
            Some(f) => f.sync_data().map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }
}
