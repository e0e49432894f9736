//! A sink that stops answering blocks the pipeline up to the kernel. While it lasts, the
//! kernel's drops show in `nightjar_missed_events_total` (not only once it drains), health
//! says degraded, and `status` and `policy list|add|delete` answer; once the sink answers
//! again, every exec is either delivered or counted missed: exactly.
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use crate::{common::*, faults_util::*};

/// An Elasticsearch `_bulk` endpoint on loopback that answers the agent's start-up check,
/// then holds every request unanswered until `release()`.
struct HoldingEs {
    addr: SocketAddr,
    held: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
}

impl HoldingEs {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (held, requests) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (h, n) = (held.clone(), requests.clone());
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                let (h, n) = (h.clone(), n.clone());
                std::thread::spawn(move || serve(s, &h, &n));
            }
        });
        HoldingEs { addr, held, requests }
    }

    fn release(&self) {
        self.held.store(false, Ordering::SeqCst);
    }
}

fn serve(s: TcpStream, held: &AtomicBool, requests: &AtomicU64) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    loop {
        let mut head = String::new();
        let mut len = 0;
        loop {
            let mut l = String::new();
            if r.read_line(&mut l).unwrap_or(0) == 0 {
                return;
            }
            if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            if l == "\r\n" {
                break;
            }
            head.push_str(&l);
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        // The first request is the start-up check; everything after waits for release.
        if requests.fetch_add(1, Ordering::SeqCst) == 0 {
            held.store(true, Ordering::SeqCst);
        } else {
            while held.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let resp = if head.contains("/_bulk") {
            let docs = body.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count() / 2;
            let items = vec![r#"{"create":{"status":201}}"#; docs].join(",");
            format!(r#"{{"took":1,"errors":false,"items":[{items}]}}"#)
        } else {
            r#"{"version":{"number":"8.0.0"}}"#.to_owned()
        };
        let ok = write!(
            w,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nX-Elastic-Product: Elasticsearch\r\ncontent-length: {}\r\n\r\n{resp}",
            resp.len()
        );
        if ok.is_err() {
            return;
        }
    }
}

fn cgroup2_mount() -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|l| l.split_once(" - "))
        .find(|(_, post)| post.starts_with("cgroup2 "))
        .map(|(pre, _)| PathBuf::from(pre.split_whitespace().nth(4).unwrap()))
        .expect("no cgroup2 hierarchy mounted")
}

/// A cgroup of this test's own (removed when dropped): the sensor traces only it.
struct Cgroup(PathBuf);

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Execs of `/bin/true` run from `cwd` that reached the file sink.
fn delivered(sink: &Path, cwd: &Path) -> u64 {
    let cwd = cwd.to_string_lossy();
    std::fs::read_to_string(sink)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            let p = &v["process_exec"]["process"];
            p["cwd"].as_str().is_some_and(|c| c.trim_end_matches('/') == cwd)
                && p["binary"].as_str().is_some_and(|b| b.ends_with("/true"))
        })
        .count() as u64
}

fn cli(socket: &Path, args: &[&str]) -> (bool, String) {
    let out = nightjar().args(args).args(["--set", &format!("control.socket={}", socket.display())]).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn blocked_pipeline_keeps_the_agent_truthful_and_answering() {
    let n: u64 =
        (2000.0 * std::env::var("NIGHTJAR_TEST_EXEC_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0)) as u64;
    let es = HoldingEs::start();
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().canonicalize().unwrap().join("execs");
    std::fs::create_dir(&cwd).unwrap();
    let cg = Cgroup(cgroup2_mount().join(format!("nightjar-faults-{}", std::process::id())));
    std::fs::create_dir_all(&cg.0).unwrap();
    let cgroup_id = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&cg.0).unwrap());

    let (mut cmd, metrics) = agent_cmd(dir.path(), true);
    cmd.args(["--set", &format!("sensor.cgroup_filter={cgroup_id}"), "--set", "sensor.ring_buffer_size=4096"])
        .args(["--set", "pipeline.channel_capacity=64", "--set", "pipeline.stage_channel_capacity=16"])
        .args(["--set", "sinks.elasticsearch.enabled=true"])
        .args(["--set", &format!("sinks.elasticsearch.endpoint=http://{}", es.addr)])
        .args(["--set", "sinks.elasticsearch.install_template=false", "--set", "sinks.elasticsearch.gzip=false"])
        .args(["--set", "sinks.elasticsearch.request.timeout_ms=300000"])
        .args(["--set", &format!("sinks.elasticsearch.dead_letter_path={}", dir.path().join("dl.log").display())])
        // Small blocking memory buffers: the stall reaches the kernel (a disk buffer would
        // take it all). The held sink overflows into the room the other blocking buffers
        // leave (the file sink's, 10,000 by default, would hold every event of this test),
        // so the file sink's is small too.
        .args(["--set", "sinks.elasticsearch.buffer.type=memory", "--set", "sinks.elasticsearch.buffer.max_events=100"])
        .args(["--set", "sinks.file.buffer.type=memory", "--set", "sinks.file.buffer.max_events=100"])
        .args([
            "--set",
            "sinks.elasticsearch.batch.max_events=50",
            "--set",
            "sinks.elasticsearch.health_timeout_secs=1",
        ]);
    let r = start(dir.path(), (cmd, metrics));

    let script = format!(
        "echo $$ > {}/cgroup.procs && i=0 && while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done",
        cg.0.display()
    );
    assert!(Command::new("/bin/sh").args(["-c", &script]).current_dir(&cwd).status().unwrap().success());

    // While the sink holds: the kernel's drops are visible now, not after the drain.
    let missed = |kind: &str| metric(metrics, "nightjar_missed_events_total", &[&format!("kind=\"{kind}\"")]) as u64;
    let dropping = wait_for(Duration::from_secs(30), || Some(missed("exec")).filter(|m| *m > 0));
    if dropping.is_none() {
        let body = http_get(metrics, "/metrics").map(|(_, b)| b).unwrap_or_default();
        let lines: Vec<&str> = body
            .lines()
            .filter(|l| {
                !l.starts_with('#') && (l.contains("missed") || l.contains("sensor") || l.contains("events_total"))
            })
            .collect();
        let out = r.agent.terminate();
        panic!(
            "nightjar_missed_events_total stayed 0 during the stall; {} of {n} execs delivered\n{}\n--- agent stderr\n{}",
            delivered(&r.sink, &cwd),
            lines.join("\n"),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(delivered(&r.sink, &cwd) < n, "the stall let everything through: the test proves nothing");
    let (status, body) = http_get(metrics, "/healthz").unwrap();
    assert_eq!(status, 503, "/healthz during kernel drops: {body}");
    assert!(body.contains("degraded: the kernel dropped"), "{body}");
    // The held sink itself is degraded once nothing was delivered for its health timeout.
    let sink_degraded = "sink elasticsearch degraded: nothing delivered for";
    let said = wait_for(Duration::from_secs(30), || {
        http_get(metrics, "/healthz").ok().filter(|(s, b)| *s == 503 && b.contains(sink_degraded))
    });
    assert!(said.is_some(), "/healthz never said the held sink is degraded: {:?}", http_get(metrics, "/healthz"));

    // The control plane answers whatever the data path does.
    let (ok, text) = cli(&r.socket, &["status"]);
    assert!(ok && text.contains("agent:         running"), "{text}");
    assert!(text.contains("health:        degraded: the kernel dropped"), "{text}");
    assert!(text.contains(sink_degraded), "{text}");
    let (ok, text) = cli(&r.socket, &["policy", "list"]);
    assert!(ok && text.contains("monitor-sensitive-files"), "{text}");
    let extra = dir.path().join("extra.yaml");
    let policy = include_str!("../../config/policies/monitor-sensitive-files.yaml");
    std::fs::write(&extra, policy.replace("name: monitor-sensitive-files", "name: faults-extra")).unwrap();
    let (ok, text) = cli(&r.socket, &["policy", "add", extra.to_str().unwrap()]);
    assert!(ok, "policy add: {text}");
    let (ok, text) = cli(&r.socket, &["policy", "delete", "faults-extra"]);
    assert!(ok, "policy delete: {text}");

    // The sink answers again: every exec is delivered or was counted missed by the kernel.
    es.release();
    let total = wait_for(Duration::from_secs(60), || {
        let (d, m) = (delivered(&r.sink, &cwd), missed("exec"));
        (d + m == n).then_some((d, m))
    });
    let (d, m) = (delivered(&r.sink, &cwd), missed("exec"));
    assert!(total.is_some(), "delivered {d} + missed {m} != {n} execs");
    assert!(es.requests.load(Ordering::SeqCst) > 1, "the sink sent nothing after its start-up check");
    let out = r.agent.terminate();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Said while it happened, and not once per lost event.
    let warnings = stderr.matches("the kernel is dropping events").count();
    assert!((1..=10).contains(&warnings), "{warnings} warnings about kernel drops: {stderr}");
}
