//! The tail on real files: rotation, resume, acknowledgement.
use super::*;

fn start(
    cfg: TetragonFileConfig,
    tx: mpsc::Sender<Event>,
    stop: watch::Receiver<bool>,
) -> (tokio::task::JoinHandle<Result<TailReport, TailError>>, Arc<Tracker>) {
    let tracker = Tracker::new(cfg.checkpoint.clone());
    (tokio::spawn(run(cfg, tracker.clone(), tx, stop)), tracker)
}

fn line(i: usize) -> String {
    format!("{{\"process_exec\":{{\"process\":{{\"pid\":{i},\"binary\":\"/bin/x\"}}}},\"node_name\":\"t\",\"time\":\"2024-01-01T00:00:00Z\"}}\n")
}

#[tokio::test]
async fn reads_whole_lines_follows_rotation_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tetragon.log");
    let cfg = TetragonFileConfig {
        enabled: true,
        path: log.clone(),
        checkpoint: dir.path().join("cp"),
        poll_interval_ms: 10,
        rotate_wait_ms: 100,
        max_line_bytes: 4096,
        enrich: false,
    };
    std::fs::write(&log, format!("{}{}not json\n{}", line(0), line(1), &line(2)[..10])).unwrap();
    let (tx, mut rx) = mpsc::channel(100);
    let (stop, stop_rx) = watch::channel(false);
    let (task, tracker) = start(cfg.clone(), tx, stop_rx);
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(rx.recv().await.unwrap());
    }
    // finish the partial line, then rotate by rename
    use std::io::Write;
    std::fs::OpenOptions::new().append(true).open(&log).unwrap().write_all(&line(2).as_bytes()[10..]).unwrap();
    got.push(rx.recv().await.unwrap());
    std::fs::rename(&log, dir.path().join("tetragon.log.1")).unwrap();
    std::fs::write(&log, line(3)).unwrap();
    got.push(rx.recv().await.unwrap());
    stop.send(true).unwrap();
    let r = task.await.unwrap().unwrap();
    assert_eq!(r.events, 4);
    assert_eq!(r.bad_lines, 1);
    assert_eq!(r.rotations, 1);
    let pids: Vec<u32> = got.iter().map(|e| e.process().unwrap().pid.unwrap()).collect();
    assert_eq!(pids, [0, 1, 2, 3]);
    // Until the events are let go of (delivered), the checkpoint stays behind them.
    tracker.save().unwrap();
    let before = checkpoint::load(&cfg.checkpoint).unwrap();
    assert!(before.files.iter().all(|c| c.offset == 0), "{before:?}");
    drop(got);
    tracker.save().unwrap();
    // Restart: nothing is read twice; new lines are read.
    std::fs::OpenOptions::new().append(true).open(&log).unwrap().write_all(line(4).as_bytes()).unwrap();
    let (tx, mut rx) = mpsc::channel(100);
    let (stop, stop_rx) = watch::channel(false);
    let (task, _) = start(cfg, tx, stop_rx);
    let e = rx.recv().await.unwrap();
    assert_eq!(e.process().unwrap().pid, Some(4));
    stop.send(true).unwrap();
    assert_eq!(task.await.unwrap().unwrap().events, 1);
}

#[tokio::test]
async fn the_checkpoint_waits_for_every_holder_of_a_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tetragon.log");
    std::fs::write(&log, format!("{}{}", line(0), line(1))).unwrap();
    let key = {
        let m = std::fs::metadata(&log).unwrap();
        FileKey { dev: m.dev(), ino: m.ino() }
    };
    let tracker = Tracker::new(dir.path().join("cp"));
    tracker.start_file(key, 0);
    let a = tracker.chunk(key, 100);
    let b = tracker.chunk(key, 200);
    let b2 = b.clone(); // a second sink holds the second chunk
    drop(b);
    assert_eq!(tracker.position(key), Some(0), "the first chunk is not done");
    drop(a);
    assert_eq!(tracker.position(key), Some(100));
    drop(b2);
    assert_eq!(tracker.position(key), Some(200));
    tracker.freeze();
    let c = tracker.chunk(key, 300);
    drop(c);
    assert_eq!(tracker.position(key), Some(200), "frozen: late drops do not count");
}
