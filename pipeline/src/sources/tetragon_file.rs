//! Source `tetragon_file`: tails an existing Tetragon JSON export (e.g.
//! `/var/log/tetragon/tetragon.log`) into the pipeline, so nightjar can be the exporter on
//! hosts that already run Tetragon.
//!
//! - Follows rotation by rename (a new file appears under the name: the old one is read to
//!   its end first) and by copytruncate (the file shrinks: reading restarts at 0).
//! - Checkpoints (device, inode, offset) after the events are handed to the pipeline, so a
//!   graceful restart resumes with no loss and no duplicate. If the file was rotated while
//!   the agent was down, the rotated file (same directory, same inode) is finished first.
//! - Only whole lines are consumed; a line that is not an event is counted and logged with
//!   its file and byte offset, and skipped.
use std::{
    fs::File,
    io::{Read, Seek, SeekFrom},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::{metrics, Event};

/// `sources.tetragon_file` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TetragonFileConfig {
    pub enabled: bool,
    /// The export file Tetragon writes.
    pub path: PathBuf,
    /// Where the read position is kept across restarts.
    pub checkpoint: PathBuf,
    /// How often the file is checked for new lines and rotation, in milliseconds.
    #[serde(deserialize_with = "crate::config::bounded::<_, _, 10, 60000>")]
    pub poll_interval_ms: u64,
    /// Longest line accepted; longer ones are skipped and counted.
    #[serde(deserialize_with = "crate::config::bounded::<_, _, 1024, 67108864>")]
    pub max_line_bytes: usize,
}

impl Default for TetragonFileConfig {
    fn default() -> Self {
        TetragonFileConfig {
            enabled: false,
            path: "/var/log/tetragon/tetragon.log".into(),
            checkpoint: "/var/lib/nightjar/tetragon_file.checkpoint".into(),
            poll_interval_ms: 250,
            max_line_bytes: 1 << 20,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Checkpoint {
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("tetragon_file: checkpoint {path}: {source}")]
    Checkpoint { path: PathBuf, source: std::io::Error },
}

/// What the tail did, for tests and the shutdown log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TailReport {
    pub events: u64,
    pub bad_lines: u64,
    pub rotations: u64,
    pub truncations: u64,
}

struct Open {
    file: File,
    dev: u64,
    ino: u64,
    offset: u64,
    name: PathBuf,
}

fn load_checkpoint(p: &Path) -> Option<Checkpoint> {
    let text = std::fs::read_to_string(p).ok()?;
    serde_json::from_str(&text).ok()
}

fn save_checkpoint(p: &Path, c: &Checkpoint) -> Result<(), TailError> {
    let err = |source| TailError::Checkpoint { path: p.to_owned(), source };
    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(c).unwrap_or_default()).map_err(err)?;
    std::fs::rename(&tmp, p).map_err(err)
}

fn open_at(path: &Path, offset: u64) -> Option<Open> {
    let mut file = File::open(path).ok()?;
    let md = file.metadata().ok()?;
    let offset = if md.len() < offset { 0 } else { offset };
    file.seek(SeekFrom::Start(offset)).ok()?;
    Some(Open { file, dev: md.dev(), ino: md.ino(), offset, name: path.to_owned() })
}

/// The file in `path`'s directory that has inode `ino` (a rotated export), if any.
fn find_rotated(path: &Path, dev: u64, ino: u64) -> Option<PathBuf> {
    let dir = path.parent()?;
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| std::fs::metadata(p).map(|m| m.dev() == dev && m.ino() == ino).unwrap_or(false))
}

/// Runs until `shutdown` fires or the pipeline goes away.
pub async fn run(
    cfg: TetragonFileConfig,
    tx: mpsc::Sender<Event>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<TailReport, TailError> {
    let mut report = TailReport::default();
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut cur: Option<Open> = None;
    // Resume: the checkpointed file, wherever rotation put it.
    if let Some(c) = load_checkpoint(&cfg.checkpoint) {
        let same = std::fs::metadata(&cfg.path).map(|m| m.dev() == c.dev && m.ino() == c.ino).unwrap_or(false);
        let at = if same { Some(cfg.path.clone()) } else { find_rotated(&cfg.path, c.dev, c.ino) };
        match at {
            Some(p) => {
                cur = open_at(&p, c.offset);
                tracing::info!(file = %p.display(), offset = c.offset, "tetragon_file: resuming from checkpoint");
            }
            None => tracing::warn!(
                path = %cfg.path.display(),
                "tetragon_file: the checkpointed file is gone; reading the current file from its start"
            ),
        }
    }
    let mut last_saved: Option<Checkpoint> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(cfg.poll_interval_ms.max(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if cur.is_none() {
            cur = open_at(&cfg.path, 0);
            pending.clear();
        }
        if let Some(o) = cur.as_mut() {
            // Read what is there, whole lines only.
            loop {
                let n = match o.file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(file = %o.name.display(), error = %e, "tetragon_file: read failed");
                        break;
                    }
                };
                pending.extend_from_slice(&buf[..n]);
                let mut start = 0;
                while let Some(nl) = pending[start..].iter().position(|b| *b == b'\n') {
                    let line = &pending[start..start + nl];
                    let line_offset = o.offset;
                    o.offset += (nl + 1) as u64;
                    start += nl + 1;
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match std::str::from_utf8(line).ok().map(Event::from_json) {
                        Some(Ok(ev)) => {
                            report.events += 1;
                            if tx.send(ev).await.is_err() {
                                return Ok(report);
                            }
                        }
                        other => {
                            report.bad_lines += 1;
                            metrics::count_stage_drop("source_tetragon_file", "bad_line", 1);
                            let why = match other {
                                Some(Err(e)) => e.to_string(),
                                _ => "not UTF-8".into(),
                            };
                            tracing::warn!(file = %o.name.display(), offset = line_offset, error = %why, "tetragon_file: skipped a line that is not an event");
                        }
                    }
                }
                pending.drain(..start);
                if pending.len() > cfg.max_line_bytes {
                    report.bad_lines += 1;
                    metrics::count_stage_drop("source_tetragon_file", "line_too_long", 1);
                    tracing::warn!(file = %o.name.display(), offset = o.offset, "tetragon_file: skipped a line longer than max_line_bytes");
                    o.offset += pending.len() as u64;
                    pending.clear();
                }
            }
            // Rotation and truncation.
            match std::fs::metadata(&cfg.path) {
                Ok(md) if md.dev() != o.dev || md.ino() != o.ino => {
                    // Renamed away and a new file created: the old one is read to its end
                    // above (a writer that still appends to it is read on the next pass
                    // only if we keep it; Tetragon reopens at once, so we switch now).
                    report.rotations += 1;
                    tracing::info!(path = %cfg.path.display(), "tetragon_file: rotated, following the new file");
                    cur = open_at(&cfg.path, 0);
                    pending.clear();
                }
                Ok(md) if md.len() < o.offset => {
                    report.truncations += 1;
                    tracing::info!(path = %cfg.path.display(), "tetragon_file: truncated (copytruncate), reading from the start");
                    o.offset = 0;
                    pending.clear();
                    let _ = o.file.seek(SeekFrom::Start(0));
                }
                _ => {}
            }
        }
        if let Some(o) = &cur {
            // The checkpoint names the current file and the end of the last whole line.
            let c = Checkpoint { dev: o.dev, ino: o.ino, offset: o.offset };
            if last_saved != Some(c) {
                save_checkpoint(&cfg.checkpoint, &c)?;
                last_saved = Some(c);
            }
        }
        tokio::select! {
            _ = shutdown.changed() => return Ok(report),
            _ = tick.tick() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            max_line_bytes: 4096,
        };
        std::fs::write(&log, format!("{}{}not json\n{}", line(0), line(1), &line(2)[..10])).unwrap();
        let (tx, mut rx) = mpsc::channel(100);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(cfg.clone(), tx, stop_rx));
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
        // Restart: nothing is read twice; new lines are read.
        std::fs::OpenOptions::new().append(true).open(&log).unwrap().write_all(line(4).as_bytes()).unwrap();
        let (tx, mut rx) = mpsc::channel(100);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(cfg, tx, stop_rx));
        let e = rx.recv().await.unwrap();
        assert_eq!(e.process().unwrap().pid, Some(4));
        stop.send(true).unwrap();
        assert_eq!(task.await.unwrap().unwrap().events, 1);
    }
}
