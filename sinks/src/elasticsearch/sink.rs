//! Drives one batch: encode, split into `_bulk` requests sent concurrently through the
//! tower stack, then item by item: 2xx and 409 (same `_id` already there) are delivered,
//! 429/5xx are retried with backoff, anything else goes to the dead-letter file.
use std::{
    io::Write,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use futures_util::{stream::FuturesUnordered, StreamExt};
use pipeline::{metrics::names, Event};
use tower::{util::BoxCloneService, BoxError, ServiceExt};

use super::{
    encoder::{Encoder, Item},
    request_builder::RequestBuilder,
    service::{BulkRequest, BulkResponse, EsError},
};
use crate::{
    retry::{retryable, Backoff, RequestConfig},
    Health, SendOutcome, Sink,
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
    pub(super) request: RequestConfig,
    pub(super) dead_letter: DeadLetter,
    pub(super) health: Arc<Mutex<Health>>,
}

impl ElasticsearchSink {
    fn set_health(&self, h: Health) {
        if let Ok(mut g) = self.health.lock() {
            *g = h;
        }
    }

    /// A handle on the sink's health, for `nightjar status` once the sink is moved to its driver.
    pub fn health_handle(&self) -> Arc<Mutex<Health>> {
        self.health.clone()
    }
}

#[async_trait]
impl Sink for ElasticsearchSink {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn send(&mut self, batch: &[Arc<Event>]) -> SendOutcome {
        let items: Vec<Item> = batch.iter().map(|e| self.encoder.encode(e)).collect();
        let mut pending: Vec<usize> = (0..items.len()).collect();
        let (mut delivered, mut dead, mut failed) = (0u64, 0u64, 0u64);
        let mut backoff = Backoff::new(&self.request);
        let mut last_err = String::new();
        let mut fatal = false;
        for round in 0..=self.request.max_retries {
            let mut futs: FuturesUnordered<_> = self
                .builder
                .build(&items, &pending)
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
                                // 409 on `create`: a document with this `_id` is there already.
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
                            fatal = true;
                            failed += which.len() as u64;
                        }
                    }
                }
            }
            pending = retry;
            if pending.is_empty() || round == self.request.max_retries {
                break;
            }
            metrics::counter!(names::SINK_EVENTS, "sink" => NAME, "outcome" => "retried")
                .increment(pending.len() as u64);
            metrics::counter!(names::SINK_RETRIES, "sink" => NAME).increment(1);
            let wait = backoff.next_wait();
            tracing::warn!(sink = NAME, items = pending.len(), error = %last_err, wait_ms = wait.as_millis() as u64, "retrying items");
            tokio::time::sleep(wait).await;
        }
        failed += pending.len() as u64;
        if failed == 0 {
            self.set_health(Health::Healthy);
        } else {
            self.set_health(Health::Degraded(last_err.clone()));
        }
        if delivered == 0 && dead == 0 && failed == items.len() as u64 && !items.is_empty() {
            // Nothing landed: let the driver retry the whole batch (same `_id`s) or count it.
            return if fatal { SendOutcome::Fatal(last_err) } else { SendOutcome::Retryable(last_err) };
        }
        if dead == 0 && failed == 0 {
            return SendOutcome::Delivered;
        }
        SendOutcome::Partial { delivered, dead_lettered: dead, failed }
    }

    async fn flush(&mut self) -> Result<(), String> {
        match &mut self.dead_letter.file {
            Some(f) => f.sync_data().map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    fn health(&self) -> Health {
        self.health.lock().map(|h| h.clone()).unwrap_or(Health::Degraded("health lock poisoned".into()))
    }
}
