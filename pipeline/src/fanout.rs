//! Fan-out: every event goes to every sink's buffer, under that buffer's policy. `block`
//! waits for room in that buffer (a disk buffer takes everything until its size limit, so
//! a slow sink does not hold the others up until it is full); `drop_newest` discards the
//! event for that sink and counts it. The fan-out never waits for a sink's I/O.
//!
//! The event's acknowledgement token ([`crate::ack`]) is taken out of the event here and
//! handed to each sink's buffer beside the shared event, so a buffer can keep the token
//! (until the event is durable) without keeping the event.
use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::{ack::Ack, metrics, Event};

/// What a sink's buffer does when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueuePolicy {
    /// Wait for room: backpressure, up to the kernel (which counts what it cannot keep).
    Block,
    /// Discard the event for this sink, counted.
    DropNewest,
}

/// One event on its way to one sink, with the source's token (if any).
#[derive(Debug, Clone)]
pub struct Entry {
    pub event: Arc<Event>,
    pub ack: Option<Ack>,
}

/// Live counts of one output, readable while the pipeline runs (shutdown report, status).
#[derive(Debug, Default)]
pub struct OutputCounters {
    pub queued: AtomicU64,
    pub dropped_full: AtomicU64,
    pub dropped_closed: AtomicU64,
}

/// One output of the fan-out.
pub struct Output {
    pub name: &'static str,
    pub tx: mpsc::Sender<Entry>,
    pub policy: QueuePolicy,
    pub counters: Arc<OutputCounters>,
}

impl Output {
    pub fn new(name: &'static str, tx: mpsc::Sender<Entry>, policy: QueuePolicy) -> Self {
        Output { name, tx, policy, counters: Arc::default() }
    }
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
    let mut received = 0u64;
    while let Some(mut ev) = rx.recv().await {
        received += 1;
        if count {
            crate::stages::count_entry(&ev);
        }
        let ack = ev.ack.take();
        let ev = Arc::new(ev);
        for o in &outputs {
            let entry = Entry { event: ev.clone(), ack: ack.clone() };
            let res = match o.policy {
                QueuePolicy::Block => o.tx.send(entry).await.map_err(|_| "sink_closed"),
                QueuePolicy::DropNewest => o.tx.try_send(entry).map_err(|e| match e {
                    mpsc::error::TrySendError::Full(_) => "queue_full",
                    mpsc::error::TrySendError::Closed(_) => "sink_closed",
                }),
            };
            let c = &o.counters;
            match res {
                Ok(()) => c.queued.fetch_add(1, Ordering::Relaxed),
                Err("queue_full") => {
                    metrics::count_sink_drop(o.name, "queue_full");
                    c.dropped_full.fetch_add(1, Ordering::Relaxed)
                }
                Err(reason) => {
                    metrics::count_sink_drop(o.name, reason);
                    c.dropped_closed.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
    }
    let outputs = outputs
        .iter()
        .map(|o| {
            let c = &o.counters;
            let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
            (o.name, get(&c.queued), get(&c.dropped_full), get(&c.dropped_closed))
        })
        .collect();
    FanoutReport { received, outputs }
}

/// The `type` label of an event: its key in the kinds table, `other` for a kind the table
/// does not know (a bounded label set).
pub fn ev_type(e: &Event) -> &'static str {
    e.kind.kind().map(nightjar_event::Kind::key).unwrap_or("other")
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
                Output::new("fast", fast_tx, QueuePolicy::Block),
                Output::new("stalled", slow_tx, QueuePolicy::DropNewest),
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
