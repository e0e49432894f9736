//! The staged pipeline: dedup → enrich → filter → rate limit → fan-out, each stage a task
//! between two bounded channels. A stage never drops silently: every discard increments
//! `nightjar_stage_dropped_total{stage,reason}`, is logged (at most once per stage per
//! 10 s) and is in the stage's [`StageReport`], so a run's accounting can be checked exactly.
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tokio::{sync::mpsc, task::JoinHandle};

use crate::{
    fanout::{self, FanoutReport, Output},
    metrics, Event,
};

pub mod chain;
pub mod dedup;
pub mod enrich;
pub mod fifo;
pub mod filter;
pub mod k8s;
pub mod key;
pub mod ratelimit;
pub mod users;

/// `pipeline:` section of the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Capacity of the channel between the sources and the pipeline, in events.
    #[serde(deserialize_with = "crate::config::bounded::<_, _, 1, 1048576>")]
    pub channel_capacity: usize,
    /// Capacity of the channel between the stages and the fan-out, in events.
    #[serde(deserialize_with = "crate::config::bounded::<_, _, 1, 1048576>")]
    pub stage_channel_capacity: usize,
    /// How long shutdown may take to drain and flush, in seconds.
    #[serde(deserialize_with = "crate::config::bounded::<_, _, 1, 3600>")]
    pub shutdown_timeout_secs: u64,
    pub dedup: dedup::DedupConfig,
    pub enrich: enrich::EnrichConfig,
    pub filter: filter::FilterConfig,
    pub rate_limit: ratelimit::RateLimitConfig,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            channel_capacity: 8192,
            stage_channel_capacity: 1024,
            shutdown_timeout_secs: 10,
            dedup: Default::default(),
            enrich: Default::default(),
            filter: Default::default(),
            rate_limit: Default::default(),
        }
    }
}

/// A stage could not be built from its config.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("pipeline.filter: {0}")]
    Filter(#[from] filter::FilterError),
    #[error("pipeline.rate_limit: {0}")]
    RateLimit(String),
    #[error("pipeline.dedup: {0}")]
    Dedup(String),
    #[error("pipeline.enrich.kubernetes: {0}")]
    Kubernetes(#[from] k8s::K8sError),
}

/// What a stage did, returned when its task ends.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StageReport {
    pub stage: &'static str,
    pub received: u64,
    pub passed: u64,
    /// Events the stage made itself (dedup summaries, `rate_limit_info`).
    pub generated: u64,
    pub dropped: BTreeMap<&'static str, u64>,
}

impl StageReport {
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }
}

/// Where a stage puts its results: events to pass on, drops to count.
pub struct Out {
    events: Vec<Event>,
    report: StageReport,
    last_log: Option<Instant>,
    unlogged: u64,
}

impl Out {
    pub fn new(stage: &'static str) -> Self {
        Out {
            events: Vec::with_capacity(16),
            report: StageReport { stage, ..Default::default() },
            last_log: None,
            unlogged: 0,
        }
    }

    /// Passes `ev` on to the next stage.
    pub fn pass(&mut self, ev: Event) {
        self.report.passed += 1;
        self.events.push(ev);
    }

    /// Emits an event the stage made itself.
    pub fn generate(&mut self, ev: Event) {
        self.report.generated += 1;
        crate::metrics::count_event(fanout::ev_type(&ev));
        self.events.push(ev);
    }

    /// Counts `n` discarded events for `reason` (metric, report, rate-limited log).
    pub fn drop(&mut self, reason: &'static str, n: u64) {
        let stage = self.report.stage;
        *self.report.dropped.entry(reason).or_default() += n;
        metrics::count_stage_drop(stage, reason, n);
        self.unlogged += n;
        let now = Instant::now();
        if self.last_log.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10)) {
            tracing::info!(
                stage,
                reason,
                dropped = self.unlogged,
                "stage discarded events (logged at most every 10 s)"
            );
            self.last_log = Some(now);
            self.unlogged = 0;
        }
    }

    /// The events produced so far (tests, the synchronous benchmark).
    pub fn take(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    pub fn report(&self) -> &StageReport {
        &self.report
    }
}

/// One step of the pipeline. Time is passed in, so tests drive windows and buckets
/// without sleeping.
pub trait Stage: Send + 'static {
    fn name(&self) -> &'static str;
    fn process(&mut self, ev: Event, now: Instant, out: &mut Out);
    /// Called every [`Stage::tick_interval`] (expired windows, periodic reports).
    fn tick(&mut self, _now: Instant, _out: &mut Out) {}
    /// Called once when the input closes: emit whatever is pending.
    fn finish(&mut self, now: Instant, out: &mut Out) {
        self.tick(now, out);
    }
    fn tick_interval(&self) -> Option<Duration> {
        None
    }
}

/// Counts an event entering the pipeline: `events_total{type}` and, for policy events,
/// `policy_events_total{policy,action}`.
pub fn count_entry(ev: &Event) {
    count_entries(std::slice::from_ref(ev));
}

/// [`count_entry`] for a batch: each series is counted once with the batch's number (a
/// batch holds a handful of types and policies), not looked up once per event.
pub fn count_entries(evs: &[Event]) {
    let mut types: Vec<(&'static str, u64)> = Vec::new();
    let mut policies: Vec<(&str, &str, u64)> = Vec::new();
    for ev in evs {
        let t = fanout::ev_type(ev);
        match types.iter_mut().find(|(x, _)| *x == t) {
            Some((_, n)) => *n += 1,
            None => types.push((t, 1)),
        }
        if let (Some(p), Some(a)) = (key::policy_name(ev), key::action(ev)) {
            match policies.iter_mut().find(|(x, y, _)| *x == p && *y == a) {
                Some((_, _, n)) => *n += 1,
                None => policies.push((p, a, 1)),
            }
        }
    }
    for (t, n) in types {
        metrics::count_events(t, n);
    }
    for (p, a, n) in policies {
        metrics::count_policy_events(p, a, n);
    }
}

/// Node-level facts the stages need.
#[derive(Debug, Clone)]
pub struct Context {
    pub node_name: String,
}

/// The running pipeline: the stages' task, the fan-out, and background refreshers.
pub struct Pipeline {
    /// The task running every stage (none when no stage is enabled).
    stages: Option<JoinHandle<Vec<StageReport>>>,
    fanout: JoinHandle<FanoutReport>,
    background: Vec<JoinHandle<()>>,
    /// This node's pods from the API server (when enrichment lists them).
    pod_feed: Option<k8s::PodFeed>,
}

/// What the whole pipeline did, for the shutdown report and the accounting tests.
#[derive(Debug, Default, Clone)]
pub struct PipelineReport {
    pub stages: Vec<StageReport>,
    pub fanout: FanoutReport,
}

impl PipelineReport {
    /// Events that entered the first stage.
    pub fn received(&self) -> u64 {
        self.stages.first().map(|s| s.received).unwrap_or(self.fanout.received)
    }
    pub fn generated(&self) -> u64 {
        self.stages.iter().map(|s| s.generated).sum()
    }
    pub fn stage_drops(&self) -> u64 {
        self.stages.iter().map(StageReport::dropped_total).sum()
    }
}

/// Builds every enabled stage without starting it: the errors [`spawn`] would return, for
/// `nightjar config --check`.
pub fn check(cfg: &PipelineConfig, ctx: &Context) -> Result<(), StageError> {
    if cfg.dedup.enabled {
        dedup::Dedup::new(&cfg.dedup)?;
    }
    if cfg.enrich.enabled {
        k8s::detect(&cfg.enrich.kubernetes, |k| std::env::var(k).ok())?;
    }
    filter::Filter::new(&cfg.filter)?;
    if cfg.rate_limit.enabled() {
        ratelimit::RateLimit::new(&cfg.rate_limit, ctx)?;
    }
    Ok(())
}

/// Builds the enabled stages and spawns them in one task ([`chain::run_chain`]) in front
/// of the fan-out to `outputs`. The pipeline ends when `input` closes and every stage has drained.
pub fn spawn(
    cfg: &PipelineConfig,
    ctx: &Context,
    input: mpsc::Receiver<Event>,
    outputs: Vec<Output>,
) -> Result<Pipeline, StageError> {
    let mut background = Vec::new();
    let mut pod_feed = None;
    let mut chain: Vec<Box<dyn Stage>> = Vec::new();
    if cfg.dedup.enabled {
        chain.push(Box::new(dedup::Dedup::new(&cfg.dedup)?));
    }
    if cfg.enrich.enabled {
        let (s, bg) = enrich::Enrich::new(&cfg.enrich, ctx)?;
        background.extend(bg);
        pod_feed = s.pod_feed();
        chain.push(Box::new(s));
    }
    let f = filter::Filter::new(&cfg.filter)?;
    if !f.is_noop() {
        chain.push(Box::new(f));
    }
    if cfg.rate_limit.enabled() {
        chain.push(Box::new(ratelimit::RateLimit::new(&cfg.rate_limit, ctx)?));
    }
    let count_at_fanout = chain.is_empty();
    let (rx, stages) = if count_at_fanout {
        (input, None)
    } else {
        let (tx, rx) = mpsc::channel(cfg.stage_channel_capacity.max(1));
        (rx, Some(tokio::spawn(chain::run_chain(chain, input, tx))))
    };
    let fanout = tokio::spawn(async move {
        if count_at_fanout {
            fanout::run_counting(rx, outputs).await
        } else {
            fanout::run(rx, outputs).await
        }
    });
    Ok(Pipeline { stages, fanout, background, pod_feed })
}

impl Pipeline {
    /// This node's pods as the API server lists them, for the sensor's Kubernetes scopes.
    pub fn pod_feed(&self) -> Option<k8s::PodFeed> {
        self.pod_feed.clone()
    }

    /// Waits for every stage and the fan-out to finish (after the input closed).
    pub async fn join(self) -> PipelineReport {
        let mut report = PipelineReport::default();
        if let Some(s) = self.stages {
            match s.await {
                Ok(r) => report.stages = r,
                Err(e) => tracing::error!(error = %e, "a pipeline stage failed"),
            }
        }
        match self.fanout.await {
            Ok(r) => report.fanout = r,
            Err(e) => tracing::error!(error = %e, "the fan-out failed"),
        }
        for b in self.background {
            b.abort();
        }
        report
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::{
        event::{Process, ProcessExec, ProcessKprobe},
        fanout::QueuePolicy,
        time::Timestamp,
        EventKind,
    };

    /// N events: execs of 10 binaries (some denied), plus kprobe events with duplicates.
    fn events(n: usize) -> Vec<Event> {
        (0..n)
            .map(|i| {
                let binary = format!("/bin/b{}", i % 10);
                let p = Process { exec_id: Some(format!("e{}", i / 4)), binary: Some(binary), ..Default::default() };
                let kind = if i % 2 == 0 {
                    EventKind::ProcessExec(Box::new(ProcessExec { process: Some(p.into()), ..Default::default() }))
                } else {
                    // Same exec_id and function for 2 in a row: the second is a duplicate.
                    EventKind::ProcessKprobe(Box::new(ProcessKprobe {
                        process: Some(p.into()),
                        function_name: Some("security_file_open".into()),
                        ..Default::default()
                    }))
                };
                Event::new(kind, "n", Timestamp::now())
            })
            .collect()
    }

    fn config() -> PipelineConfig {
        let mut cfg = PipelineConfig { stage_channel_capacity: 4, ..Default::default() };
        cfg.enrich.kubernetes.mode = k8s::K8sMode::Off;
        cfg.filter.denylist = filter::Lines::Text(r#"{"binary_regex":["^/bin/b9$"]}"#.into());
        cfg.rate_limit.per_key_events_per_second = 1;
        cfg.rate_limit.per_key_burst = 50;
        cfg
    }

    /// Sends N events through every stage to one sink queue of 8 that stalls; returns
    /// (N, what the sink got, the report).
    async fn run_with_stalled_sink(policy: QueuePolicy) -> (u64, u64, PipelineReport) {
        const N: usize = 2000;
        let (in_tx, in_rx) = mpsc::channel(16);
        let (q_tx, mut q_rx) = mpsc::channel::<crate::fanout::Entry>(8);
        let (sent_tx, sent_rx) = tokio::sync::oneshot::channel::<()>();
        let p = spawn(&config(), &Context { node_name: "n".into() }, in_rx, vec![Output::new("stalled", q_tx, policy)])
            .unwrap();
        let sink = tokio::spawn(async move {
            let mut got = 0u64;
            // Take a few, then stall: with `block`, until the stall ends by itself
            // (the producer is then blocked too); with `drop_newest`, until every event was sent.
            for _ in 0..3 {
                if q_rx.recv().await.is_some() {
                    got += 1;
                }
            }
            match policy {
                QueuePolicy::Block => tokio::time::sleep(Duration::from_millis(200)).await,
                QueuePolicy::DropNewest => {
                    let _ = sent_rx.await;
                }
            }
            while q_rx.recv().await.is_some() {
                got += 1;
            }
            got
        });
        for ev in events(N) {
            in_tx.send(ev).await.unwrap();
        }
        drop(in_tx);
        let report = p.join().await;
        let _ = sent_tx.send(());
        (N as u64, sink.await.unwrap(), report)
    }

    fn check(n: u64, delivered: u64, r: &PipelineReport) -> u64 {
        let fanout_drops: u64 = r.fanout.outputs.iter().map(|(_, _, full, closed)| full + closed).sum();
        assert_eq!(r.received(), n);
        assert_eq!(r.stages.iter().map(|s| s.stage).collect::<Vec<_>>(), ["dedup", "enrich", "filter", "rate_limit"]);
        for s in &r.stages {
            assert!(s.stage == "enrich" || s.dropped_total() > 0, "stage {} dropped nothing: {s:?}", s.stage);
        }
        // The exact accounting: everything that entered or was made is delivered or counted.
        assert_eq!(delivered + r.stage_drops() + fanout_drops, n + r.generated(), "{r:#?}");
        fanout_drops
    }

    #[tokio::test]
    async fn accounting_is_exact_with_a_stalled_blocking_sink() {
        let (n, delivered, r) = run_with_stalled_sink(QueuePolicy::Block).await;
        assert_eq!(check(n, delivered, &r), 0, "block never drops");
    }

    #[tokio::test]
    async fn accounting_is_exact_with_a_stalled_dropping_sink() {
        let (n, delivered, r) = run_with_stalled_sink(QueuePolicy::DropNewest).await;
        let drops = check(n, delivered, &r);
        assert!(drops > 0, "the stalled queue of 8 must have overflowed");
        assert!(delivered <= 8 + 3, "{delivered}");
    }

    #[tokio::test]
    async fn no_stage_means_the_fanout_counts() {
        let cfg = PipelineConfig {
            dedup: dedup::DedupConfig { enabled: false, ..Default::default() },
            enrich: enrich::EnrichConfig { enabled: false, ..Default::default() },
            ..Default::default()
        };
        let (in_tx, in_rx) = mpsc::channel(4);
        let (q_tx, mut q_rx) = mpsc::channel(100);
        let p =
            spawn(&cfg, &Context { node_name: "n".into() }, in_rx, vec![Output::new("q", q_tx, QueuePolicy::Block)])
                .unwrap();
        for ev in events(10) {
            in_tx.send(ev).await.unwrap();
        }
        drop(in_tx);
        let r = p.join().await;
        assert!(r.stages.is_empty());
        assert_eq!(r.received(), 10);
        let mut got = 0;
        while q_rx.recv().await.is_some() {
            got += 1;
        }
        assert_eq!(got, 10);
    }
}
