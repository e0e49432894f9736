//! Network hooks on the real kernel (root): a helper this test starts (a hard link to the
//! test executable under a temp dir, the only binary the policies match) makes a network
//! namespace of its own, brings up its loopback and listens, connects, accepts, closes
//! and sends a UDP datagram to a "DNS server" port there. Nothing leaves that namespace.
//!
//! The same assertions hold on every kernel: this host serves the network functions by
//! syscall tracepoint stand-ins (no kprobes), the VMs of `scripts/vm-test.sh` by kprobes.
mod cgroup;
mod netns;
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use cgroup::cgroup2_mount;
use nightjar_sensor::{loader::Command as SensorCommand, policy, Sensor, SensorConfig};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

const HELPER_ENV: &str = "NIGHTJAR_NET_HELPER";

/// Runs as the helper when `NIGHTJAR_NET_HELPER` is set (the sensor side never sets it).
#[test]
fn zz_net_helper() {
    let Ok(action) = std::env::var(HELPER_ENV) else { return };
    use std::io::Write;
    println!("pid={}", std::process::id());
    let _ = std::io::stdout().flush();
    std::process::exit(helper(&action));
}

/// The helper's network activity, in a new network namespace; prints the ports it used.
fn helper(action: &str) -> i32 {
    // SAFETY: unshare of this process's own network namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 || !netns::loopback_up() {
        return 4;
    }
    match action {
        "tcp-udp" => {
            let Ok(l) = std::net::TcpListener::bind("127.0.0.1:0") else { return 5 };
            let lport = l.local_addr().map(|a| a.port()).unwrap_or(0);
            let Ok(c) = std::net::TcpStream::connect(("127.0.0.1", lport)) else { return 6 };
            let cport = c.local_addr().map(|a| a.port()).unwrap_or(0);
            let Ok((a, _)) = l.accept() else { return 7 };
            drop(c);
            drop(a);
            drop(l);
            let Ok(dns) = std::net::UdpSocket::bind("127.0.0.1:53") else { return 8 };
            let Ok(u) = std::net::UdpSocket::bind("127.0.0.1:0") else { return 9 };
            let uport = u.local_addr().map(|a| a.port()).unwrap_or(0);
            if u.connect("127.0.0.1:53").is_err() || u.send(b"nightjar-dns?").is_err() {
                return 10;
            }
            drop(dns);
            println!("lport={lport} cport={cport} uport={uport}");
            0
        }
        "v4-v6-dns" => {
            // One TCP connection over IPv4, one over IPv6, a datagram to a DNS port and one
            // to another port.
            let (Ok(l4), Ok(l6)) = (std::net::TcpListener::bind("127.0.0.1:0"), std::net::TcpListener::bind("[::1]:0"))
            else {
                return 5;
            };
            for l in [&l4, &l6] {
                let Ok(a) = l.local_addr() else { return 6 };
                if std::net::TcpStream::connect(a).is_err() {
                    return 7;
                }
            }
            // Receivers on both ports: a datagram to a closed port would fail the next send.
            let (Ok(_dns), Ok(_other)) =
                (std::net::UdpSocket::bind("127.0.0.1:53"), std::net::UdpSocket::bind("127.0.0.1:5353"))
            else {
                return 8;
            };
            let Ok(u) = std::net::UdpSocket::bind("127.0.0.1:0") else { return 9 };
            for port in [53u16, 5353] {
                if u.connect(("127.0.0.1", port)).is_err() || u.send(b"nightjar-dns?").is_err() {
                    return 10;
                }
            }
            println!("done=1");
            0
        }
        "forbidden" => {
            // A connection allowed, then one to the forbidden 127.0.0.2 (killed there).
            use std::io::Write;
            let Ok(l) = std::net::TcpListener::bind("0.0.0.0:0") else { return 5 };
            let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                return 6;
            }
            println!("allowed=1");
            let _ = std::io::stdout().flush();
            let _ = std::net::TcpStream::connect(("127.0.0.2", port));
            println!("survived=1");
            0
        }
        // Only the loopback brought up (dev_change_flags on `lo`), above.
        "lo-up" => 0,
        "track" => {
            // A connection and its accepted end, then a child (a fork: the same binary, the
            // same descriptors) calls connect(2) again on both (EISCONN; the LSM hook still
            // sees the socket): to the listener, to port 9 (the policy's UntrackSock), and
            // to the listener once more.
            use std::{io::Write, os::fd::AsRawFd};
            let Ok(l) = std::net::TcpListener::bind("127.0.0.1:0") else { return 5 };
            let lport = l.local_addr().map(|a| a.port()).unwrap_or(0);
            let Ok(c) = std::net::TcpStream::connect(("127.0.0.1", lport)) else { return 6 };
            let cport = c.local_addr().map(|a| a.port()).unwrap_or(0);
            let Ok((a, _)) = l.accept() else { return 7 };
            println!("lport={lport} cport={cport}");
            let _ = std::io::stdout().flush();
            // SAFETY: fork of this single-purpose helper; the child only makes syscalls and
            // writes to stdout before _exit.
            let child = unsafe { libc::fork() };
            if child == 0 {
                println!("child={}", std::process::id());
                let _ = std::io::stdout().flush();
                for (fd, port) in
                    [(c.as_raw_fd(), lport), (a.as_raw_fd(), lport), (c.as_raw_fd(), 9), (c.as_raw_fd(), lport)]
                {
                    connect_again(fd, port);
                }
                // SAFETY: leaves the child without running the parent's destructors.
                unsafe { libc::_exit(0) };
            }
            let mut st = 0;
            // SAFETY: waits for the child forked above.
            if child < 0 || unsafe { libc::waitpid(child, &mut st, 0) } != child || st != 0 {
                return 8;
            }
            0
        }
        _ => 3,
    }
}

/// connect(2) of connected socket `fd` to 127.0.0.1:`port` (it fails with EISCONN).
fn connect_again(fd: i32, port: u16) {
    // SAFETY: a zeroed sockaddr_in, filled in, of the size passed.
    unsafe {
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_port = port.to_be();
        sa.sin_addr.s_addr = u32::from_be_bytes([127, 0, 0, 1]).to_be();
        libc::connect(fd, (&sa as *const libc::sockaddr_in).cast(), std::mem::size_of::<libc::sockaddr_in>() as u32);
    }
}

/// The helper: a hard link to (or copy of) this executable under `dir`.
fn helper_binary(dir: &Path) -> String {
    let exe = std::env::current_exe().unwrap();
    let h = dir.join("nightjar-net-helper");
    if std::fs::hard_link(&exe, &h).is_err() {
        std::fs::copy(&exe, &h).unwrap();
    }
    std::fs::canonicalize(&h).unwrap().display().to_string()
}

/// What a helper run gave: its pid, its parent's (a shell started after the sensor, so
/// the process cache has seen it exec), how it ended (`$?`: 128 + the signal) and its output.
struct Ran {
    pid: u32,
    parent: u32,
    status: i32,
    out: String,
}

/// Runs the helper from a shell; the shell prints how it ended.
fn run_helper(helper: &str, action: &str) -> Ran {
    run_helper_in(helper, action, None)
}

/// Like `run_helper`, the shell (and so the helper) in cgroup `cg` when given.
fn run_helper_in(helper: &str, action: &str, cg: Option<&Path>) -> Ran {
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "\"$0\" --exact zz_net_helper --nocapture --test-threads=1; echo status=$?", helper])
        .env(HELPER_ENV, action)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    if let Some(cg) = cg {
        use std::os::unix::process::CommandExt;
        let procs = cg.join("cgroup.procs");
        // SAFETY: between fork and exec only a write(2) of "0" (this process) to cgroup.procs.
        unsafe {
            cmd.pre_exec(move || std::fs::write(&procs, "0"));
        }
    }
    let child = cmd.spawn().unwrap();
    let parent = child.id();
    let out = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    Ran { pid: printed(&out, "pid") as u32, parent, status: printed(&out, "status") as i32, out }
}

fn printed(out: &str, key: &str) -> u64 {
    out.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("the helper printed no {key}: {out:?}"))
}

/// A kprobe hook on `call` with one `sock` argument (and `extra` YAML), for `helper` only.
fn hook(call: &str, extra: &str, helper: &str) -> String {
    format!(
        "  - call: \"{call}\"\n    syscall: false\n{extra}    args:\n    - index: 0\n      type: \"sock\"\n    selectors:\n    - matchBinaries:\n      - operator: In\n        values:\n        - \"{helper}\"\n"
    )
}

fn lifecycle_policy(helper: &str) -> String {
    let mut p = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: \"net-lifecycle\"\nspec:\n  kprobes:\n".to_owned();
    for call in ["tcp_connect", "tcp_close", "inet_csk_listen_start", "udp_sendmsg"] {
        p += &hook(call, "", helper);
    }
    p += &hook("inet_csk_accept", "    return: true\n    returnArg:\n      index: 0\n      type: \"sock\"\n", helper);
    p += &format!(
        "  - call: \"security_socket_connect\"\n    syscall: false\n    args:\n    - index: 0\n      type: \"socket\"\n    - index: 1\n      type: \"sockaddr\"\n    selectors:\n    - matchBinaries:\n      - operator: In\n        values:\n        - \"{helper}\"\n"
    );
    p
}

struct Run {
    rx: mpsc::Receiver<nightjar_event::Event>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Run {
    /// JSON payloads of `process_kprobe` events of `pid` until `timeout` or `done`.
    async fn kprobes_of(&mut self, pid: u32, timeout: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        self.kprobes_of_any(&[pid], timeout, done).await
    }

    /// The same for the events of any of `pids`.
    async fn kprobes_of_any(&mut self, pids: &[u32], timeout: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let mut out = Vec::new();
        let end = Instant::now() + timeout;
        while Instant::now() < end && !done(&out) {
            let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(200), self.rx.recv()).await else { continue };
            let v: Value = serde_json::from_str(&e.to_json()).unwrap();
            if pids.iter().any(|p| v["process_kprobe"]["process"]["pid"] == *p) {
                out.push(v["process_kprobe"].clone());
            }
        }
        out
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let Run { mut rx, task, .. } = self;
        let d = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        task.await.unwrap();
        d.await.unwrap();
    }
}

/// Every key of `want` is in `got` with the same value.
fn has(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => w.iter().all(|(k, v)| g.get(k).is_some_and(|x| has(x, v))),
        _ => got == want,
    }
}

/// Where in an event a socket argument is.
type At = fn(&Value) -> &Value;

fn arg0(e: &Value) -> &Value {
    &e["args"][0]["sock_arg"]
}

fn ret(e: &Value) -> &Value {
    &e["return"]["sock_arg"]
}

fn addr1(e: &Value) -> &Value {
    &e["args"][1]["sockaddr_arg"]
}

/// The event of `function` whose socket argument (`at`) has `want`.
fn find<'a>(evs: &'a [Value], function: &str, at: At, want: &Value) -> Option<&'a Value> {
    evs.iter().find(|e| e["function_name"] == function && has(at(e), want))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_lifecycle_and_a_dns_send_are_reported_with_5_tuple_process_and_parent() {
    if std::env::var(HELPER_ENV).is_ok() {
        return;
    }
    let tmp = tempfile::Builder::new().prefix("nightjar-net").tempdir().unwrap();
    let helper = helper_binary(tmp.path());
    let cfg = SensorConfig { policies_dir: PathBuf::new(), ..SensorConfig::default() };
    let mut sensor = Sensor::load(&cfg, "net-node").expect("load the sensor (root)");
    let tracepoints_only = !sensor.features.kprobes;
    let l = policy::parse("net-lifecycle.yaml", &lifecycle_policy(&helper)).unwrap_or_else(|e| panic!("{e}"));
    let st = sensor.add_policy(&l).unwrap_or_else(|e| panic!("{e}"));
    for h in &st.hooks {
        let (want, stands_in) = if tracepoints_only { ("tracepoint", true) } else { ("kprobe", false) };
        assert!(h.backend == want || h.backend == "kretprobe" || h.backend == "fentry", "{h:?}");
        assert_eq!(h.served_by.contains(&format!("stands in for {}", h.function)), stands_in, "{h:?}");
    }
    let (tx, rx) = mpsc::channel(65536);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move { sensor.run(tx, stop_rx).await.expect("run") });
    let mut run = Run { rx, stop, task };

    let Ran { pid, parent, status, out } = run_helper(&helper, "tcp-udp");
    assert_eq!(status, 0, "helper: {out}");
    let sh = std::fs::canonicalize("/bin/sh").unwrap().display().to_string();
    let (lport, cport) = (printed(&out, "lport"), printed(&out, "cport"));
    let lo = "127.0.0.1";
    let tcp = json!({"family": "AF_INET", "type": "SOCK_STREAM", "protocol": "IPPROTO_TCP"});
    let client = json!({"saddr": lo, "daddr": lo, "sport": cport, "dport": lport});
    let accepted = json!({"saddr": lo, "daddr": lo, "sport": lport, "dport": cport, "state": "TCP_ESTABLISHED"});
    let wants: Vec<(&str, At, Value)> = vec![
        (
            "tcp_connect",
            arg0,
            json!({"saddr": lo, "daddr": lo, "sport": cport, "dport": lport, "state": "TCP_SYN_SENT"}),
        ),
        ("inet_csk_listen_start", arg0, json!({"saddr": lo, "sport": lport})),
        ("inet_csk_accept", ret, accepted),
        ("tcp_close", arg0, client),
        ("udp_sendmsg", arg0, json!({"protocol": "IPPROTO_UDP", "daddr": lo, "dport": 53})),
        ("security_socket_connect", addr1, json!({"family": "AF_INET", "addr": lo, "port": lport})),
    ];
    let all = |evs: &[Value]| wants.iter().all(|(f, at, w)| find(evs, f, *at, w).is_some());
    let evs = run.kprobes_of(pid, Duration::from_secs(30), all).await;
    for (f, at, w) in &wants {
        let Some(e) = find(&evs, f, *at, w) else {
            let seen: Vec<String> = evs.iter().map(|e| format!("{} {}", e["function_name"], e["args"])).collect();
            panic!("no {f} event with {w} among {seen:#?}");
        };
        eprintln!(
            "net: {f}: {}",
            serde_json::json!({"args": e["args"], "return": e["return"], "parent": e["parent"]["pid"]})
        );
        assert_eq!(e["process"]["binary"], helper.as_str(), "{e}");
        assert_eq!(e["parent"]["pid"], parent, "{e}");
        assert_eq!(e["parent"]["binary"], sh.as_str(), "{e}");
        assert_eq!(e["policy_name"], "net-lifecycle");
        if *f != "udp_sendmsg" && *f != "security_socket_connect" {
            assert!(has(at(e), &tcp), "{f}: {e}");
        }
        assert!(at(e)["cookie"].is_string() || *f == "security_socket_connect", "{f}: {e}");
    }
    run.stop().await;
}

/// A cgroup of this test's own (removed on drop): the sensor is confined to it, so what it
/// sees and counts is only the helper's, and enforcement reaches nothing else.
struct Cgroup(PathBuf);

impl Cgroup {
    fn new(tag: &str) -> Self {
        let p = cgroup2_mount().join(format!("nightjar-net-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Cgroup(p)
    }

    fn id(&self) -> u64 {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&self.0).unwrap())
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// The sensor confined to `cg` with `policies` loaded; also its control handle.
fn start_in(cg: &Cgroup, policies: &[(&str, String)]) -> (Run, tokio::sync::mpsc::Sender<SensorCommand>) {
    let cfg = SensorConfig { policies_dir: PathBuf::new(), cgroup_filter: cg.id(), ..SensorConfig::default() };
    let mut sensor = Sensor::load(&cfg, "net-node").expect("load the sensor (root)");
    for (name, text) in policies {
        let l = policy::parse(name, text).unwrap_or_else(|e| panic!("{e}"));
        sensor.add_policy(&l).unwrap_or_else(|e| panic!("{e}"));
    }
    let control = sensor.control();
    let (tx, rx) = mpsc::channel(65536);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move { sensor.run(tx, stop_rx).await.expect("run") });
    (Run { rx, stop, task }, control)
}

/// What the kernel filtered for each hook of policy `name`, by function.
async fn filtered(control: &tokio::sync::mpsc::Sender<SensorCommand>, name: &str) -> Vec<(String, u64)> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let _ = control.send(SensorCommand::Status(tx)).await;
    let st = rx.await.expect("status");
    st.policies
        .iter()
        .filter(|p| p.name == name)
        .flat_map(|p| &p.hooks)
        .map(|h| (h.function.clone(), h.filtered))
        .collect()
}

/// `call` with a sock argument, for `helper`, with the matchArgs `conds` (YAML list items).
fn filtered_hook(call: &str, helper: &str, conds: &str) -> String {
    hook(call, "", helper) + "      matchArgs:\n" + conds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_port_and_protocol_conditions_filter_in_the_kernel_ipv4_and_ipv6() {
    if std::env::var(HELPER_ENV).is_ok() {
        return;
    }
    let tmp = tempfile::Builder::new().prefix("nightjar-net").tempdir().unwrap();
    let helper = helper_binary(tmp.path());
    let mut p =
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: \"net-filter\"\nspec:\n  kprobes:\n"
            .to_owned();
    p += &filtered_hook(
        "tcp_connect",
        &helper,
        "      - index: 0\n        operator: \"NotDAddr\"\n        values:\n        - \"127.0.0.0/8\"\n",
    );
    p += &filtered_hook(
        "udp_sendmsg",
        &helper,
        "      - index: 0\n        operator: \"DPort\"\n        values:\n        - \"53\"\n      - index: 0\n        operator: \"Protocol\"\n        values:\n        - \"IPPROTO_UDP\"\n",
    );
    let cg = Cgroup::new("filter");
    let (mut run, control) = start_in(&cg, &[("net-filter.yaml", p)]);
    let Ran { pid, status, out, .. } = run_helper_in(&helper, "v4-v6-dns", Some(&cg.0));
    assert!(status == 0 && out.contains("done=1"), "helper: {out}");
    let got = |evs: &[Value], f: &str| evs.iter().filter(|e| e["function_name"] == f).count();
    let evs = run
        .kprobes_of(pid, Duration::from_secs(20), |e| got(e, "tcp_connect") >= 1 && got(e, "udp_sendmsg") >= 1)
        .await;
    // Let stragglers (events that must not come) arrive.
    let more = run.kprobes_of(pid, Duration::from_secs(2), |_| false).await;
    let evs: Vec<Value> = evs.into_iter().chain(more).collect();
    let connects: Vec<&Value> = evs.iter().filter(|e| e["function_name"] == "tcp_connect").collect();
    assert_eq!(connects.len(), 1, "only the IPv6 connection is outside 127.0.0.0/8: {connects:#?}");
    assert!(has(arg0(connects[0]), &json!({"family": "AF_INET6", "daddr": "::1", "saddr": "::1"})), "{}", connects[0]);
    let sends: Vec<&Value> = evs.iter().filter(|e| e["function_name"] == "udp_sendmsg").collect();
    assert_eq!(sends.len(), 1, "only the datagram to port 53: {sends:#?}");
    assert_eq!(arg0(sends[0])["dport"], 53);
    // What the selectors held back was counted in the kernel: the IPv4 connection, the
    // datagram to 5353 (the sensor sees only the helper's cgroup).
    let f = filtered(&control, "net-filter").await;
    assert!(f.contains(&("tcp_connect".into(), 1)) && f.contains(&("udp_sendmsg".into(), 1)), "filtered: {f:?}");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_on_connect_to_a_forbidden_cidr_kills_only_the_helper() {
    if std::env::var(HELPER_ENV).is_ok() {
        return;
    }
    let tmp = tempfile::Builder::new().prefix("nightjar-net").tempdir().unwrap();
    let helper = helper_binary(tmp.path());
    let mut p =
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: \"net-forbid\"\nspec:\n  kprobes:\n"
            .to_owned();
    p += &filtered_hook(
        "tcp_connect",
        &helper,
        "      - index: 0\n        operator: \"DAddr\"\n        values:\n        - \"127.0.0.2/32\"\n",
    );
    p += "      matchActions:\n      - action: Sigkill\n";
    let cg = Cgroup::new("forbid");
    let (mut run, _control) = start_in(&cg, &[("net-forbid.yaml", p)]);
    let Ran { pid, status, out, .. } = run_helper_in(&helper, "forbidden", Some(&cg.0));
    assert!(out.contains("allowed=1"), "the allowed connection must go through: {out}");
    assert_eq!(status, 128 + 9, "the connection to 127.0.0.2 must be killed by SIGKILL: {out}");
    assert!(!out.contains("survived"), "{out}");
    let evs = run.kprobes_of(pid, Duration::from_secs(20), |e| !e.is_empty()).await;
    let e = evs.first().expect("a process_kprobe for the forbidden connect");
    assert_eq!(e["action"], "KPROBE_ACTION_SIGKILL", "{e}");
    assert!(has(arg0(e), &json!({"daddr": "127.0.0.2"})), "{e}");
    run.stop().await;
}

/// TrackSock / UntrackSock (Tetragon's socket tracking): tcp_connect tracks the connecting
/// socket for the helper, inet_csk_accept (returnArgAction) the accepted one; the helper's
/// child, which calls connect(2) on both again, is not who those events are attributed to,
/// until a selector untracks the socket (the connect to port 9).
fn track_policy(helper: &str) -> String {
    let bins = format!("    - matchBinaries:\n      - operator: In\n        values:\n        - \"{helper}\"\n");
    let mut p =
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: \"net-track\"\nspec:\n  kprobes:\n"
            .to_owned();
    p += &hook("tcp_connect", "", helper);
    p += "      matchActions:\n      - action: TrackSock\n        argSock: 0\n";
    p += &hook(
        "inet_csk_accept",
        "    return: true\n    returnArg:\n      index: 0\n      type: \"sock\"\n    returnArgAction: TrackSock\n",
        helper,
    );
    p += "  - call: \"security_socket_connect\"\n    syscall: false\n    args:\n    - index: 0\n      type: \"socket\"\n    - index: 1\n      type: \"sockaddr\"\n    selectors:\n";
    p += &bins;
    p += "      matchArgs:\n      - index: 1\n        operator: \"SPort\"\n        values:\n        - \"9\"\n      matchActions:\n      - action: UntrackSock\n        argSock: 0\n";
    p += &bins;
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn track_sock_attributes_a_sockets_events_to_its_owner_until_untracked() {
    if std::env::var(HELPER_ENV).is_ok() {
        return;
    }
    let tmp = tempfile::Builder::new().prefix("nightjar-net").tempdir().unwrap();
    let helper = helper_binary(tmp.path());
    let cg = Cgroup::new("track");
    let (mut run, _control) = start_in(&cg, &[("net-track.yaml", track_policy(&helper))]);
    let Ran { pid, status, out, .. } = run_helper_in(&helper, "track", Some(&cg.0));
    assert_eq!(status, 0, "helper: {out}");
    let (child, lport, cport) = (printed(&out, "child") as u32, printed(&out, "lport"), printed(&out, "cport"));
    let ssc = |evs: &[Value]| evs.iter().filter(|e| e["function_name"] == "security_socket_connect").count();
    // The parent's connect makes one security_socket_connect, the child's four more.
    let evs = run.kprobes_of_any(&[pid, child], Duration::from_secs(30), |e| ssc(e) >= 5).await;
    let show = || {
        evs.iter()
            .map(|e| format!("{} {} {} {}", e["process"]["pid"], e["function_name"], e["action"], e["args"]))
            .collect::<Vec<_>>()
    };
    let connect = find(&evs, "tcp_connect", arg0, &json!({"sport": cport, "dport": lport}))
        .unwrap_or_else(|| panic!("no tcp_connect: {:#?}", show()));
    assert_eq!(connect["action"], "KPROBE_ACTION_TRACKSOCK", "{connect}");
    assert_eq!(connect["process"]["pid"], pid, "{connect}");
    let accept = find(&evs, "inet_csk_accept", ret, &json!({"sport": lport, "dport": cport}))
        .unwrap_or_else(|| panic!("no inet_csk_accept: {:#?}", show()));
    let (s, a) = (&arg0(connect)["cookie"], &ret(accept)["cookie"]);
    assert!(s.is_string() && a.is_string() && s != a, "{connect} {accept}");
    // The child's connect(2) calls, in order (the parent's own was on a socket not yet
    // connected: TCP_CLOSE).
    let child_calls: Vec<&Value> = evs
        .iter()
        .filter(|e| e["function_name"] == "security_socket_connect")
        .filter(|e| e["args"][0]["sock_arg"]["state"] != "TCP_CLOSE")
        .collect();
    let calls: Vec<Value> = child_calls
        .iter()
        .map(|e| {
            json!([
                e["process"]["pid"],
                e["args"][0]["sock_arg"]["cookie"],
                e["args"][1]["sockaddr_arg"]["port"],
                e["action"]
            ])
        })
        .collect();
    let (post, untrack) = ("KPROBE_ACTION_POST", "KPROBE_ACTION_UNTRACKSOCK");
    let want = vec![
        json!([pid, s, lport, post]),
        json!([pid, a, lport, post]),
        json!([pid, s, 9, untrack]),
        json!([child, s, lport, post]),
    ];
    assert_eq!(calls, want, "pid, socket, port, action of the child's connect(2) calls: {:#?}", show());
    run.stop().await;
}

/// The sensor confined to `cg` with `policies`, or None on a kernel without kprobes, where
/// the first policy (kernel functions without a stand-in) must be refused, saying so.
fn start_kprobes_only(
    cg: &Cgroup,
    policies: &[(&str, String)],
) -> Option<(Run, tokio::sync::mpsc::Sender<SensorCommand>)> {
    let cfg = SensorConfig { policies_dir: PathBuf::new(), cgroup_filter: cg.id(), ..SensorConfig::default() };
    let mut sensor = Sensor::load(&cfg, "net-node").expect("load the sensor (root)");
    let parsed: Vec<_> = policies.iter().map(|(n, t)| policy::parse(n, t).unwrap_or_else(|e| panic!("{e}"))).collect();
    if !sensor.features.kprobes {
        let e = sensor.add_policy(&parsed[0]).unwrap_err().to_string();
        assert!(e.contains("needs kprobes, which this kernel does not have"), "{e}");
        return None;
    }
    for l in &parsed {
        sensor.add_policy(l).unwrap_or_else(|e| panic!("{e}"));
    }
    let control = sensor.control();
    let (tx, rx) = mpsc::channel(65536);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move { sensor.run(tx, stop_rx).await.expect("run") });
    Some((Run { rx, stop, task }, control))
}

/// An skb argument is the packet's 5-tuple and sk_buff fields (`skb_arg`), and the network
/// operators apply to it in the kernel: `ip_output`'s packet of the helper's UDP datagram to
/// port 53 (IPv4: 20 + 8 + 13 bytes), picked out by DPort 53 and Protocol IPPROTO_UDP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_skb_argument_is_the_packets_5_tuple_and_filters_in_the_kernel() {
    if std::env::var(HELPER_ENV).is_ok() {
        return;
    }
    let tmp = tempfile::Builder::new().prefix("nightjar-net").tempdir().unwrap();
    let helper = helper_binary(tmp.path());
    let p = format!(
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: \"net-skb\"\nspec:\n  kprobes:\n  - call: \"ip_output\"\n    syscall: false\n    args:\n    - index: 2\n      type: \"skb\"\n    selectors:\n    - matchBinaries:\n      - operator: In\n        values:\n        - \"{helper}\"\n      matchArgs:\n      - index: 2\n        operator: \"DPort\"\n        values:\n        - \"53\"\n      - index: 2\n        operator: \"Protocol\"\n        values:\n        - \"IPPROTO_UDP\"\n"
    );
    let cg = Cgroup::new("skb");
    let Some((mut run, _control)) = start_kprobes_only(&cg, &[("net-skb.yaml", p)]) else { return };
    let Ran { pid, status, out, .. } = run_helper_in(&helper, "tcp-udp", Some(&cg.0));
    assert_eq!(status, 0, "helper: {out}");
    let uport = printed(&out, "uport");
    let evs = run.kprobes_of(pid, Duration::from_secs(20), |e| !e.is_empty()).await;
    let more = run.kprobes_of(pid, Duration::from_secs(2), |_| false).await;
    let evs: Vec<Value> = evs.into_iter().chain(more).collect();
    assert_eq!(evs.len(), 1, "only the datagram to port 53 (not the TCP packets): {evs:#?}");
    let skb = &evs[0]["args"][0]["skb_arg"];
    let want = json!({"family": "AF_INET", "saddr": "127.0.0.1", "daddr": "127.0.0.1", "sport": uport, "dport": 53,
        "proto": 17, "protocol": "IPPROTO_UDP", "len": 41});
    assert!(has(skb, &want), "{}", evs[0]);
    assert_eq!(evs[0]["function_name"], "ip_output");
    run.stop().await;
}

/// A `dev_change_flags` hook for `helper` whose net_device argument is compared with "lo".
fn dev_policy(name: &str, op: &str, helper: &str) -> String {
    format!(
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: \"{name}\"\nspec:\n  kprobes:\n  - call: \"dev_change_flags\"\n    syscall: false\n    args:\n    - index: 0\n      type: \"net_device\"\n    - index: 1\n      type: \"uint32\"\n    selectors:\n    - matchBinaries:\n      - operator: In\n        values:\n        - \"{helper}\"\n      matchArgs:\n      - index: 0\n        operator: \"{op}\"\n        values:\n        - \"lo\"\n"
    )
}

/// A net_device argument is the device's name (`net_dev_arg`), compared as a string in the
/// kernel: the helper bringing up the loopback of its own network namespace (SIOCSIFFLAGS,
/// dev_change_flags) matches `Equal lo` and is filtered by `NotEqual lo`. A kernel function
/// without a stand-in: on a kernel without kprobes the policy is refused, saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_net_device_argument_is_its_name_compared_as_a_string() {
    if std::env::var(HELPER_ENV).is_ok() {
        return;
    }
    let tmp = tempfile::Builder::new().prefix("nightjar-net").tempdir().unwrap();
    let helper = helper_binary(tmp.path());
    let (eq, ne) = (dev_policy("net-dev", "Equal", &helper), dev_policy("net-dev-not", "NotEqual", &helper));
    let cg = Cgroup::new("dev");
    let Some((mut run, control)) = start_kprobes_only(&cg, &[("net-dev.yaml", eq), ("net-dev-not.yaml", ne)]) else {
        return;
    };
    let Ran { pid, status, out, .. } = run_helper_in(&helper, "lo-up", Some(&cg.0));
    assert_eq!(status, 0, "helper: {out}");
    let evs = run.kprobes_of(pid, Duration::from_secs(20), |e| !e.is_empty()).await;
    let more = run.kprobes_of(pid, Duration::from_secs(2), |_| false).await;
    let evs: Vec<Value> = evs.into_iter().chain(more).collect();
    assert_eq!(evs.len(), 1, "one dev_change_flags of lo, by the Equal policy: {evs:#?}");
    let e = &evs[0];
    assert_eq!((&e["function_name"], &e["policy_name"]), (&json!("dev_change_flags"), &json!("net-dev")), "{e}");
    assert_eq!(e["args"][0], json!({"net_dev_arg": {"name": "lo"}}), "{e}");
    assert_eq!(e["process"]["binary"], helper.as_str(), "{e}");
    let f = filtered(&control, "net-dev-not").await;
    assert!(f.iter().any(|(func, n)| func == "dev_change_flags" && *n >= 1), "filtered: {f:?}");
    run.stop().await;
}
