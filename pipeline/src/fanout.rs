//! Fan-out: every event goes to every sink's buffer, under that buffer's policy.
//! `drop_newest` discards the event for that sink when its buffer is full, counted.
//! `block` never holds up the other sinks while there is room anywhere: the blocking
//! buffers share their room. An event for a full blocking buffer waits in that sink's
//! overflow queue here, in order, as long as every blocking buffer's events together
//! (queued plus overflow) stay within the sum of their sizes; only when that shared room
//! is used up does the fan-out wait (backpressure, up to the kernel, which counts what it
//! cannot keep). The fan-out never waits for a sink's I/O.
//!
//! The event's acknowledgement token ([`crate::ack`]) is taken out of the event here and
//! handed to each sink's buffer beside the shared event, so a buffer can keep the token
//! (until the event is durable) without keeping the event.
use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
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
    let mut f = Fan::new(outputs);
    let mut received = 0u64;
    loop {
        let next = if f.overflowing() {
            tokio::select! {
                biased;
                _ = f.wait_room(false) => continue,
                ev = rx.recv() => ev,
            }
        } else {
            rx.recv().await
        };
        let Some(mut ev) = next else { break };
        received += 1;
        if count {
            crate::stages::count_entry(&ev);
        }
        let ack = ev.ack.take();
        let ev = Arc::new(ev);
        while !f.has_room() {
            f.wait_room(true).await;
        }
        f.deliver(&ev, &ack);
    }
    f.finish(received).await
}

/// One output and the events waiting for room in its buffer (block only).
struct Slot {
    out: Output,
    cap: usize,
    over: VecDeque<Entry>,
}

/// The outputs, and the room the blocking ones share.
struct Fan {
    slots: Vec<Slot>,
    /// The sum of the blocking buffers' sizes.
    shared: usize,
    /// Events in overflow queues.
    over: usize,
}

impl Fan {
    fn new(outputs: Vec<Output>) -> Fan {
        let slots: Vec<Slot> =
            outputs.into_iter().map(|out| Slot { cap: out.tx.max_capacity(), out, over: VecDeque::new() }).collect();
        let shared = slots.iter().filter(|s| s.out.policy == QueuePolicy::Block).map(|s| s.cap).sum();
        Fan { slots, shared, over: 0 }
    }

    fn overflowing(&self) -> bool {
        self.over > 0
    }

    /// Whether the next event fits: every blocking buffer that cannot take it now can hold
    /// it in overflow within the shared room.
    fn has_room(&mut self) -> bool {
        self.drain();
        let blocking = self.slots.iter().filter(|s| s.out.policy == QueuePolicy::Block && !s.out.tx.is_closed());
        let (mut used, mut needed) = (self.over, 0);
        for s in blocking {
            used += s.cap - s.out.tx.capacity();
            needed += (!s.over.is_empty() || s.out.tx.capacity() == 0) as usize;
        }
        needed == 0 || used + needed <= self.shared
    }

    /// Moves overflow into buffers that have room again, in order.
    fn drain(&mut self) {
        for s in self.slots.iter_mut().filter(|s| !s.over.is_empty()) {
            while let Some(e) = s.over.pop_front() {
                match s.out.tx.try_send(e) {
                    Ok(()) => self.over -= 1,
                    Err(mpsc::error::TrySendError::Full(e)) => {
                        s.over.push_front(e);
                        break;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        self.over -= 1 + s.over.len();
                        s.out.counters.queued.fetch_sub(1 + s.over.len() as u64, Ordering::Relaxed);
                        for _ in 0..=s.over.len() {
                            count_drop(&s.out, "sink_closed");
                        }
                        s.over.clear();
                    }
                }
            }
            ::metrics::gauge!(metrics::names::FANOUT_OVERFLOW, "sink" => s.out.name).set(s.over.len() as f64);
        }
    }

    /// Waits until a blocking buffer that holds overflow (or, with `full`, one that is full)
    /// has room, then moves overflow in.
    async fn wait_room(&mut self, full: bool) {
        let waits: Vec<_> = self
            .slots
            .iter()
            .filter(|s| {
                s.out.policy == QueuePolicy::Block
                    && !s.out.tx.is_closed()
                    && (!s.over.is_empty() || (full && s.out.tx.capacity() == 0))
            })
            .map(|s| Box::pin(s.out.tx.reserve()))
            .collect();
        if waits.is_empty() {
            return;
        }
        // The permit is let go at once: room is there, and `drain` takes it.
        drop(futures_util::future::select_all(waits).await);
        self.drain();
    }

    fn deliver(&mut self, ev: &Arc<Event>, ack: &Option<Ack>) {
        for s in &mut self.slots {
            let entry = Entry { event: ev.clone(), ack: ack.clone() };
            let o = &s.out;
            let res =
                if s.over.is_empty() { o.tx.try_send(entry) } else { Err(mpsc::error::TrySendError::Full(entry)) };
            match res {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(e)) if o.policy == QueuePolicy::Block => {
                    s.over.push_back(e);
                    self.over += 1;
                    ::metrics::gauge!(metrics::names::FANOUT_OVERFLOW, "sink" => o.name).set(s.over.len() as f64);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    count_drop(o, "queue_full");
                    continue;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    count_drop(o, "sink_closed");
                    continue;
                }
            }
            o.counters.queued.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The input is closed: hands every output its overflow (waiting for room), then lets
    /// the outputs go so the sinks drain and flush.
    async fn finish(mut self, received: u64) -> FanoutReport {
        for s in &mut self.slots {
            while let Some(e) = s.over.pop_front() {
                if s.out.tx.send(e).await.is_err() {
                    let lost = 1 + s.over.len();
                    s.out.counters.queued.fetch_sub(lost as u64, Ordering::Relaxed);
                    for _ in 0..lost {
                        count_drop(&s.out, "sink_closed");
                    }
                    s.over.clear();
                }
            }
            ::metrics::gauge!(metrics::names::FANOUT_OVERFLOW, "sink" => s.out.name).set(0.0);
        }
        let outputs = self
            .slots
            .iter()
            .map(|s| {
                let c = &s.out.counters;
                let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
                (s.out.name, get(&c.queued), get(&c.dropped_full), get(&c.dropped_closed))
            })
            .collect();
        FanoutReport { received, outputs }
    }
}

/// Counts an event the fan-out could not queue for `o`.
fn count_drop(o: &Output, reason: &'static str) {
    metrics::count_sink_drop(o.name, reason);
    let c = if reason == "queue_full" { &o.counters.dropped_full } else { &o.counters.dropped_closed };
    c.fetch_add(1, Ordering::Relaxed);
}

/// The `type` label of an event: its key in the kinds table, `other` for a kind the table
/// does not know (a bounded label set).
pub fn ev_type(e: &Event) -> &'static str {
    e.kind.kind().map(nightjar_event::Kind::key).unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::EventKind;

    fn ev() -> Event {
        Event::new(EventKind::RateLimitInfo(Default::default()), "n", crate::time::Timestamp::now())
    }

    fn seq(e: &Entry) -> u64 {
        e.event.node_name.as_deref().and_then(|n| n.parse().ok()).unwrap_or(u64::MAX)
    }

    /// A blocking sink that stalls does not hold up another blocking sink while the room
    /// their buffers share lasts (110 events here); then the fan-out waits, and once the
    /// stalled sink reads, it gets every event in order.
    #[tokio::test]
    async fn a_stalled_blocking_sink_holds_the_others_only_once_the_shared_room_is_used() {
        let (tx, rx) = mpsc::channel(1);
        let (fast_tx, mut fast_rx) = mpsc::channel(100);
        let (slow_tx, mut slow_rx) = mpsc::channel(10);
        let outputs =
            vec![Output::new("fast", fast_tx, QueuePolicy::Block), Output::new("stalled", slow_tx, QueuePolicy::Block)];
        let task = tokio::spawn(run(rx, outputs));
        let fast = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(e) = fast_rx.recv().await {
                got.push(seq(&e));
            }
            got
        });
        let sent = Arc::new(AtomicU64::new(0));
        let producer = {
            let sent = sent.clone();
            tokio::spawn(async move {
                for i in 0..300u64 {
                    let mut e = ev();
                    e.node_name = Some(i.to_string());
                    tx.send(e).await.unwrap();
                    sent.store(i + 1, Ordering::Relaxed);
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        // 10 in the stalled buffer, 100 in overflow (the fast buffer's room), one held by
        // the fan-out, one in its input channel.
        let n = sent.load(Ordering::Relaxed);
        assert!((110..=113).contains(&n), "the fan-out took {n} events before it waited");
        let mut slow = Vec::new();
        while let Some(e) = slow_rx.recv().await {
            slow.push(seq(&e));
        }
        producer.await.unwrap();
        let report = task.await.unwrap();
        assert_eq!(slow, (0..300).collect::<Vec<_>>());
        assert_eq!(fast.await.unwrap(), (0..300).collect::<Vec<_>>());
        assert_eq!(report.outputs, vec![("fast", 300, 0, 0), ("stalled", 300, 0, 0)]);
    }

    #[tokio::test]
    async fn overflow_for_a_sink_that_closes_is_counted_as_dropped() {
        let (tx, rx) = mpsc::channel(4);
        let (fast_tx, mut fast_rx) = mpsc::channel(100);
        let (slow_tx, slow_rx) = mpsc::channel(2);
        let task = tokio::spawn(run(
            rx,
            vec![Output::new("fast", fast_tx, QueuePolicy::Block), Output::new("gone", slow_tx, QueuePolicy::Block)],
        ));
        for _ in 0..20 {
            tx.send(ev()).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(slow_rx);
        for _ in 0..5 {
            tx.send(ev()).await.unwrap();
        }
        drop(tx);
        let report = task.await.unwrap();
        let mut n = 0;
        while fast_rx.recv().await.is_some() {
            n += 1;
        }
        assert_eq!(n, 25);
        let (_, queued, full, closed) = report.outputs[1];
        // 2 were in its buffer when it closed (the buffer's to count); the 18 in overflow
        // and the 5 after are counted here.
        assert_eq!((queued, full, closed), (2, 0, 23), "{:?}", report.outputs);
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
