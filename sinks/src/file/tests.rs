use std::{
    fs::File,
    io::Read,
    os::unix::fs::{MetadataExt, PermissionsExt},
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use flate2::read::GzDecoder;
use pipeline::config::ByteSize;

use pipeline::Event;

use super::{rotate, FileConfig, FileSink, FsyncPolicy, OnError};
use crate::{blocking::BlockingSink, driver, retry::RetryConfig, test_util::*, SendOutcome};

fn read_all_lines(cfg: &FileConfig) -> Vec<String> {
    let mut lines = Vec::new();
    for n in (1..=cfg.max_backups).rev() {
        let gz = rotate::gz(&cfg.path, n);
        if gz.exists() {
            let mut s = String::new();
            GzDecoder::new(File::open(&gz).unwrap()).read_to_string(&mut s).unwrap();
            lines.extend(s.lines().map(str::to_owned));
        }
        assert!(!rotate::plain(&cfg.path, n).exists() || !cfg.compress, "uncompressed backup left after flush");
    }
    lines.extend(std::fs::read_to_string(&cfg.path).unwrap().lines().map(str::to_owned));
    lines
}

#[tokio::test]
async fn writes_lines_rotates_and_keeps_gzipped_backups() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = FileConfig {
        path: dir.path().join("sub/nightjar.log"),
        max_size: ByteSize(2000),
        max_backups: 2,
        ..FileConfig::default()
    };
    let mut s = FileSink::new(&cfg).unwrap();
    for i in 0..100 {
        assert!(matches!(s.send(&[seq_event(i)]), SendOutcome::Delivered));
    }
    s.flush().unwrap();
    for p in [cfg.path.clone(), rotate::gz(&cfg.path, 1), rotate::gz(&cfg.path, 2)] {
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }
    assert!(!rotate::gz(&cfg.path, 3).exists() && !rotate::plain(&cfg.path, 3).exists());
    let lines = read_all_lines(&cfg);
    let seqs: Vec<u64> = lines.iter().map(|l| seq_of(l)).collect();
    assert!(!seqs.is_empty() && seqs.len() < 100, "older backups must be pruned: {}", seqs.len());
    // What is kept is the newest lines, in order, ending with the last one.
    let first = seqs[0];
    assert_eq!(seqs, (first..100).collect::<Vec<_>>());
}

#[tokio::test]
async fn rotates_by_interval() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = FileConfig {
        path: dir.path().join("n.log"),
        max_size: ByteSize(0),
        rotate_interval_secs: 1,
        compress: false,
        ..FileConfig::default()
    };
    let mut s = FileSink::new(&cfg).unwrap();
    assert!(matches!(s.send(&[seq_event(0)]), SendOutcome::Delivered));
    // Make the open file look a second old instead of sleeping.
    s.writer_mut().opened_at -= Duration::from_secs(2);
    assert!(matches!(s.send(&[seq_event(1)]), SendOutcome::Delivered));
    assert!(matches!(s.send(&[seq_event(2)]), SendOutcome::Delivered));
    s.flush().unwrap();
    let backup = std::fs::read_to_string(rotate::plain(&cfg.path, 1)).unwrap();
    let live = std::fs::read_to_string(&cfg.path).unwrap();
    assert_eq!(backup.lines().map(seq_of).collect::<Vec<_>>(), [0]);
    assert_eq!(live.lines().map(seq_of).collect::<Vec<_>>(), [1, 2]);
}

#[tokio::test]
async fn n_events_read_back_with_jq_and_serde() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = FileConfig { path: dir.path().join("n.log"), fsync: FsyncPolicy::Batch, ..FileConfig::default() };
    let n = 1000;
    let mut s = FileSink::new(&cfg).unwrap();
    let events: Vec<_> = (0..n).map(seq_event).collect();
    for chunk in events.chunks(64) {
        assert!(matches!(s.send(chunk), SendOutcome::Delivered));
    }
    s.flush().unwrap();
    // serde, through the event model.
    let text = std::fs::read_to_string(&cfg.path).unwrap();
    let back: Vec<Event> = text.lines().map(|l| Event::from_json(l).unwrap()).collect();
    assert_eq!(back.len(), n as usize);
    assert_eq!(back[7], *events[7]);
    // jq, an independent reader: the count, and a filtered query.
    let jq = |filter: &str| {
        let out = Command::new("jq")
            .args(["-r", filter])
            .arg(&cfg.path)
            .output()
            .expect("run jq (scripts/setup.sh installs it)");
        assert!(out.status.success(), "jq {filter}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let count = Command::new("jq").args(["-s", "length"]).arg(&cfg.path).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&count.stdout).trim(), n.to_string());
    let pids = jq(r#"select(.process_kprobe.action == "SIGKILL") | .process_kprobe.process.pid"#);
    let expect: Vec<String> =
        (0..n).filter(|&i| expected_action(i) == Some("SIGKILL")).map(|i| (1000 + i).to_string()).collect();
    assert!(!expect.is_empty());
    assert_eq!(pids.lines().collect::<Vec<_>>(), expect);
}

/// A reader with `tail -F` semantics: holds the open file, reads to EOF, and when the
/// name points to a new file, drains the old one and switches. It must see every line
/// exactly once, whole, while the sink rotates under load.
#[test]
fn tail_follower_sees_every_line_once_across_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = FileConfig {
        path: dir.path().join("tail.log"),
        max_size: ByteSize(16 << 10),
        max_backups: 1000,
        fsync: FsyncPolicy::Never,
        ..FileConfig::default()
    };
    let total: u64 = 10_000;
    let follower_ino = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let mut sink = FileSink::new(&cfg).unwrap();
    let writer = {
        let (follower_ino, done, path) = (follower_ino.clone(), done.clone(), cfg.path.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let mut ino = std::fs::metadata(&path).unwrap().ino();
                let mut rotations = 0;
                let mut i = 0;
                while i < total {
                    let n = (i % 37 + 1).min(total - i);
                    let batch: Vec<_> = (i..i + n).map(seq_event).collect();
                    assert!(matches!(sink.send(&batch), SendOutcome::Delivered));
                    i += n;
                    let now = std::fs::metadata(&path).unwrap().ino();
                    if now != ino {
                        rotations += 1;
                        ino = now;
                        // tail -F cannot see a file it never had open: before the next
                        // rotation, let the reader reach this one (bounded wait).
                        let mut waited = 0;
                        while follower_ino.load(Ordering::Acquire) != ino && waited < 20_000 {
                            std::thread::sleep(Duration::from_millis(1));
                            waited += 1;
                        }
                    }
                }
                sink.flush().unwrap();
                done.store(true, Ordering::Release);
                rotations
            })
        })
    };
    let mut seen = vec![0u32; total as usize];
    let mut file = File::open(&cfg.path).unwrap();
    follower_ino.store(file.metadata().unwrap().ino(), Ordering::Release);
    let mut pending = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    let mut count = 0u64;
    let mut read_to_eof = |file: &mut File, pending: &mut Vec<u8>, count: &mut u64| loop {
        let n = file.read(&mut chunk).unwrap();
        if n == 0 {
            return;
        }
        pending.extend_from_slice(&chunk[..n]);
        while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            let line = std::str::from_utf8(&line[..line.len() - 1]).unwrap();
            seen[seq_of(line) as usize] += 1;
            *count += 1;
        }
    };
    let mut switches = 0;
    for _ in 0..600_000 {
        read_to_eof(&mut file, &mut pending, &mut count);
        let writer_done = done.load(Ordering::Acquire);
        let path_ino = std::fs::metadata(&cfg.path).map(|m| m.ino()).ok();
        if path_ino.is_some_and(|i| i != file.metadata().unwrap().ino()) {
            read_to_eof(&mut file, &mut pending, &mut count);
            assert!(
                pending.is_empty(),
                "torn line at the end of a rotated file: {:?}",
                String::from_utf8_lossy(&pending)
            );
            file = File::open(&cfg.path).unwrap();
            follower_ino.store(file.metadata().unwrap().ino(), Ordering::Release);
            switches += 1;
            continue;
        }
        if writer_done {
            read_to_eof(&mut file, &mut pending, &mut count);
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let rotations = writer.join().unwrap();
    assert!(rotations >= 20, "the test must rotate often: {rotations}");
    assert_eq!(switches, rotations, "the reader followed every rotation");
    assert!(pending.is_empty(), "torn last line");
    assert_eq!(count, total, "lines the tail reader saw");
    let dup_or_missing: Vec<_> = seen.iter().enumerate().filter(|(_, &c)| c != 1).take(5).collect();
    assert!(dup_or_missing.is_empty(), "{dup_or_missing:?}");
    // The files on disk (gzipped backups + live file) hold the same lines, in order.
    let on_disk: Vec<u64> = read_all_lines(&cfg).iter().map(|l| seq_of(l)).collect();
    assert_eq!(on_disk, (0..total).collect::<Vec<_>>());
}

#[tokio::test]
async fn sighup_reopens_after_external_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = FileConfig { path: dir.path().join("n.log"), ..FileConfig::default() };
    let mut s = FileSink::new(&cfg).unwrap();
    let flag = s.writer().reopen_handle();
    assert!(matches!(s.send(&[seq_event(0), seq_event(1)]), SendOutcome::Delivered));
    let moved = dir.path().join("n.log-20260101");
    std::fs::rename(&cfg.path, &moved).unwrap();
    // SAFETY: sends SIGHUP to this process; the sink installed tokio's handler in new().
    assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGHUP) }, 0);
    for _ in 0..500 {
        if flag.load(Ordering::Acquire) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(flag.load(Ordering::Acquire), "SIGHUP never reached the sink");
    assert!(matches!(s.send(&[seq_event(2)]), SendOutcome::Delivered));
    s.flush().unwrap();
    let old = std::fs::read_to_string(&moved).unwrap();
    let new = std::fs::read_to_string(&cfg.path).unwrap();
    assert_eq!(old.lines().map(seq_of).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(new.lines().map(seq_of).collect::<Vec<_>>(), [2]);
    let mode = std::fs::metadata(&cfg.path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn uncreatable_dir_is_a_clear_error() {
    let cfg = FileConfig { path: "/proc/nightjar/x.log".into(), ..FileConfig::default() };
    let e = FileSink::new(&cfg).err().unwrap().to_string();
    assert!(e.contains("cannot create directory /proc/nightjar"), "{e}");
}

#[tokio::test]
async fn full_disk_is_retryable_or_dropped_and_never_tears_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = SmallTmpfs::mount(&dir.path().join("full"), "64k");
    for on_error in [OnError::Retry, OnError::Drop] {
        let path = mnt.path().join(format!("{on_error:?}.log"));
        let cfg = FileConfig { path: path.clone(), max_size: ByteSize(0), on_error, ..FileConfig::default() };
        let mut s = FileSink::new(&cfg).unwrap();
        let mut delivered = 0;
        let mut failure = None;
        for i in 0..10_000u64 {
            let batch: Vec<_> = (i * 10..i * 10 + 10).map(seq_event).collect();
            match s.send(&batch) {
                SendOutcome::Delivered => delivered += 10,
                other => {
                    failure = Some(other);
                    break;
                }
            }
        }
        let msg = match (on_error, failure) {
            (OnError::Retry, Some(SendOutcome::Retryable(m))) | (OnError::Drop, Some(SendOutcome::Fatal(m))) => m,
            other => panic!("{on_error:?}: unexpected {other:?}"),
        };
        assert!(msg.contains(&path.display().to_string()) && msg.contains("No space left"), "{msg}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'), "torn last line");
        assert_eq!(text.lines().map(seq_of).collect::<Vec<_>>(), (0..delivered).collect::<Vec<_>>());
        drop(s);
        std::fs::remove_file(&path).unwrap();
    }
    // Through the driver: a batch that cannot be written is retried, then counted failed.
    let path = mnt.path().join("driver.log");
    let filler = mnt.path().join("filler");
    std::fs::write(&filler, vec![b'x'; 80 << 10]).ok();
    let cfg = FileConfig {
        path: path.clone(),
        batch: driver::BatchConfig { max_events: 100, max_age_ms: 10, ..Default::default() },
        ..FileConfig::default()
    };
    let sink = crate::SinkConfig::build(&cfg).unwrap();
    let retry = RetryConfig { max_retries: 2, initial_backoff_ms: 10, max_backoff_ms: 20 };
    let (feed, drv, _) = drive(sink, cfg.batch.clone(), retry);
    for i in 0..300 {
        feed.send(seq_event(i)).await;
    }
    drop(feed);
    let report = drv.await.unwrap();
    assert_eq!((report.delivered, report.failed), (0, 300));
}

#[tokio::test]
async fn permission_errors_are_clear_and_retryable() {
    let dir = tempfile::tempdir().unwrap(); // 0700, owned by root
    let ok_path = dir.path().join("ok.log");
    let cfg = FileConfig { path: ok_path.clone(), ..FileConfig::default() };
    let mut s = FileSink::new(&cfg).unwrap();
    assert!(matches!(s.send(&[seq_event(0)]), SendOutcome::Delivered));
    {
        let _nobody = FsUid::set(65534);
        let denied = FileConfig { path: dir.path().join("sub/x.log"), ..FileConfig::default() };
        let e = FileSink::new(&denied).err().expect("must fail as nobody").to_string();
        assert!(e.contains("cannot create directory") && e.contains("Permission denied"), "{e}");
        // The open file stays writable; a reopen (SIGHUP) is refused and retried.
        s.writer().reopen_handle().store(true, Ordering::Release);
        match s.send(&[seq_event(1)]) {
            SendOutcome::Retryable(m) => {
                assert!(m.contains("cannot open") && m.contains("ok.log") && m.contains("Permission denied"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }
    // Back to root: the retry of the same batch goes through.
    assert!(matches!(s.send(&[seq_event(1)]), SendOutcome::Delivered));
    s.flush().unwrap();
    let text = std::fs::read_to_string(&ok_path).unwrap();
    assert_eq!(text.lines().map(seq_of).collect::<Vec<_>>(), [0, 1]);
}
