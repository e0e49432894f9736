//! Drives one sink: takes events from its bounded queue, batches them (max events, max
//! bytes of JSON, max age), sends with bounded exponential backoff, flushes on shutdown, and counts outcomes.
use std::{sync::Arc, time::Duration};

use pipeline::{metrics::names, Event};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::{SendOutcome, Sink};

/// Batching and retry settings shared by every sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    pub max_events: usize,
    /// A batch is sent once its events' JSON reaches this many bytes (0, the default: no
    /// byte limit). Counting serializes every event once more, which costs as much as the
    /// file sink's own encoding: the event limit already bounds a batch's memory, and the
    /// Elasticsearch sink splits its request bodies by `bulk_max_bytes` as it encodes them.
    pub max_bytes: usize,
    /// Longest time an event waits for its batch to fill, in milliseconds.
    pub max_age_ms: u64,
    /// Retries of a retryable failure before the batch is counted as failed.
    pub max_retries: u32,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { max_events: 512, max_bytes: 0, max_age_ms: 100, max_retries: 5 }
    }
}

/// What the driver delivered and lost, for the shutdown report.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DriverReport {
    pub delivered: u64,
    pub failed: u64,
    /// Items a sink wrote to its dead-letter file (they will never be accepted).
    pub dead_lettered: u64,
}

/// Runs `sink` until `rx` closes (all senders dropped), then flushes.
pub async fn run(mut sink: Box<dyn Sink>, mut rx: mpsc::Receiver<Arc<Event>>, cfg: BatchConfig) -> DriverReport {
    let name = sink.name();
    let mut report = DriverReport::default();
    let mut batch: Vec<Arc<Event>> = Vec::with_capacity(cfg.max_events);
    let max_age = Duration::from_millis(cfg.max_age_ms);
    let mut ticker = sink.tick_interval().map(|p| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + p, p);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    loop {
        let first = tokio::select! {
            e = rx.recv() => match e {
                Some(e) => e,
                None => break,
            },
            _ = next_tick(&mut ticker) => {
                if let Err(e) = sink.tick().await {
                    tracing::warn!(sink = name, error = %e, "sink housekeeping failed");
                }
                continue;
            }
        };
        let mut bytes = json_len(&first, cfg.max_bytes);
        batch.push(first);
        let deadline = tokio::time::Instant::now() + max_age;
        while batch.len() < cfg.max_events && (cfg.max_bytes == 0 || bytes < cfg.max_bytes) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(e)) => {
                    bytes += json_len(&e, cfg.max_bytes);
                    batch.push(e);
                }
                Ok(None) | Err(_) => break,
            }
        }
        send_with_retries(sink.as_mut(), &batch, &cfg, &mut report).await;
        batch.clear();
    }
    if let Err(e) = sink.flush().await {
        tracing::error!(sink = name, error = %e, "final flush failed");
    }
    report
}

/// Length of the event's JSON line (newline included), counted without allocating;
/// 0 when there is no byte limit.
fn json_len(ev: &Event, max_bytes: usize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    if max_bytes == 0 {
        return 0;
    }
    let mut c = Count(0);
    // Writing to a counter cannot fail; an event that would not serialise counts as 1 byte.
    match serde_json::to_writer(&mut c, ev) {
        Ok(()) => c.0 + 1,
        Err(_) => 1,
    }
}

async fn next_tick(t: &mut Option<tokio::time::Interval>) {
    match t {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn send_with_retries(sink: &mut dyn Sink, batch: &[Arc<Event>], cfg: &BatchConfig, report: &mut DriverReport) {
    let name = sink.name();
    let n = batch.len() as u64;
    let started = std::time::Instant::now();
    let mut backoff = Duration::from_millis(50);
    for attempt in 0..=cfg.max_retries {
        match sink.send(batch).await {
            SendOutcome::Delivered => {
                report.delivered += n;
                metrics::counter!(names::SINK_EVENTS, "sink" => name, "outcome" => "delivered").increment(n);
                metrics::histogram!(names::SINK_BATCH_SECONDS, "sink" => name).record(started.elapsed().as_secs_f64());
                return;
            }
            SendOutcome::Partial { delivered, dead_lettered, failed } => {
                report.delivered += delivered;
                report.dead_lettered += dead_lettered;
                report.failed += failed;
                for (outcome, k) in [("delivered", delivered), ("dead_lettered", dead_lettered), ("failed", failed)] {
                    if k > 0 {
                        metrics::counter!(names::SINK_EVENTS, "sink" => name, "outcome" => outcome).increment(k);
                    }
                }
                if failed > 0 {
                    tracing::error!(sink = name, events = failed, "items not delivered after retries");
                }
                metrics::histogram!(names::SINK_BATCH_SECONDS, "sink" => name).record(started.elapsed().as_secs_f64());
                return;
            }
            SendOutcome::Retryable(why) if attempt < cfg.max_retries => {
                metrics::counter!(names::SINK_EVENTS, "sink" => name, "outcome" => "retried").increment(n);
                tracing::warn!(sink = name, attempt, error = %why, "send failed, retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            SendOutcome::Retryable(why) | SendOutcome::Fatal(why) => {
                report.failed += n;
                metrics::counter!(names::SINK_EVENTS, "sink" => name, "outcome" => "failed").increment(n);
                tracing::error!(sink = name, events = n, error = %why, "batch not delivered");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use pipeline::{event::RateLimitInfo, EventKind};

    use crate::Health;

    /// Records the size of each batch it is sent.
    struct Recorder(Arc<std::sync::Mutex<Vec<usize>>>);

    #[async_trait]
    impl Sink for Recorder {
        fn name(&self) -> &'static str {
            "recorder"
        }
        async fn send(&mut self, batch: &[Arc<Event>]) -> SendOutcome {
            self.0.lock().unwrap().push(batch.len());
            SendOutcome::Delivered
        }
        async fn flush(&mut self) -> Result<(), String> {
            Ok(())
        }
        fn health(&self) -> Health {
            Health::Healthy
        }
    }

    #[tokio::test]
    async fn batches_close_at_max_bytes() {
        let ev = Arc::new(Event::new(
            EventKind::RateLimitInfo(RateLimitInfo { number_of_dropped_process_events: Some(1), ..Default::default() }),
            "n",
            pipeline::time::Timestamp::from_unix_nanos(0),
        ));
        let one = json_len(&ev, 1);
        let (tx, rx) = mpsc::channel(100);
        for _ in 0..10 {
            tx.send(ev.clone()).await.unwrap();
        }
        drop(tx);
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        // Room for 3 events' bytes: a batch closes once it holds 3 (the limit is reached).
        let cfg = BatchConfig { max_events: 100, max_bytes: one * 3, max_age_ms: 60_000, max_retries: 0 };
        let report = run(Box::new(Recorder(sizes.clone())), rx, cfg).await;
        assert_eq!(report.delivered, 10);
        assert_eq!(*sizes.lock().unwrap(), vec![3, 3, 3, 1]);
    }
}
