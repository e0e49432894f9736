//! Drives one sink: starts it (retrying while its server is down; a configuration error
//! disables it), takes batches from its buffer (max events, max bytes of JSON, max age),
//! sends them — the only place a sink's sends are retried, with [`Backoff`] — and lets
//! the buffer go of each batch once it is settled: delivered, dead-lettered or failed for
//! good. Sinks that hold events (Parquet rows in an open file) settle them later.
use std::{collections::VecDeque, sync::Arc, time::Duration};

use pipeline::{metrics::names, Event};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::{
    buffer::{AckToken, BufferReader},
    health::SinkHealth,
    retry::{Backoff, RetryConfig},
    SendOutcome, Sink, StartError,
};

/// Batching settings shared by every sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    #[serde(deserialize_with = "crate::bounds::batch_events")]
    pub max_events: usize,
    /// A batch is sent once its events' JSON reaches this many bytes (0, the default: no
    /// byte limit). Counting serializes every event once more, which costs as much as the
    /// file sink's own encoding: the event limit already bounds a batch's memory, and the
    /// Elasticsearch sink splits its request bodies by `bulk_max_bytes` as it encodes them.
    #[serde(deserialize_with = "crate::bounds::memory_bytes")]
    pub max_bytes: usize,
    /// Longest time an event waits for its batch to fill, in milliseconds.
    #[serde(deserialize_with = "crate::bounds::millis")]
    pub max_age_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { max_events: 512, max_bytes: 0, max_age_ms: 100 }
    }
}

/// What the driver did, for the shutdown report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DriverReport {
    pub delivered: u64,
    pub failed: u64,
    /// Items a sink wrote to its dead-letter file (they will never be accepted).
    pub dead_lettered: u64,
    /// Why the sink was disabled, if it was.
    pub disabled: Option<String>,
    /// Events left in the buffer (memory: lost; disk: delivered after the next start).
    pub left: u64,
}

/// How a batch ended.
enum Settled {
    Done,
    Held,
    /// Shutdown came while a disk-buffered batch waited to be retried: it stays on disk.
    Stopped,
}

pub struct Driver {
    sink: Box<dyn Sink>,
    buf: BufferReader,
    batch: BatchConfig,
    retry: RetryConfig,
    health: Arc<SinkHealth>,
    stop: watch::Receiver<bool>,
    report: DriverReport,
    /// Batches the sink holds (not yet durable), oldest first.
    held: VecDeque<(AckToken, u64)>,
}

impl Driver {
    pub fn new(
        sink: Box<dyn Sink>,
        buf: BufferReader,
        batch: BatchConfig,
        retry: RetryConfig,
        health: Arc<SinkHealth>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Driver { sink, buf, batch, retry, health, stop, report: DriverReport::default(), held: VecDeque::new() }
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Runs until the buffer is closed and drained (or, for a disk buffer, until shutdown
    /// finds the sink failing: what is left stays on disk), then flushes.
    pub async fn run(mut self) -> DriverReport {
        let name = self.sink.name();
        match self.start().await {
            Ok(true) => {}
            Ok(false) => {
                // Shutdown before the server ever answered: the disk buffer keeps everything.
                self.report.left = self.buf.pending();
                return self.report;
            }
            Err(why) => {
                tracing::error!(sink = name, reason = %why, "sink disabled: configuration error");
                self.health.disable(&why);
                self.report.disabled = Some(why);
                self.buf.close();
                self.report.left = self.buf.pending();
                return self.report;
            }
        }
        let mut ticker = self.sink.tick_interval().map(|p| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + p, p);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        let max_age = Duration::from_millis(self.batch.max_age_ms);
        loop {
            let ticked = tokio::select! {
                biased;
                _ = self.buf.wait() => false,
                _ = next_tick(&mut ticker) => true,
            };
            if ticked {
                if let Err(e) = self.sink.tick().await {
                    tracing::warn!(sink = name, error = %e, "sink housekeeping failed");
                    self.health.failing(&e);
                }
                self.settle_async().await;
                continue;
            }
            let Some(batch) = self.buf.next(self.batch.max_events, max_age).await else { break };
            self.health.set_oldest(batch.oldest_ms);
            let n = batch.events.len() as u64;
            let mut outcome = Settled::Done;
            for chunk in chunks(batch.events, self.batch.max_bytes) {
                match self.send(chunk).await {
                    Settled::Done => {}
                    Settled::Held => outcome = Settled::Held,
                    Settled::Stopped => {
                        outcome = Settled::Stopped;
                        break;
                    }
                }
            }
            match outcome {
                Settled::Done => self.buf.ack(batch.token).await,
                Settled::Held => self.held.push_back((batch.token, n)),
                Settled::Stopped => break,
            }
            self.health.set_oldest(0);
            self.settle_async().await;
        }
        if let Err(e) = self.sink.flush().await {
            tracing::error!(sink = name, error = %e, "final flush failed");
        }
        self.settle_async().await;
        self.report.left = self.buf.pending() + self.held.iter().map(|h| h.1).sum::<u64>();
        self.report
    }

    /// Ok(false): shutdown came first, and what the buffer holds is on disk.
    async fn start(&mut self) -> Result<bool, String> {
        let mut backoff = Backoff::new(&self.retry);
        loop {
            match self.sink.start().await {
                Ok(()) => {
                    self.health.ok();
                    return Ok(true);
                }
                Err(StartError::Config(why)) => return Err(why),
                Err(StartError::Retryable(why)) => {
                    tracing::warn!(sink = self.sink.name(), error = %why, "sink cannot start yet; its events are buffered, retrying");
                    self.health.failing(&why);
                    if self.stopping() && self.buf.is_disk {
                        return Ok(false);
                    }
                    self.sleep(backoff.next_wait()).await;
                }
            }
        }
    }

    /// Sleeps, or returns early when shutdown begins.
    async fn sleep(&mut self, d: Duration) {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }

    /// Sends a batch until it is settled (the only retry loop of a sink).
    async fn send(&mut self, mut events: Vec<Arc<Event>>) -> Settled {
        let name = self.sink.name();
        let started = std::time::Instant::now();
        let mut backoff = Backoff::new(&self.retry);
        let mut retries = 0u32;
        loop {
            let why = match self.sink.send(&events).await {
                SendOutcome::Delivered => {
                    self.delivered(events.len() as u64);
                    metrics::histogram!(names::SINK_BATCH_SECONDS, "sink" => name)
                        .record(started.elapsed().as_secs_f64());
                    self.health.ok();
                    return Settled::Done;
                }
                SendOutcome::Held => {
                    self.health.ok();
                    return Settled::Held;
                }
                SendOutcome::Fatal(why) => {
                    self.failed(events.len() as u64, &why);
                    return Settled::Done;
                }
                SendOutcome::Retryable(why) => why,
                SendOutcome::Partial { delivered, dead_lettered, failed, retry, error } => {
                    self.delivered(delivered);
                    self.dead_lettered(dead_lettered);
                    if failed > 0 {
                        self.failed(failed, &error);
                    }
                    if retry.is_empty() {
                        self.health.ok();
                        return Settled::Done;
                    }
                    events = retry.into_iter().filter_map(|i| events.get(i).cloned()).collect();
                    error
                }
            };
            retries += 1;
            if self.retry.max_retries > 0 && retries > self.retry.max_retries {
                self.failed(events.len() as u64, &format!("{why} (after {} retries)", self.retry.max_retries));
                return Settled::Done;
            }
            self.health.failing(&why);
            metrics::counter!(names::SINK_EVENTS, "sink" => name, "outcome" => "retried")
                .increment(events.len() as u64);
            metrics::counter!(names::SINK_RETRIES, "sink" => name).increment(1);
            let wait = backoff.next_wait();
            if self.buf.is_disk && self.stopping() {
                // Shutdown with the sink failing: what the disk buffer holds waits for the next start.
                return Settled::Stopped;
            }
            tracing::warn!(sink = name, events = events.len(), error = %why, wait_ms = wait.as_millis() as u64, "send failed, retrying");
            self.sleep(wait).await;
            if self.buf.is_disk && self.stopping() {
                return Settled::Stopped;
            }
        }
    }

    fn delivered(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        self.report.delivered += n;
        self.health.delivered.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!(names::SINK_EVENTS, "sink" => self.sink.name(), "outcome" => "delivered").increment(n);
    }

    fn dead_lettered(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        self.report.dead_lettered += n;
        self.health.dead_lettered.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!(names::SINK_EVENTS, "sink" => self.sink.name(), "outcome" => "dead_lettered").increment(n);
    }

    fn failed(&mut self, n: u64, why: &str) {
        self.report.failed += n;
        self.health.failed.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!(names::SINK_EVENTS, "sink" => self.sink.name(), "outcome" => "failed").increment(n);
        tracing::error!(sink = self.sink.name(), events = n, error = %why, "events not delivered");
    }

    /// Held batches the sink made durable (or lost) since the last call.
    fn settle(&mut self) -> Vec<AckToken> {
        let Some((delivered, failed)) = self.sink.settle() else { return Vec::new() };
        self.delivered(delivered);
        if failed > 0 {
            self.failed(failed, "lost when its file could not be completed");
        }
        self.held.drain(..).map(|(t, _)| t).collect()
    }

    async fn settle_async(&mut self) {
        for t in self.settle() {
            self.buf.ack(t).await;
        }
    }
}

/// Splits a batch by the byte size of its events' JSON (0: no limit).
fn chunks(events: Vec<Arc<Event>>, max_bytes: usize) -> Vec<Vec<Arc<Event>>> {
    if max_bytes == 0 {
        return vec![events];
    }
    let mut out = Vec::new();
    let (mut cur, mut bytes) = (Vec::new(), 0usize);
    for e in events {
        let n = json_len(&e);
        if !cur.is_empty() && bytes + n > max_bytes {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += n;
        cur.push(e);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Length of the event's JSON line (newline included), counted without allocating.
fn json_len(ev: &Event) -> usize {
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

#[cfg(test)]
mod tests;
