//! The driver with scripted sinks (mocks are fine for the unit tests of the retry and
//! settle logic; the real sinks are tested against real servers in their folders).
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pipeline::Event;

use super::*;
use crate::{retry::RetryConfig, test_util::*, SendOutcome, Sink, StartError};

/// Answers each send from a script (then Delivered), recording batch sizes.
struct Scripted {
    script: Vec<SendOutcome>,
    sizes: Arc<Mutex<Vec<usize>>>,
    start: Option<StartError>,
    held: u64,
}

#[async_trait]
impl Sink for Scripted {
    fn name(&self) -> &'static str {
        "scripted"
    }
    async fn start(&mut self) -> Result<(), StartError> {
        self.start.take().map_or(Ok(()), Err)
    }
    async fn send(&mut self, batch: &[Arc<Event>]) -> SendOutcome {
        self.sizes.lock().unwrap().push(batch.len());
        if self.script.is_empty() {
            return SendOutcome::Delivered;
        }
        let o = self.script.remove(0);
        if matches!(o, SendOutcome::Held) {
            self.held += batch.len() as u64;
        }
        o
    }
    async fn flush(&mut self) -> Result<(), String> {
        Ok(())
    }
    fn settle(&mut self) -> Option<(u64, u64)> {
        // Settles only at the final flush (what Parquet does when its files close).
        None
    }
}

fn fast() -> RetryConfig {
    RetryConfig { max_retries: 0, initial_backoff_ms: 1, max_backoff_ms: 2 }
}

fn batch(max_events: usize) -> BatchConfig {
    BatchConfig { max_events, max_bytes: 0, max_age_ms: 20 }
}

#[tokio::test]
async fn retries_until_delivered_and_only_the_items_that_failed() {
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let script = vec![
        SendOutcome::Retryable("down".into()),
        SendOutcome::Retryable("still down".into()),
        SendOutcome::Partial { delivered: 7, dead_lettered: 1, failed: 0, retry: vec![3, 5], error: "429".into() },
    ];
    let sink = Scripted { script, sizes: sizes.clone(), start: None, held: 0 };
    let (feed, drv, _) = drive(Box::new(sink), batch(10), fast());
    for i in 0..10 {
        feed.send(seq_event(i)).await;
    }
    drop(feed);
    let r = drv.await.unwrap();
    assert_eq!((r.delivered, r.dead_lettered, r.failed), (9, 1, 0));
    assert_eq!(*sizes.lock().unwrap(), vec![10, 10, 10, 2], "the whole batch, then only the two items");
}

#[tokio::test]
async fn max_retries_bounds_the_attempts_and_counts_the_batch_failed() {
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let script = (0..10).map(|_| SendOutcome::Retryable("down".into())).collect();
    let sink = Scripted { script, sizes: sizes.clone(), start: None, held: 0 };
    let (feed, drv, _) = drive(Box::new(sink), batch(5), RetryConfig { max_retries: 2, ..fast() });
    for i in 0..5 {
        feed.send(seq_event(i)).await;
    }
    drop(feed);
    let r = drv.await.unwrap();
    assert_eq!((r.delivered, r.failed), (0, 5));
    assert_eq!(sizes.lock().unwrap().len(), 3, "one try and two retries");
}

#[tokio::test]
async fn a_configuration_error_at_start_disables_the_sink_with_the_reason() {
    let sink = Scripted {
        script: Vec::new(),
        sizes: Arc::default(),
        start: Some(StartError::Config("bad credentials".into())),
        held: 0,
    };
    let (feed, drv, health) = drive(Box::new(sink), batch(5), fast());
    let r = drv.await.unwrap();
    assert_eq!(r.disabled.as_deref(), Some("bad credentials"));
    assert_eq!(health.health(), crate::Health::Disabled("bad credentials".into()));
    drop(feed);
}

#[tokio::test]
async fn a_retryable_start_is_retried_and_then_delivers() {
    let sink = Scripted {
        script: Vec::new(),
        sizes: Arc::default(),
        start: Some(StartError::Retryable("connection refused".into())),
        held: 0,
    };
    let (feed, drv, _) = drive(Box::new(sink), batch(5), fast());
    for i in 0..5 {
        feed.send(seq_event(i)).await;
    }
    drop(feed);
    assert_eq!(drv.await.unwrap().delivered, 5);
}
