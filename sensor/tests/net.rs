//! Network hooks on the real kernel (root): a helper this test starts (a hard link to the
//! test executable under a temp dir, the only binary the policies match) makes a network
//! namespace of its own, brings up its loopback and listens, connects, accepts, closes
//! and sends a UDP datagram to a "DNS server" port there. Nothing leaves that namespace.
//!
//! The same assertions hold on every kernel: this host serves the network functions by
//! syscall tracepoint stand-ins (no kprobes), the VMs of `scripts/vm-test.sh` by kprobes.
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use nightjar_sensor::{policy, Sensor, SensorConfig};
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

/// Brings `lo` up in the current network namespace (SIOCGIFFLAGS / SIOCSIFFLAGS).
fn loopback_up() -> bool {
    // ifreq: the name, then the flags (a short) at offset 16.
    let mut ifr = [0u8; 40];
    ifr[..2].copy_from_slice(b"lo");
    // SAFETY: a socket of our own and an ifreq-sized buffer that outlives the calls.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        if fd < 0 || libc::ioctl(fd, libc::SIOCGIFFLAGS, ifr.as_mut_ptr()) != 0 {
            return false;
        }
        let flags = i16::from_ne_bytes([ifr[16], ifr[17]]) | libc::IFF_UP as i16;
        ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
        let ok = libc::ioctl(fd, libc::SIOCSIFFLAGS, ifr.as_mut_ptr()) == 0;
        libc::close(fd);
        ok
    }
}

/// The helper's network activity, in a new network namespace; prints the ports it used.
fn helper(action: &str) -> i32 {
    // SAFETY: unshare of this process's own network namespace.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 || !loopback_up() {
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
        _ => 3,
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
    let child = Command::new("/bin/sh")
        .args(["-c", "\"$0\" --exact zz_net_helper --nocapture --test-threads=1; echo status=$?", helper])
        .env(HELPER_ENV, action)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
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
        let mut out = Vec::new();
        let end = Instant::now() + timeout;
        while Instant::now() < end && !done(&out) {
            let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(200), self.rx.recv()).await else { continue };
            let v: Value = serde_json::from_str(&e.to_json()).unwrap();
            if v["process_kprobe"]["process"]["pid"] == pid {
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
