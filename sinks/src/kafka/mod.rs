//! Kafka sink: librdkafka (bundled, static) `FutureProducer`, idempotent with acks=all and
//! zstd by default; delivery reports drive the accounting. Split as Vector's sinks:
//! config → encoder → service (tower) → sink; a metadata check when the sink starts.
pub mod config;
pub mod encoder;
pub mod service;
pub mod sink;

#[cfg(test)]
mod tests;

use std::{sync::Arc, time::Duration};

pub use config::{KafkaConfig, KeyField};
use rdkafka::{config::ClientConfig, producer::Producer as _};
pub use sink::KafkaSink;

use self::{
    encoder::Encoder,
    service::{Context_, ProduceService, Producer},
};

#[derive(Debug, thiserror::Error)]
pub enum KafkaStartError {
    #[error("sink kafka: {0}")]
    Config(String),
    #[error("sink kafka: {0}")]
    Secret(#[from] crate::secret::SecretError),
    #[error("sink kafka: cannot create the producer: {0}")]
    Create(rdkafka::error::KafkaError),
    #[error("sink kafka: cannot reach brokers {brokers}: {why}")]
    Unreachable { brokers: String, why: String },
}

/// The librdkafka properties of a config (secrets included: never log the result).
pub fn client_config(cfg: &KafkaConfig) -> Result<ClientConfig, KafkaStartError> {
    properties(cfg, true)
}

/// What librdkafka and the sink would refuse, without reading secrets.
pub fn check_config(cfg: &KafkaConfig) -> Result<(), KafkaStartError> {
    properties(cfg, false).map(|_| ())
}

fn properties(cfg: &KafkaConfig, secrets: bool) -> Result<ClientConfig, KafkaStartError> {
    if cfg.request.timeout_ms <= cfg.message_timeout_ms {
        return Err(KafkaStartError::Config(format!(
            "request.timeout_ms ({}) must be longer than message_timeout_ms ({}), or a retry could duplicate a message still in flight",
            cfg.request.timeout_ms, cfg.message_timeout_ms
        )));
    }
    if cfg.topic.is_empty() {
        return Err(KafkaStartError::Config("topic is empty".into()));
    }
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("acks", &cfg.acks)
        .set("enable.idempotence", cfg.idempotence.to_string())
        .set("compression.type", &cfg.compression)
        .set("linger.ms", cfg.linger_ms.to_string())
        .set("batch.size", cfg.batch_size.to_string())
        .set("message.timeout.ms", cfg.message_timeout_ms.to_string())
        .set("statistics.interval.ms", "1000")
        .set("security.protocol", &cfg.security.protocol);
    if cfg.security.protocol.starts_with("sasl") {
        c.set("sasl.mechanism", &cfg.security.sasl_mechanism).set("sasl.username", &cfg.security.sasl_username);
        if secrets && cfg.security.sasl_password.is_set() {
            c.set("sasl.password", cfg.security.sasl_password.load("sinks.kafka.security.sasl_password")?.expose());
        }
    }
    if !cfg.security.ca_file.as_os_str().is_empty() {
        c.set("ssl.ca.location", cfg.security.ca_file.display().to_string());
    }
    for (k, v) in &cfg.options {
        c.set(k, v);
    }
    // librdkafka checks every property's name and value here, without connecting.
    c.create_native_config().map_err(|e| KafkaStartError::Config(format!("options: {e}")))?;
    Ok(c)
}

/// Builds the producer (librdkafka connects in the background; the brokers are checked
/// when the sink starts, so brokers that are down only delay delivery).
pub fn build(cfg: &KafkaConfig) -> Result<KafkaSink, KafkaStartError> {
    let cc = client_config(cfg)?;
    let ctx = Context_::default();
    let all_down = ctx.all_down.clone();
    let producer: Producer = cc.create_with_context(ctx).map_err(KafkaStartError::Create)?;
    let producer = Arc::new(producer);
    let svc = crate::retry::layered(&cfg.request, ProduceService { producer: producer.clone() });
    Ok(KafkaSink {
        encoder: Encoder { topic: cfg.topic.clone(), key: cfg.key, headers: cfg.headers },
        svc,
        producer,
        all_down,
        brokers: cfg.brokers.clone(),
        wait: Duration::from_millis(cfg.request.timeout_ms.clamp(1000, 15_000)),
    })
}

/// Asks the brokers for metadata, in short rounds: brokers that refuse connections
/// (librdkafka says all are down) fail within ~2 s instead of the whole timeout.
pub(crate) async fn check_brokers(
    p: Arc<Producer>,
    all_down: Arc<std::sync::atomic::AtomicBool>,
    wait: Duration,
    brokers: String,
) -> Result<(), crate::StartError> {
    let md = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        loop {
            let round =
                Duration::from_millis(500).min(wait.saturating_sub(started.elapsed()).max(Duration::from_millis(1)));
            match p.client().fetch_metadata(None, round).map(|m| m.brokers().len()) {
                Ok(n) => return Ok(n),
                Err(e) => {
                    let down = all_down.load(std::sync::atomic::Ordering::Relaxed);
                    if started.elapsed() >= wait || (down && started.elapsed() >= Duration::from_secs(2)) {
                        return Err(e);
                    }
                }
            }
        }
    })
    .await;
    let unreachable = |why: String| {
        crate::StartError::Retryable(KafkaStartError::Unreachable { brokers: brokers.clone(), why }.to_string())
    };
    match md {
        Ok(Ok(n)) if n > 0 => Ok(()),
        Ok(Ok(_)) => Err(unreachable("no broker in the metadata".into())),
        Ok(Err(e)) if is_auth(&e) => Err(crate::StartError::Config(format!(
            "sink kafka: the brokers refuse the credentials: {e} (check sinks.kafka.security)"
        ))),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(e) => Err(unreachable(e.to_string())),
    }
}

fn is_auth(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::Authentication
                | C::SaslAuthenticationFailed
                | C::TopicAuthorizationFailed
                | C::ClusterAuthorizationFailed
        )
    )
}
