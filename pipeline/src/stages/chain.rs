//! Every enabled stage in one task: an event goes through all of them before the next one
//! is taken. Measured against one task per stage chained by channels (bench/run.sh,
//! scenario 3): each hop cost a send, a wake-up and a move of the event, more than most
//! stages' own work.
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{count_entries, Out, Stage, StageReport};
use crate::Event;

/// Most events taken from the input before what they produced is forwarded.
const BATCH: usize = 64;

struct Step {
    stage: Box<dyn Stage>,
    out: Out,
    period: Option<Duration>,
    next_tick: Instant,
}

/// Runs `stages` in order between `rx` and `tx` until `rx` closes, then finishes each (in
/// order, so what one emits at the end still goes through the later ones) and returns
/// their reports. Each input event is counted in `nightjar_events_total` on the way in.
pub async fn run_chain(
    stages: Vec<Box<dyn Stage>>,
    mut rx: mpsc::Receiver<Event>,
    tx: mpsc::Sender<Event>,
) -> Vec<StageReport> {
    let now = Instant::now();
    let mut steps: Vec<Step> = stages
        .into_iter()
        .map(|stage| {
            let period = stage.tick_interval();
            let out = Out::new(stage.name());
            Step { stage, out, period, next_tick: now + period.unwrap_or(Duration::ZERO) }
        })
        .collect();
    // The input batch and the events ready for the fan-out, both reused (with the
    // stages' own output buffers, which `through` swaps them with).
    let mut batch: Vec<Event> = Vec::with_capacity(BATCH);
    let mut ready: Vec<Event> = Vec::with_capacity(BATCH);
    let mut open = true;
    while open {
        let due = steps.iter().filter(|s| s.period.is_some()).map(|s| s.next_tick).min();
        let sleep = tokio::time::sleep_until(due.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)).into());
        tokio::select! {
            biased;
            n = rx.recv_many(&mut batch, BATCH) => {
                let now = Instant::now();
                if n > 0 {
                    warm(&mut batch);
                    count_entries(&batch);
                    through(&mut steps, 0, &mut batch, now, &mut ready, |s, ev, now, out| s.process(ev, now, out));
                } else {
                    for i in 0..steps.len() {
                        let step = &mut steps[i];
                        step.stage.finish(now, &mut step.out);
                        let mut made = step.out.take();
                        through(&mut steps, i + 1, &mut made, now, &mut ready, |s, ev, now, out| s.process(ev, now, out));
                    }
                    open = false;
                }
            }
            _ = sleep, if due.is_some() => {
                let now = Instant::now();
                for i in 0..steps.len() {
                    let step = &mut steps[i];
                    let Some(p) = step.period else { continue };
                    if step.next_tick > now {
                        continue;
                    }
                    step.next_tick = now + p;
                    step.stage.tick(now, &mut step.out);
                    let mut made = step.out.take();
                    through(&mut steps, i + 1, &mut made, now, &mut ready, |s, ev, now, out| s.process(ev, now, out));
                }
            }
        }
        let lost = forward(&tx, &mut ready).await;
        if lost > 0 {
            // Only when the fan-out died; count rather than lose silently.
            if let Some(last) = steps.last_mut() {
                last.out.drop("downstream_closed", lost);
            }
        }
    }
    steps.into_iter().map(|s| s.out.report).collect()
}

/// Sends every event of `ready` to the fan-out, in order, taking room for as many at once
/// as the channel can hold (one wait for room per run, not one per event). Returns how
/// many could not be sent because the fan-out is gone.
async fn forward(tx: &mpsc::Sender<Event>, ready: &mut Vec<Event>) -> u64 {
    let mut lost = 0;
    let mut events = ready.drain(..);
    loop {
        let n = events.len().min(tx.max_capacity());
        if n == 0 {
            return lost;
        }
        match tx.reserve_many(n).await {
            Ok(permits) => permits.zip(events.by_ref()).for_each(|(p, ev)| p.send(ev)),
            Err(_) => {
                lost += events.by_ref().count() as u64;
            }
        }
    }
}

/// Passes `events` through the stages from `from` on; what comes out of the last one is
/// appended to `ready`. `events` is left empty (possibly another, emptied, buffer).
fn through(
    steps: &mut [Step],
    from: usize,
    events: &mut Vec<Event>,
    now: Instant,
    ready: &mut Vec<Event>,
    process: impl Fn(&mut dyn Stage, Event, Instant, &mut Out),
) {
    for step in steps.iter_mut().skip(from) {
        if events.is_empty() {
            return;
        }
        for ev in events.drain(..) {
            step.out.report.received += 1;
            process(step.stage.as_mut(), ev, now, &mut step.out);
        }
        // The stage's output becomes the next one's input; the emptied vector is reused
        // as the stage's next output buffer.
        std::mem::swap(events, &mut step.out.events);
    }
    ready.append(events);
}

/// Reads, for the whole batch, the fields the stages look at, before any stage runs. An
/// event that waited in the input channel is out of the cache: read by the stages event by
/// event, each of its fields would be a cache miss waiting for the one before (the
/// payload, then the process, then its strings), while this tight loop over the batch
/// has the misses of several events in flight at once. It changes nothing.
fn warm(batch: &mut [Event]) {
    let first = |s: Option<&str>| s.and_then(|s| s.as_bytes().first()).copied().unwrap_or(0) as usize;
    let mut sum = 0usize;
    for ev in batch {
        // The shared processes' counts (enrichment asks whether another event holds one).
        ev.for_each_process_mut(|p| sum += p.is_shared() as usize);
        if let Some(p) = ev.process() {
            sum += first(p.exec_id.as_deref()) + first(p.binary.as_deref()) + first(p.arguments.as_deref());
            sum += p.uid.unwrap_or(0) as usize + p.user.is_some() as usize + p.pod.is_some() as usize;
            sum += p.process_credentials.is_some() as usize + p.group.is_some() as usize;
        }
        if let Some(h) = ev.hook() {
            sum += first(h.policy_name) + first(h.action) + first(h.function.as_deref()) + h.args.len();
        }
    }
    std::hint::black_box(sum);
}
