//! Events/s through the pipeline on one core: a synthetic source → every stage (dedup,
//! enrich, filter with allow/deny lists and redaction, rate limit) → fan-out → a null sink,
//! against a baseline measured in the same run (source → fan-out → null sink, no stages).
//! `cargo bench -p nightjar-pipeline --bench pipeline` prints the figures.
use std::time::Instant;

use nightjar_pipeline::{
    event::{Process, ProcessExec, ProcessKprobe},
    fanout::{Output, QueuePolicy},
    stages::{self, filter::Lines, k8s::K8sMode, Context, PipelineConfig},
    time::Timestamp,
    Event, EventKind,
};
use tokio::sync::mpsc;

fn synthetic(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let p = Process {
                exec_id: Some(format!("bm9kZToxMjM0NTY3ODk6{i}")),
                pid: Some(1000 + (i % 30000) as u32),
                uid: Some(0),
                binary: Some(format!("/usr/bin/tool{}", i % 50)),
                arguments: Some(format!("--user admin --password=secret{i} --verbose")),
                cwd: Some("/".into()),
                ..Default::default()
            };
            let kind = if i % 2 == 0 {
                EventKind::ProcessExec(Box::new(ProcessExec { process: Some(p.into()), ..Default::default() }))
            } else {
                EventKind::ProcessKprobe(Box::new(ProcessKprobe {
                    process: Some(p.into()),
                    function_name: Some("security_file_open".into()),
                    policy_name: Some("file-monitoring".into()),
                    action: Some("KPROBE_ACTION_POST".into()),
                    ..Default::default()
                }))
            };
            Event::new(kind, "bench-node", Timestamp::now())
        })
        .collect()
}

fn all_stages() -> PipelineConfig {
    let mut cfg = PipelineConfig::default();
    cfg.enrich.kubernetes.mode = K8sMode::Off;
    cfg.filter.allowlist = Lines::Text(r#"{"event_set":["PROCESS_EXEC","PROCESS_KPROBE"]}"#.into());
    cfg.filter.denylist = Lines::Text(r#"{"binary_regex":["^/usr/sbin/never$"]}"#.into());
    cfg.filter.redaction_filters = Lines::Text(r#"{"redact":["--password=(\\S+)"]}"#.into());
    // High enough that nothing is dropped: the bench measures the work, not the limit.
    cfg.rate_limit.events_per_second = u32::MAX;
    cfg.rate_limit.burst = u32::MAX;
    cfg.rate_limit.per_key_events_per_second = u32::MAX;
    cfg.rate_limit.per_key_burst = u32::MAX;
    cfg
}

fn no_stages() -> PipelineConfig {
    let mut cfg = PipelineConfig::default();
    cfg.dedup.enabled = false;
    cfg.enrich.enabled = false;
    cfg
}

/// Runs `events` through a pipeline built from `cfg` on a one-thread runtime; events/s.
fn run(cfg: &PipelineConfig, events: Vec<Event>) -> (f64, u64) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let n = events.len();
        let (in_tx, in_rx) = mpsc::channel(8192);
        let (q_tx, mut q_rx) = mpsc::channel::<nightjar_pipeline::fanout::Entry>(10_000);
        let started = Instant::now();
        let p = stages::spawn(
            cfg,
            &Context { node_name: "bench-node".into() },
            in_rx,
            vec![Output::new("null", q_tx, QueuePolicy::Block)],
        )
        .expect("pipeline");
        let null_sink = tokio::spawn(async move {
            let mut got = 0u64;
            while let Some(e) = q_rx.recv().await {
                std::hint::black_box(&e);
                got += 1;
            }
            got
        });
        for ev in events {
            if in_tx.send(ev).await.is_err() {
                break;
            }
        }
        drop(in_tx);
        let report = p.join().await;
        let got = null_sink.await.expect("null sink");
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(report.received(), n as u64);
        (n as f64 / secs, got)
    })
}

fn main() {
    let n: usize = std::env::var("BENCH_EVENTS").ok().and_then(|s| s.parse().ok()).unwrap_or(200_000);
    println!("pipeline benchmark: {n} synthetic events (half process_exec, half process_kprobe), one core");
    let (base, base_got) = run(&no_stages(), synthetic(n));
    println!("  baseline  source → fan-out → null sink:               {base:>12.0} events/s ({base_got} delivered)");
    let (all, got) = run(&all_stages(), synthetic(n));
    println!("  pipeline  source → dedup → enrich → filter → rate limit → fan-out → null sink: {all:>12.0} events/s ({got} delivered)");
    println!("  ratio     pipeline / baseline: {:.2}", all / base);
}
