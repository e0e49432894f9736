//! The buffers on real files: order, acknowledgement, replay after a restart, the size
//! bound with both policies, corrupt and truncated segments.
use std::{
    path::Path,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use pipeline::{config::ByteSize, fanout::Entry, fanout::QueuePolicy};

use super::*;
use crate::test_util::{seq_event, seq_of};

fn disk(max: u64, when_full: QueuePolicy) -> BufferConfig {
    BufferConfig { max_size: ByteSize(max), when_full, fsync: DiskFsync::Never, ..BufferConfig::disk_default() }
}

async fn push(w: &BufferWriter, from: u64, n: u64) {
    for i in from..from + n {
        w.tx.send(Entry { event: seq_event(i), ack: None }).await.unwrap();
    }
}

/// Takes `n` events (acknowledging them when `ack`), returns their sequence numbers.
async fn take(r: &mut BufferReader, n: usize, ack: bool) -> Vec<u64> {
    let mut got = Vec::new();
    while got.len() < n {
        let b = tokio::time::timeout(Duration::from_secs(20), r.next(n - got.len(), Duration::from_millis(20)))
            .await
            .expect("events in time")
            .expect("buffer open");
        got.extend(b.events.iter().map(|e| seq_of(&e.to_json())));
        if ack {
            r.ack(b.token).await;
        }
    }
    got
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

async fn wait_written(o: &Opened, n: u64) {
    for _ in 0..400 {
        if o.stats.accepted.load(Ordering::Relaxed) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("only {} of {n} written", o.stats.accepted.load(Ordering::Relaxed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_keeps_order_deletes_acknowledged_segments_and_replays_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = disk(1 << 20, QueuePolicy::Block); // 128 KiB segments: several for 3000 events
    let mut o = open("t", &cfg, dir.path()).unwrap();
    push(&o.writer, 0, 3000).await;
    assert_eq!(take(&mut o.reader, 1000, true).await, (0..1000).collect::<Vec<_>>());
    wait_written(&o, 3000).await;
    let before = segments(&dir.path().join("t")).len();
    assert!(before >= 3, "{before} segments");
    // 1000 more read but NOT acknowledged: a restart delivers them again.
    assert_eq!(take(&mut o.reader, 1000, false).await, (1000..2000).collect::<Vec<_>>());
    drop(o);
    tokio::time::sleep(Duration::from_millis(300)).await; // the writer thread lets go of the lock
    let mut o = open("t", &cfg, dir.path()).unwrap();
    assert_eq!(o.recovered.pending, 2000);
    assert_eq!(take(&mut o.reader, 2000, true).await, (1000..3000).collect::<Vec<_>>());
    assert_eq!(o.stats.replayed.load(Ordering::Relaxed), 2000);
    assert!(segments(&dir.path().join("t")).len() < before, "acknowledged segments are deleted");
    assert_eq!(o.reader.pending(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_buffer_drops_newest_and_counts_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = disk(256 << 10, QueuePolicy::DropNewest);
    let mut o = open("t", &cfg, dir.path()).unwrap();
    push(&o.writer, 0, 2000).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let accepted = o.stats.accepted.load(Ordering::Relaxed);
    let dropped = o.stats.dropped.load(Ordering::Relaxed);
    assert!(accepted > 0 && dropped > 0, "accepted {accepted}, dropped {dropped}");
    assert_eq!(accepted + dropped, 2000, "every event is either kept or counted");
    assert!(o.stats.bytes.load(Ordering::Relaxed) <= 256 << 10);
    // What was kept is the oldest, in order.
    assert_eq!(take(&mut o.reader, accepted as usize, true).await, (0..accepted).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_blocking_disk_buffer_holds_the_writer_until_acknowledgements() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = disk(256 << 10, QueuePolicy::Block);
    let mut o = open("t", &cfg, dir.path()).unwrap();
    let w = o.writer.tx.clone();
    let pusher = tokio::spawn(async move {
        for i in 0..3000 {
            w.send(Entry { event: seq_event(i), ack: None }).await.unwrap();
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!pusher.is_finished(), "the writer must block when full");
    let kept = o.stats.accepted.load(Ordering::Relaxed);
    assert!(kept < 3000 && o.stats.dropped.load(Ordering::Relaxed) == 0);
    // Reading and acknowledging makes room: everything arrives, in order, nothing dropped.
    assert_eq!(take(&mut o.reader, 3000, true).await, (0..3000).collect::<Vec<_>>());
    pusher.await.unwrap();
    assert_eq!(o.stats.dropped.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_record_is_skipped_and_counted_and_a_torn_tail_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = disk(1 << 20, QueuePolicy::Block);
    let o = open("t", &cfg, dir.path()).unwrap();
    push(&o.writer, 0, 1000).await;
    wait_written(&o, 1000).await;
    drop(o);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let segs = segments(&dir.path().join("t"));
    assert!(segs.len() >= 2, "{segs:?}");
    // Flip a byte inside the second record of the first segment, and cut the newest
    // segment in the middle of its last record (what a crash during a write leaves).
    let mut first = std::fs::read(&segs[0]).unwrap();
    let rec0 = u32::from_le_bytes(first[0..4].try_into().unwrap()) as usize + 24;
    first[rec0 + 40] ^= 0xff;
    std::fs::write(&segs[0], &first).unwrap();
    let last = segs.last().unwrap();
    let len = std::fs::metadata(last).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(last).unwrap().set_len(len - 10).unwrap();

    let mut o = open("t", &cfg, dir.path()).unwrap();
    assert!(o.recovered.torn_bytes > 0);
    assert_eq!(o.recovered.pending, 999, "the torn record is gone");
    let got = take(&mut o.reader, 998, true).await;
    let expect: Vec<u64> = (0..999).filter(|&i| i != 1).collect();
    assert_eq!(got, expect);
    assert_eq!(o.stats.corrupt.load(Ordering::Relaxed), 1, "exactly the damaged record");
}

#[tokio::test]
async fn memory_buffer_keeps_source_tokens_until_acknowledged() {
    use std::sync::{Arc, Mutex};
    #[derive(Default)]
    struct Log(Mutex<Vec<u64>>);
    impl pipeline::ack::AckSink for Log {
        fn done(&self, id: u64) {
            self.0.lock().unwrap().push(id);
        }
    }
    let log = Arc::new(Log::default());
    let mut o = open("m", &BufferConfig::memory(100, QueuePolicy::Block), Path::new("/nonexistent")).unwrap();
    let ack = pipeline::ack::Ack::new(log.clone(), 1);
    o.writer.tx.send(Entry { event: seq_event(0), ack: Some(ack) }).await.unwrap();
    let b = o.reader.next(10, Duration::from_millis(10)).await.unwrap();
    drop(b.events);
    assert!(log.0.lock().unwrap().is_empty(), "not delivered yet");
    o.reader.ack(b.token).await;
    assert_eq!(*log.0.lock().unwrap(), vec![1]);
}

fn spec(name: &'static str, cfg: &BufferConfig) -> (DiskSpec, Arc<BufferStats>) {
    let stats = BufferStats::named(name);
    (DiskSpec { name, cfg: cfg.clone(), stats: stats.clone(), counters: Arc::default() }, stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_buffers_of_a_data_dir_commit_together_and_cut_what_no_commit_covers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = disk(1 << 20, QueuePolicy::Block);
    let open_two = || {
        let (a, sa) = spec("a", &cfg);
        let (b, sb) = spec("b", &cfg);
        let mut g = open_disk(vec![a, b], dir.path());
        let readers: Vec<_> = g.readers.drain(..).map(|(_, r)| r.unwrap()).collect();
        (g.writer.unwrap(), readers, [sa, sb])
    };
    let (w, mut readers, stats) = open_two();
    push(&w, 0, 1000).await;
    for s in &stats {
        for _ in 0..400 {
            if s.accepted.load(Ordering::Relaxed) >= 1000 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Both logs have every event; sink a delivers (and acknowledges) 300 of them.
    assert_eq!(take(&mut readers[0].0, 300, true).await, (0..300).collect::<Vec<_>>());
    drop((w, readers));
    tokio::time::sleep(Duration::from_millis(300)).await; // the writer lets go of the locks
                                                          // As if the agent died after appending 400..1000 to both logs, before recording that
                                                          // commit.
    let mut c = super::commit::CommitFile::open(&dir.path().join("commit")).unwrap();
    assert_eq!((c.get("a"), c.get("b")), (Some(1000), Some(1000)));
    c.write([("a", 400), ("b", 400)].into_iter());
    drop(c);
    let (_w, mut readers, stats) = open_two();
    let (ra, rb) = (readers.remove(0), readers.remove(0));
    assert_eq!(ra.1.uncommitted, 600);
    assert_eq!((ra.1.pending, rb.1.pending), (100, 400), "a had acknowledged 300");
    let (mut ra, mut rb) = (ra.0, rb.0);
    assert_eq!(take(&mut ra, 100, true).await, (300..400).collect::<Vec<_>>());
    assert_eq!(take(&mut rb, 400, true).await, (0..400).collect::<Vec<_>>());
    assert_eq!(stats[0].replayed.load(Ordering::Relaxed), 100);
    // New events follow on from the commit point in both.
    push(&_w, 5000, 10).await;
    assert_eq!(take(&mut ra, 10, true).await, (5000..5010).collect::<Vec<_>>());
    assert_eq!(take(&mut rb, 10, true).await, (5000..5010).collect::<Vec<_>>());
}

/// A blocking member whose sink stalls goes on taking events beyond its own max_size in
/// the room the other blocking member leaves, so that one's sink keeps getting events; the
/// writer (and so the fan-out) waits only once the pooled room is used up, and nothing is
/// dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_blocking_member_borrows_the_pooled_room_and_holds_the_others_only_once_it_is_used() {
    const N: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let (a, sa) = spec("a", &disk(256 << 10, QueuePolicy::Block));
    let (b, sb) = spec("b", &disk(64 << 10, QueuePolicy::Block));
    let mut g = open_disk(vec![a, b], dir.path());
    let mut readers: Vec<_> = g.readers.drain(..).map(|(_, r)| r.unwrap().0).collect();
    let w = g.writer.unwrap().tx;
    let pusher = tokio::spawn(async move {
        for i in 0..N {
            w.send(Entry { event: seq_event(i), ack: None }).await.unwrap();
        }
    });
    let mut ra = readers.remove(0);
    let got_a = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reader_a = {
        let got_a = got_a.clone();
        tokio::spawn(async move {
            let mut all = Vec::new();
            while all.len() < N as usize {
                all.extend(take(&mut ra, 100.min(N as usize - all.len()), true).await);
                got_a.store(all.len() as u64, Ordering::Relaxed);
            }
            all
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // b's sink has read nothing: its log holds more than its own 64 KiB, the two logs
    // together at most the pooled 320 KiB, and a's sink got every event b's log holds.
    let (b_bytes, a_bytes) = (sb.bytes.load(Ordering::Relaxed), sa.bytes.load(Ordering::Relaxed));
    let kb = sb.accepted.load(Ordering::Relaxed);
    assert!(b_bytes > 64 << 10, "b borrowed: {b_bytes} bytes");
    assert!(b_bytes + a_bytes <= 320 << 10, "within the pool: {b_bytes} + {a_bytes}");
    assert!(got_a.load(Ordering::Relaxed) >= kb.saturating_sub(2048), "a's sink is not held up: {got_a:?} vs {kb}");
    assert!(!pusher.is_finished() && kb < N, "the writer waits once the pool is used: {kb}");
    let mut rb = readers.pop().unwrap();
    assert_eq!(take(&mut rb, N as usize, true).await, (0..N).collect::<Vec<_>>());
    assert_eq!(reader_a.await.unwrap(), (0..N).collect::<Vec<_>>());
    pusher.await.unwrap();
    assert_eq!(sa.dropped.load(Ordering::Relaxed) + sb.dropped.load(Ordering::Relaxed), 0);
}
