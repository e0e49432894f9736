//! Drives one batch: every record through the tower stack, then the delivery reports
//! decide: delivered, or failed (counted and logged, never silently dropped).
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures_util::{stream::FuturesUnordered, StreamExt};
use pipeline::Event;
use rdkafka::producer::Producer as _;
use tower::{util::BoxCloneService, BoxError, ServiceExt};

use super::{
    encoder::{Encoder, Record},
    service::{DeliveryError, Producer},
};
use crate::{retry::retryable, Health, SendOutcome, Sink};

pub type ProduceSvc = BoxCloneService<Record, (), BoxError>;

pub struct KafkaSink {
    pub(super) encoder: Encoder,
    pub(super) svc: ProduceSvc,
    pub(super) producer: Arc<Producer>,
    pub(super) health: Arc<Mutex<Health>>,
}

impl KafkaSink {
    pub fn health_handle(&self) -> Arc<Mutex<Health>> {
        self.health.clone()
    }
}

#[async_trait]
impl Sink for KafkaSink {
    fn name(&self) -> &'static str {
        "kafka"
    }

    async fn send(&mut self, batch: &[Arc<Event>]) -> SendOutcome {
        let mut futs: FuturesUnordered<_> =
            batch.iter().map(|e| self.svc.clone().oneshot(self.encoder.encode(e))).collect();
        let (mut delivered, mut failed, mut all_retryable) = (0u64, 0u64, true);
        let mut last_err = String::new();
        while let Some(r) = futs.next().await {
            match r {
                Ok(()) => delivered += 1,
                Err(e) => {
                    all_retryable &= retryable::<DeliveryError>(&e);
                    if failed == 0 {
                        tracing::error!(sink = "kafka", error = %e, "message not delivered");
                    }
                    last_err = e.to_string();
                    failed += 1;
                }
            }
        }
        if let Ok(mut h) = self.health.lock() {
            *h = if failed == 0 { Health::Healthy } else { Health::Degraded(last_err.clone()) };
        }
        match (delivered, failed) {
            (_, 0) => SendOutcome::Delivered,
            (0, _) if all_retryable => SendOutcome::Retryable(last_err),
            (0, _) => SendOutcome::Fatal(last_err),
            _ => SendOutcome::Partial { delivered, dead_lettered: 0, failed },
        }
    }

    async fn flush(&mut self) -> Result<(), String> {
        let p = self.producer.clone();
        tokio::task::spawn_blocking(move || p.flush(std::time::Duration::from_secs(30)))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    fn health(&self) -> Health {
        self.health.lock().map(|h| h.clone()).unwrap_or(Health::Degraded("health lock poisoned".into()))
    }
}
