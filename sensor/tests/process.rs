//! The process hooks on the real kernel (root): exec, exit, ancestry, namespaces,
//! container identity, and exact accounting of what the ring buffer could not hold.
//! Mirrors `sensor-bpf/src/process.rs` and `sensor/src/hooks/process.rs`.
mod cgroup;
use std::{
    path::Path,
    process::Command,
    sync::{atomic::Ordering, Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use cgroup::cgroup2_mount;
use nightjar_event::{config::ByteSize, event::Process, Event, EventKind};
use nightjar_sensor::{loader::SensorStats, Sensor, SensorConfig};
use tokio::sync::{mpsc, watch};

/// Sensor tests run one at a time: the accounting tests need a quiet machine.
static SERIAL: Mutex<()> = Mutex::new(());

struct Running {
    rx: mpsc::Receiver<Event>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    stats: Arc<SensorStats>,
    _serial: MutexGuard<'static, ()>,
}

fn start(cfg: SensorConfig, channel: usize) -> Running {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let sensor = Sensor::load(&cfg, "test-node").expect("load the sensor (run as root)");
    let stats = sensor.stats();
    let (tx, rx) = mpsc::channel(channel);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        sensor.run(tx, stop_rx).await.expect("sensor run");
    });
    Running { rx, stop, task, stats, _serial: serial }
}

impl Running {
    /// Collects events until `done` says so (checked after each event and when idle) or
    /// the timeout passes.
    async fn collect_until(&mut self, timeout: Duration, mut done: impl FnMut(&[Event]) -> bool) -> Vec<Event> {
        let mut out = Vec::new();
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            match tokio::time::timeout(Duration::from_millis(200), self.rx.recv()).await {
                Ok(Some(e)) => {
                    out.push(e);
                    if done(&out) {
                        break;
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    if done(&out) {
                        break;
                    }
                }
            }
        }
        out
    }

    /// Stops the sensor (it drains the ring first) and returns its counters.
    async fn stop(self) -> (Vec<Event>, Arc<SensorStats>) {
        let _ = self.stop.send(true);
        let Running { mut rx, task, stats, .. } = self;
        let drain = tokio::spawn(async move {
            let mut rest = Vec::new();
            while let Some(e) = rx.recv().await {
                rest.push(e);
            }
            rest
        });
        task.await.unwrap();
        (drain.await.unwrap(), stats)
    }
}

fn exec_of(e: &Event) -> Option<(&Process, Option<&Process>)> {
    match &e.kind {
        EventKind::ProcessExec(x) => Some((x.process.as_deref()?, x.parent.as_deref())),
        _ => None,
    }
}

fn exit_of(e: &Event) -> Option<(&Process, Option<u32>, Option<&str>)> {
    match &e.kind {
        EventKind::ProcessExit(x) => Some((x.process.as_ref()?, x.status, x.signal.as_deref())),
        _ => None,
    }
}

fn real(p: &str) -> String {
    std::fs::canonicalize(p).unwrap().display().to_string()
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("nightjar-test").tempdir().unwrap()
}

fn canonical_dir(d: &Path) -> String {
    std::fs::canonicalize(d).unwrap().display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_exec_and_exit_with_parent_uid_cwd() {
    let mut s = start(SensorConfig::default(), 65536);
    let dir = tempdir();
    let cwd = canonical_dir(dir.path());
    let status = Command::new("/bin/sh").args(["-c", "/bin/echo a b c"]).current_dir(&cwd).output().unwrap();
    assert!(status.status.success());
    let echo = real("/bin/echo");
    let events = s
        .collect_until(Duration::from_secs(20), |ev| {
            ev.iter().any(|e| exit_of(e).is_some_and(|(p, _, _)| p.binary.as_deref() == Some(&echo)))
        })
        .await;
    let (p, parent) = events
        .iter()
        .filter_map(exec_of)
        .find(|(p, _)| p.binary.as_deref() == Some(&echo) && p.cwd.as_deref() == Some(&cwd))
        .unwrap_or_else(|| panic!("no exec of {echo} in {cwd} among {} events", events.len()));
    assert_eq!(p.arguments.as_deref(), Some("a b c"));
    // SAFETY: getuid has no preconditions.
    assert_eq!(p.uid, Some(unsafe { libc::getuid() }));
    let parent = parent.expect("echo has a parent");
    assert_eq!(parent.binary.as_deref(), Some(real("/bin/sh").as_str()));
    assert_eq!(p.parent_exec_id, parent.exec_id);
    let ns = p.ns.as_ref().unwrap();
    assert_eq!(ns.pid.as_ref().unwrap().is_host, Some(true));
    assert_eq!(ns.time_for_children.as_ref().map(|n| n.is_host), Some(Some(true)), "{ns:?}");
    let id = p.exec_id.clone().expect("exec_id");
    let (_, status, signal) = events
        .iter()
        .filter_map(exit_of)
        .find(|(x, _, _)| x.exec_id.as_ref() == Some(&id))
        .expect("a process_exit for the same exec_id");
    assert_eq!((status, signal), (Some(0), None));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_pid_mount_and_time_namespace_is_not_host() {
    let mut s = start(SensorConfig::default(), 65536);
    let out = Command::new("unshare")
        .args(["--pid", "--mount", "--time", "--fork", "/bin/sh", "-c", "/bin/echo nsmarker"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events = s
        .collect_until(Duration::from_secs(20), |ev| {
            ev.iter().filter_map(exec_of).any(|(p, _)| p.arguments.as_deref() == Some("nsmarker"))
        })
        .await;
    let (p, _) =
        events.iter().filter_map(exec_of).find(|(p, _)| p.arguments.as_deref() == Some("nsmarker")).unwrap_or_else(
            || {
                let missed = s.stats.missed_exec.load(Ordering::Relaxed);
                panic!("no exec of echo nsmarker among {} events; exec records missed: {missed}", events.len())
            },
        );
    let ns = p.ns.as_ref().expect("namespaces");
    assert_eq!(ns.pid.as_ref().unwrap().is_host, Some(false), "{ns:?}");
    assert_eq!(ns.mnt.as_ref().unwrap().is_host, Some(false), "{ns:?}");
    assert_eq!(ns.net.as_ref().unwrap().is_host, Some(true), "{ns:?}");
    // The new time namespace, entered at exec: the process's and its children's.
    let (time, children) = (ns.time.as_ref().unwrap(), ns.time_for_children.as_ref().unwrap());
    assert_eq!((time.is_host, children.is_host), (Some(false), Some(false)), "{ns:?}");
    assert_eq!(time.inum, children.inum, "{ns:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_container_cgroup_gives_container_id() {
    let mut s = start(SensorConfig::default(), 65536);
    let id = format!("{:016x}{:016x}{:016x}{:016x}", std::process::id(), 0xfeed_u64, 0xbeef_u64, 0x1234_u64);
    let pod = "kubepods-besteffort-pod0b5a4c6e_8f0c_4c57_9a3e_1f2a3b4c5d6e.slice";
    let scope = format!("cri-containerd-{id}.scope");
    let mut dir = cgroup2_mount();
    let mut made = Vec::new();
    for l in ["kubepods.slice", "kubepods-besteffort.slice", pod, scope.as_str()] {
        dir.push(l);
        if !dir.exists() {
            std::fs::create_dir(&dir).unwrap();
            made.push(dir.clone());
        }
    }
    let script = format!("echo $$ > {}/cgroup.procs && exec /bin/echo cgmarker", dir.display());
    let out = Command::new("/bin/sh").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events = s
        .collect_until(Duration::from_secs(20), |ev| {
            ev.iter().filter_map(exec_of).any(|(p, _)| p.arguments.as_deref() == Some("cgmarker"))
        })
        .await;
    for d in made.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
    let (p, _) = events
        .iter()
        .filter_map(exec_of)
        .find(|(p, _)| p.arguments.as_deref() == Some("cgmarker"))
        .expect("exec of echo cgmarker");
    let container = p.pod.as_ref().and_then(|pod| pod.container.as_ref()).expect("pod.container");
    assert_eq!(container.id.as_deref(), Some(format!("containerd://{id}").as_str()));
    assert_eq!(p.docker.as_deref(), Some(&id[..31]));
    s.stop().await;
}

/// How many execs an accounting test runs: `n`, times `NIGHTJAR_TEST_EXEC_SCALE` where one
/// exec is much slower than here (the VM runner's emulated CPU sets 0.1). The assertions
/// are the same at any count.
fn exec_count(n: u32) -> u32 {
    let scale = std::env::var("NIGHTJAR_TEST_EXEC_SCALE").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(1.0);
    assert!(scale > 0.0 && scale <= 1.0, "NIGHTJAR_TEST_EXEC_SCALE must be in (0, 1], got {scale}");
    ((f64::from(n) * scale) as u32).max(1)
}

/// Runs `n` execs of /bin/true from one shell whose cwd is `dir`.
fn exec_loop(n: u32, dir: &str) -> std::process::Child {
    Command::new("/bin/sh")
        .args(["-c", &format!("i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done")])
        .current_dir(dir)
        .spawn()
        .unwrap()
}

fn count_ours(events: &[Event], dir: &str, truebin: &str) -> usize {
    events
        .iter()
        .filter_map(exec_of)
        .filter(|(p, _)| p.cwd.as_deref() == Some(dir) && p.binary.as_deref() == Some(truebin))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_execs_all_seen_none_missed() {
    let n = exec_count(20_000);
    let mut s = start(SensorConfig::default(), 65536);
    let dir = tempdir();
    let cwd = canonical_dir(dir.path());
    let truebin = real("/bin/true");
    let mut child = exec_loop(n, &cwd);
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    while seen < n as usize && Instant::now() < deadline {
        let batch = s.collect_until(Duration::from_secs(2), |ev| ev.len() >= 4096).await;
        seen += count_ours(&batch, &cwd, &truebin);
    }
    assert!(child.wait().unwrap().success());
    let (rest, stats) = s.stop().await;
    seen += count_ours(&rest, &cwd, &truebin);
    assert_eq!(seen, n as usize, "exec events seen for the loop's {n} execs");
    assert_eq!(stats.missed_exec.load(Ordering::Relaxed), 0, "missed exec records at the default ring size");
    assert_eq!(stats.decode_errors.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_ring_counts_every_miss() {
    // At the smallest scale still several times what the reader takes before it stalls
    // (one batch of 256 records) plus what a 4 KiB ring holds.
    let n = exec_count(3_000).max(300);
    // The loop runs in its own cgroup and the sensor traces only that cgroup, so every
    // record lost is one of ours and the count can be exact on a busy machine.
    let cg = cgroup2_mount().join(format!("nightjar-test-{}", std::process::id()));
    std::fs::create_dir_all(&cg).unwrap();
    let cgroup_id = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&cg).unwrap());
    let cfg = SensorConfig { ring_buffer_size: ByteSize(4096), cgroup_filter: cgroup_id, ..SensorConfig::default() };
    // A one-slot channel that nobody reads while the loop runs: the reader blocks, the
    // ring fills, and the kernel must count every record it cannot keep.
    let s = start(cfg, 1);
    let dir = tempdir();
    let cwd = canonical_dir(dir.path());
    let truebin = real("/bin/true");
    let script = format!(
        "echo $$ > {}/cgroup.procs && i=0 && while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done",
        cg.display()
    );
    let mut child = Command::new("/bin/sh").args(["-c", &script]).current_dir(&cwd).spawn().unwrap();
    let ok = tokio::task::spawn_blocking(move || child.wait().unwrap().success()).await.unwrap();
    // Stopping drains the ring and the channel: everything the kernel kept is delivered.
    let (events, stats) = s.stop().await;
    let _ = std::fs::remove_dir(&cg);
    assert!(ok);
    let seen = count_ours(&events, &cwd, &truebin);
    let missed = stats.missed_exec.load(Ordering::Relaxed);
    assert!(missed > 0, "a 4 KiB ring with a stalled reader must lose exec records");
    assert_eq!(seen as u64 + missed, u64::from(n), "seen {seen} + missed {missed} must equal the {n} execs done");
}

/// BPF stats on: the kernel's run count of the exec program covers our execs, with time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn program_costs_come_from_the_kernels_accounting() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let sensor = Sensor::load(&SensorConfig { proc_scan: false, ..Default::default() }, "test-node")
        .expect("load the sensor (run as root)");
    let cost = |s: &Sensor| {
        s.status().programs.into_iter().find(|p| p.section == "tracepoint/sched_process_exec").expect("exec program")
    };
    let before = cost(&sensor);
    assert_eq!(before.sensor, "__base__");
    for _ in 0..20 {
        assert!(Command::new("/bin/true").status().unwrap().success());
    }
    let after = cost(&sensor);
    assert!(after.runs >= before.runs + 20, "{before:?} -> {after:?}");
    assert!(after.run_time_ns > before.run_time_ns, "{before:?} -> {after:?}");
    assert!(sensor.status().program_stats_off.is_none());
    let off = Sensor::load(&SensorConfig { proc_scan: false, program_stats: false, ..Default::default() }, "test-node")
        .expect("load the sensor");
    assert_eq!(off.status().program_stats_off.as_deref(), Some("sensor.program_stats is off"));
    assert!(off.status().programs.is_empty());
}
