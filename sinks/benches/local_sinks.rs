//! Throughput of the local sinks, against `cat` of the same bytes into the same directory,
//! measured in the same run. Prints a table; asserts nothing about time.
//!
//! `cargo bench -p nightjar-sinks --bench local_sinks` (NIGHTJAR_BENCH_EVENTS=N to resize).
use std::{
    fs::File,
    io::Write,
    path::Path,
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use nightjar_sinks::{
    file::{FileConfig, FsyncPolicy},
    parquet::ParquetConfig,
    SendOutcome, Sink,
};
use pipeline::{config::ByteSize, time::Timestamp, Event};

/// A full Tetragon `process_exec` (pod, container, parent), as in Tetragon's documentation.
const TEMPLATE: &str = r#"{"process_exec":{"process":{"exec_id":"Z2tlLWpvaG4tNjMyLWRlZmF1bHQtcG9vbC03MDQxY2FjMC05czk1OjEzNTQ4Njc0MzIxMzczOjUyNjk5","pid":52699,"uid":0,"cwd":"/","binary":"/usr/bin/curl","arguments":"https://ebpf.io/applications/#tetragon","flags":"execve rootcwd","start_time":"2023-10-06T22:03:57.700327580Z","auid":4294967295,"pod":{"namespace":"default","name":"xwing","container":{"id":"containerd://551e161c47d8ff0eb665438a7bcd5b4e3ef5a297282b40a92b7c77d6bd168eb3","name":"spaceship","image":{"id":"docker.io/tgraf/netperf@sha256:8e86f744bfea165fd4ce68caa05abc96500f40130b857773186401926af7e9e6","name":"docker.io/tgraf/netperf:latest"},"start_time":"2023-10-06T21:52:41Z","pid":49},"pod_labels":{"app.kubernetes.io/name":"xwing","class":"xwing","org":"alliance"},"workload":"xwing"},"docker":"551e161c47d8ff0eb665438a7bcd5b4","parent_exec_id":"Z2tlLWpvaG4tNjMyLWRlZmF1bHQtcG9vbC03MDQxY2FjMC05czk1OjEzNTQ4NjcwODgzMjk5OjUyNjk5","tid":52699},"parent":{"exec_id":"Z2tlLWpvaG4tNjMyLWRlZmF1bHQtcG9vbC03MDQxY2FjMC05czk1OjEzNTQ4NjcwODgzMjk5OjUyNjk5","pid":52698,"uid":0,"cwd":"/","binary":"/bin/bash","arguments":"-c \"curl https://ebpf.io/applications/#tetragon\"","flags":"execve rootcwd clone","start_time":"2023-10-06T22:03:57.696889812Z","auid":4294967295,"tid":52698}},"node_name":"gke-john-632-default-pool-7041cac0-9s95","time":"2023-10-06T22:03:57.700326678Z"}"#;

/// `n` events, each with its own process (pid `10000 + i`) when `per_process` is 1; else
/// `per_process` events in a row share one process, as the sensor's events of one
/// execution share its cached process (pid `10000 + i / per_process * per_process`).
fn events(n: usize, per_process: usize) -> Vec<Arc<Event>> {
    let base = Event::from_json(TEMPLATE).expect("template parses");
    let t0 = Timestamp::now().unix_nanos();
    let mut shared = None;
    (0..n)
        .map(|i| {
            let mut e = base.clone();
            if let pipeline::EventKind::ProcessExec(x) = &mut e.kind {
                if i % per_process == 0 || shared.is_none() {
                    if let Some(p) = x.process.as_mut() {
                        p.make_mut().pid = Some(10_000 + i as u32);
                    }
                    shared = x.process.clone();
                }
                x.process = shared.clone();
            }
            e.time = Some(Timestamp::from_unix_nanos(t0 + i as i128 * 1000));
            Arc::new(e)
        })
        .collect()
}

fn dir_size(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => dir_size(&e.path()),
                    _ => e.metadata().map(|m| m.len()).unwrap_or(0),
                })
                .sum()
        })
        .unwrap_or(0)
}

async fn drive(sink: &mut dyn Sink, evs: &[Arc<Event>], batch: usize) -> Duration {
    let t = Instant::now();
    for chunk in evs.chunks(batch) {
        match sink.send(chunk).await {
            SendOutcome::Delivered | SendOutcome::Held => {}
            other => panic!("{} sink failed: {other:?}", sink.name()),
        }
    }
    sink.flush().await.expect("flush");
    t.elapsed()
}

fn main() {
    let n: usize = std::env::var("NIGHTJAR_BENCH_EVENTS").ok().and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("bench dir");
    let dir = root.path();
    let evs = events(n, 1);
    let input = dir.join("input.jsonl");
    {
        let mut f = std::io::BufWriter::new(File::create(&input).expect("input"));
        for e in &evs {
            f.write_all(e.to_json().as_bytes()).unwrap();
            f.write_all(b"\n").unwrap();
        }
        f.flush().unwrap();
    }
    let bytes = std::fs::metadata(&input).unwrap().len();
    let mb = bytes as f64 / 1e6;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    // Baseline: cat of the same bytes into the same directory (then fsync, as the sink does at flush).
    let cat = {
        let out = dir.join("cat.out");
        let t = Instant::now();
        let st =
            Command::new("cat").arg(&input).stdout(Stdio::from(File::create(&out).unwrap())).status().expect("run cat");
        assert!(st.success());
        File::open(&out).unwrap().sync_data().unwrap();
        let d = t.elapsed();
        std::fs::remove_file(&out).unwrap();
        d
    };

    let mut rows: Vec<(String, Duration, u64)> = vec![("cat (same bytes, same dir)".into(), cat, bytes)];
    for (label, cfg) in [
        (
            "file sink (defaults: 100 MiB rotation, gzip, fsync 1 s)",
            FileConfig { path: dir.join("file-a/n.log"), ..FileConfig::default() },
        ),
        (
            "file sink (no rotation, fsync never)",
            FileConfig {
                path: dir.join("file-b/n.log"),
                max_size: ByteSize(0),
                fsync: FsyncPolicy::Never,
                ..FileConfig::default()
            },
        ),
    ] {
        let d = rt.block_on(async {
            let mut s = nightjar_sinks::SinkConfig::build(&cfg).expect("file sink");
            drive(s.as_mut(), &evs, 512).await
        });
        let out = dir_size(cfg.path.parent().unwrap());
        rows.push((label.into(), d, out));
    }
    {
        // The sensor's shape: the events of one execution share its process (and its JSON).
        let shared = events(n, 100);
        let cfg = FileConfig {
            path: dir.join("file-c/n.log"),
            max_size: ByteSize(0),
            fsync: FsyncPolicy::Never,
            ..FileConfig::default()
        };
        let d = rt.block_on(async {
            let mut s = nightjar_sinks::SinkConfig::build(&cfg).expect("file sink");
            drive(s.as_mut(), &shared, 512).await
        });
        let out = dir_size(cfg.path.parent().unwrap());
        rows.push(("file sink (as above, 100 events per shared process)".into(), d, out));
    }
    let pq = ParquetConfig { enabled: true, path: dir.join("pq"), ..ParquetConfig::default() };
    let d = rt.block_on(async {
        let mut s = nightjar_sinks::SinkConfig::build(&pq).expect("parquet sink");
        drive(s.as_mut(), &evs, 2048).await
    });
    rows.push(("parquet sink (defaults: zstd 3, 10k-row groups)".into(), d, dir_size(&pq.path)));

    println!(
        "\nnightjar local sinks: {n} events, {mb:.1} MB of JSON lines ({} B/event), in {}",
        bytes / n as u64,
        dir.display()
    );
    println!("{:<56} {:>12} {:>10} {:>10} {:>12}", "what", "events/s", "MB/s in", "vs cat", "MB on disk");
    let cat_rate = mb / cat.as_secs_f64();
    for (label, d, out) in rows {
        let s = d.as_secs_f64();
        let eps = if label.starts_with("cat") { "-".to_owned() } else { format!("{:.0}", n as f64 / s) };
        println!("{:<56} {:>12} {:>10.1} {:>9.2}x {:>12.1}", label, eps, mb / s, (mb / s) / cat_rate, out as f64 / 1e6);
    }
    println!("(MB/s in = JSON-line bytes per second of wall time; the sinks also encode each event)");

    // JSON encoding alone, one thread, into one reused buffer: nightjar's typed events vs the
    // same documents held as generic serde_json values (what a schema-less relay encodes).
    let values: Vec<serde_json::Value> = evs.iter().map(|e| serde_json::from_str(&e.to_json()).unwrap()).collect();
    let mut buf = Vec::with_capacity(1 << 20);
    let t = Instant::now();
    for e in &evs {
        buf.clear();
        e.write_json(&mut buf);
    }
    let typed = t.elapsed();
    let t = Instant::now();
    for v in &values {
        buf.clear();
        serde_json::to_writer(&mut buf, v).unwrap();
    }
    let generic = t.elapsed();
    println!(
        "json encode: {:.0} events/s typed, {:.0} events/s serde_json::Value",
        n as f64 / typed.as_secs_f64(),
        n as f64 / generic.as_secs_f64()
    );
}
