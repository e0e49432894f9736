//! One batch: every record through the tower stack, then the delivery reports decide:
//! delivered, or back to the driver to retry (or failed for good: counted and logged).
use std::{
    sync::{atomic::AtomicBool, Arc},
    time::Duration,
};

use async_trait::async_trait;
use futures_util::{stream::FuturesUnordered, StreamExt};
use pipeline::Event;
use rdkafka::producer::Producer as _;
use tower::{util::BoxCloneService, BoxError, ServiceExt};

use super::{
    encoder::{Encoder, Record},
    service::{DeliveryError, Producer},
};
use crate::{retry::retryable, SendOutcome, Sink, StartError};

pub type ProduceSvc = BoxCloneService<Record, (), BoxError>;

pub struct KafkaSink {
    pub(super) encoder: Encoder,
    pub(super) svc: ProduceSvc,
    pub(super) producer: Arc<Producer>,
    /// librdkafka said every broker is down.
    pub(super) all_down: Arc<AtomicBool>,
    pub(super) brokers: String,
    /// Longest metadata check at start.
    pub(super) wait: Duration,
}

#[async_trait]
impl Sink for KafkaSink {
    fn name(&self) -> &'static str {
        "kafka"
    }

    async fn start(&mut self) -> Result<(), StartError> {
        super::check_brokers(self.producer.clone(), self.all_down.clone(), self.wait, self.brokers.clone()).await
    }

    async fn send(&mut self, batch: &[Arc<Event>]) -> SendOutcome {
        let mut futs: FuturesUnordered<_> = batch
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let f = self.svc.clone().oneshot(self.encoder.encode(e));
                async move { (i, f.await) }
            })
            .collect();
        let (mut delivered, mut failed, mut all_retryable) = (0u64, 0u64, true);
        let mut failed_idx = Vec::new();
        let mut last_err = String::new();
        while let Some((i, r)) = futs.next().await {
            match r {
                Ok(()) => delivered += 1,
                Err(e) => {
                    all_retryable &= retryable::<DeliveryError>(&e);
                    if failed == 0 {
                        tracing::warn!(sink = "kafka", error = %e, "message not delivered");
                    }
                    last_err = e.to_string();
                    failed += 1;
                    failed_idx.push(i);
                }
            }
        }
        failed_idx.sort_unstable();
        match (delivered, failed) {
            (_, 0) => SendOutcome::Delivered,
            (0, _) if all_retryable => SendOutcome::Retryable(last_err),
            (0, _) => SendOutcome::Fatal(last_err),
            _ if all_retryable => {
                SendOutcome::Partial { delivered, dead_lettered: 0, failed: 0, retry: failed_idx, error: last_err }
            }
            _ => SendOutcome::Partial { delivered, dead_lettered: 0, failed, retry: Vec::new(), error: last_err },
        }
    }

    async fn flush(&mut self) -> Result<(), String> {
        let p = self.producer.clone();
        tokio::task::spawn_blocking(move || p.flush(std::time::Duration::from_secs(30)))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}
