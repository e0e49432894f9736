//! Helpers for the sinks' tests: numbered events, a small tmpfs, a per-thread fs uid.
use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, OnceLock},
};

use pipeline::{
    event::{ArgValue, Container, KprobeArgument, Pod, Process, ProcessExec, ProcessKprobe},
    time::Timestamp,
    Event, EventKind,
};

/// 2026-01-01T10:00:00Z.
pub const BASE_NANOS: i128 = 1_767_261_600_000_000_000;

/// The action of event `i` (every 4th event is a kprobe; of those, every other is SIGKILL).
pub fn expected_action(i: u64) -> Option<&'static str> {
    match i % 8 {
        3 => Some("POST"),
        7 => Some("SIGKILL"),
        _ => None,
    }
}

/// Event number `i`: pid `1000 + i`, time `BASE + i ms`; a `process_kprobe` from policy
/// `block-nc` when [`expected_action`] says so, else a `process_exec`.
pub fn seq_event(i: u64) -> Arc<Event> {
    seq_event_at(i, BASE_NANOS + i as i128 * 1_000_000)
}

pub fn seq_event_at(i: u64, nanos: i128) -> Arc<Event> {
    let process = Process {
        exec_id: Some(format!("bm9kZToxMjM0NTY3OD{i}")),
        pid: Some(1000 + i as u32),
        uid: Some((i % 3) as u32 * 1000),
        cwd: Some("/".into()),
        binary: Some(format!("/usr/bin/b{}", i % 10)),
        arguments: Some(format!("--seq {i} \"quoted arg\"")),
        flags: Some("execve clone".into()),
        start_time: Some(Timestamp::from_unix_nanos(nanos - 1000)),
        pod: (i % 4 != 0).then(|| Pod {
            namespace: Some(format!("ns{}", i % 3)),
            name: Some(format!("pod-{}", i % 5)),
            container: Some(Container {
                id: Some(format!("containerd://c{i}")),
                name: Some("app".into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let parent = Process { pid: Some(1), binary: Some("/usr/bin/bash".into()), ..Default::default() };
    let kind = match expected_action(i) {
        Some(action) => EventKind::ProcessKprobe(Box::new(ProcessKprobe {
            process: Some(process.into()),
            parent: Some(parent.into()),
            function_name: Some("sys_execve".into()),
            args: Some(vec![KprobeArgument::new(ArgValue::String("/bin/nc".into()))]),
            action: Some(action.into()),
            policy_name: Some("block-nc".into()),
            ..Default::default()
        })),
        None => EventKind::ProcessExec(Box::new(ProcessExec {
            process: Some(process.into()),
            parent: Some(parent.into()),
            ..Default::default()
        })),
    };
    Arc::new(Event::new(kind, "node-a", Timestamp::from_unix_nanos(nanos)))
}

/// Namespace of event `i` (None: no pod).
pub fn expected_namespace(i: u64) -> Option<String> {
    (i % 4 != 0).then(|| format!("ns{}", i % 3))
}

/// The Python with pyarrow and duckdb that `scripts/setup.sh` installs.
pub fn python() -> PathBuf {
    let p = std::env::var_os("NIGHTJAR_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/nightjar/venv/bin/python")
    });
    assert!(p.exists(), "{} is missing: run scripts/setup.sh (it installs pyarrow and duckdb)", p.display());
    p
}

/// Runs a Python script with arguments and returns its stdout parsed as JSON.
pub fn run_python(script: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(python()).arg("-c").arg(script).args(args).output().expect("run python");
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("python printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// The `i` of a line written from [`seq_event`].
pub fn seq_of(line: &str) -> u64 {
    let e = Event::from_json(line).unwrap_or_else(|err| panic!("not an event ({err}): {line:?}"));
    u64::from(e.process().and_then(|p| p.pid).expect("pid")) - 1000
}

/// A tmpfs of a few KiB, unmounted (lazily, so even a busy one goes) when dropped.
pub struct SmallTmpfs(PathBuf);

impl SmallTmpfs {
    pub fn mount(dir: &Path, size: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount tmpfs on {} failed (these tests run as root)", dir.display());
        SmallTmpfs(dir.to_owned())
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Sets this thread's file-system uid (dropping root's file capabilities for this thread
/// only) and restores 0 when dropped.
pub struct FsUid;

impl FsUid {
    pub fn set(uid: u32) -> Self {
        // SAFETY: setfsuid(2) changes only the calling thread's file-system credentials.
        unsafe { libc::setfsuid(uid) };
        FsUid
    }
}

impl Drop for FsUid {
    fn drop(&mut self) {
        // SAFETY: as above, back to root for this thread.
        unsafe { libc::setfsuid(0) };
    }
}

/// A sink behind a memory buffer and its driver, as the agent runs it: feed events in,
/// close the feed, await the report.
pub struct Feed(tokio::sync::mpsc::Sender<pipeline::fanout::Entry>);

impl Feed {
    pub async fn send(&self, event: Arc<Event>) {
        self.0.send(pipeline::fanout::Entry { event, ack: None }).await.expect("the driver is gone");
    }
}

pub fn drive(
    sink: Box<dyn crate::Sink>,
    batch: crate::driver::BatchConfig,
    retry: crate::retry::RetryConfig,
) -> (Feed, tokio::task::JoinHandle<crate::driver::DriverReport>, Arc<crate::SinkHealth>) {
    let cfg = crate::buffer::BufferConfig::memory(10_000, pipeline::fanout::QueuePolicy::Block);
    let o = crate::buffer::open("test", &cfg, Path::new("/nonexistent")).expect("memory buffer");
    let health = Arc::new(crate::SinkHealth::new(
        "test",
        crate::buffer::BufferType::Memory,
        std::time::Duration::from_secs(10),
        o.stats.clone(),
    ));
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    std::mem::forget(_stop_tx);
    let d = crate::driver::Driver::new(sink, o.reader, batch, retry, health.clone(), stop);
    (Feed(o.writer.tx), tokio::spawn(d.run()), health)
}

/// Feeds `n` numbered events ([`seq_event`]) at `per_sec` a second (0: as fast as taken).
pub async fn feed(tx: Feed, n: u64, per_sec: u64) {
    let start = tokio::time::Instant::now();
    for i in 0..n {
        if per_sec > 0 && i % 100 == 0 {
            tokio::time::sleep_until(start + std::time::Duration::from_micros(i * 1_000_000 / per_sec)).await;
        }
        tx.send(seq_event(i)).await;
    }
}

/// 150,000 events at 5,000/s through `sink` while `proxy` cuts its server from 5 s to
/// 25 s in; asserts the driver settled every one as delivered, none failed. Returns N.
pub async fn through_an_outage(
    sink: Box<dyn crate::Sink>,
    batch: &crate::driver::BatchConfig,
    retry: &crate::retry::RetryConfig,
    proxy: &crate::test_servers::Proxy,
) -> u64 {
    use std::time::Duration;
    const N: u64 = 150_000;
    let (tx, drv, _) = drive(sink, batch.clone(), retry.clone());
    let feeder = tokio::spawn(feed(tx, N, 5_000));
    tokio::time::sleep(Duration::from_secs(5)).await;
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(20)).await;
    proxy.restore();
    feeder.await.unwrap();
    let report = tokio::time::timeout(Duration::from_secs(600), drv).await.unwrap().unwrap();
    assert_eq!((report.delivered, report.failed), (N, 0));
    N
}

/// Installs the process-wide recorder (call from inside a tokio runtime, before counting).
pub fn install_metrics() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let h = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder().expect("install recorder");
        let _ = HANDLE.set(h);
    });
}

static HANDLE: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();

/// Sum of a counter's series whose labels include `labels` (e.g. `sink="kafka"`).
pub fn counter(name: &str, labels: &[&str]) -> f64 {
    let text = HANDLE.get().map(|h| h.render()).unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
