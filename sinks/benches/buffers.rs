//! Events/s through a sink's buffer: memory against disk (the write-ahead log, fsync
//! every second), pushed by one task and taken in batches, acknowledged, as the driver
//! does; and the replay rate of a disk buffer an outage filled, read back after a
//! restart (from the files, parsing each event); and three disk-buffered sinks through
//! their one group writer and commit point (the agent's shape: an event is in every log or
//! in none) against three independent disk buffers each fed the event (no common commit
//! point). Prints a table; asserts nothing.
//!
//! `cargo bench -p nightjar-sinks --bench buffers` (NIGHTJAR_BENCH_EVENTS=N to resize).
use std::{path::Path, sync::Arc, time::Instant};

use nightjar_sinks::buffer::{self, BufferConfig, BufferReader, BufferStats, BufferType, DiskFsync, DiskSpec};
use pipeline::{
    config::ByteSize,
    fanout::{Entry, QueuePolicy},
    Event,
};

const TEMPLATE: &str = r#"{"process_kprobe":{"process":{"exec_id":"bm9kZTo0NTY3ODk6MTIzNA==","pid":1234,"uid":0,"cwd":"/","binary":"/usr/bin/cat","arguments":"/etc/shadow","flags":"execve clone","start_time":"2026-01-01T00:00:00.000000001Z","auid":4294967295,"parent_exec_id":"bm9kZTo0NTY3ODA6MTIwMA==","tid":1234},"parent":{"exec_id":"bm9kZTo0NTY3ODA6MTIwMA==","pid":1200,"uid":0,"cwd":"/","binary":"/bin/bash","flags":"execve","start_time":"2026-01-01T00:00:00.000000001Z","tid":1200},"function_name":"security_file_open","args":[{"file_arg":{"path":"/etc/shadow","permission":"-rw-r-----"}}],"action":"KPROBE_ACTION_POST","policy_name":"monitor-sensitive-files"},"node_name":"bench-node","time":"2026-01-01T00:00:00.000000002Z"}"#;

fn cfg(kind: BufferType) -> BufferConfig {
    BufferConfig {
        kind,
        max_events: 10_000,
        max_size: ByteSize(4 << 30),
        when_full: QueuePolicy::Block,
        fsync: DiskFsync::Interval,
        fsync_interval_ms: 1000,
    }
}

/// Pushes `n` events and drains them concurrently; events/s.
async fn through(kind: BufferType, dir: &Path, n: usize, ev: &Arc<Event>) -> f64 {
    let mut o = buffer::open("bench", &cfg(kind), dir).expect("buffer");
    let tx = o.writer.tx.clone();
    drop(o.writer);
    let ev2 = ev.clone();
    let t = Instant::now();
    let push = tokio::spawn(async move {
        for _ in 0..n {
            tx.send(Entry { event: ev2.clone(), ack: None }).await.expect("buffer open");
        }
    });
    let mut got = 0;
    while got < n {
        let b = o.reader.next(4000, std::time::Duration::from_millis(5)).await.expect("events");
        got += b.events.len();
        o.reader.ack(b.token).await;
    }
    push.await.expect("pusher");
    n as f64 / t.elapsed().as_secs_f64()
}

/// Takes `n` events from `r`, acknowledging each batch.
async fn drain(mut r: BufferReader, n: usize) {
    let mut got = 0;
    while got < n {
        let b = r.next(4000, std::time::Duration::from_millis(5)).await.expect("events");
        got += b.events.len();
        r.ack(b.token).await;
    }
}

/// `k` disk-buffered sinks, each read by its own task: through one group writer (`shared`)
/// or `k` independent buffers, each event sent to each; events/s (every sink has them all).
async fn sinks_through(k: usize, shared: bool, dir: &Path, n: usize, ev: &Arc<Event>) -> f64 {
    const NAMES: [&str; 3] = ["s0", "s1", "s2"];
    let cfg = cfg(BufferType::Disk);
    let (writers, readers): (Vec<_>, Vec<_>) = if shared {
        let specs = NAMES[..k]
            .iter()
            .map(|&name| DiskSpec { name, cfg: cfg.clone(), stats: BufferStats::named(name), counters: Arc::default() })
            .collect();
        let g = buffer::open_disk(specs, dir);
        let readers = g.readers.into_iter().map(|(_, r)| r.expect("buffer").0).collect();
        (vec![g.writer.expect("writer").tx], readers)
    } else {
        NAMES[..k]
            .iter()
            .map(|&name| {
                let o = buffer::open(name, &cfg, &dir.join(name)).expect("buffer");
                (o.writer.tx, o.reader)
            })
            .unzip()
    };
    let t = Instant::now();
    let tasks: Vec<_> = readers.into_iter().map(|r| tokio::spawn(drain(r, n))).collect();
    for _ in 0..n {
        for w in &writers {
            w.send(Entry { event: ev.clone(), ack: None }).await.expect("buffer open");
        }
    }
    for t in tasks {
        t.await.expect("reader");
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    let n: usize = std::env::var("NIGHTJAR_BENCH_EVENTS").ok().and_then(|s| s.parse().ok()).unwrap_or(300_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let ev = Arc::new(Event::from_json(TEMPLATE).expect("template"));
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("bench dir");
    rt.block_on(async {
        let mem = through(BufferType::Memory, root.path(), n, &ev).await;
        let disk = through(BufferType::Disk, &root.path().join("d1"), n, &ev).await;
        // An outage: everything written, nothing read; then a restart reads it all back.
        let fill = {
            let o = buffer::open("bench", &cfg(BufferType::Disk), &root.path().join("d2")).expect("buffer");
            let t = Instant::now();
            for _ in 0..n {
                o.writer.tx.send(Entry { event: ev.clone(), ack: None }).await.expect("open");
            }
            while o.stats.accepted.load(std::sync::atomic::Ordering::Relaxed) < n as u64 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            let r = n as f64 / t.elapsed().as_secs_f64();
            drop(o);
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            r
        };
        let mut o = buffer::open("bench", &cfg(BufferType::Disk), &root.path().join("d2")).expect("reopen");
        assert_eq!(o.recovered.pending, n as u64);
        let t = Instant::now();
        let mut got = 0;
        while got < n {
            let b = o.reader.next(4000, std::time::Duration::from_millis(5)).await.expect("events");
            got += b.events.len();
            o.reader.ack(b.token).await;
        }
        let replay = n as f64 / t.elapsed().as_secs_f64();
        let group = sinks_through(3, true, &root.path().join("g"), n / 3, &ev).await;
        let apart = sinks_through(3, false, &root.path().join("i"), n / 3, &ev).await;
        println!("{:<40}  {:>12}", "buffer", "events/s");
        println!("{:<40}  {:>12.0}", "memory buffer", mem);
        println!("{:<40}  {:>12.0}", "disk buffer (fsync interval)", disk);
        println!("{:<40}  {:>12.0}", "disk buffer fill (outage, no reader)", fill);
        println!("{:<40}  {:>12.0}", "disk buffer replay after restart", replay);
        println!("{:<40}  {:>12.0}", "3 disk sinks, one commit point", group);
        println!("{:<40}  {:>12.0}", "3 disk sinks, independent buffers", apart);
    });
}
