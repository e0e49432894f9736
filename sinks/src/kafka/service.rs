//! The I/O: a `tower::Service` that hands one record to librdkafka and resolves with its
//! delivery report. librdkafka's own retries (idempotent producer: no duplicates) cover
//! short outages; a failed report goes back to the sink's driver, which retries it.
use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use pipeline::metrics::names;
use rdkafka::{
    client::ClientContext,
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord, ProducerContext},
    statistics::Statistics,
    util::Timeout,
};

use super::encoder::Record;
use crate::retry::Classify;

#[derive(Debug, thiserror::Error)]
#[error("delivery failed: {0}")]
pub struct DeliveryError(pub KafkaError);

impl Classify for DeliveryError {
    fn is_retryable(&self) -> bool {
        use RDKafkaErrorCode as C;
        !matches!(
            self.0.rdkafka_error_code(),
            Some(
                C::MessageSizeTooLarge
                    | C::InvalidMessageSize
                    | C::InvalidMessage
                    | C::InvalidTopic
                    | C::TopicAuthorizationFailed
                    | C::InvalidRecord
                    | C::UnknownTopic
                    | C::Fatal,
            )
        )
    }
}

/// librdkafka callbacks: its errors go to the log, its statistics (retried produce
/// requests, reconnections) to `nightjar_sink_retries_total{sink="kafka"}`.
#[derive(Default)]
pub struct Context_ {
    pub last_retries: AtomicU64,
    /// librdkafka reported every broker down (connection refused, no route...).
    pub all_down: Arc<std::sync::atomic::AtomicBool>,
    /// The last error logged and when: librdkafka repeats a broker's error every few
    /// milliseconds while it reconnects; the log gets a change or a reminder every 10 s.
    last_logged: std::sync::Mutex<Option<(std::time::Instant, String)>>,
}

impl ClientContext for Context_ {
    fn stats(&self, s: Statistics) {
        // Produce requests librdkafka sent again, plus its reconnections after a broken
        // connection (every connection after a broker's first).
        let total: u64 =
            s.brokers.values().map(|b| b.txretries + b.connects.unwrap_or(0).saturating_sub(1).max(0) as u64).sum();
        let before = self.last_retries.swap(total, Ordering::Relaxed);
        if total > before {
            metrics::counter!(names::SINK_RETRIES, "sink" => "kafka").increment(total - before);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown) {
            self.all_down.store(true, Ordering::Relaxed);
        }
        let msg = format!("{error}: {reason}");
        let now = std::time::Instant::now();
        if let Ok(mut last) = self.last_logged.lock() {
            let repeat = last.as_ref().is_some_and(|(at, m)| *m == msg && now.duration_since(*at).as_secs() < 10);
            if repeat {
                return;
            }
            *last = Some((now, msg));
        }
        tracing::warn!(sink = "kafka", error = %error, reason, "librdkafka");
    }
}

impl ProducerContext for Context_ {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::producer::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

pub type Producer = FutureProducer<Context_>;

#[derive(Clone)]
pub struct ProduceService {
    pub producer: Arc<Producer>,
}

impl tower::Service<Record> for ProduceService {
    type Response = ();
    type Error = DeliveryError;
    type Future = Pin<Box<dyn Future<Output = Result<(), DeliveryError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, r: Record) -> Self::Future {
        let producer = self.producer.clone();
        Box::pin(async move {
            let mut rec = FutureRecord::to(&r.topic).payload(&r.payload[..]);
            if let Some(k) = &r.key {
                rec = rec.key(k.as_str());
            }
            if !r.headers.is_empty() {
                let mut h = OwnedHeaders::new_with_capacity(r.headers.len());
                for (k, v) in &r.headers {
                    h = h.insert(Header { key: k, value: Some(v.as_str()) });
                }
                rec = rec.headers(h);
            }
            // Timeout::Never: a full librdkafka queue makes this wait (backpressure), not fail.
            producer.send(rec, Timeout::Never).await.map(|_| ()).map_err(|(e, _)| DeliveryError(e))
        })
    }
}
