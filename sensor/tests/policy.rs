//! The policy engine on the real kernel (root): the seed policies load unchanged, filter in
//! the kernel, and enforce — only on processes these tests spawn (copies of system
//! binaries under a temp dir, matched by their path).
//!
//! The same scenarios run on every kernel (this host: tracepoints only; the VM of
//! `scripts/vm-test.sh`: kprobes, fentry and BPF-LSM), and each asserts which backend served
//! each hook: what the sensor found usable at start, cross-checked with
//! `NIGHTJAR_EXPECT_KERNEL` (what the runner knows its kernel has), so a run that silently
//! fell back to tracepoints fails.
mod cgroup;
use std::{
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::Command,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use cgroup::cgroup2_mount;
use nightjar_event::{
    event::{ArgValue, ProcessKprobe},
    Event, EventKind,
};
use nightjar_sensor::{policy, probe::KernelFeatures, Sensor, SensorConfig};
use tokio::sync::{mpsc, watch};

static SERIAL: Mutex<()> = Mutex::new(());

fn seed(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/policies").join(format!("{name}.yaml"))
}

struct Running {
    rx: mpsc::Receiver<Event>,
    control: mpsc::Sender<nightjar_sensor::loader::Command>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    _serial: MutexGuard<'static, ()>,
}

struct Started {
    run: Running,
    policies: Vec<policy::engine::PolicyStatus>,
    backends: Backends,
}

/// Loads the sensor with the given policies (YAML texts named like files).
fn start(policies: &[(String, String)]) -> Started {
    start_in(policies, 0)
}

/// Like `start`, tracing (and enforcing) only in cgroup `cgroup_filter` (0: everywhere).
fn start_in(policies: &[(String, String)], cgroup_filter: u64) -> Started {
    start_with(policies, cgroup_filter, Vec::new())
}

/// Like `start_in`, with this node's pods known to the sensor (Kubernetes scopes).
fn start_with(policies: &[(String, String)], cgroup_filter: u64, pods: Vec<policy::scope::PodMeta>) -> Started {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = SensorConfig { policies_dir: PathBuf::new(), cgroup_filter, ..SensorConfig::default() };
    let mut sensor = Sensor::load(&cfg, "test-node").expect("load the sensor (root)");
    let backends = Backends::of(&sensor.features);
    sensor.set_pods(pods);
    let mut st = Vec::new();
    for (name, text) in policies {
        let l = policy::parse(name, text).unwrap_or_else(|e| panic!("{e}"));
        st.push(sensor.add_policy(&l).unwrap_or_else(|e| panic!("{e}")));
    }
    let (tx, rx) = mpsc::channel(65536);
    let (stop, stop_rx) = watch::channel(false);
    let control = sensor.control();
    let task = tokio::spawn(async move { sensor.run(tx, stop_rx).await.expect("run") });
    Started { run: Running { rx, control, stop, task, _serial: serial }, policies: st, backends }
}

/// The backends this kernel must give: from what the sensor found usable, and at least
/// what the runner says its kernel offers (`NIGHTJAR_EXPECT_KERNEL=btf,kprobes,bpf_lsm,fentry`).
#[derive(Debug, Clone, Copy)]
struct Backends {
    /// For `kprobes:` entries of security_file_open, security_bprm_check and __x64_sys_*.
    kfunc: &'static str,
    /// For `lsmhooks:` entries.
    lsm: &'static str,
}

impl Backends {
    fn of(f: &KernelFeatures) -> Self {
        let expect = std::env::var("NIGHTJAR_EXPECT_KERNEL").unwrap_or_default();
        for want in expect.split(',').map(str::trim) {
            let have = match want {
                "kprobes" => f.kprobes,
                "fentry" => f.fentry,
                "bpf_lsm" => f.bpf_lsm,
                _ => true,
            };
            assert!(have, "the runner says this kernel offers {want}, but the sensor cannot use it: {f:?}");
        }
        let kfunc = if f.fentry {
            "fentry"
        } else if f.kprobes {
            "kprobe"
        } else {
            "tracepoint"
        };
        Backends { kfunc, lsm: if f.bpf_lsm { "lsm" } else { "tracepoint" } }
    }
}

/// The hook `function` of policy `policy`: asserts it is served by `backend` at `points`.
fn assert_served(st: &[policy::engine::PolicyStatus], policy: &str, function: &str, backend: &str, points: &[&str]) {
    let p = st.iter().find(|p| p.name == policy).unwrap_or_else(|| panic!("policy {policy} not loaded: {st:?}"));
    let h = p.hooks.iter().find(|h| h.function == function).unwrap_or_else(|| panic!("{policy}: no hook {function}"));
    assert_eq!(h.backend, backend, "{policy}/{function}: {h:?}");
    assert_eq!(h.points, points, "{policy}/{function}: {h:?}");
}

/// Where a syscall hook is attached on each backend.
fn syscall_points(b: &str, name: &str) -> Vec<String> {
    if b == "tracepoint" {
        vec![format!("syscalls/sys_enter_{name}")]
    } else {
        vec![format!("__x64_sys_{name}")]
    }
}

fn file_open_points(b: &str) -> Vec<&'static str> {
    if b == "tracepoint" {
        vec![
            "syscalls/sys_exit_openat",
            "syscalls/sys_exit_open",
            "syscalls/sys_exit_openat2",
            "syscalls/sys_exit_creat",
        ]
    } else {
        vec!["security_file_open"]
    }
}

fn bprm_points(b: &str) -> Vec<&'static str> {
    if b == "tracepoint" {
        vec!["sched/sched_process_exec"]
    } else {
        vec!["security_bprm_check"]
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
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
    let Started { run: s, policies: st, backends: b } = start_in(&texts, id);
    assert_eq!(st.len(), 4);
    for p in &st {
        assert!(!p.hooks.is_empty(), "{p:?}");
        for h in &p.hooks {
            assert_eq!(h.backend, b.kfunc, "{}: {h:?}", p.name);
            assert!(h.served_by.starts_with(b.kfunc), "{}: {}", p.name, h.served_by);
        }
    }
    assert_served(&st, "monitor-sensitive-files", "security_file_open", b.kfunc, &file_open_points(b.kfunc));
    assert_served(&st, "block-cryptominers", "security_bprm_check", b.kfunc, &bprm_points(b.kfunc));
    assert_served(&st, "detect-container-escape", "__x64_sys_setns", b.kfunc, &strs(&syscall_points(b.kfunc, "setns")));
    for sc in ["setuid", "setresuid", "setreuid"] {
        let f = format!("__x64_sys_{sc}");
        assert_served(&st, "detect-privilege-escalation", &f, b.kfunc, &strs(&syscall_points(b.kfunc, sc)));
    }
    if b.kfunc == "tracepoint" {
        let setns = st.iter().find(|p| p.name == "detect-container-escape").unwrap();
        assert_eq!(setns.hooks[0].served_by, "tracepoint syscalls:sys_enter_setns");
    }
    s.stop().await;
    let _ = std::fs::remove_dir(&cg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_shadow_is_reported_and_hostname_is_not() {
    let Started { run: mut s, policies: st, backends: b } =
        start(&[("monitor-sensitive-files.yaml".into(), read(&seed("monitor-sensitive-files")))]);
    assert_served(&st, "monitor-sensitive-files", "security_file_open", b.kfunc, &file_open_points(b.kfunc));
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

/// security_file_open of `path` by `shell` and, with followChildren, by its descendants.
fn follow_children_policy(shell: &str, path: &str) -> String {
    format!(
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: follow-children\nspec:\n  kprobes:\n  - call: security_file_open\n    syscall: false\n    args:\n    - index: 0\n      type: file\n    selectors:\n    - matchBinaries:\n      - operator: In\n        values:\n        - \"{shell}\"\n        followChildren: true\n      matchArgs:\n      - index: 0\n        operator: Equal\n        values:\n        - \"{path}\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_children_reports_the_descendants_of_a_matching_binary_only() {
    let dir = tempfile::tempdir().unwrap();
    let shell = copy_into(dir.path(), "/bin/sh", "nightjar-fc-sh");
    let secret = std::fs::canonicalize(dir.path()).unwrap().join("fc-secret").display().to_string();
    std::fs::write(&secret, "x").unwrap();
    let Started { run: mut s, policies: st, backends: b } =
        start(&[("follow-children.yaml".into(), follow_children_policy(&shell, &secret))]);
    assert_served(&st, "follow-children", "security_file_open", b.kfunc, &file_open_points(b.kfunc));
    // A bystander: the same child under the system's shell. Then the copy's child and
    // grandchild (`; true`: the shells fork cat rather than exec it in their place).
    let bystander =
        Command::new("/bin/sh").args(["-c", &format!("/bin/cat {secret} >/dev/null; true")]).spawn().unwrap();
    let bystander_pid = bystander.id();
    assert!(bystander.wait_with_output().unwrap().status.success());
    let script = format!("/bin/cat {secret} >/dev/null; /bin/sh -c '/bin/cat {secret} >/dev/null; true'; true");
    let copy = Command::new(&shell).args(["-c", &script]).spawn().unwrap();
    let copy_pid = copy.id();
    assert!(copy.wait_with_output().unwrap().status.success());
    assert!(Command::new("/bin/echo").arg("fc-done").output().unwrap().status.success());
    let events = s
        .collect(Duration::from_secs(20), |e| match &e.kind {
            EventKind::ProcessExec(x) => x.process.as_ref().and_then(|p| p.arguments.as_deref()) == Some("fc-done"),
            _ => false,
        })
        .await;
    let hits: Vec<&ProcessKprobe> =
        events.iter().filter_map(kprobe).filter(|k| first_path(k) == Some(&secret)).collect();
    let parents: Vec<u32> = hits.iter().filter_map(|k| k.parent.as_ref()?.pid).collect();
    assert!(!parents.contains(&bystander_pid), "the bystander's cat was reported: parents {parents:?}");
    assert_eq!(hits.len(), 2, "the copy's child and grandchild, once each: parents {parents:?}");
    let cat = std::fs::canonicalize("/bin/cat").unwrap().display().to_string();
    for k in &hits {
        assert_eq!(k.process.as_ref().and_then(|p| p.binary.as_deref()), Some(cat.as_str()));
        assert_eq!(k.policy_name.as_deref(), Some("follow-children"));
    }
    assert!(parents.contains(&copy_pid), "the child's parent is the copy ({copy_pid}): {parents:?}");
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
    let nsenter = copy_into(dir.path(), "/usr/bin/nsenter", "nsenter");
    let policy = restricted_escape_policy(&nsenter);
    let Started { run: mut s, policies: st, backends: b } =
        start(&[("detect-container-escape-test.yaml".into(), policy)]);
    assert_served(&st, "detect-container-escape", "__x64_sys_setns", b.kfunc, &strs(&syscall_points(b.kfunc, "setns")));
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

/// A copy of /bin/sleep named `xmrig` in a temp dir: the only binary the miner tests'
/// policies match (by its exact path).
fn miner_copy(dir: &Path) -> String {
    copy_into(dir, "/bin/sleep", "xmrig")
}

/// A copy of binary `src` named `name` in `dir`: its canonical path.
fn copy_into(dir: &Path, src: &str, name: &str) -> String {
    let to = dir.join(name);
    std::fs::copy(src, &to).unwrap();
    std::fs::canonicalize(&to).unwrap().display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_miner_is_killed_on_exec_and_sleep_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let miner = miner_copy(dir.path());
    let Started { run: mut s, policies: st, backends: b } =
        start(&[("block-cryptominers-test.yaml".into(), miner_policy(&miner))]);
    assert_served(&st, "block-cryptominers", "security_bprm_check", b.kfunc, &bprm_points(b.kfunc));

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

/// The same miner policy with Tetragon's `policy-mode: monitor` option: the exec is
/// reported with the Post action and the miner runs to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_in_monitor_mode_reports_the_miner_without_killing_it() {
    let dir = tempfile::tempdir().unwrap();
    let miner = miner_copy(dir.path());
    let text =
        miner_policy(&miner).replace("spec:\n", "spec:\n  options:\n  - name: policy-mode\n    value: monitor\n");
    assert!(text.contains("policy-mode"), "{text}");
    let Started { run: mut s, policies: st, .. } = start(&[("block-cryptominers-monitor.yaml".into(), text)]);
    assert!(st[0].hooks[0].served_by.ends_with("(policy-mode monitor: enforcement elided)"), "{:?}", st[0].hooks);
    let run = Command::new(&miner).arg("0.1").status().unwrap();
    assert!(run.success(), "monitor mode must not kill the miner: {run:?}");
    let events =
        s.collect(Duration::from_secs(20), |e| kprobe(e).is_some_and(|k| first_path(k) == Some(miner.as_str()))).await;
    let k = events.iter().filter_map(kprobe).find(|k| first_path(k) == Some(miner.as_str())).expect("kprobe event");
    assert_eq!(k.action.as_deref(), Some("KPROBE_ACTION_POST"));
    s.stop().await;
}

/// block-cryptominers as an LSM hook with Override (argError -1 = -EPERM), listing only
/// the test's own miner copy.
fn miner_override_policy(path: &str) -> String {
    format!(
        r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: block-cryptominers-override
spec:
  lsmhooks:
  - hook: "bprm_check_security"
    args:
    - index: 0
      type: "linux_binprm"
    selectors:
    - matchArgs:
      - index: 0
        operator: "Equal"
        values:
        - "{path}"
      matchActions:
      - action: Override
        argError: -1
"#
    )
}

/// With BPF-LSM the miner never runs: exec fails with EPERM, no process_exec for it. Without
/// it (this host) the policy is refused with the hook and the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn override_denies_the_miner_exec_where_bpf_lsm_exists() {
    let dir = tempfile::tempdir().unwrap();
    let miner = miner_copy(dir.path());
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = SensorConfig { policies_dir: PathBuf::new(), ..SensorConfig::default() };
    let mut sensor = Sensor::load(&cfg, "test-node").expect("load the sensor (root)");
    let b = Backends::of(&sensor.features);
    let l = policy::parse("block-cryptominers-override.yaml", &miner_override_policy(&miner)).unwrap();
    let added = sensor.add_policy(&l);
    if b.lsm != "lsm" {
        let e = added.expect_err("Override must not load without BPF-LSM").to_string();
        assert!(e.contains("Override on LSM hook bprm_check_security"), "{e}");
        assert!(e.contains("BPF-LSM"), "{e}");
        if !std::path::Path::new("/sys/kernel/security/lsm").exists() {
            // Without securityfs the active LSM list is unknown: say so, not "bpf is not active".
            assert!(e.contains("securityfs"), "{e}");
            assert!(!e.contains("not among the active LSMs"), "{e}");
        }
        return;
    }
    let st = added.unwrap_or_else(|e| panic!("{e}"));
    assert_served(&[st], "block-cryptominers-override", "bprm_check_security", "lsm", &["bprm_check_security"]);
    let (tx, rx) = mpsc::channel(65536);
    let (stop, stop_rx) = watch::channel(false);
    let control = sensor.control();
    let task = tokio::spawn(async move { sensor.run(tx, stop_rx).await.expect("run") });
    let mut s = Running { rx, control, stop, task, _serial: serial };

    let err = Command::new(&miner).arg("30").status().expect_err("the miner's exec must fail");
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err:?}");
    // The shell's view: exec failed (126), nothing ran.
    let out = Command::new("/bin/sh").args(["-c", &format!("{miner} 30; echo status=$?")]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("status=126"), "{out:?}");
    let ok = Command::new("/bin/true").arg("override-done").status().unwrap();
    assert!(ok.success());

    let events = s
        .collect(Duration::from_secs(30), |e| match &e.kind {
            EventKind::ProcessExec(x) => {
                x.process.as_ref().and_then(|p| p.arguments.as_deref()) == Some("override-done")
            }
            _ => false,
        })
        .await;
    let lsm: Vec<serde_json::Value> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ProcessLsm(_) => serde_json::from_str::<serde_json::Value>(&e.to_json()).ok(),
            _ => None,
        })
        .map(|v| v["process_lsm"].clone())
        .collect();
    let hit = lsm
        .iter()
        .find(|v| v["args"][0]["linux_binprm_arg"]["path"] == miner.as_str())
        .unwrap_or_else(|| panic!("no process_lsm event for {miner} among {lsm:?}"));
    assert_eq!(hit["action"], "KPROBE_ACTION_OVERRIDE");
    assert_eq!(hit["function_name"], "bprm_check_security");
    assert_eq!(hit["policy_name"], "block-cryptominers-override");
    let ran = events.iter().any(|e| match &e.kind {
        EventKind::ProcessExec(x) => x.process.as_ref().and_then(|p| p.binary.as_deref()) == Some(miner.as_str()),
        _ => false,
    });
    assert!(!ran, "the miner must never run (a process_exec for it was seen)");
    s.stop().await;
}

/// Nine syscall hooks: fentry programs are bound to one function each and the pool has 8,
/// so where fentry loads the ninth is served by a kprobe (where kprobes exist); deleting
/// the policy frees the pool for the next one. Confined to an empty cgroup: nothing fires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syscall_hooks_beyond_the_fentry_pool_use_kprobes_and_delete_frees_it() {
    let calls = ["setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setfsuid", "setfsgid", "setns"];
    let mut yaml =
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: many-syscalls\nspec:\n  kprobes:\n"
            .to_owned();
    for c in calls {
        yaml.push_str(&format!(
            "  - call: \"__x64_sys_{c}\"\n    syscall: true\n    args:\n    - index: 0\n      type: \"int\"\n"
        ));
    }
    let cg = cgroup2_mount().join(format!("nightjar-empty-pool-{}", std::process::id()));
    std::fs::create_dir_all(&cg).unwrap();
    let id = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&cg).unwrap());
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = SensorConfig { policies_dir: PathBuf::new(), cgroup_filter: id, ..SensorConfig::default() };
    let mut sensor = Sensor::load(&cfg, "test-node").expect("load the sensor (root)");
    let b = Backends::of(&sensor.features);
    let l = policy::parse("many-syscalls.yaml", &yaml).unwrap();
    for round in 0..2 {
        if b.kfunc == "fentry" && !sensor.features.kprobes {
            // Nothing to take the ninth: the policy is refused whole, naming the limit.
            let e = sensor.add_policy(&l).expect_err("beyond the fentry pool without kprobes").to_string();
            assert!(e.contains("fentry"), "{e}");
            break;
        }
        let st = sensor.add_policy(&l).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let backends: Vec<&str> = st.hooks.iter().map(|h| h.backend.as_str()).collect();
        let mut want = vec![b.kfunc; 9];
        if b.kfunc == "fentry" {
            want[8] = "kprobe";
        }
        assert_eq!(backends, want, "round {round}: {st:?}");
        for (h, c) in st.hooks.iter().zip(calls) {
            assert_eq!(h.points, syscall_points(&h.backend, c), "{h:?}");
        }
        sensor.delete_policy("many-syscalls").unwrap();
    }
    drop(sensor);
    let _ = std::fs::remove_dir(&cg);
}

/// A uprobe on bash's `readline` (Tetragon's own uprobe example, with the prompt as a
/// string argument): an interactive bash the test starts reports a `process_uprobe` with
/// the prompt it was given, exported as Tetragon does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uprobe_on_bash_readline_reports_the_prompt() {
    let bash = std::fs::canonicalize("/bin/bash").unwrap().display().to_string();
    let policy = format!(
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: bash-readline\nspec:\n  uprobes:\n  - path: \"{bash}\"\n    symbols:\n    - \"readline\"\n    args:\n    - index: 0\n      type: \"string\"\n"
    );
    let Started { run: mut s, policies: st, .. } = start(&[("bash-readline.yaml".into(), policy)]);
    assert_served(&st, "bash-readline", "readline", "uprobe", &[&format!("{bash}:readline")]);
    let mut child = Command::new(&bash)
        .args(["--norc", "--noprofile", "-i"])
        .env("PS1", "nightjar-prompt> ")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"true\nexit\n").unwrap();
    }
    assert!(child.wait().unwrap().success());
    let events = s
        .collect(Duration::from_secs(20), |e| {
            e.to_json().contains("\"process_uprobe\"") && e.to_json().contains(&format!("\"pid\":{pid},"))
        })
        .await;
    let json: Vec<serde_json::Value> = events
        .iter()
        .map(|e| serde_json::from_str::<serde_json::Value>(&e.to_json()).unwrap())
        .filter(|v| v["process_uprobe"]["process"]["pid"] == pid)
        .collect();
    let u = &json.first().unwrap_or_else(|| panic!("no process_uprobe from bash pid {pid}"))["process_uprobe"];
    assert_eq!(u["path"], bash);
    assert_eq!(u["symbol"], "readline");
    assert_eq!(u["policy_name"], "bash-readline");
    assert_eq!(u["args"], serde_json::json!([{ "string_arg": "nightjar-prompt> " }]));
    assert_eq!(u["process"]["binary"], bash);
    s.stop().await;
}

/// One `uprobes:` entry with more symbols than a policy has hooks (16), as Tetragon's own
/// examples write them: one hook attached at each, and the event names the symbol that
/// fired. The process calls two of them (dup, fchdir) on descriptors nothing else uses
/// (the selector), between fork and exec.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_uprobes_entry_attaches_at_each_of_its_symbols() {
    use std::os::unix::process::CommandExt;
    let libc = std::fs::canonicalize("/lib/x86_64-linux-gnu/libc.so.6").unwrap().display().to_string();
    let symbols = [
        "dup",
        "fchdir",
        "fdatasync",
        "syncfs",
        "getsid",
        "getpgid",
        "sched_getscheduler",
        "sched_getparam",
        "sched_get_priority_max",
        "sched_get_priority_min",
        "sched_rr_get_interval",
        "timerfd_gettime",
        "epoll_create",
        "inotify_init",
        "fanotify_init",
        "mlockall",
        "munlockall",
        "acct",
        "swapoff",
        "sethostname",
    ];
    let list: String = symbols.iter().map(|s| format!("    - \"{s}\"\n")).collect();
    let policy = format!(
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: libc-many\nspec:\n  uprobes:\n  - path: \"{libc}\"\n    symbols:\n{list}    args:\n    - index: 0\n      type: int\n    selectors:\n    - matchArgs:\n      - index: 0\n        operator: In\n        values: [\"798\", \"799\"]\n"
    );
    let Started { run: mut s, policies: st, .. } = start(&[("libc-many.yaml".into(), policy)]);
    assert_eq!(st[0].hooks.len(), 1, "one hook for the entry");
    assert_eq!(st[0].hooks[0].points.len(), symbols.len());
    let mut cmd = Command::new("/bin/true");
    // SAFETY: dup and fchdir (async-signal-safe) between fork and exec; both fail (EBADF).
    unsafe {
        cmd.pre_exec(|| {
            libc::dup(798);
            libc::fchdir(799);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    assert!(child.wait().unwrap().success());
    let mine =
        |e: &Event| e.to_json().contains("\"process_uprobe\"") && e.to_json().contains(&format!("\"pid\":{pid},"));
    let mut seen = Vec::new();
    for _ in 0..2 {
        let events = s.collect(Duration::from_secs(20), |e| mine(e)).await;
        for e in events.iter().filter(|e| mine(e)) {
            let v: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
            seen.push((
                v["process_uprobe"]["symbol"].as_str().unwrap().to_owned(),
                v["process_uprobe"]["args"].clone(),
            ));
        }
        if seen.len() >= 2 {
            break;
        }
    }
    assert_eq!(
        seen,
        vec![
            ("dup".to_owned(), serde_json::json!([{"int_arg": 798}])),
            ("fchdir".to_owned(), serde_json::json!([{"int_arg": 799}]))
        ]
    );
    s.stop().await;
}

/// A policy on dup(2) of descriptor `fd` (which no process here has), with `scope` (YAML
/// under `spec:`, and the kind/namespace it needs).
fn scoped_dup_policy(name: &str, kind: &str, namespace: &str, fd: u32, scope: &str) -> (String, String) {
    let ns = if namespace.is_empty() { String::new() } else { format!("  namespace: {namespace}\n") };
    (
        format!("{name}.yaml"),
        format!(
            "apiVersion: cilium.io/v1alpha1\nkind: {kind}\nmetadata:\n  name: {name}\n{ns}spec:\n{scope}  kprobes:\n  - call: sys_dup\n    syscall: true\n    args:\n    - index: 0\n      type: int\n    selectors:\n    - matchArgs:\n      - index: 0\n        operator: Equal\n        values: [\"{fd}\"]\n"
        ),
    )
}

/// A process of the test in cgroup `cg`: between fork and exec it joins the cgroup and
/// calls dup on each of `fds` (none is open: EBADF), then runs /bin/true.
fn dup_in_cgroup(cg: &Path, fds: &[u32]) -> u32 {
    use std::os::unix::process::CommandExt;
    let procs = std::ffi::CString::new(cg.join("cgroup.procs").into_os_string().into_encoded_bytes()).unwrap();
    let fds = fds.to_vec();
    let mut cmd = Command::new("/bin/true");
    // SAFETY: only open/write/close/dup (async-signal-safe) between fork and exec, on
    // data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            for d in &fds {
                libc::dup(*d as i32);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn /bin/true");
    let pid = child.id();
    assert!(child.wait().unwrap().success());
    pid
}

/// podSelector, containerSelector, hostSelector and TracingPolicyNamespaced filter in the
/// kernel by the cgroup of the process: three pods' containers (cgroups laid out as the
/// kubelet's systemd driver names them, made by this test) and a host cgroup each call
/// dup on every policy's descriptor; each policy reports exactly the processes its scope
/// admits, and follows a pod's new labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_scopes_report_only_the_pods_containers_and_host_they_select() {
    let base = cgroup2_mount().join(format!("nightjar-scope-{}", std::process::id()));
    let _cleanup = RemoveTree(base.clone());
    let uid = |n: u32| format!("0b5a4c6e-8f0c-4c57-9a3e-{n:012}");
    let cid = |n: u32| format!("{n:064x}");
    let pod_cg = |n: u32| {
        let u = uid(n).replace('-', "_");
        base.join("kubepods.slice/kubepods-besteffort.slice")
            .join(format!("kubepods-besteffort-pod{u}.slice"))
            .join(format!("cri-containerd-{}.scope", cid(n)))
    };
    let host_cg = base.join("host");
    for d in [pod_cg(1), pod_cg(2), pod_cg(3), host_cg.clone()] {
        std::fs::create_dir_all(&d).unwrap();
    }
    let pod = |n: u32, ns: &str, app: &str, container: &str| policy::scope::PodMeta {
        uid: uid(n),
        name: format!("pod-{n}"),
        namespace: ns.into(),
        labels: [("app".to_owned(), app.to_owned())].into(),
        containers: vec![(cid(n), container.into())],
    };
    // Pod 3 runs but is not listed (the API has not caught up with it).
    let pods = vec![pod(1, "rebels", "xwing", "main"), pod(2, "empire", "tiefighter", "sidecar")];
    let policies = vec![
        scoped_dup_policy("scope-xwing", "TracingPolicy", "", 771, "  podSelector:\n    matchLabels:\n      app: xwing\n"),
        scoped_dup_policy("scope-sidecar", "TracingPolicy", "", 772, "  containerSelector:\n    matchExpressions:\n    - key: name\n      operator: In\n      values: [sidecar]\n"),
        scoped_dup_policy("scope-empire", "TracingPolicyNamespaced", "empire", 773, ""),
        scoped_dup_policy("scope-xwing-host", "TracingPolicy", "", 774, "  podSelector:\n    matchLabels:\n      app: xwing\n  hostSelector: {}\n"),
        scoped_dup_policy("scope-all-pods", "TracingPolicy", "", 775, "  podSelector: {}\n"),
        scoped_dup_policy("scope-none", "TracingPolicy", "", 776, ""),
    ];
    let Started { run: mut s, policies: st, .. } = start_with(&policies, 0, pods);
    let scope_of = |name: &str| st.iter().find(|p| p.name == name).and_then(|p| p.scope.clone());
    assert_eq!(scope_of("scope-xwing").as_deref(), Some("pods app=xwing; 1 container cgroup(s) admitted"));
    assert_eq!(scope_of("scope-empire").as_deref(), Some("namespace empire; 1 container cgroup(s) admitted"));
    assert_eq!(scope_of("scope-all-pods").as_deref(), Some("pods (all); 3 container cgroup(s) admitted"));
    assert_eq!(scope_of("scope-none"), None);

    let fds = [771, 772, 773, 774, 775, 776];
    let run_all = || {
        [
            dup_in_cgroup(&pod_cg(1), &fds),
            dup_in_cgroup(&pod_cg(2), &fds),
            dup_in_cgroup(&pod_cg(3), &fds),
            dup_in_cgroup(&host_cg, &fds),
        ]
    };
    // Who reported what: (policy, pid) pairs of this round's processes.
    async fn seen(s: &mut Running, pids: &[u32; 4]) -> std::collections::BTreeSet<(String, usize)> {
        // The host process ran last and scope-none reports it: everything before is in.
        let last = |e: &Event| {
            kprobe(e).is_some_and(|k| {
                k.policy_name.as_deref() == Some("scope-none")
                    && k.process.as_ref().and_then(|p| p.pid) == Some(pids[3])
            })
        };
        let events = s.collect(Duration::from_secs(30), last).await;
        events
            .iter()
            .filter_map(kprobe)
            .filter_map(|k| {
                let pid = k.process.as_ref()?.pid?;
                let who = pids.iter().position(|p| *p == pid)?;
                Some((k.policy_name.clone()?, who))
            })
            .collect()
    }
    let want = |pairs: &[(&str, &[usize])]| -> std::collections::BTreeSet<(String, usize)> {
        pairs.iter().flat_map(|(p, who)| who.iter().map(move |w| ((*p).to_owned(), *w))).collect()
    };
    // 0, 1, 2: the containers of pods 1, 2, 3; 3: the host cgroup.
    let pids = run_all();
    let got = seen(&mut s, &pids).await;
    let expected = want(&[
        ("scope-xwing", &[0]),
        ("scope-sidecar", &[1]),
        ("scope-empire", &[1]),
        ("scope-xwing-host", &[0, 3]),
        ("scope-all-pods", &[0, 1, 2]),
        ("scope-none", &[0, 1, 2, 3]),
    ]);
    assert_eq!(got, expected);

    // Pod 2 is relabelled app=xwing and pod 3 listed in namespace empire.
    let relabelled =
        vec![pod(1, "rebels", "xwing", "main"), pod(2, "empire", "xwing", "sidecar"), pod(3, "empire", "db", "db")];
    s.control.send(nightjar_sensor::loader::Command::SetPods(relabelled)).await.unwrap();
    // Commands are served in order: once the list answers, the new pods are in the map.
    let (tx, rx) = tokio::sync::oneshot::channel();
    s.control.send(nightjar_sensor::loader::Command::ListPolicies(tx)).await.unwrap();
    let listed = rx.await.unwrap();
    let xwing = listed.iter().find(|p| p.name == "scope-xwing").and_then(|p| p.scope.clone());
    assert_eq!(xwing.as_deref(), Some("pods app=xwing; 2 container cgroup(s) admitted"));
    let pids = run_all();
    let got = seen(&mut s, &pids).await;
    let expected = want(&[
        ("scope-xwing", &[0, 1]),
        ("scope-sidecar", &[1]),
        ("scope-empire", &[1, 2]),
        ("scope-xwing-host", &[0, 1, 3]),
        ("scope-all-pods", &[0, 1, 2]),
        ("scope-none", &[0, 1, 2, 3]),
    ]);
    assert_eq!(got, expected);
    s.stop().await;
}

/// Removes a tree of (empty) cgroups when dropped, also when the test fails.
struct RemoveTree(PathBuf);

impl Drop for RemoveTree {
    fn drop(&mut self) {
        fn rm(d: &Path) {
            for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rm(&e.path());
                }
            }
            let _ = std::fs::remove_dir(d);
        }
        rm(&self.0);
    }
}

/// matchNamespaceChanges on a process that was already running when the policy loaded
/// (no exec since, so the kernel has no record of its namespaces at exec): the policy's
/// load records its namespaces of then, and its later unshare of the mount namespace
/// counts as a change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_changes_of_a_process_running_before_the_policy_are_seen() {
    let mut pipe = [0i32; 2];
    // SAFETY: pipe(2) into a local array.
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
    // SAFETY: the child only calls read, unshare, dup and _exit (async-signal-safe).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let mut b = [0u8; 1];
        // SAFETY: as above.
        unsafe {
            libc::read(pipe[0], b.as_mut_ptr().cast(), 1);
            libc::unshare(libc::CLONE_NEWNS);
            libc::dup(793);
            libc::_exit(0);
        }
    }
    let policy = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: ns-change-running\nspec:\n  kprobes:\n  - call: sys_dup\n    syscall: true\n    args:\n    - index: 0\n      type: int\n    selectors:\n    - matchNamespaceChanges:\n      - operator: In\n        values: [Mnt]\n      matchArgs:\n      - index: 0\n        operator: Equal\n        values: [\"793\"]\n";
    let Started { run: mut s, .. } = start(&[("ns-change-running.yaml".into(), policy.into())]);
    // SAFETY: write(2) of one byte to our pipe; waitpid on our own child.
    unsafe {
        assert_eq!(libc::write(pipe[1], b"x".as_ptr().cast(), 1), 1);
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
    }
    let hit = |e: &Event| kprobe(e).is_some_and(|k| k.process.as_ref().and_then(|p| p.pid) == Some(pid as u32));
    let events = s.collect(Duration::from_secs(20), hit).await;
    assert!(events.iter().any(hit), "the unshare of a process running before the policy loaded was not seen");
    s.stop().await;
}
