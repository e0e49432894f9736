//! The policy engine on the real kernel (root): the seed policies load unchanged, filter in
//! the kernel, and enforce — only on processes these tests spawn (copies of system
//! binaries under a temp dir, matched by their path).
use std::{
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::Command,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use nightjar_sensor::{policy, Sensor, SensorConfig};
use pipeline::{
    event::{ArgValue, ProcessKprobe},
    Event, EventKind,
};
use tokio::sync::{mpsc, watch};

static SERIAL: Mutex<()> = Mutex::new(());

fn seed(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/policies").join(format!("{name}.yaml"))
}

struct Running {
    rx: mpsc::Receiver<Event>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    _serial: MutexGuard<'static, ()>,
}

/// Loads the sensor with the given policies (YAML texts named like files).
fn start(policies: &[(String, String)]) -> (Running, Vec<policy::engine::PolicyStatus>) {
    start_in(policies, 0)
}

/// Like `start`, tracing (and enforcing) only in cgroup `cgroup_filter` (0: everywhere).
fn start_in(policies: &[(String, String)], cgroup_filter: u64) -> (Running, Vec<policy::engine::PolicyStatus>) {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = SensorConfig { policies_dir: PathBuf::new(), cgroup_filter, ..SensorConfig::default() };
    let mut sensor = Sensor::load(&cfg, "test-node").expect("load the sensor (root)");
    let mut st = Vec::new();
    for (name, text) in policies {
        let l = policy::parse(name, text).unwrap_or_else(|e| panic!("{e}"));
        st.push(sensor.add_policy(&l).unwrap_or_else(|e| panic!("{e}")));
    }
    let (tx, rx) = mpsc::channel(65536);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move { sensor.run(tx, stop_rx).await.expect("run") });
    (Running { rx, stop, task, _serial: serial }, st)
}

impl Running {
    async fn collect(&mut self, timeout: Duration, mut done: impl FnMut(&Event) -> bool) -> Vec<Event> {
        let mut out = Vec::new();
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(200), self.rx.recv()).await {
                let stop = done(&e);
                out.push(e);
                if stop {
                    break;
                }
            }
        }
        out
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let Running { mut rx, task, .. } = self;
        let d = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        task.await.unwrap();
        d.await.unwrap();
    }
}

fn kprobe(e: &Event) -> Option<&ProcessKprobe> {
    match &e.kind {
        EventKind::ProcessKprobe(k) => Some(k),
        _ => None,
    }
}

fn first_path(k: &ProcessKprobe) -> Option<&str> {
    k.args.as_ref()?.iter().find_map(|a| match &a.value {
        ArgValue::File(f) | ArgValue::LinuxBinprm(f) | ArgValue::Path(f) => f.path.as_deref(),
        ArgValue::String(s) => Some(s.as_str()),
        _ => None,
    })
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_policies_load_unchanged_and_say_how_they_are_served() {
    let names =
        ["monitor-sensitive-files", "detect-container-escape", "block-cryptominers", "detect-privilege-escalation"];
    let texts: Vec<(String, String)> = names.iter().map(|n| (format!("{n}.yaml"), read(&seed(n)))).collect();
    // The unchanged seed policies enforce host-wide; confine them to an empty cgroup so
    // they load and attach for real but can act on nothing on a shared machine.
    let cg = cgroup2_mount().join(format!("nightjar-empty-{}", std::process::id()));
    std::fs::create_dir_all(&cg).unwrap();
    let id = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&cg).unwrap());
    let (s, st) = start_in(&texts, id);
    assert_eq!(st.len(), 4);
    for p in &st {
        assert!(!p.hooks.is_empty(), "{p:?}");
        for h in &p.hooks {
            assert!(h.served_by.starts_with("tracepoint"), "{}: {}", p.name, h.served_by);
            assert_eq!(h.backend, "tracepoint", "{}: {h:?}", p.name);
        }
    }
    let setns = st.iter().find(|p| p.name == "detect-container-escape").unwrap();
    assert_eq!(setns.hooks[0].served_by, "tracepoint syscalls:sys_enter_setns");
    assert_eq!(setns.hooks[0].points, ["syscalls/sys_enter_setns"]);
    s.stop().await;
    let _ = std::fs::remove_dir(&cg);
}

fn cgroup2_mount() -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for l in info.lines() {
        let Some((pre, post)) = l.split_once(" - ") else { continue };
        if post.starts_with("cgroup2 ") {
            return PathBuf::from(pre.split_whitespace().nth(4).unwrap());
        }
    }
    panic!("no cgroup2 hierarchy mounted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_shadow_is_reported_and_hostname_is_not() {
    let (mut s, _) = start(&[("monitor-sensitive-files.yaml".into(), read(&seed("monitor-sensitive-files")))]);
    let dir = tempfile::tempdir().unwrap();
    // A marker file first, then the two reads, from one shell so the order is known.
    let script = "cat /etc/hostname >/dev/null; cat /etc/shadow >/dev/null; /bin/true shadow-done";
    let out = Command::new("/bin/sh").args(["-c", script]).current_dir(dir.path()).output().unwrap();
    assert!(out.status.success());
    let events = s
        .collect(Duration::from_secs(20), |e| match &e.kind {
            EventKind::ProcessExec(x) => x.process.as_ref().and_then(|p| p.arguments.as_deref()) == Some("shadow-done"),
            _ => false,
        })
        .await;
    let hits: Vec<&ProcessKprobe> = events.iter().filter_map(kprobe).collect();
    let shadow = hits
        .iter()
        .find(|k| first_path(k) == Some("/etc/shadow"))
        .unwrap_or_else(|| panic!("no event for /etc/shadow among {} kprobe events", hits.len()));
    assert_eq!(shadow.policy_name.as_deref(), Some("monitor-sensitive-files"));
    assert_eq!(shadow.function_name.as_deref(), Some("security_file_open"));
    assert_eq!(shadow.action.as_deref(), Some("KPROBE_ACTION_POST"));
    let p = shadow.process.as_ref().unwrap();
    assert_eq!(p.binary.as_deref(), Some(std::fs::canonicalize("/bin/cat").unwrap().to_str().unwrap()));
    assert_eq!(p.arguments.as_deref(), Some("/etc/shadow"));
    let parent = shadow.parent.as_ref().expect("parent");
    assert_eq!(parent.binary.as_deref(), Some(std::fs::canonicalize("/bin/sh").unwrap().to_str().unwrap()));
    assert!(!hits.iter().any(|k| first_path(k) == Some("/etc/hostname")), "hostname must be filtered in the kernel");
    s.stop().await;
}

/// The seed policy plus a matchBinaries restricting it to `binary` (the test's own copy).
fn restricted_escape_policy(binary: &str) -> String {
    read(&seed("detect-container-escape")).replace(
        "    - matchNamespaces:",
        &format!("    - matchBinaries:\n      - operator: In\n        values:\n        - \"{binary}\"\n      matchNamespaces:"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setns_from_a_new_pid_namespace_is_killed_and_from_the_host_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let nsenter = dir.path().join("nsenter");
    std::fs::copy("/usr/bin/nsenter", &nsenter).unwrap();
    let nsenter = std::fs::canonicalize(&nsenter).unwrap().display().to_string();
    let policy = restricted_escape_policy(&nsenter);
    let (mut s, _) = start(&[("detect-container-escape-test.yaml".into(), policy)]);
    // Our own mount namespace: entering it changes nothing, but it is a real setns(2).
    let target = format!("--mount=/proc/{}/ns/mnt", std::process::id());

    let host = Command::new(&nsenter).args([target.as_str(), "/bin/true"]).status().unwrap();
    assert!(host.success(), "setns from the host pid namespace must not be killed: {host:?}");

    // A shell in the new pid namespace runs nsenter and reports how it ended ($? = 137 for
    // SIGKILL): unshare itself cannot re-raise SIGKILL on its own pid here.
    let script = format!("{nsenter} {target} /bin/true; echo status=$?");
    let out = Command::new("unshare").args(["--pid", "--fork", "/bin/sh", "-c", &script]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("status=137"), "setns from a new pid namespace must be killed: {text:?} {:?}", out.status);

    let events = s
        .collect(Duration::from_secs(20), |e| {
            kprobe(e).is_some_and(|k| k.function_name.as_deref() == Some("__x64_sys_setns"))
        })
        .await;
    let k = events.iter().filter_map(kprobe).next().expect("a process_kprobe for setns");
    assert_eq!(k.action.as_deref(), Some("KPROBE_ACTION_SIGKILL"));
    assert_eq!(k.policy_name.as_deref(), Some("detect-container-escape"));
    assert_eq!(k.process.as_ref().and_then(|p| p.binary.as_deref()), Some(nsenter.as_str()));
    s.stop().await;
}

/// A test variant of block-cryptominers that lists the test's own miner path.
fn miner_policy(path: &str) -> String {
    let seed = read(&seed("block-cryptominers"));
    let start = seed.find("        values:\n").unwrap() + "        values:\n".len();
    let end = seed.find("      matchActions:").unwrap();
    format!("{}        - \"{path}\"\n{}", &seed[..start], &seed[end..]).replace("\"Postfix\"", "\"Equal\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_miner_is_killed_on_exec_and_sleep_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let miner = dir.path().join("nightjar-test-miner");
    std::fs::copy("/bin/sleep", &miner).unwrap();
    let miner = std::fs::canonicalize(&miner).unwrap().display().to_string();
    let (mut s, _) = start(&[("block-cryptominers-test.yaml".into(), miner_policy(&miner))]);

    let st = Command::new(&miner).arg("30").status().unwrap();
    assert_eq!(st.signal(), Some(9), "the miner copy must be killed on exec: {st:?}");
    let sleep = Command::new("/bin/sleep").arg("0.1").status().unwrap();
    assert!(sleep.success(), "/bin/sleep itself is untouched: {sleep:?}");

    let events =
        s.collect(Duration::from_secs(20), |e| kprobe(e).is_some_and(|k| first_path(k) == Some(miner.as_str()))).await;
    let k = events.iter().filter_map(kprobe).find(|k| first_path(k) == Some(miner.as_str())).expect("kprobe event");
    assert_eq!(k.action.as_deref(), Some("KPROBE_ACTION_SIGKILL"));
    assert_eq!(k.function_name.as_deref(), Some("security_bprm_check"));
    assert!(!events.iter().filter_map(kprobe).any(|k| first_path(k).is_some_and(|p| p.ends_with("/sleep"))));
    s.stop().await;
}
