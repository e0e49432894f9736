//! Throughput of the remote sinks against independent clients sending the same data to
//! the same real servers, in the same run: the Kafka sink vs `kcat -P` (Debian's kcat on
//! its librdkafka) and vs Python confluent-kafka (librdkafka from PyPI), same producer
//! settings, keys and headers; the Elasticsearch sink vs `curl --parallel` posting the same
//! gzipped `_bulk` bodies. Prints one `| what | nightjar | baseline | ratio |` row per
//! comparison (bench/harness.py collects them); asserts nothing about time.
//!
//! `cargo bench -p nightjar-sinks --bench remote_sinks` (NIGHTJAR_BENCH_EVENTS=N to resize).
#[path = "../src/test_servers.rs"]
#[allow(dead_code)]
mod test_servers;

use std::{
    io::Write,
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use nightjar_sinks::{
    elasticsearch::{self, encoder::Encoder as EsEncoder, request_builder::RequestBuilder, ElasticsearchConfig},
    kafka::{self, encoder::Encoder as KafkaEncoder, KafkaConfig, KeyField},
    SendOutcome, Sink,
};
use pipeline::{time::Timestamp, Event};
use test_servers::{create_topic, Server};

/// A full Tetragon `process_exec` (pod, container, parent), as in Tetragon's documentation.
const TEMPLATE: &str = r#"{"process_exec":{"process":{"exec_id":"Z2tlLWpvaG4tNjMyLWRlZmF1bHQtcG9vbC03MDQxY2FjMC05czk1OjEzNTQ4Njc0MzIxMzczOjUyNjk5","pid":52699,"uid":0,"cwd":"/","binary":"/usr/bin/curl","arguments":"https://ebpf.io/applications/#tetragon","flags":"execve rootcwd","start_time":"2023-10-06T22:03:57.700327580Z","auid":4294967295,"pod":{"namespace":"default","name":"xwing","container":{"id":"containerd://551e161c47d8ff0eb665438a7bcd5b4e3ef5a297282b40a92b7c77d6bd168eb3","name":"spaceship","image":{"id":"docker.io/tgraf/netperf@sha256:8e86f744bfea165fd4ce68caa05abc96500f40130b857773186401926af7e9e6","name":"docker.io/tgraf/netperf:latest"},"start_time":"2023-10-06T21:52:41Z","pid":49},"pod_labels":{"app.kubernetes.io/name":"xwing","class":"xwing","org":"alliance"},"workload":"xwing"},"docker":"551e161c47d8ff0eb665438a7bcd5b4","parent_exec_id":"Z2tlLWpvaG4tNjMyLWRlZmF1bHQtcG9vbC03MDQxY2FjMC05czk1OjEzNTQ4NjcwODgzMjk5OjUyNjk5","tid":52699},"parent":{"exec_id":"Z2tlLWpvaG4tNjMyLWRlZmF1bHQtcG9vbC03MDQxY2FjMC05czk1OjEzNTQ4NjcwODgzMjk5OjUyNjk5","pid":52698,"uid":0,"cwd":"/","binary":"/bin/bash","arguments":"-c \"curl https://ebpf.io/applications/#tetragon\"","flags":"execve rootcwd clone","start_time":"2023-10-06T22:03:57.696889812Z","auid":4294967295,"tid":52698}},"node_name":"gke-john-632-default-pool-7041cac0-9s95","time":"2023-10-06T22:03:57.700326678Z"}"#;

fn events(n: usize) -> Vec<Arc<Event>> {
    let base = Event::from_json(TEMPLATE).expect("template parses");
    let t0 = Timestamp::now().unix_nanos();
    (0..n)
        .map(|i| {
            let mut e = base.clone();
            if let pipeline::EventKind::ProcessExec(x) = &mut e.kind {
                if let Some(p) = x.process.as_mut() {
                    p.make_mut().pid = Some(10_000 + i as u32);
                }
            }
            e.time = Some(Timestamp::from_unix_nanos(t0 + i as i128 * 1000));
            Arc::new(e)
        })
        .collect()
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

fn python() -> std::path::PathBuf {
    std::env::var_os("NIGHTJAR_PYTHON").map(Into::into).unwrap_or_else(|| {
        std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/nightjar/venv/bin/python")
    })
}

const PY_PRODUCE: &str = r#"
import json, sys, time
from confluent_kafka import Producer
bootstrap, topic, path = sys.argv[1], sys.argv[2], sys.argv[3]
recs = [json.loads(l) for l in open(path)]
p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
              "compression.type": "zstd", "linger.ms": 5, "batch.size": 1000000})
failed = [0]
def cb(err, msg):
    if err is not None:
        failed[0] += 1
t = time.perf_counter()
for r in recs:
    while True:
        try:
            p.produce(topic, r["v"].encode(), r["k"].encode(), headers=[(k, v.encode()) for k, v in r["h"]], on_delivery=cb)
            break
        except BufferError:
            p.poll(0.01)
    p.poll(0)
p.flush()
print(json.dumps({"secs": time.perf_counter() - t, "failed": failed[0]}))
"#;

/// One comparison as a markdown row: what, ours, the baseline's, ours/baseline.
fn row(name: &str, n: usize, ours: Duration, base_name: &str, base: Duration) {
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "| {name} | {:.0} ev/s | {:.0} ev/s ({base_name}) | {:.2} |",
        rate(ours),
        rate(base),
        rate(ours) / rate(base)
    );
}

fn main() {
    let n: usize = std::env::var("NIGHTJAR_BENCH_EVENTS").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tmp");
    let evs = events(n);
    println!("remote sinks, {n} Tetragon process_exec events (~1.9 KiB JSON each), real servers on loopback");
    println!("| what | nightjar | baseline | ratio |");
    println!("|---|---|---|---|");

    // Kafka: the sink vs Python confluent-kafka, same settings, keys and headers.
    let broker = Server::tansu(None);
    create_topic(broker.addr, "bench-sink", 3);
    create_topic(broker.addr, "bench-py", 3);
    let enc = KafkaEncoder { topic: "bench-py".into(), key: KeyField::NodeName, headers: true };
    let path = dir.path().join("kafka.jsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    for e in &evs {
        let r = enc.encode(e);
        let line = serde_json::json!({ "k": r.key.unwrap_or_default(), "v": String::from_utf8_lossy(&r.payload), "h": r.headers });
        writeln!(f, "{line}").expect("write");
    }
    f.flush().expect("flush");
    drop(f);
    let out = Command::new(python())
        .arg("-c")
        .arg(PY_PRODUCE)
        .arg(broker.addr.to_string())
        .arg("bench-py")
        .arg(&path)
        .output()
        .expect("python");
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("python json");
    let py = Duration::from_secs_f64(v["secs"].as_f64().expect("secs"));
    let cfg = KafkaConfig {
        enabled: true,
        brokers: broker.addr.to_string(),
        topic: "bench-sink".into(),
        ..KafkaConfig::default()
    };
    let kafka_d = rt.block_on(async {
        let mut s = kafka::build(&cfg).expect("kafka sink");
        s.start().await.expect("kafka brokers");
        drive(&mut s, &evs, cfg.batch.max_events).await
    });
    // kcat -P: one message per line, key before a tab, the same static headers.
    let kpath = dir.path().join("kafka.kcat");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&kpath).expect("create"));
    let mut headers = Vec::new();
    for e in &evs {
        let r = enc.encode(e);
        if headers.is_empty() {
            headers = r.headers.clone();
        }
        f.write_all(r.key.unwrap_or_default().as_bytes()).expect("write");
        f.write_all(b"\t").expect("write");
        f.write_all(&r.payload).expect("write");
        f.write_all(b"\n").expect("write");
    }
    f.flush().expect("flush");
    drop(f);
    create_topic(broker.addr, "bench-kcat", 3);
    let mut kcat = Command::new("kcat");
    kcat.args(["-P", "-b", &broker.addr.to_string(), "-t", "bench-kcat", "-K", "\t", "-z", "zstd"])
        .args(["-X", "acks=all", "-X", "enable.idempotence=true", "-X", "linger.ms=5", "-X", "batch.size=1000000"])
        .arg("-l")
        .arg(&kpath);
    for (k, v) in &headers {
        kcat.arg("-H").arg(format!("{k}={v}"));
    }
    let t = Instant::now();
    let st = kcat.status().expect("kcat (scripts/setup.sh installs it)");
    let kcat_d = t.elapsed();
    assert!(st.success(), "kcat -P failed");
    row("kafka sink vs kcat -P", n, kafka_d, "kcat -P", kcat_d);
    row("kafka sink vs python confluent-kafka", n, kafka_d, "confluent-kafka", py);

    // Elasticsearch: curl posting the same gzipped _bulk bodies vs the sink.
    let es = Server::osmem();
    let ecfg = ElasticsearchConfig {
        enabled: true,
        endpoint: es.url(),
        index: "bench-sink".into(),
        dead_letter_path: dir.path().join("dead.log"),
        ..ElasticsearchConfig::default()
    };
    let es_d = rt.block_on(async {
        let mut s = elasticsearch::build(&ecfg).expect("es sink");
        s.start().await.expect("es server");
        drive(&mut s, &evs, ecfg.batch.max_events).await
    });
    let enc = EsEncoder { index: "bench-curl".into(), data_stream: None, schema: ecfg.schema };
    let items: Vec<_> = evs.iter().map(|e| enc.encode(e)).collect();
    let all: Vec<usize> = (0..items.len()).collect();
    let rb = RequestBuilder { max_events: ecfg.bulk_max_events, max_bytes: ecfg.bulk_max_bytes, gzip: true };
    let mut curl_cfg = String::new();
    for (i, r) in rb.build(&items, &all).iter().enumerate() {
        let p = dir.path().join(format!("bulk-{i}.ndjson.gz"));
        std::fs::write(&p, &r.body).expect("write body");
        if i > 0 {
            curl_cfg.push_str("next\n");
        }
        curl_cfg.push_str(&format!(
            "url = \"{}/_bulk\"\ndata-binary = \"@{}\"\nheader = \"content-type: application/x-ndjson\"\nheader = \"content-encoding: gzip\"\noutput = \"/dev/null\"\nfail\n",
            es.url(),
            p.display()
        ));
    }
    let cfgp = dir.path().join("curl.cfg");
    std::fs::write(&cfgp, curl_cfg).expect("curl cfg");
    let t = Instant::now();
    let st = Command::new("curl")
        .args([
            "-sS",
            "--no-progress-meter",
            "--parallel",
            "--parallel-max",
            &ecfg.request.concurrency.to_string(),
            "-K",
        ])
        .arg(&cfgp)
        .status()
        .expect("curl");
    let curl_d = t.elapsed();
    assert!(st.success(), "curl failed");
    row("elasticsearch sink (encode+gzip+send) vs curl", n, es_d, "curl --parallel, same bodies", curl_d);
}
