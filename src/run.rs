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
use sinks::{run::Running, Health};
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
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_keep_alive(Duration::from_secs(1))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nightjar: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let res = rt.block_on(run(cfg, policies, args));
    // A sink's blocking thread stuck in a write (stdout into a pipe nobody reads) must not
    // hold the exit: what it had is already counted as undelivered.
    rt.shutdown_timeout(Duration::from_millis(500));
    match res {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
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
    /// Every running sink (degraded when it has not delivered for its health timeout).
    sinks: Vec<Arc<sinks::SinkHealth>>,
    /// Sinks that could not be built, and why.
    failed_sinks: Vec<(&'static str, String)>,
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
        degraded.extend(self.failed_sinks.iter().map(|(n, why)| format!("sink {n} disabled: {why}")));
        for h in &self.sinks {
            match h.health() {
                Health::Healthy => {}
                Health::Degraded(why) => degraded.push(format!("sink {} degraded: {why}", h.name)),
                Health::Disabled(why) => degraded.push(format!("sink {} disabled: {why}", h.name)),
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

/// Returns whether everything accepted was delivered or persisted (the exit status).
async fn run(cfg: Config, policies: Vec<sensor::policy::Loaded>, args: RunArgs) -> anyhow::Result<bool> {
    tokio::spawn(crate::memory::janitor());
    let node = cfg.node_name();
    pipeline::metrics::set_tetragon_names(cfg.metrics.tetragon_names);
    pipeline::event::set_extensions(cfg.export.extensions);
    let (stop_tx, stop_rx) = watch::channel(false);
    // The recorder before anything counts (the sinks set their gauges when they start).
    let metrics_handle = if cfg.metrics.enabled { Some(pipeline::metrics::install_recorder()?) } else { None };
    // Sinks first: each with its buffer and driver. A server that is down only delays its
    // sink (it buffers); a sink that cannot be built is reported, the others keep working.
    let (running, mut outputs, failed) = sinks::run::start(sinks::build_all(&cfg.sinks), &cfg.sinks.data_dir, &stop_rx);
    for (name, why) in &failed {
        tracing::error!(sink = name, error = %why, "sink disabled: it could not be built");
    }
    for r in &running {
        pipeline::metrics::init_sink_series(r.name);
    }
    if running.is_empty() {
        anyhow::bail!("no sink could start; enable at least one under `sinks:`");
    }
    let sink_health: Vec<Arc<sinks::SinkHealth>> = running.iter().map(|r| r.health.clone()).collect();
    let health = AgentHealth { sinks: sink_health.clone(), failed_sinks: failed.clone(), ..AgentHealth::default() };
    let _metrics_task = if let Some(handle) = metrics_handle {
        let h = health.clone();
        let health: pipeline::metrics::HealthFn = Arc::new(move || h.check());
        let (addr, task) = pipeline::metrics::serve(cfg.metrics.listen, handle, health).await?;
        tracing::info!(%addr, "metrics on http://{addr}/metrics");
        Some(task)
    } else {
        None
    };

    // `nightjar getevents` subscribers: one more output that never blocks the pipeline.
    // It also counts what reaches the fan-out, for the events/s of `nightjar status`.
    let (events_tx, _) = tokio::sync::broadcast::channel::<Arc<pipeline::Event>>(4096);
    let counted = Arc::new(AtomicU64::new(0));
    let rate = Arc::new(AtomicU64::new(0));
    {
        let (tx, mut rx) = mpsc::channel::<pipeline::fanout::Entry>(4096);
        outputs.push(Output::new("getevents", tx, pipeline::fanout::QueuePolicy::DropNewest));
        let events_tx = events_tx.clone();
        let seen = counted.clone();
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                seen.fetch_add(1, Ordering::Relaxed);
                // No subscriber is not a loss: nobody asked for the stream.
                let _ = events_tx.send(e.event);
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

    // The stages before the sensor: a bad filter is reported before any hook is attached.
    let (tx, rx) = mpsc::channel(cfg.pipeline.channel_capacity.max(1));
    let pipeline = stages::spawn(&cfg.pipeline, &stages::Context { node_name: node.clone() }, rx, outputs)
        .map_err(|e| BadInput(e.to_string()))?;

    let mut sensor = if cfg.sensor.enabled {
        lift_memlock_limit();
        let mut s = sensor::Sensor::load_with(&cfg.sensor, &node, &policies).context("cannot start the sensor")?;
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
    let status_sinks = sink_health.clone();
    let status_failed = failed.clone();
    let extra: crate::control::StatusExtra = Arc::new(move || {
        let mut sinks: serde_json::Map<String, serde_json::Value> =
            status_sinks.iter().map(|h| (h.name.to_owned(), h.status_json())).collect();
        for (name, why) in &status_failed {
            sinks.insert(
                (*name).to_owned(),
                serde_json::json!({ "state": format!("disabled: {why}"), "healthy": false }),
            );
        }
        serde_json::json!({
            "node_name": node_for_status,
            "health": health_for_status.check().err().unwrap_or_else(|| "ok".into()),
            "events_total": counted.load(Ordering::Relaxed),
            "events_per_second": rate.load(Ordering::Relaxed),
            "sinks": sinks,
        })
    });
    // Without a sensor, requests that need one are answered "the sensor is not running".
    let control_tx = sensor.as_ref().map(|s| s.control()).unwrap_or_else(|| mpsc::channel(1).0);
    // The policies' Kubernetes scopes follow the pods the API server lists.
    let _pods = match (pipeline.pod_feed(), &sensor) {
        (Some(feed), Some(_)) => Some(crate::pods::spawn(feed, control_tx.clone())),
        _ => None,
    };
    let _control = crate::control::serve(cfg.control.socket.clone(), control_tx.clone(), extra, events_tx.clone())
        .await
        .with_context(|| format!("control socket {}", cfg.control.socket.display()))?;

    let api_health = health.clone();
    let _api = if cfg.server.address.is_empty() {
        None
    } else {
        let agent = Arc::new(crate::api_agent::SensorAgent::new(
            control_tx.clone(),
            Arc::new(move || api_health.check()),
            node.clone(),
        ));
        let addr = nightjar_api::ServerAddress::parse(&cfg.server.address);
        let (bound, task) = nightjar_api::serve(&addr, agent, events_tx.clone())
            .await
            .with_context(|| format!("gRPC API on {} (server.address)", cfg.server.address))?;
        tracing::info!(address = %bound.map(|a| a.to_string()).unwrap_or(cfg.server.address.clone()), "Tetragon gRPC API");
        Some(task)
    };
    // The tail's checkpoint moves only as far as every sink has the lines (end-to-end ack).
    let tail_checkpoint = pipeline::sources::tetragon_file::Tracker::new(cfg.sources.tetragon_file.checkpoint.clone());
    let source_task = cfg.sources.tetragon_file.enabled.then(|| {
        tracing::info!(path = %cfg.sources.tetragon_file.path.display(), "tailing the Tetragon export");
        tokio::spawn(pipeline::sources::tetragon_file::run(
            cfg.sources.tetragon_file.clone(),
            tail_checkpoint.clone(),
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
    let (drivers, healths): (Vec<_>, Vec<_>) = running.into_iter().map(|r: Running| (r.driver, r.health)).unzip();
    let drained = tokio::time::timeout(deadline, async {
        if let Some(t) = source_task {
            match t.await {
                Ok(Ok(r)) => tracing::info!(events = r.events, bad_lines = r.bad_lines, long_lines = r.long_lines, rotations = r.rotations, truncations = r.truncations, "tetragon_file source stopped"),
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
        for s in &report.stages {
            // Filtered, deduplicated or rate-limited events are discarded by design, not lost.
            tracing::info!(stage = s.stage, received = s.received, passed = s.passed, generated = s.generated, dropped = ?s.dropped, "stage finished");
        }
        for d in drivers {
            let _ = d.await;
        }
        report.received()
    })
    .await;
    if drained.is_err() {
        tracing::error!(?deadline, "shutdown deadline passed before every sink was done");
        // What is dropped undelivered from now on must not count as acknowledged.
        tail_checkpoint.freeze();
    }
    if cfg.sources.tetragon_file.enabled {
        if let Err(e) = tail_checkpoint.save() {
            tracing::error!(error = %e, "cannot save the tetragon_file checkpoint");
        }
    }
    let clean = shutdown_report(&healths);
    tracing::info!(received = drained.unwrap_or_default(), clean, "shutdown complete");
    let _ = std::fs::remove_file(&cfg.control.socket);
    Ok(clean)
}

/// Logs what each sink delivered, dropped, kept on disk and lost; true when nothing it
/// accepted was lost (undelivered from memory, failed for good).
fn shutdown_report(sinks: &[Arc<sinks::SinkHealth>]) -> bool {
    let mut clean = true;
    for h in sinks {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (delivered, failed, dead) = (get(&h.delivered), get(&h.failed), get(&h.dead_lettered));
        let queued = get(&h.fanout.queued);
        let dropped = get(&h.fanout.dropped_full) + get(&h.fanout.dropped_closed) + get(&h.stats.dropped);
        let (persisted, undelivered) = match h.buffer_type {
            sinks::buffer::BufferType::Disk => {
                // On disk: delivered after the next start. Lost: queued but never written.
                let written = get(&h.stats.accepted);
                (get(&h.stats.events), queued.saturating_sub(written + get(&h.stats.dropped)))
            }
            sinks::buffer::BufferType::Memory => (0, queued.saturating_sub(delivered + failed + dead)),
        };
        let lost = undelivered + failed;
        if lost > 0 {
            clean = false;
            tracing::error!(
                sink = h.name,
                delivered,
                dead_lettered = dead,
                dropped,
                persisted,
                undelivered,
                failed,
                "sink finished with events accepted and not delivered"
            );
        } else {
            tracing::info!(sink = h.name, delivered, dead_lettered = dead, dropped, persisted, "sink finished");
        }
    }
    clean
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
