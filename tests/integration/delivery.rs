//! Durable, isolated delivery end to end (issue 18): real kernel events from a load
//! generator confined to its own cgroup (so the counts are exact), the file sink beside
//! Elasticsearch (osmem-server) and Kafka (tansu) on loopback, outages made by a proxy.
//! The slow scenarios run concurrently, in one test, so the suite waits for the longest.
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use sinks::test_servers::{create_topic, Proxy, Server};

use crate::common::*;

/// Opens of /etc/shadow (each one a `process_kprobe` of the monitor-sensitive-files
/// policy) at `rate` per second for `secs`, from a process in `cg`. Its pid is printed
/// first, its count last; the count so far is kept in the file `progress` (on a busy
/// machine the generator may fall behind its schedule).
const LOADGEN: &str = r#"
import os, sys, time
cg, rate, secs, progress = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
pfd = os.open(progress, os.O_WRONLY)
with open(cg + "/cgroup.procs", "w") as f:
    f.write(str(os.getpid()))
print(os.getpid(), flush=True)
total, n, t0 = int(rate * secs), 0, time.time()
while n < total:
    due = t0 + n / rate
    now = time.time()
    if due > now:
        time.sleep(due - now)
    for _ in range(min(50, total - n)):
        os.close(os.open("/etc/shadow", os.O_RDONLY))
        n += 1
    os.pwrite(pfd, b"%20d" % n, 0)
print(n, flush=True)
"#;

struct Load {
    child: Child,
    pid: u32,
    progress: tempfile::NamedTempFile,
}

impl Load {
    fn start(cg: &TestCgroup, rate: u64, secs: u64) -> Load {
        let progress = tempfile::NamedTempFile::new().unwrap();
        let mut child = Command::new("python3")
            .args(["-c", LOADGEN])
            .arg(&cg.0)
            .args([rate.to_string(), secs.to_string()])
            .arg(progress.path())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut out = child.stdout.take().unwrap();
        let mut first = Vec::new();
        let mut b = [0u8; 1];
        while out.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
            first.push(b[0]);
        }
        child.stdout = Some(out);
        let pid = String::from_utf8_lossy(&first).trim().parse().expect("loadgen pid");
        Load { child, pid, progress }
    }
    /// Opens done so far.
    fn done(&self) -> u64 {
        std::fs::read_to_string(self.progress.path()).unwrap_or_default().trim().parse().unwrap_or(0)
    }
    /// Waits for the end; the number of opens done.
    fn finish(mut self) -> u64 {
        let mut rest = String::new();
        self.child.stdout.take().unwrap().read_to_string(&mut rest).unwrap();
        assert!(self.child.wait().unwrap().success());
        rest.trim().parse().expect("loadgen count")
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http(addr: SocketAddr, method: &str, path: &str) -> String {
    http_with(addr, method, path, "")
}

fn http_with(addr: SocketAddr, method: &str, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n");
    write!(s, "{head}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()
}

/// Documents of the load generator in the index pattern.
fn es_count(es: SocketAddr, index: &str, pid: u32) -> u64 {
    http(es, "POST", &format!("/{index}/_refresh"));
    let q = format!("/{index}/_count?q=process_kprobe.process.pid:{pid}");
    let body = http(es, "GET", &q);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["count"].as_u64().unwrap_or(0)
}

/// Kprobe lines of `pid` in the file sink (with every rotated backup).
fn file_count(log: &Path, pid: u32) -> u64 {
    let want = format!("\"pid\":{pid},");
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("{\"process_kprobe\"") && l.contains(&want))
        .count() as u64
}

/// Reads `topic` back (until `n` messages and a few quiet seconds); `times`: where the
/// distinct `time`s read go, one a line.
fn kafka_read(broker: SocketAddr, topic: &str, n: u64, times: Option<&Path>) -> serde_json::Value {
    let script = include_str!("../../sinks/src/kafka/readback.py");
    let py = std::env::var_os("NIGHTJAR_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/nightjar/venv/bin/python")
    });
    let mut cmd = Command::new(py);
    cmd.args(["-c", script, &broker.to_string(), topic, &n.to_string(), "node_name", "240"]);
    if let Some(t) = times {
        cmd.arg(t);
    }
    let out = cmd.output().expect("python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn metric(port: u16, name: &str) -> f64 {
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let (_, body) = http_get(addr, "/metrics").unwrap_or_default();
    body.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

/// Why Elasticsearch is short (a failure's message): the agent's metrics about it, then
/// the agent stopped and the last lines of its log.
fn es_account(agent: Agent, port: u16) -> String {
    let account = sink_metrics(port, "elasticsearch");
    let out = agent.terminate();
    let err = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = err.lines().rev().take(40).collect();
    format!("the agent's account:\n{account}\nits log (last lines, newest first):\n{}", tail.join("\n"))
}

/// Every one of the `sinks` buffers has reported its figures (a restarted agent reports a
/// buffer once it has opened its log) and holds nothing unacknowledged.
fn buffers_empty(port: u16, sinks: usize) -> bool {
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let (_, body) = http_get(addr, "/metrics").unwrap_or_default();
    let gauges: Vec<&str> = body.lines().filter(|l| l.starts_with("nightjar_buffer_events{")).collect();
    gauges.len() == sinks && gauges.iter().all(|l| l.ends_with(" 0"))
}

/// The agent's metrics about one sink (for a failure's message).
fn sink_metrics(port: u16, sink: &str) -> String {
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let (_, body) = http_get(addr, "/metrics").unwrap_or_default();
    let want = format!("\"{sink}\"");
    body.lines().filter(|l| !l.starts_with('#') && l.contains(&want)).collect::<Vec<_>>().join("\n")
}

/// Servers and an agent with file + Elasticsearch (through a proxy) + Kafka.
struct Setup {
    dir: tempfile::TempDir,
    es: Server,
    proxy: Proxy,
    kafka: Server,
    topic: String,
    cg: TestCgroup,
    port: u16,
}

impl Setup {
    fn new(name: &str) -> Setup {
        let es = Server::osmem();
        let proxy = Proxy::start(es.addr);
        let kafka = Server::tansu(None);
        // The scenarios count documents by pid: only what they query is indexed. Indexing
        // every field of each ~2.5 KB event is where osmem-server's time goes (here, at load
        // 20: ~290 documents/s with the agent's keyword template, ~530/s so).
        let template = serde_json::json!({ "index_patterns": [format!("nj-{name}-*")], "priority": 300,
            "template": { "mappings": { "dynamic": false, "properties": {
                "time": { "type": "date_nanos" },
                "process_kprobe": { "properties": { "process": { "properties": { "pid": { "type": "long" } } } } },
                "process_exec": { "properties": { "process": { "properties": { "pid": { "type": "long" } } } } } } } } });
        let put = http_with(es.addr, "PUT", &format!("/_index_template/nj-{name}"), &template.to_string());
        assert!(put.contains("acknowledged"), "index template: {put}");
        let topic = format!("nj-{name}-process_kprobe");
        create_topic(kafka.addr, &topic, 1);
        Setup {
            dir: tempfile::tempdir().unwrap(),
            es,
            proxy,
            kafka,
            topic,
            cg: TestCgroup::new(&format!("delivery-{name}")),
            port: free_port(),
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("events.log")
    }

    fn agent(&self, name: &str, extra: &[String]) -> Agent {
        let mut cmd = agent_run(self.dir.path());
        // Only the policy whose events these scenarios count: each policy program is a
        // copy of the selector engine the verifier checks at start, minutes on a busy host.
        let pdir = self.dir.path().join("delivery-policies");
        std::fs::create_dir_all(&pdir).unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/policies/monitor-sensitive-files.yaml");
        std::fs::copy(src, pdir.join("monitor-sensitive-files.yaml")).unwrap();
        let sets = [
            format!("sensor.policies_dir={}", pdir.display()),
            format!("metrics.listen=127.0.0.1:{}", self.port),
            format!("sensor.cgroup_filter={}", self.cg.id()),
            "pipeline.dedup.enabled=false".into(),
            "sinks.stdout.enabled=false".into(),
            format!("sinks.file.path={}", self.log().display()),
            "sinks.file.max_size=0".into(),
            format!("sinks.data_dir={}", self.dir.path().join("buffers").display()),
            "sinks.elasticsearch.enabled=true".into(),
            format!("sinks.elasticsearch.endpoint=http://{}", self.proxy.addr),
            format!("sinks.elasticsearch.index=nj-{name}-%Y.%m.%d"),
            "sinks.elasticsearch.install_template=false".into(),
            format!("sinks.elasticsearch.dead_letter_path={}", self.dir.path().join("dead.log").display()),
            // Loopback: compression only costs CPU on a shared machine.
            "sinks.elasticsearch.gzip=false".into(),
            "sinks.elasticsearch.retry.max_backoff_ms=1000".into(),
            "sinks.kafka.enabled=true".into(),
            format!("sinks.kafka.brokers={}", self.kafka.addr),
            format!("sinks.kafka.topic=nj-{name}-{{type}}"),
            "sinks.kafka.retry.max_backoff_ms=1000".into(),
            "pipeline.shutdown_timeout_secs=20".into(),
        ];
        for s in sets.iter().chain(extra) {
            cmd.args(["--set", s]);
        }
        let a = Agent::spawn(&mut cmd);
        let addr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        let up = wait_for(Duration::from_secs(60), || http_get(addr, "/metrics").ok().filter(|(s, _)| *s == 200));
        assert!(up.is_some(), "{name}: agent never served metrics");
        // The sensor is attached once /healthz no longer says "starting" (the scenarios
        // count its events: they cannot start before).
        let attached = wait_for(Duration::from_secs(300), || {
            http_get(addr, "/healthz").ok().filter(|(_, b)| !b.contains("starting")).map(|_| ())
        });
        assert!(attached.is_some(), "{name}: the sensor did not attach within 300 s");
        a
    }

    fn es_index(&self, name: &str) -> String {
        format!("nj-{name}-*")
    }
}

/// Polls the count `f` until it reaches `want`, or until it has not grown for `stall_secs`
/// (a sink that delivers slowly on a busy machine is waited for; one that stopped is not).
fn wait_count(what: &str, want: u64, stall_secs: u64, mut f: impl FnMut() -> u64) -> u64 {
    let start = Instant::now();
    let (mut told, mut last, mut grew) = (start, 0, start);
    loop {
        let n = f();
        if n > last {
            (last, grew) = (n, Instant::now());
        }
        if n >= want || grew.elapsed() > Duration::from_secs(stall_secs) {
            eprintln!("{what}: {n} of {want} after {:.0?}", start.elapsed());
            return n;
        }
        if told.elapsed() > Duration::from_secs(30) {
            eprintln!("{what}: {n} of {want} after {:.0?}", start.elapsed());
            told = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// 60 s Elasticsearch outage at 5,000 events/s: the file sink gets everything while it
/// lasts and the kernel misses nothing; afterwards Elasticsearch and Kafka hold exactly N.
fn es_outage(rate: u64) {
    let name = "outage";
    let s = Setup::new(name);
    let agent = s.agent(name, &[]);
    let load = Load::start(&s.cg, rate, 70);
    let pid = load.pid;
    std::thread::sleep(Duration::from_secs(5));
    s.proxy.cut();
    let cut_at = Instant::now();
    // While Elasticsearch is down, the file sink keeps up: what the generator had done 25 s
    // into the outage reaches the file before the outage ends.
    std::thread::sleep(Duration::from_secs(25));
    let mid_done = load.done();
    let outage_left = || Duration::from_secs(58).saturating_sub(cut_at.elapsed());
    let mut mid_file = 0;
    while !outage_left().is_zero() && mid_file < mid_done {
        std::thread::sleep(Duration::from_secs(2));
        mid_file = file_count(&s.log(), pid);
    }
    let mid_es = es_count(s.es.addr, &s.es_index(name), pid);
    eprintln!(
        "outage: generator {mid_done} at 25 s, file sink {mid_file} at {:.0?}, Elasticsearch {mid_es}",
        cut_at.elapsed()
    );
    std::thread::sleep(Duration::from_secs(60).saturating_sub(cut_at.elapsed()));
    s.proxy.restore();
    let n = load.finish();
    assert_eq!(n, rate * 70);
    assert!(mid_done > rate * 5, "the load generator did not run: {mid_done}");
    assert!(
        mid_file >= mid_done,
        "the file sink fell behind during the outage: {mid_file} events by its end, the generator had done {mid_done} 25 s into it"
    );
    assert!(mid_es <= rate * 6, "Elasticsearch was down: {mid_es}");
    let file = wait_count("outage file", n, 30, || file_count(&s.log(), pid));
    let missed = metric(s.port, "nightjar_missed_events_total");
    assert_eq!(file, n, "file sink (missed in the kernel: {missed})");
    let es = wait_count("outage es", n, 60, || es_count(s.es.addr, &s.es_index(name), pid));
    if es != n {
        panic!("{es} distinct documents of {n}; {}", es_account(agent, s.port));
    }
    assert_eq!(missed, 0.0, "the kernel missed events");
    let k = kafka_read(s.kafka.addr, &s.topic, n, None);
    assert_eq!(k["count"], n, "exactly N messages: {k}");
    let out = agent.terminate();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The `time` of every kprobe line of `pid` in the file sink, once each.
fn file_times(log: &Path, pid: u32) -> std::collections::BTreeSet<String> {
    let want = format!("\"pid\":{pid},");
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("{\"process_kprobe\"") && l.contains(&want))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["time"].as_str().map(str::to_owned))
        .collect()
}

/// SIGKILL during that outage, then a restart once it is over. N is what the agent had
/// accepted when it died: the events its disk buffers had committed (all three sinks have
/// one, and the group writer commits an event to all of them at once, so the sink that
/// was delivering and the one that was cut hold the same events). Afterwards the file
/// sink holds N distinct events, Elasticsearch exactly N documents (deterministic `_id`)
/// and Kafka exactly those N (same `time`s), duplicates only of what a buffer replayed
/// (delivered, not yet acknowledged when the agent died: at-least-once), counted.
fn sigkill_during_outage(rate: u64) {
    let name = "sigkill";
    let s = Setup::new(name);
    let file_disk = ["sinks.file.buffer.type=disk".to_string()];
    let mut agent = s.agent(name, &file_disk);
    let load = Load::start(&s.cg, rate, 40);
    let pid = load.pid;
    std::thread::sleep(Duration::from_secs(5));
    s.proxy.cut();
    std::thread::sleep(Duration::from_secs(15));
    let mut a = agent.0.take().unwrap();
    a.kill().unwrap(); // SIGKILL, Elasticsearch still cut
    let _ = a.wait();
    // With no agent the kernel keeps nothing: only what the agent took counts.
    drop(load);
    s.proxy.restore();
    let agent = s.agent(name, &file_disk);
    // Settled: every sink's buffer is empty and the counts stop growing.
    let mut last = (0, 0);
    let end = Instant::now() + Duration::from_secs(180);
    let (n, es) = loop {
        std::thread::sleep(Duration::from_secs(3));
        let now = (file_times(&s.log(), pid).len() as u64, es_count(s.es.addr, &s.es_index(name), pid));
        if (buffers_empty(s.port, 3) && now == last && now.0 > 0) || Instant::now() > end {
            break now;
        }
        last = now;
    };
    assert!(n > rate * 5, "too few events taken before the kill: {n}");
    let replayed = |sink: &str| metric(s.port, &format!("nightjar_buffer_replayed_events_total{{sink=\"{sink}\"}}"));
    let file_dups = file_count(&s.log(), pid) - n;
    eprintln!("sigkill: N = {n} (file sink), Elasticsearch {es}, {file_dups} file duplicates");
    assert!(file_dups as f64 <= replayed("file"), "file duplicates {file_dups} only among its replayed");
    if es != n {
        panic!("Elasticsearch holds {es} of the N = {n} events the file sink holds; {}", es_account(agent, s.port));
    }
    let times = s.dir.path().join("kafka-times");
    let k = kafka_read(s.kafka.addr, &s.topic, n, Some(&times));
    let distinct = k["distinct_times"].as_u64().unwrap();
    assert_eq!(distinct, n, "Kafka holds exactly N distinct events: {k}");
    let kafka: std::collections::BTreeSet<String> =
        std::fs::read_to_string(&times).unwrap().lines().map(str::to_owned).collect();
    assert!(kafka == file_times(&s.log(), pid), "Kafka's events are the file sink's");
    let dups = k["count"].as_u64().unwrap() - distinct;
    eprintln!("sigkill: {dups} Kafka duplicates, {} replayed", replayed("kafka"));
    assert!(dups as f64 <= replayed("kafka"), "duplicates {dups} only among the replayed");
    let out = agent.terminate();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

const DROPPED: &str = "nightjar_sink_events_total{sink=\"elasticsearch\",outcome=\"dropped\"}";

/// A disk buffer filled to its `max_size` while its server is cut applies `when_full`.
/// drop_newest: that sink loses what did not fit, each event counted in
/// `nightjar_sink_events_total{outcome="dropped"}` (it ends with exactly N - dropped); the
/// other sinks get all N and the kernel misses nothing. block: nothing is dropped for it;
/// once full (1 MiB) it borrows the room Kafka's blocking disk buffer (1 MiB, drained) leaves,
/// and only once that pooled room (and the fan-out's, 1000 events for the file sink's
/// queue) is used does the fan-out wait (backpressure: the other
/// sinks wait with it, and the kernel's ring buffer takes what comes meanwhile, counting
/// as missed what it cannot keep): every sink ends with the same events, and those plus
/// the misses are N.
fn disk_buffer_full(policy: &'static str) {
    let name = if policy == "block" { "full-block" } else { "full-drop" };
    let s = Setup::new(name);
    // block: 1 MiB each, so the pooled 2 MiB is used well before the load ends.
    let size = if policy == "block" { "1MiB" } else { "2MiB" };
    let sets = [
        format!("sinks.elasticsearch.buffer.max_size={size}"),
        format!("sinks.elasticsearch.buffer.when_full={policy}"),
        format!("sinks.kafka.buffer.max_size={size}"),
        // The fan-out's own room (the blocking outputs' queues, which a stalled output's
        // events may take) small beside the pooled 4 MiB of disk.
        "sinks.file.buffer.max_events=1000".to_string(),
    ];
    let agent = s.agent(name, &sets);
    let load = Load::start(&s.cg, 1000, 20);
    let pid = load.pid;
    std::thread::sleep(Duration::from_secs(3));
    s.proxy.cut();
    let n = load.finish();
    let full = metric(s.port, "nightjar_buffer_bytes{sink=\"elasticsearch\"}");
    let borrowed = metric(s.port, "nightjar_buffer_borrowed_bytes{sink=\"elasticsearch\"}");
    let file_then = file_count(&s.log(), pid);
    s.proxy.restore();
    let dropped = metric(s.port, DROPPED) as u64;
    let missed = metric(s.port, "nightjar_missed_events_total") as u64;
    eprintln!("{name}: {n} generated, buffer at {full} bytes ({borrowed} borrowed) when restored, {dropped} dropped, {missed} missed, file sink {file_then}");
    assert!(full > (1 << 20) as f64, "the buffer filled ({full} bytes of {size})");
    if policy == "drop_newest" {
        assert!(dropped > 0, "a full drop_newest buffer drops, counted");
        assert_eq!(wait_count(name, n, 30, || file_count(&s.log(), pid)), n, "the file sink has every event");
        assert_eq!(missed, 0, "the kernel missed nothing");
        // Drops are counted as the buffer refuses events, which may still be on their way
        // through the pipeline when the proxy is restored (this host's load): what must
        // hold is that every event is either in Elasticsearch or counted as dropped.
        let dropped_now = || metric(s.port, DROPPED) as u64;
        let seen = wait_count(name, n, 60, || es_count(s.es.addr, &s.es_index(name), pid) + dropped_now());
        let dropped = dropped_now();
        assert_eq!(seen, n, "Elasticsearch: all but the dropped ones ({dropped} dropped)");
        assert_eq!(es_count(s.es.addr, &s.es_index(name), pid), n - dropped, "and no more ({dropped} dropped)");
        assert_eq!(kafka_read(s.kafka.addr, &s.topic, n, None)["distinct_times"], n);
    } else {
        assert_eq!(dropped, 0, "a blocking buffer drops nothing");
        // It went past its own 1 MiB into Kafka's unused room, never past both (2 MiB and
        // the one record each member may be over by).
        assert!(full > (1 << 20) as f64 && borrowed > 0.0, "borrowed: {full} bytes held, {borrowed} borrowed");
        assert!(full <= ((2 << 20) + (64 << 10)) as f64, "the pooled room bounds it: {full} bytes");
        assert!(
            file_then < n - 4000,
            "the fan-out waited once the pool was used: the file sink had {file_then} of {n}"
        );
        let file = wait_count(name, n - missed.min(n), 60, || file_count(&s.log(), pid));
        // The generator's exit may be among the misses too.
        assert!(file + missed == n || file + missed == n + 1, "file {file} + missed {missed} vs N {n}");
        assert_eq!(wait_count(name, file, 60, || es_count(s.es.addr, &s.es_index(name), pid)), file);
        assert_eq!(kafka_read(s.kafka.addr, &s.topic, file, None)["distinct_times"], file);
    }
    let out = agent.terminate();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Elasticsearch down when the agent starts, up 30 s later: every event of those 30 s
/// arrives; meanwhile `status` and `/healthz` say so, and `/livez` stays 200.
fn es_down_at_start(rate: u64) {
    let name = "down-at-start";
    let s = Setup::new(name);
    s.proxy.cut();
    let agent = s.agent(name, &["sinks.elasticsearch.health_timeout_secs=5".into()]);
    let load = Load::start(&s.cg, rate, 30);
    let pid = load.pid;
    std::thread::sleep(Duration::from_secs(10));
    let addr = format!("127.0.0.1:{}", s.port).parse().unwrap();
    let (code, body) = http_get(addr, "/healthz").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("sink elasticsearch degraded"), "{body}");
    // Liveness is not health: the kubelet must not restart an agent that buffers an outage.
    assert_eq!(http_get(addr, "/livez").map(|r| r.0).ok(), Some(200), "/livez while a sink is down");
    let st = nightjar()
        .args(["status", "--json", "--set", &format!("control.socket={}", s.dir.path().join("nj.sock").display())])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap_or_default();
    let state = v["pipeline"]["sinks"]["elasticsearch"]["state"].as_str().unwrap_or_default().to_owned();
    assert!(state.starts_with("degraded"), "status: {state:?}");
    let n = load.finish();
    s.proxy.restore();
    assert_eq!(wait_count("down-at-start es", n, 60, || es_count(s.es.addr, &s.es_index(name), pid)), n);
    let healthy = wait_for(Duration::from_secs(30), || http_get(addr, "/healthz").ok().filter(|(c, _)| *c == 200));
    assert!(healthy.is_some(), "healthy again once delivered");
    let out = agent.terminate();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Events/s of the outage and SIGKILL scenarios. Issue 18 asks 5,000/s: scripts/test.sh
/// runs each alone at that rate after the suite (`NIGHTJAR_DELIVERY_RATE=5000`, ~3.5 and
/// ~1.5 minutes here); inside the whole suite on 2 shared cores the debug-build agent is
/// starved at that rate, so the suite runs them at 1,000/s.
fn outage_rate() -> u64 {
    std::env::var("NIGHTJAR_DELIVERY_RATE").ok().and_then(|r| r.parse().ok()).unwrap_or(1000)
}

#[test]
fn outages_cost_only_delay() {
    let scenarios: Vec<(&str, fn())> = vec![
        ("es_outage", || es_outage(outage_rate())),
        ("sigkill_during_outage", || sigkill_during_outage(outage_rate())),
        ("disk_buffer_full_drop_newest", || disk_buffer_full("drop_newest")),
        ("disk_buffer_full_block", || disk_buffer_full("block")),
        ("es_down_at_start", || es_down_at_start(500)),
        ("tail_sigkill_with_es_down", tail_sigkill_with_es_down),
        ("tail_sigkill_corrupt_segment", tail_sigkill_corrupt_segment),
        ("rss_bounded_while_a_sink_hangs", || rss_bounded_while_a_sink_hangs(1000)),
    ];
    // NIGHTJAR_DELIVERY_ONLY=es_outage,sigkill: only the scenarios whose names start so.
    let only = std::env::var("NIGHTJAR_DELIVERY_ONLY").unwrap_or_default();
    let picked = |n: &str| only.is_empty() || only.split(',').any(|o| n.starts_with(o));
    let handles: Vec<_> =
        scenarios.into_iter().filter(|(n, _)| picked(n)).map(|(n, f)| (n, std::thread::spawn(f))).collect();
    let failed: Vec<&str> = handles.into_iter().filter_map(|(n, h)| h.join().is_err().then_some(n)).collect();
    assert!(failed.is_empty(), "failed: {failed:?}");
}

/// The tail with Elasticsearch down and a memory buffer: the checkpoint stays behind
/// what Elasticsearch has; SIGKILL, restore, restart: every line arrives, none skipped.
fn tail_sigkill_with_es_down() {
    tail_kill_restart("tail-memory", "memory", false);
}

/// The same with the default disk buffer, and one record of its log corrupted while the
/// agent is down: reported, counted, skipped; everything else arrives.
fn tail_sigkill_corrupt_segment() {
    tail_kill_restart("tail-corrupt", "disk", true);
}

fn tail_kill_restart(name: &str, buffer: &str, corrupt: bool) {
    const N: usize = 3000;
    let s = Setup::new(name);
    let log = s.dir.path().join("tetragon.log");
    crate::tetragon_tail::write_lines(&log, 0, N);
    let sets: Vec<String> = vec![
        "sensor.enabled=false".into(),
        "sources.tetragon_file.enabled=true".into(),
        format!("sources.tetragon_file.path={}", log.display()),
        format!("sources.tetragon_file.checkpoint={}", s.dir.path().join("cp").display()),
        format!("sinks.elasticsearch.buffer.type={buffer}"),
        "sinks.kafka.enabled=false".into(),
    ];
    s.proxy.cut();
    let mut agent = s.agent(name, &sets);
    let file = |p: &Path| crate::tetragon_tail::delivered(p);
    assert!(wait_for(Duration::from_secs(60), || (file(&s.log()).len() >= N).then_some(())).is_some());
    let mut a = agent.0.take().unwrap();
    a.kill().unwrap(); // SIGKILL
    let _ = a.wait();
    if corrupt {
        let dir = s.dir.path().join("buffers/elasticsearch");
        let mut segs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        segs.sort();
        let mut b = std::fs::read(&segs[0]).unwrap();
        let first = u32::from_le_bytes(b[0..4].try_into().unwrap()) as usize + 24;
        b[first + 30] ^= 0xff; // inside the second record
        std::fs::write(&segs[0], b).unwrap();
    }
    s.proxy.restore();
    let agent = s.agent(name, &sets);
    let want = if corrupt { N as u64 - 1 } else { N as u64 };
    let es = |pid: &str| {
        http(s.es.addr, "POST", &format!("/nj-{name}-*/_refresh"));
        let body = http(s.es.addr, "GET", &format!("/nj-{name}-*/_count{pid}"));
        serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default()["count"].as_u64().unwrap_or(0)
    };
    assert_eq!(wait_count(name, want, 60, || es("")), want, "documents in Elasticsearch");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(es(""), want, "no duplicates");
    if corrupt {
        assert_eq!(metric(s.port, "nightjar_buffer_corrupt_skipped_total"), 1.0);
        assert_eq!(es("?q=process_exec.process.pid:1"), 0, "the damaged record is the one skipped");
    }
    let f = file(&s.log());
    assert_eq!(f.len(), N, "every line reached the file sink");
    let out = agent.terminate();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    if corrupt {
        assert!(stderr.contains("corrupt records skipped"), "{stderr}");
    }
}

/// A sink that hangs (its server accepts and never answers) while events flow: the agent's
/// memory stays bounded (its disk buffer takes them), sampled every second.
fn rss_bounded_while_a_sink_hangs(rate: u64) {
    let name = "hang";
    let s = Setup::new(name);
    let agent = s.agent(name, &["sinks.kafka.enabled=false".into()]);
    let pid = agent.0.as_ref().unwrap().id();
    let rss = || -> u64 {
        let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        st.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix(" kB")?.trim().parse().ok()).unwrap_or(0)
    };
    // Idle: warmed up with the same load through a healthy sink for a few seconds.
    let warm = Load::start(&s.cg, rate, 5);
    warm.finish();
    std::thread::sleep(Duration::from_secs(2));
    let idle = rss();
    s.proxy.hold();
    let load = Load::start(&s.cg, rate, 40);
    let mut peak = 0;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_secs(1));
        peak = peak.max(rss());
    }
    let n = load.finish();
    assert!(peak <= 2 * idle, "RSS {peak} kB while the sink hung, idle {idle} kB");
    s.proxy.restore();
    assert_eq!(n, rate * 40);
    let out = agent.terminate();
    assert!(out.status.success() || out.status.code() == Some(1), "{}", String::from_utf8_lossy(&out.stderr));
}
