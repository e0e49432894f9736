//! Loads the embedded eBPF object, attaches the hooks, reads the ring buffer and hands
//! decoded records to the process layer, which emits pipeline events.
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use aya::{
    maps::{PerCpuArray, RingBuf},
    programs::{RawTracePoint, TracePoint},
    Ebpf, EbpfLoader,
};
use nightjar_common::{cause, kind, missed_index};
use nightjar_event::{config::ByteSize, Event};
use serde::{Deserialize, Serialize};
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, oneshot},
};

use crate::{
    decode::{self, Record},
    hooks::process::ProcessHook,
    policy::{
        compile::{Env, KernelHooks},
        engine::{EngineError, PolicyEngine, PolicyStatus},
        Loaded,
    },
    probe::KernelFeatures,
};

/// The embedded eBPF object, built by build.rs from `sensor-bpf/`.
static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/nightjar.bpf.o"));

/// `sensor:` section of the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SensorConfig {
    /// Run the eBPF sensor (false: only the configured sources feed the pipeline, e.g. when
    /// nightjar exports an existing Tetragon's log).
    pub enabled: bool,
    /// Size of the BPF ring buffer (a power of two, at least one page).
    #[serde(deserialize_with = "nightjar_event::config::power_of_two_size::<_, 4096, 1073741824>")]
    pub ring_buffer_size: ByteSize,
    /// Longest argument block reported per exec; longer ones are cut and flagged.
    #[serde(
        deserialize_with = "nightjar_event::config::bounded::<_, _, 1, { nightjar_common::limits::ARGS_MAX as u64 - 1 }>"
    )]
    pub args_max_bytes: u32,
    /// Scan /proc at start so processes older than the agent have parents.
    pub proc_scan: bool,
    /// Mount tracefs when it is missing.
    pub mount_tracefs: bool,
    /// Most executions the process cache keeps (live processes plus exited ancestors of
    /// live ones); beyond it new entries are refused and counted.
    #[serde(deserialize_with = "nightjar_event::config::bounded::<_, _, 1, 4194304>")]
    pub process_cache_max: usize,
    /// Trace only processes in this cgroup v2 (its id, the inode number of its directory);
    /// 0 traces every process on the host.
    pub cgroup_filter: u64,
    /// Directory of TracingPolicy files loaded at start (`*.yaml`, `*.yml`); empty: none.
    pub policies_dir: std::path::PathBuf,
    /// Keep the kernel's BPF stats on while the agent runs, so every program's run time and
    /// run count are exported (`nightjar_overhead_program_*`, `nightjar status`); costs two
    /// clock reads per program run.
    pub program_stats: bool,
}

impl Default for SensorConfig {
    fn default() -> Self {
        SensorConfig {
            enabled: true,
            ring_buffer_size: ByteSize(8 << 20),
            args_max_bytes: 1024,
            proc_scan: true,
            mount_tracefs: true,
            process_cache_max: 262_144,
            cgroup_filter: 0,
            policies_dir: "config/policies".into(),
            program_stats: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    #[error("sensor.ring_buffer_size must be a power of two of at least 4096 bytes, got {0}")]
    RingSize(u64),
    #[error("the sensor needs root (or CAP_BPF + CAP_PERFMON); running as euid {0}")]
    NotRoot(u32),
    #[error("kernel BTF: {0}")]
    Btf(#[from] crate::btf::BtfError),
    #[error("kernel probe: {0}")]
    Probe(#[from] crate::probe::ProbeError),
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("eBPF program {name}: {source}")]
    Program { name: &'static str, source: aya::programs::ProgramError },
    #[error("eBPF map {name}: {source}")]
    Map { name: &'static str, source: aya::maps::MapError },
    #[error("eBPF map {0} is missing from the object")]
    MissingMap(&'static str),
    #[error("eBPF program {0} is missing from the object")]
    MissingProgram(&'static str),
    #[error("a loader thread panicked")]
    LoaderThread,
    #[error("ring buffer: {0}")]
    Io(#[from] std::io::Error),
}

/// Tracepoints the base sensor attaches: (program, category, tracepoint).
const PROCESS_TRACEPOINTS: [(&str, &str, &str); 2] =
    [("sched_process_exec", "sched", "sched_process_exec"), ("sched_process_exit", "sched", "sched_process_exit")];
/// Raw tracepoints (they give the task pointers): (program, tracepoint).
const PROCESS_RAW_TRACEPOINTS: [(&str, &str); 1] = [("sched_process_fork", "sched_process_fork")];

/// A loaded, attached sensor. Dropping it detaches every program.
pub struct Sensor {
    ebpf: Ebpf,
    pub features: KernelFeatures,
    process: ProcessHook,
    policies: PolicyEngine,
    stats: Arc<SensorStats>,
    commands: mpsc::Receiver<Command>,
    command_tx: mpsc::Sender<Command>,
    /// BPF stats on while this lives (or why they are off).
    program_stats: Result<std::os::fd::OwnedFd, String>,
}

/// Requests to a running sensor (from the agent's control socket).
pub enum Command {
    AddPolicy(Box<Loaded>, oneshot::Sender<Result<PolicyStatus, String>>),
    DeletePolicy(String, oneshot::Sender<Result<PolicyStatus, String>>),
    ListPolicies(oneshot::Sender<Vec<PolicyStatus>>),
    Status(oneshot::Sender<SensorStatus>),
    /// This node's pods, as the Kubernetes API lists them (for podSelector & co.).
    SetPods(Vec<crate::policy::scope::PodMeta>),
}

/// What `nightjar status` shows about the sensor.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SensorStatus {
    pub kernel: KernelFeatures,
    pub base_hooks: Vec<String>,
    pub policies: Vec<PolicyStatus>,
    pub records: u64,
    pub missed: u64,
    pub decode_errors: u64,
    pub process_cache: usize,
    /// Why the programs' costs are not counted (`sensor.program_stats` off, or the kernel
    /// refused); absent when they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program_stats_off: Option<String>,
    /// Every loaded program's run count and run time, from the kernel's accounting.
    pub programs: Vec<nightjar_event::overhead::ProgramCost>,
}

/// Records read from the ring buffer per wake-up before they are turned into events.
const BATCH: usize = 256;
/// How often the reader looks at the ring buffer when the kernel has not woken it.
const RING_POLL: Duration = Duration::from_millis(10);

/// What the sensor saw and lost (totals since load).
#[derive(Debug, Default)]
pub struct SensorStats {
    /// Records read from the ring buffer.
    pub records: AtomicU64,
    pub decode_errors: AtomicU64,
    /// Records the kernel could not write (all kinds, all causes).
    pub missed: AtomicU64,
    /// Exec records the kernel could not write.
    pub missed_exec: AtomicU64,
    /// Records the kernel could not write in the last [`MISSED_WINDOW_SECS`] seconds: not
    /// 0 means it is dropping now (health says degraded).
    pub missed_recent: AtomicU64,
}

/// The window of [`SensorStats::missed_recent`].
pub const MISSED_WINDOW_SECS: usize = 10;

impl Sensor {
    /// Probes the kernel, loads the programs and attaches the process hooks.
    pub fn load(cfg: &SensorConfig, node_name: &str) -> Result<Self, SensorError> {
        Self::load_with(cfg, node_name, &[])
    }

    /// [`Sensor::load`], verifying meanwhile the programs the `startup` policies will need
    /// (in parallel, with the /proc scan): the kernel's verifier is most of a start, so a
    /// program no policy needs is verified only when one does.
    pub fn load_with(cfg: &SensorConfig, node_name: &str, startup: &[Loaded]) -> Result<Self, SensorError> {
        let size = cfg.ring_buffer_size.0;
        if size < 4096 || !size.is_power_of_two() || size > u32::MAX as u64 {
            return Err(SensorError::RingSize(size));
        }
        let features = crate::probe::probe(cfg.mount_tracefs)?;
        if features.euid != 0 {
            return Err(SensorError::NotRoot(features.euid));
        }
        let mut features = features;
        // aya's loader parses the kernel BTF when it is made; ours (for struct offsets) is
        // parsed meanwhile on this thread.
        let loader = std::thread::spawn(EbpfLoader::new);
        let btf = crate::btf::Btf::from_sys_fs()?;
        let (mut offsets, report) = crate::offsets::compute(&btf, cfg.args_max_bytes)?;
        for m in &report.missing {
            tracing::warn!(field = %m, "kernel struct field not found; the sensor will not report it");
        }
        if let Some(tracefs) = features.tracefs.as_deref() {
            offsets.tp_exit_group_dead =
                crate::probe::tracepoint_field_offset(tracefs, "sched", "sched_process_exit", "group_dead")
                    .unwrap_or(nightjar_common::Offsets::MISSING);
        }
        let mut loader = loader.join().map_err(|_| SensorError::LoaderThread)?;
        let mut ebpf = loader
            // The object has no CO-RE relocations (Rust's BPF target emits none; offsets come
            // from OFFSETS): aya need not keep the kernel BTF it parsed.
            .btf(None)
            .map_max_entries("EVENTS", size as u32)
            .override_global("OFFSETS", &offsets, true)
            .override_global("CGROUP_FILTER", &cfg.cgroup_filter, true)
            .load(BPF_OBJECT)?;
        drop(loader);
        attach_process_hooks(&mut ebpf)?;
        // Policy programs are attached per tracepoint as policies need them, the exec ones
        // too (policy/engine.rs keeps their run order: the binary mask first).
        let (mut kernel, aya_btf) = kernel_hooks(&btf, &mut features);
        // fentry needs the function in BTF (kallsyms lists some that BTF does not).
        kernel.fentry_syscalls = btf.funcs_among(kernel.syscall_symbols.iter());
        drop(btf);
        let host_ns = crate::hooks::process::host_namespaces();
        let tracefs = features.tracefs.clone().unwrap_or_else(|| "/sys/kernel/tracing".into());
        let policies = PolicyEngine::new(Env { tracefs, host_ns, kernel }, aya_btf);
        // With the process hooks attached, the /proc scan runs while the kernel verifies the
        // programs the start-up policies need (a process born meanwhile is seen by one or
        // the other). A program that fails here fails again, named, when its policy is added.
        let needed = policies.programs_for(startup);
        let (scan, loaded) = std::thread::scope(|s| {
            let scan = cfg.proc_scan.then(|| s.spawn(crate::procfs::scan));
            let loaded = load_in_parallel(&mut ebpf, &needed);
            (scan.map(|h| h.join()), loaded)
        });
        if let Err(e) = loaded {
            tracing::debug!(error = %e, "verifying the start-up policies' programs");
        }
        let mut process = ProcessHook::new(node_name, cfg.process_cache_max);
        if let Some(scan) = scan {
            let snapshot = scan.map_err(|_| SensorError::LoaderThread)?;
            let n = process.seed_from_proc(&snapshot);
            tracing::info!(processes = n, "process cache seeded from /proc");
        }
        let (command_tx, commands) = mpsc::channel(16);
        let program_stats =
            if cfg.program_stats { crate::overhead::enable() } else { Err("sensor.program_stats is off".into()) };
        if let Err(why) = &program_stats {
            tracing::warn!(reason = %why, "BPF programs' run time is not counted (nightjar_overhead_program_*)");
        }
        Ok(Sensor { ebpf, features, process, policies, stats: Arc::default(), commands, command_tx, program_stats })
    }

    /// Loads a policy (all its hooks or none). Its errors name the file, line and reason.
    pub fn add_policy(&mut self, l: &Loaded) -> Result<PolicyStatus, EngineError> {
        self.policies.add(&mut self.ebpf, l)
    }

    pub fn delete_policy(&mut self, name: &str) -> Result<PolicyStatus, EngineError> {
        self.policies.delete(&mut self.ebpf, name)
    }

    pub fn policies(&self) -> Vec<PolicyStatus> {
        self.policies.list()
    }

    /// This node's pods: the Kubernetes scopes of the loaded policies are matched
    /// against them (and against the container cgroups, walked again now).
    pub fn set_pods(&mut self, pods: Vec<crate::policy::scope::PodMeta>) {
        self.policies.set_pods(&mut self.ebpf, pods);
    }

    /// A handle to send commands to the sensor once it runs.
    pub fn control(&self) -> mpsc::Sender<Command> {
        self.command_tx.clone()
    }

    pub fn status(&self) -> SensorStatus {
        SensorStatus {
            kernel: self.features.clone(),
            base_hooks: PROCESS_TRACEPOINTS
                .iter()
                .map(|(_, c, t)| format!("tracepoint:{c}:{t}"))
                .chain(PROCESS_RAW_TRACEPOINTS.iter().map(|(_, t)| format!("raw_tracepoint:{t}")))
                .collect(),
            policies: self
                .policies
                .list()
                .into_iter()
                .map(|mut p| {
                    for h in &mut p.hooks {
                        h.filtered = self.hook_counter("FILTERED", h.id);
                        h.rate_limited = self.hook_counter("RATE_LIMITED", h.id);
                    }
                    p
                })
                .collect(),
            records: self.stats.records.load(Ordering::Relaxed),
            missed: self.stats.missed.load(Ordering::Relaxed),
            decode_errors: self.stats.decode_errors.load(Ordering::Relaxed),
            process_cache: self.process.cache.len(),
            program_stats_off: self.program_stats.as_ref().err().cloned(),
            programs: if self.program_stats.is_ok() { crate::overhead::read(&self.ebpf) } else { Vec::new() },
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::AddPolicy(l, reply) => {
                let _ = reply.send(self.add_policy(&l).map_err(|e| e.to_string()));
            }
            Command::DeletePolicy(name, reply) => {
                let _ = reply.send(self.delete_policy(&name).map_err(|e| e.to_string()));
            }
            Command::ListPolicies(reply) => {
                let _ = reply.send(self.policies());
            }
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::SetPods(pods) => self.set_pods(pods),
        }
    }

    /// Counters shared with the caller (tests, `status`); updated while `run` runs.
    pub fn stats(&self) -> Arc<SensorStats> {
        self.stats.clone()
    }

    /// Reads records until `tx` closes or `shutdown` fires, then drains what the kernel
    /// already wrote. With a full channel it waits (backpressure): the ring buffer then
    /// fills and the kernel counts what it cannot keep.
    pub async fn run(
        mut self,
        tx: mpsc::Sender<Event>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), SensorError> {
        let ring = RingBuf::try_from(self.ebpf.take_map("EVENTS").ok_or(SensorError::MissingMap("EVENTS"))?)
            .map_err(|source| SensorError::Map { name: "EVENTS", source })?;
        let missed: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.take_map("MISSED").ok_or(SensorError::MissingMap("MISSED"))?)
                .map_err(|source| SensorError::Map { name: "MISSED", source })?;
        // Read on their own timer: this loop waits while the pipeline is full, and that is
        // exactly when the kernel drops.
        let missed = Arc::new(missed);
        let watcher = tokio::spawn(watch_missed(missed.clone(), self.stats.clone()));
        // SAFETY: the RingBuf owns its map fd for as long as the AsyncFd owns the RingBuf,
        // and as_raw_fd always returns that same descriptor.
        let mut fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| SensorError::Io(e.into_parts().1))?;
        let mut stats_tick = tokio::time::interval(Duration::from_secs(1));
        let mut gc_tick = tokio::time::interval(Duration::from_secs(30));
        gc_tick.tick().await;
        let mut scope_tick = tokio::time::interval(crate::hooks::scope::RESCAN);
        scope_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The kernel wakes this reader only once an eighth of the ring waits (see the
        // programs' `wake_flags`): what lies below that mark is read on this tick.
        let mut poll_tick = tokio::time::interval(RING_POLL);
        poll_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch: Vec<Record> = Vec::with_capacity(BATCH);
        loop {
            let mut drain = false;
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                Some(c) = self.commands.recv() => self.command(c),
                _ = stats_tick.tick() => {
                    self.export_filtered();
                    if self.program_stats.is_ok() {
                        nightjar_event::overhead::publish(crate::overhead::read(&self.ebpf));
                    }
                    metrics::gauge!(nightjar_event::metrics::names::PROCESS_CACHE_SIZE).set(self.process.cache.len() as f64);
                }
                _ = scope_tick.tick() => self.policies.rescan_scopes(&mut self.ebpf),
                _ = gc_tick.tick() => {
                    let n = self.process.collect_gone();
                    if n > 0 {
                        tracing::debug!(collected = n, "process cache: exits not seen by the sensor collected from /proc");
                    }
                }
                _ = poll_tick.tick() => {
                    self.read_batch(fd.get_mut(), &mut batch);
                    drain = true;
                }
                guard = fd.readable_mut() => {
                    let mut guard = guard?;
                    self.read_batch(guard.get_inner_mut(), &mut batch);
                    if batch.len() < BATCH {
                        guard.clear_ready();
                    }
                }
            }
            // On the poll tick, everything below the wake-up mark, batch by batch.
            loop {
                let more = drain && batch.len() == BATCH;
                if !self.deliver(&mut batch, &tx).await {
                    watcher.abort();
                    export_missed(&missed, &self.stats);
                    return Ok(());
                }
                if !more {
                    break;
                }
                self.read_batch(fd.get_mut(), &mut batch);
            }
        }
        // Shutdown: what the kernel already accepted is still delivered.
        loop {
            self.read_batch(fd.get_mut(), &mut batch);
            if batch.is_empty() || !self.deliver(&mut batch, &tx).await {
                break;
            }
        }
        watcher.abort();
        export_missed(&missed, &self.stats);
        Ok(())
    }

    fn read_batch(&mut self, ring: &mut RingBuf<aya::maps::MapData>, batch: &mut Vec<Record>) {
        while batch.len() < BATCH {
            let Some(item) = ring.next() else { break };
            self.stats.records.fetch_add(1, Ordering::Relaxed);
            match decode::decode(&item) {
                Ok(r) => batch.push(r),
                Err(e) => {
                    self.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                    nightjar_event::metrics::count_stage_drop("sensor_decode", "malformed_record", 1);
                    tracing::warn!(error = %e, "dropped a malformed ring-buffer record");
                }
            }
        }
    }

    /// Sends the batch's events; false when the pipeline has gone away.
    async fn deliver(&mut self, batch: &mut Vec<Record>, tx: &mpsc::Sender<Event>) -> bool {
        for r in batch.drain(..) {
            let Some(ev) = self.handle(r) else { continue };
            let permit = match tx.try_reserve() {
                Ok(p) => p,
                Err(mpsc::error::TrySendError::Closed(())) => return false,
                Err(mpsc::error::TrySendError::Full(())) => match self.wait_for_room(tx).await {
                    Some(p) => p,
                    None => return false,
                },
            };
            permit.send(ev);
        }
        true
    }

    /// Waits for room in a full pipeline, serving the control plane meanwhile (status and
    /// policy changes must answer while the data path is blocked).
    async fn wait_for_room<'a>(&mut self, tx: &'a mpsc::Sender<Event>) -> Option<mpsc::Permit<'a, Event>> {
        loop {
            tokio::select! {
                biased;
                p = tx.reserve() => return p.ok(),
                Some(c) = self.commands.recv() => self.command(c),
            }
        }
    }

    /// Exports the kernel's per-hook "filtered" counters as `nightjar_policy_filtered_total`.
    fn export_filtered(&self) {
        for (id, meta) in self.policies.loaded_hooks() {
            nightjar_event::metrics::set_policy_filtered(
                &meta.policy,
                &meta.function,
                self.hook_counter("FILTERED", id),
            );
            let limited = self.hook_counter("RATE_LIMITED", id);
            nightjar_event::metrics::set_policy_rate_limited(&meta.policy, &meta.function, limited);
        }
        let (sent, failed) = crate::hooks::enforcer::counts(&self.ebpf);
        nightjar_event::metrics::set_enforcer_signals(sent, failed);
    }

    /// A per-hook kernel counter (`FILTERED`, `RATE_LIMITED`), summed over CPUs.
    pub fn hook_counter(&self, map: &str, hook: u32) -> u64 {
        let Some(m) = self.ebpf.map(map) else { return 0 };
        let Ok(a) = PerCpuArray::<_, u64>::try_from(m) else { return 0 };
        a.get(&hook, 0).map(|v| v.iter().sum()).unwrap_or(0)
    }

    fn handle(&mut self, r: Record) -> Option<Event> {
        match r {
            Record::Exec(e) => Some(self.process.on_exec(&e)),
            Record::Exit(x) => self.process.on_exit(&x),
            Record::Fork(f) => {
                self.process.on_fork(&f);
                None
            }
            Record::Policy(p) => match self.policies.hook(p.fixed.hook) {
                Some(meta) => {
                    let stacks = crate::hooks::stack::of_record(&mut self.ebpf, &p.fixed);
                    Some(crate::hooks::policy::to_event(&p, meta, &self.process, stacks))
                }
                None => {
                    // The policy was deleted while this record was in flight.
                    nightjar_event::metrics::count_stage_drop("sensor_policy", "policy_deleted", 1);
                    None
                }
            },
        }
    }
}

/// Exports the kernel's missed counters every second until aborted; warns (at most every
/// 10 s) while the kernel is dropping, and keeps [`SensorStats::missed_recent`].
async fn watch_missed(missed: Arc<PerCpuArray<aya::maps::MapData, u64>>, stats: Arc<SensorStats>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut window = std::collections::VecDeque::from([0u64; MISSED_WINDOW_SECS]);
    let mut last = export_missed(&missed, &stats);
    let mut last_warn: Option<std::time::Instant> = None;
    let mut unwarned = 0;
    loop {
        tick.tick().await;
        let total = export_missed(&missed, &stats);
        let new = total.saturating_sub(last);
        last = total;
        window.pop_front();
        window.push_back(new);
        stats.missed_recent.store(window.iter().sum(), Ordering::Relaxed);
        unwarned += new;
        if unwarned > 0 && last_warn.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            tracing::warn!(
                missed = unwarned,
                total,
                "the kernel is dropping events: its ring buffer is full because the pipeline is behind \
                 (nightjar_missed_events_total; raise sensor.ring_buffer_size or relieve the sinks)"
            );
            last_warn = Some(std::time::Instant::now());
            unwarned = 0;
        }
    }
}

/// Sums the kernel's per-CPU missed counters into `nightjar_missed_events_total` and the
/// stats; returns the total.
fn export_missed(missed: &PerCpuArray<aya::maps::MapData, u64>, stats: &SensorStats) -> u64 {
    let mut total = 0;
    let mut exec = 0;
    for (k, kname) in KIND_NAMES {
        for (c, cname) in CAUSE_NAMES {
            if let Ok(vals) = missed.get(&missed_index(k, c), 0) {
                let n: u64 = vals.iter().sum();
                total += n;
                if k == kind::EXEC {
                    exec += n;
                }
                nightjar_event::metrics::set_missed(cname, kname, n);
            }
        }
    }
    stats.missed.store(total, Ordering::Relaxed);
    stats.missed_exec.store(exec, Ordering::Relaxed);
    total
}

/// Loads and attaches the process lifecycle programs (exec, exit, fork).
fn attach_process_hooks(ebpf: &mut Ebpf) -> Result<(), SensorError> {
    for (prog, tp) in PROCESS_RAW_TRACEPOINTS {
        let p: &mut RawTracePoint = ebpf
            .program_mut(prog)
            .ok_or(SensorError::MissingProgram(prog))?
            .try_into()
            .map_err(|source| SensorError::Program { name: prog, source })?;
        p.load().map_err(|source| SensorError::Program { name: prog, source })?;
        p.attach(tp).map_err(|source| SensorError::Program { name: prog, source })?;
        tracing::info!(program = prog, hook = %format!("raw_tracepoint:{tp}"), "attached");
    }
    for (prog, category, tp) in PROCESS_TRACEPOINTS {
        let p: &mut TracePoint = ebpf
            .program_mut(prog)
            .ok_or(SensorError::MissingProgram(prog))?
            .try_into()
            .map_err(|source| SensorError::Program { name: prog, source })?;
        crate::policy::engine::verified(prog, || p.load())
            .map_err(|source| SensorError::Program { name: prog, source })?;
        p.attach(category, tp).map_err(|source| SensorError::Program { name: prog, source })?;
        tracing::info!(program = prog, hook = %format!("tracepoint:{category}:{tp}"), "attached");
    }
    Ok(())
}

/// Loads the tracepoint programs `names`, each on its own thread: the kernel's verifier
/// takes most of the start-up time and runs on the loading thread, so this uses every core.
fn load_in_parallel(ebpf: &mut Ebpf, names: &[&'static str]) -> Result<(), SensorError> {
    let mut found: Vec<(&'static str, &mut TracePoint)> = Vec::new();
    for (name, prog) in ebpf.programs_mut() {
        if let Some(n) = names.iter().copied().find(|n| *n == name) {
            let tp: &mut TracePoint = prog.try_into().map_err(|source| SensorError::Program { name: n, source })?;
            found.push((n, tp));
        }
    }
    if let Some(missing) = names.iter().copied().find(|n| !found.iter().any(|(f, _)| f == n)) {
        return Err(SensorError::MissingProgram(missing));
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = found
            .into_iter()
            .map(|(name, p)| {
                let load = move || {
                    crate::policy::engine::verified(name, || p.load())
                        .map_err(|source| SensorError::Program { name, source })
                };
                (name, s.spawn(load))
            })
            .collect();
        handles.into_iter().try_for_each(|(_, h)| h.join().map_err(|_| SensorError::LoaderThread)?)
    })
}

/// Which kernel-function and LSM backends this kernel lets the policy engine use: kprobes
/// from the probe, fentry and BPF-LSM by loading a two-instruction program of each kind
/// (a kernel may list them and still refuse the load, e.g. with EPERM under lockdown).
/// aya's own parse of the kernel BTF, which fentry and LSM program loads need, is done only
/// when one of them is usable.
fn kernel_hooks(btf: &crate::btf::Btf, features: &mut KernelFeatures) -> (KernelHooks, Option<aya::Btf>) {
    features.fentry = false;
    let mut lsm_unavailable = String::new();
    if features.btf {
        match crate::progprobe::fentry(btf, "security_file_open") {
            Ok(()) => features.fentry = true,
            Err(e) => {
                tracing::info!(error = %e, "fentry programs do not load here: kprobes or tracepoints serve kernel functions")
            }
        }
        if let Some(unknown) = &features.lsm_list_unreadable {
            // A BPF-LSM program loads whether or not `bpf` is an active LSM, but runs only if
            // it is: without the list, Override cannot be promised.
            features.bpf_lsm = false;
            lsm_unavailable = match crate::progprobe::lsm(btf, "file_open") {
                Ok(()) => format!(
                    "{unknown}; BPF-LSM programs load, but run only when bpf is an active LSM \
                     (mount securityfs so that nightjar can check)"
                ),
                Err(e) => format!("BPF-LSM programs do not load: {e}; {unknown}"),
            };
        } else if features.bpf_lsm {
            if let Err(e) = crate::progprobe::lsm(btf, "file_open") {
                lsm_unavailable = format!("BPF-LSM programs do not load: {e}");
                features.bpf_lsm = false;
            }
        } else {
            lsm_unavailable =
                "bpf is not among the active LSMs in /sys/kernel/security/lsm (CONFIG_BPF_LSM and lsm=...,bpf)".into();
        }
    } else {
        features.bpf_lsm = false;
        lsm_unavailable = "no kernel BTF".into();
    }
    if !lsm_unavailable.is_empty() {
        tracing::info!(reason = %lsm_unavailable, "BPF-LSM unavailable: Override cannot be used; tracepoints serve LSM hooks");
    }
    let aya_btf = if features.fentry || features.bpf_lsm {
        aya::Btf::from_sys_fs()
            .map_err(|e| tracing::warn!(error = %e, "kernel BTF unreadable by aya: no fentry or BPF-LSM"))
            .ok()
    } else {
        None
    };
    if aya_btf.is_none() {
        features.fentry = false;
        features.bpf_lsm = false;
    }
    let kernel = KernelHooks {
        fentry: features.fentry,
        kprobes: features.kprobes,
        lsm: features.bpf_lsm,
        lsm_unavailable,
        syscall_symbols: Default::default(),
        error_injection: std::path::Path::new("/sys/kernel/debug/error_injection/list").exists(),
        fentry_syscalls: Default::default(),
    }
    .with_symbols();
    tracing::info!(fentry = kernel.fentry, kprobes = kernel.kprobes, bpf_lsm = kernel.lsm, "policy hook backends");
    (kernel, aya_btf)
}

const KIND_NAMES: [(u16, &str); 4] =
    [(kind::EXEC, "exec"), (kind::EXIT, "exit"), (kind::FORK, "fork"), (kind::POLICY, "policy")];
const CAUSE_NAMES: [(u32, &str); 2] = [(cause::RINGBUF_FULL, "ringbuf_full"), (cause::SCRATCH, "scratch")];
