//! Fan-out: every event goes to every sink's bounded queue, under that queue's policy.
//! `block` waits for room (backpressure reaches the sensor and then the kernel, which counts
//! what it cannot keep); `drop_newest` discards the event for that sink and counts it.
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::{metrics, Event};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueuePolicy {
    Block,
    DropNewest,
}

/// A sink's queue: capacity in events and what to do when it is full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    pub capacity: usize,
    pub policy: QueuePolicy,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig { capacity: 10_000, policy: QueuePolicy::Block }
    }
}

/// One output of the fan-out.
pub struct Output {
    pub name: &'static str,
    pub tx: mpsc::Sender<Arc<Event>>,
    pub policy: QueuePolicy,
}

/// Counts of what the fan-out did, for tests and the shutdown report.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FanoutReport {
    pub received: u64,
    /// Per output: (name, queued, dropped because full, dropped because the sink is gone).
    pub outputs: Vec<(&'static str, u64, u64, u64)>,
}

/// Runs until `rx` closes; then drops the outputs' senders so sinks drain and flush.
/// Events are counted in `events_total` by the pipeline's first stage, not here.
pub async fn run(rx: mpsc::Receiver<Event>, outputs: Vec<Output>) -> FanoutReport {
    run_inner(rx, outputs, false).await
}

/// As [`run`], also counting each event in `events_total` (when no stage runs before it).
pub async fn run_counting(rx: mpsc::Receiver<Event>, outputs: Vec<Output>) -> FanoutReport {
    run_inner(rx, outputs, true).await
}

async fn run_inner(mut rx: mpsc::Receiver<Event>, outputs: Vec<Output>, count: bool) -> FanoutReport {
    let mut report = FanoutReport { received: 0, outputs: outputs.iter().map(|o| (o.name, 0, 0, 0)).collect() };
    while let Some(ev) = rx.recv().await {
        report.received += 1;
        if count {
            crate::stages::count_entry(&ev);
        }
        let ev = Arc::new(ev);
        for (i, o) in outputs.iter().enumerate() {
            let counts = &mut report.outputs[i];
            let res = match o.policy {
                QueuePolicy::Block => o.tx.send(ev.clone()).await.map_err(|_| "sink_closed"),
                QueuePolicy::DropNewest => o.tx.try_send(ev.clone()).map_err(|e| match e {
                    mpsc::error::TrySendError::Full(_) => "queue_full",
                    mpsc::error::TrySendError::Closed(_) => "sink_closed",
                }),
            };
            match res {
                Ok(()) => counts.1 += 1,
                Err(reason) => {
                    if reason == "queue_full" {
                        counts.2 += 1;
                    } else {
                        counts.3 += 1;
                    }
                    metrics::count_sink_drop(o.name, reason);
                }
            }
            ::metrics::gauge!(metrics::names::QUEUE_DEPTH, "queue" => o.name)
                .set((o.tx.max_capacity() - o.tx.capacity()) as f64);
        }
    }
    report
}

/// The `type` label of an event (its top-level key), as a static string for the known kinds.
pub fn ev_type(e: &Event) -> &'static str {
    match e.kind.key() {
        "process_exec" => "process_exec",
        "process_exit" => "process_exit",
        "process_kprobe" => "process_kprobe",
        "process_tracepoint" => "process_tracepoint",
        "rate_limit_info" => "rate_limit_info",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventKind;

    fn ev() -> Event {
        Event::new(EventKind::RateLimitInfo(Default::default()), "n", crate::time::Timestamp::now())
    }

    #[tokio::test]
    async fn drop_newest_counts_every_drop_and_block_loses_nothing() {
        let (tx, rx) = mpsc::channel(16);
        let (fast_tx, mut fast_rx) = mpsc::channel(1000);
        let (slow_tx, slow_rx) = mpsc::channel(10); // never read: stalls
        let task = tokio::spawn(run(
            rx,
            vec![
                Output { name: "fast", tx: fast_tx, policy: QueuePolicy::Block },
                Output { name: "stalled", tx: slow_tx, policy: QueuePolicy::DropNewest },
            ],
        ));
        let reader = tokio::spawn(async move {
            let mut n = 0u64;
            while fast_rx.recv().await.is_some() {
                n += 1;
            }
            n
        });
        for _ in 0..500 {
            tx.send(ev()).await.unwrap();
        }
        drop(tx);
        let report = task.await.unwrap();
        let delivered_fast = reader.await.unwrap();
        assert_eq!(report.received, 500);
        assert_eq!(delivered_fast, 500);
        let (_, queued, full, closed) = report.outputs[1];
        assert_eq!(queued, 10);
        assert_eq!(queued + full + closed, 500);
        drop(slow_rx);
    }
}
