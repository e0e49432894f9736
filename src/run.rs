//! `nightjar run`: sensor → pipeline (fan-out) → sinks, metrics endpoint, graceful shutdown.
use std::{
    io::IsTerminal,
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, OnceLock,
    },
    time::Duration,
};

use anyhow::Context;
use pipeline::{fanout::Output, stages};
use tokio::sync::{mpsc, watch};

use crate::{
    cli::{Global, LogFormat, RunArgs},
    config::{self, Config},
};

pub fn main(global: &Global, args: RunArgs) -> ExitCode {
    let (cfg, policies) = match config::load_checked_or_exit(global) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logging(&cfg);
    raise_fd_limit();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nightjar: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cfg, policies, args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<BadInput>().is_some() => {
            eprintln!("nightjar: {}", error_chain(&e));
            ExitCode::from(crate::EXIT_USAGE)
        }
        Err(e) => {
            eprintln!("nightjar: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each said once: many errors already write their
/// source into their own message (`cannot listen on X: Address already in use`).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// Raises the soft limit on open files to the hard limit: every sink file, metrics and
/// control connection, BPF map and program is a descriptor, and the usual soft 1024 runs
/// out under load long before the hard limit does.
fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit(2) with a valid pointer to an rlimit we own.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max && {
            let want = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0
        }
    };
    if raised {
        tracing::debug!(from = lim.rlim_cur, to = lim.rlim_max, "raised the open-files limit");
    }
}

/// What `/healthz` and `nightjar status` say: starting, ok, or degraded and why.
#[derive(Clone, Default)]
struct AgentHealth {
    ready: Arc<AtomicBool>,
    sensor: Arc<OnceLock<Arc<sensor::loader::SensorStats>>>,
}

impl AgentHealth {
    fn check(&self) -> Result<(), String> {
        if !self.ready.load(Ordering::Relaxed) {
            return Err("starting: the sensor is not attached yet".into());
        }
        let mut degraded = Vec::new();
        if let Some(s) = self.sensor.get() {
            let n = s.missed_recent.load(Ordering::Relaxed);
            if n > 0 {
                degraded.push(format!(
                    "the kernel dropped {n} events in the last {} s (its ring buffer is full: the pipeline is behind)",
                    sensor::loader::MISSED_WINDOW_SECS
                ));
            }
        }
        if degraded.is_empty() {
            Ok(())
        } else {
            Err(format!("degraded: {}", degraded.join("; ")))
        }
    }
}

/// A policy or other user input the agent cannot use (exit code 2).
#[derive(Debug)]
struct BadInput(String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// Kernels before 5.11 (and distribution kernels that backport BPF onto an older base)
/// charge BPF maps to RLIMIT_MEMLOCK, whose default in containers is far below a ring
/// buffer; lifting it needs CAP_SYS_RESOURCE. Newer kernels charge the memory cgroup.
fn lift_memlock_limit() {
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit reads the struct it is given and has no other effect.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        let e = std::io::Error::last_os_error();
        tracing::debug!(error = %e, "RLIMIT_MEMLOCK not lifted (only kernels before 5.11 need it)");
    }
}

pub fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match cfg.log.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

async fn run(cfg: Config, policies: Vec<sensor::policy::Loaded>, args: RunArgs) -> anyhow::Result<()> {
    let node = cfg.node_name();
    pipeline::metrics::set_tetragon_names(cfg.metrics.tetragon_names);
    let health = AgentHealth::default();
    let _metrics_task = if cfg.metrics.enabled {
        let handle = pipeline::metrics::install_recorder()?;
        let h = health.clone();
        let health: pipeline::metrics::HealthFn = Arc::new(move || h.check());
        let (addr, task) = pipeline::metrics::serve(cfg.metrics.listen, handle, health).await?;
        tracing::info!(%addr, "metrics on http://{addr}/metrics");
        Some(task)
    } else {
        None
    };

    // Sinks first: a sink that cannot start is reported, the others keep working.
    let mut outputs = Vec::new();
    let mut drivers = Vec::new();
    let mut built_sinks = sinks::build_all(&cfg.sinks);
    built_sinks.extend(sinks::build_remote(&cfg.sinks).await);
    // What `nightjar status` says of each sink: its live health, or why it did not start.
    let mut sink_status: Vec<(&'static str, Result<Option<sinks::HealthHandle>, String>)> = Vec::new();
    for (name, built) in built_sinks {
        sink_status.push((name, built.as_ref().map(|b| b.health.clone()).map_err(|e| e.to_string())));
        match built {
            Ok(b) => {
                let (tx, rx) = mpsc::channel(b.queue.capacity.max(1));
                outputs.push(Output { name, tx, policy: b.queue.policy });
                drivers.push((name, tokio::spawn(sinks::driver::run(b.sink, rx, b.batch))));
            }
            Err(e) => tracing::error!(sink = name, error = %e, "sink disabled: it could not start"),
        }
    }
    if outputs.is_empty() {
        anyhow::bail!("no sink could start; enable at least one under `sinks:`");
    }
    // `nightjar getevents` subscribers: one more output that never blocks the pipeline.
    // It also counts what reaches the fan-out, for the events/s of `nightjar status`.
    let (events_tx, _) = tokio::sync::broadcast::channel::<Arc<pipeline::Event>>(4096);
    let counted = Arc::new(AtomicU64::new(0));
    let rate = Arc::new(AtomicU64::new(0));
    {
        let (tx, mut rx) = mpsc::channel::<Arc<pipeline::Event>>(4096);
        outputs.push(Output { name: "getevents", tx, policy: pipeline::fanout::QueuePolicy::DropNewest });
        let events_tx = events_tx.clone();
        let seen = counted.clone();
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                seen.fetch_add(1, Ordering::Relaxed);
                // No subscriber is not a loss: nobody asked for the stream.
                let _ = events_tx.send(e);
            }
        });
        let (counted, rate) = (counted.clone(), rate.clone());
        tokio::spawn(async move {
            let mut last = 0;
            let mut t = tokio::time::interval(Duration::from_secs(1));
            loop {
                t.tick().await;
                let now = counted.load(Ordering::Relaxed);
                rate.store(now - last, Ordering::Relaxed);
                last = now;
            }
        });
    }
    let queues: Vec<(&'static str, mpsc::WeakSender<Arc<pipeline::Event>>)> =
        outputs.iter().map(|o| (o.name, o.tx.downgrade())).collect();

    // The stages before the sensor: a bad filter is reported before any hook is attached.
    let (tx, rx) = mpsc::channel(cfg.pipeline.channel_capacity.max(1));
    let pipeline = stages::spawn(&cfg.pipeline, &stages::Context { node_name: node.clone() }, rx, outputs)
        .map_err(|e| BadInput(e.to_string()))?;

    let mut sensor = if cfg.sensor.enabled {
        lift_memlock_limit();
        let mut s = sensor::Sensor::load(&cfg.sensor, &node).context("cannot start the sensor")?;
        tracing::info!(features = ?s.features, node = %node, "sensor loaded");
        for p in &policies {
            s.add_policy(p).map_err(|e| BadInput(e.to_string()))?;
        }
        let _ = health.sensor.set(s.stats());
        Some(s)
    } else {
        tracing::info!("sensor disabled (sensor.enabled: false): only the configured sources feed the pipeline");
        None
    };
    let node_for_status = node.clone();
    let health_for_status = health.clone();
    let extra: crate::control::StatusExtra = Arc::new(move || {
        let sinks: serde_json::Map<String, serde_json::Value> = sink_status
            .iter()
            .map(|(name, st)| {
                let s = match st {
                    Ok(None) => "running".to_owned(),
                    Ok(Some(h)) => match h.lock().map(|h| h.clone()) {
                        Ok(sinks::Health::Healthy) => "healthy".to_owned(),
                        Ok(sinks::Health::Degraded(why)) => format!("degraded: {why}"),
                        Err(_) => "unknown".to_owned(),
                    },
                    Err(e) => format!("disabled: {e}"),
                };
                ((*name).to_owned(), serde_json::Value::String(s))
            })
            .collect();
        let q: serde_json::Map<String, serde_json::Value> = queues
            .iter()
            .filter_map(|(n, w)| {
                let tx = w.upgrade()?;
                Some((
                    n.to_string(),
                    serde_json::json!({"depth": tx.max_capacity() - tx.capacity(), "capacity": tx.max_capacity()}),
                ))
            })
            .collect();
        serde_json::json!({
            "node_name": node_for_status,
            "health": health_for_status.check().err().unwrap_or_else(|| "ok".into()),
            "events_total": counted.load(Ordering::Relaxed),
            "events_per_second": rate.load(Ordering::Relaxed),
            "queues": q,
            "sinks": sinks,
        })
    });
    // Without a sensor, requests that need one are answered "the sensor is not running".
    let control_tx = sensor.as_ref().map(|s| s.control()).unwrap_or_else(|| mpsc::channel(1).0);
    let _control = crate::control::serve(cfg.control.socket.clone(), control_tx, extra, events_tx.clone())
        .await
        .with_context(|| format!("control socket {}", cfg.control.socket.display()))?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let source_task = cfg.sources.tetragon_file.enabled.then(|| {
        tracing::info!(path = %cfg.sources.tetragon_file.path.display(), "tailing the Tetragon export");
        tokio::spawn(pipeline::sources::tetragon_file::run(
            cfg.sources.tetragon_file.clone(),
            tx.clone(),
            stop_rx.clone(),
        ))
    });
    let sensor_task = match sensor.take() {
        Some(s) => tokio::spawn(s.run(tx, stop_rx)),
        None => {
            drop(tx);
            tokio::spawn(async { Ok(()) })
        }
    };
    health.ready.store(true, Ordering::Relaxed);

    wait_for_stop(args.duration).await;
    tracing::info!("shutting down: stopping the sensor, draining the pipeline, flushing sinks");
    let _ = stop_tx.send(true);
    let deadline = Duration::from_secs(cfg.pipeline.shutdown_timeout_secs);
    let drained = tokio::time::timeout(deadline, async {
        if let Some(t) = source_task {
            match t.await {
                Ok(Ok(r)) => tracing::info!(events = r.events, bad_lines = r.bad_lines, rotations = r.rotations, truncations = r.truncations, "tetragon_file source stopped"),
                Ok(Err(e)) => tracing::error!(error = %e, "tetragon_file source stopped with an error"),
                Err(e) => tracing::error!(error = %e, "tetragon_file source failed"),
            }
        }
        match sensor_task.await {
            Ok(Err(e)) => tracing::error!(error = %e, "sensor stopped with an error"),
            Err(e) => tracing::error!(error = %e, "sensor task failed"),
            Ok(Ok(())) => {}
        }
        let report = pipeline.join().await;
        let mut undelivered = 0;
        for s in &report.stages {
            // Filtered, deduplicated or rate-limited events are discarded by design, not lost.
            tracing::info!(stage = s.stage, received = s.received, passed = s.passed, generated = s.generated, dropped = ?s.dropped, "stage finished");
        }
        for (name, d) in drivers {
            if let Ok(r) = d.await {
                tracing::info!(sink = name, delivered = r.delivered, failed = r.failed, "sink finished");
                undelivered += r.failed;
            }
        }
        for (name, _queued, full, closed) in &report.fanout.outputs {
            undelivered += full + closed;
            if full + closed > 0 {
                tracing::warn!(sink = name, dropped = full + closed, "events dropped for this sink");
            }
        }
        (report.received(), undelivered)
    })
    .await;
    match drained {
        Ok((received, undelivered)) => {
            tracing::info!(received, undelivered, "shutdown complete");
        }
        Err(_) => tracing::error!(?deadline, "shutdown deadline passed; some events may not have been flushed"),
    }
    let _ = std::fs::remove_file(&cfg.control.socket);
    Ok(())
}

async fn wait_for_stop(duration: Option<u64>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    let timer = async {
        match duration {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
        _ = timer => tracing::info!("--duration elapsed"),
    }
}
