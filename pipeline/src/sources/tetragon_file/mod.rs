//! Source `tetragon_file`: tails an existing Tetragon JSON export (e.g.
//! `/var/log/tetragon/tetragon.log`) into the pipeline, so nightjar can be the exporter on
//! hosts that already run Tetragon. It loses nothing, the way Fluent Bit's tail does:
//!
//! - Rotation by rename: the old file stays open and is read by its inode until it is
//!   drained and `rotate_wait_ms` has passed (a writer may still append to it); files
//!   that were created and rotated away between two looks (two rotations in one poll) are
//!   found among the siblings by inode and read too.
//! - Truncation (copytruncate) is seen by size and by content: the file's first bytes and
//!   the bytes just before the read position are compared at every look, so a file
//!   truncated and refilled past the old position is read again from its start.
//! - inotify (the `notify` crate) wakes the tail at once; `poll_interval_ms` is the
//!   fallback where inotify is not available.
//! - Whole lines only ([`lines`]); a line longer than `max_line_bytes` is skipped whole
//!   and counted once; a line that is not an event is counted and logged with its file
//!   and byte offset.
//! - End-to-end acknowledgement: the checkpoint (device, inode, offset of each file being
//!   read) moves past a line only once every sink has it durably ([`checkpoint`]), so a
//!   crash after a sink outage re-reads what the sinks did not get, never skips it.
pub mod checkpoint;
pub mod lines;

use std::{
    collections::HashSet,
    fs::File,
    os::unix::fs::{FileExt, MetadataExt},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

pub use checkpoint::{Checkpoint, FileKey, Tracker};
use lines::{Item, LineReader};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::{event::Origin, metrics, Event};

/// `sources.tetragon_file` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TetragonFileConfig {
    pub enabled: bool,
    /// The export file Tetragon writes.
    pub path: PathBuf,
    /// Where the read position is kept across restarts.
    pub checkpoint: PathBuf,
    /// How often the file is checked for new lines and rotation, in milliseconds
    /// (inotify wakes the tail sooner where it works).
    #[serde(deserialize_with = "crate::config::bounded::<_, _, 10, 60000>")]
    pub poll_interval_ms: u64,
    /// How long a rotated file is still read after it was renamed away, milliseconds.
    #[serde(deserialize_with = "crate::config::bounded::<_, _, 0, 3600000>")]
    pub rotate_wait_ms: u64,
    /// Longest line accepted; longer ones are skipped whole and counted.
    #[serde(deserialize_with = "crate::config::bounded::<_, _, 1024, 67108864>")]
    pub max_line_bytes: usize,
    /// Let the enrichment stage add this host's facts (node name, user names, pods) to the
    /// tailed events. Off: they are exported as received.
    pub enrich: bool,
}

impl Default for TetragonFileConfig {
    fn default() -> Self {
        TetragonFileConfig {
            enabled: false,
            path: "/var/log/tetragon/tetragon.log".into(),
            checkpoint: "/var/lib/nightjar/tetragon_file.checkpoint".into(),
            poll_interval_ms: 250,
            rotate_wait_ms: 5000,
            max_line_bytes: 1 << 20,
            enrich: false,
        }
    }
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
    pub long_lines: u64,
    pub rotations: u64,
    pub truncations: u64,
}

/// Bytes of a file's start kept to recognise it after a copytruncate.
const HEAD: usize = 1024;
/// Bytes before the read position compared at every look.
const TAIL: u64 = 64;

/// A file being read.
struct Tail {
    file: File,
    key: FileKey,
    name: PathBuf,
    reader: LineReader,
    /// The first bytes of the file as first read.
    head: Vec<u8>,
    /// When it was renamed away (None: it is the live file).
    rotated_at: Option<Instant>,
}

impl Tail {
    fn open(path: &Path, offset: u64, max_line: usize) -> Option<Tail> {
        let file = File::open(path).ok()?;
        let md = file.metadata().ok()?;
        let offset = if md.len() < offset { 0 } else { offset };
        let mut head = vec![0u8; HEAD.min(md.len() as usize)];
        let n = file.read_at(&mut head, 0).unwrap_or(0);
        head.truncate(n);
        Some(Tail {
            file,
            key: FileKey { dev: md.dev(), ino: md.ino() },
            name: path.to_owned(),
            reader: LineReader::new(max_line, offset),
            head,
            rotated_at: None,
        })
    }

    /// Whether the file still is what was read: not shorter than the position, and the
    /// same bytes at its start and just before the position.
    fn truncated(&self) -> bool {
        let Ok(md) = self.file.metadata() else { return false };
        let pos = self.reader.next_offset();
        if md.len() < pos {
            return true;
        }
        let mut now = vec![0u8; self.head.len()];
        let n = self.file.read_at(&mut now, 0).unwrap_or(0);
        if n < self.head.len().min(pos as usize) || now[..n.min(pos as usize)] != self.head[..n.min(pos as usize)] {
            return true;
        }
        false
    }
}

/// Shared by the read loop and the events it sends.
struct Reading {
    cfg: TetragonFileConfig,
    tracker: Arc<Tracker>,
    tx: mpsc::Sender<Event>,
    report: TailReport,
    buf: Vec<u8>,
    /// Inodes of every file in the directory that was read or known to be old.
    known: HashSet<FileKey>,
    /// The last bytes before each file's position (copytruncate check).
    tails: std::collections::HashMap<FileKey, Vec<u8>>,
}

/// The file in `path`'s directory that has inode `key` (a rotated export), if any.
fn find_by_inode(path: &Path, key: FileKey) -> Option<PathBuf> {
    siblings(path).into_iter().find(|(_, k, _)| *k == key).map(|(p, _, _)| p)
}

/// Regular files in `path`'s directory whose name starts with the export's stem
/// (`tetragon` for `tetragon.log`: `tetragon.log.1`, `tetragon-2024-...log`), not
/// compressed, with their inode and mtime; the export itself included.
fn siblings(path: &Path) -> Vec<(PathBuf, FileKey, i64)> {
    let Some(dir) = path.parent() else { return Vec::new() };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("").to_owned();
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    rd.filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with(&stem) && !n.ends_with(".gz") && !n.ends_with(".tmp")
        })
        .filter_map(|e| {
            let md = e.metadata().ok()?;
            md.is_file().then(|| (e.path(), FileKey { dev: md.dev(), ino: md.ino() }, md.mtime()))
        })
        .collect()
}

impl Reading {
    /// Reads what `t` has, whole lines only, into the pipeline. False: the pipeline is gone.
    async fn drain(&mut self, t: &mut Tail) -> bool {
        loop {
            let pos = t.reader.next_offset();
            self.buf.resize(64 * 1024, 0);
            let n = match t.file.read_at(&mut self.buf, pos) {
                Ok(0) => return true,
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(file = %t.name.display(), error = %e, "tetragon_file: read failed");
                    return true;
                }
            };
            let mut events = Vec::new();
            let (name, max) = (t.name.clone(), self.cfg.max_line_bytes);
            let report = &mut self.report;
            t.reader.feed(&self.buf[..n], |item| match item {
                Item::Line { text, start, .. } => {
                    if text.iter().all(u8::is_ascii_whitespace) {
                        return;
                    }
                    match std::str::from_utf8(text).map_err(|_| "not UTF-8".to_owned()).and_then(|s| {
                        Event::from_json(s).map_err(|e| e.to_string())
                    }) {
                        Ok(ev) => events.push(ev),
                        Err(why) => {
                            report.bad_lines += 1;
                            metrics::count_stage_drop("source_tetragon_file", "bad_line", 1);
                            tracing::warn!(file = %name.display(), offset = start, error = %why, "tetragon_file: skipped a line that is not an event");
                        }
                    }
                }
                Item::TooLong { start, end } => {
                    report.long_lines += 1;
                    metrics::count_stage_drop("source_tetragon_file", "line_too_long", 1);
                    tracing::warn!(file = %name.display(), offset = start, bytes = end - start, max, "tetragon_file: skipped a line longer than max_line_bytes");
                }
            });
            if events.is_empty() {
                // A file of junk or one endless line: let the other tasks run.
                tokio::task::yield_now().await;
            }
            let end = t.reader.consumed();
            let ack = self.tracker.chunk(t.key, end);
            for mut ev in events {
                ev.ack.0 = Some(ack.clone());
                if !self.cfg.enrich {
                    ev.origin = Origin::Received;
                }
                self.report.events += 1;
                if self.tx.send(ev).await.is_err() {
                    return false;
                }
            }
            drop(ack);
            if end >= TAIL {
                let mut last = vec![0u8; TAIL as usize];
                if t.file.read_at(&mut last, end - TAIL).is_ok() {
                    self.tails.insert(t.key, last);
                }
            }
            if n < self.buf.len() {
                return true;
            }
        }
    }

    /// Whether the bytes before `t`'s position changed (a copytruncate refilled past it).
    fn tail_changed(&self, t: &Tail) -> bool {
        let Some(want) = self.tails.get(&t.key) else { return false };
        let end = t.reader.consumed();
        if end < TAIL {
            return false;
        }
        let mut now = vec![0u8; TAIL as usize];
        !(t.file.read_at(&mut now, end - TAIL).is_ok_and(|n| n == TAIL as usize) && now == *want)
    }
}

/// Files named by the checkpoint (wherever rotation put them), then the live file.
fn resume(cfg: &TetragonFileConfig, tracker: &Tracker, known: &mut HashSet<FileKey>) -> Vec<Tail> {
    let mut tails = Vec::new();
    let saved = checkpoint::load(&cfg.checkpoint);
    let live = std::fs::metadata(&cfg.path).ok().map(|m| FileKey { dev: m.dev(), ino: m.ino() });
    let sibs = siblings(&cfg.path);
    for (_, k, _) in &sibs {
        known.insert(*k);
    }
    if let Some(s) = &saved {
        for c in &s.files {
            let key = FileKey { dev: c.dev, ino: c.ino };
            let at = if live == Some(key) { Some(cfg.path.clone()) } else { find_by_inode(&cfg.path, key) };
            match at.and_then(|p| Tail::open(&p, c.offset, cfg.max_line_bytes)) {
                Some(mut t) => {
                    tracing::info!(file = %t.name.display(), offset = c.offset, "tetragon_file: resuming from checkpoint");
                    if live != Some(key) {
                        t.rotated_at = Some(Instant::now());
                    }
                    tracker.start_file(key, t.reader.consumed());
                    tails.push(t);
                }
                None => tracing::warn!(
                    dev = c.dev,
                    ino = c.ino,
                    offset = c.offset,
                    "tetragon_file: a checkpointed file is gone; lines it still had are lost"
                ),
            }
        }
        // Files rotated in while the agent was down, never read: not known at the last save.
        // (A checkpoint of an earlier version knows none: it reads none.)
        let mut unseen: Vec<_> = sibs
            .iter()
            .filter(|(_, k, _)| {
                !s.known.is_empty()
                    && Some(*k) != live
                    && !s.known.contains(k)
                    && !s.files.iter().any(|c| c.ino == k.ino && c.dev == k.dev)
            })
            .collect();
        unseen.sort_by_key(|(_, _, m)| *m);
        for (p, k, _) in unseen {
            if let Some(mut t) = Tail::open(p, 0, cfg.max_line_bytes) {
                tracing::info!(file = %p.display(), "tetragon_file: reading a file rotated while the agent was down");
                t.rotated_at = Some(Instant::now());
                tracker.start_file(*k, 0);
                tails.push(t);
            }
        }
        if live.is_some_and(|l| !tails.iter().any(|t| t.key == l)) {
            if let Some(t) = Tail::open(&cfg.path, 0, cfg.max_line_bytes) {
                tracker.start_file(t.key, 0);
                tails.push(t);
            }
        }
    } else if let Some(t) = Tail::open(&cfg.path, 0, cfg.max_line_bytes) {
        tracker.start_file(t.key, 0);
        tails.push(t);
    }
    tails
}

/// Wakes the tail on any change in the export's directory (None: poll only).
fn watch_dir(path: &Path, wake: Arc<tokio::sync::Notify>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut w = notify::recommended_watcher(move |_res: notify::Result<notify::Event>| wake.notify_one())
        .map_err(|e| tracing::info!(error = %e, "tetragon_file: no inotify; polling"))
        .ok()?;
    match w.watch(dir, notify::RecursiveMode::NonRecursive) {
        Ok(()) => Some(w),
        Err(e) => {
            tracing::info!(dir = %dir.display(), error = %e, "tetragon_file: cannot watch the directory; polling");
            None
        }
    }
}

/// Runs until `shutdown` fires or the pipeline goes away. The checkpoint is saved by
/// `tracker` (call [`Tracker::save`] once more after the sinks are done).
pub async fn run(
    cfg: TetragonFileConfig,
    tracker: Arc<Tracker>,
    tx: mpsc::Sender<Event>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<TailReport, TailError> {
    let mut known = HashSet::new();
    let mut tails = resume(&cfg, &tracker, &mut known);
    for t in &tails {
        known.insert(t.key);
    }
    let mut r = Reading {
        cfg: cfg.clone(),
        tracker: tracker.clone(),
        tx,
        report: TailReport::default(),
        buf: Vec::new(),
        known,
        tails: Default::default(),
    };
    let wake = Arc::new(tokio::sync::Notify::new());
    let _watcher = watch_dir(&cfg.path, wake.clone());
    let mut tick = tokio::time::interval(Duration::from_millis(cfg.poll_interval_ms.max(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let rotate_wait = Duration::from_millis(cfg.rotate_wait_ms);
    loop {
        for t in tails.iter_mut() {
            if t.rotated_at.is_none() && (t.truncated() || r.tail_changed(t)) {
                r.report.truncations += 1;
                tracing::info!(path = %t.name.display(), "tetragon_file: truncated (copytruncate), reading from the start");
                t.reader.reset(0);
                tracker.truncated(t.key);
                let mut head = vec![0u8; HEAD];
                let n = t.file.read_at(&mut head, 0).unwrap_or(0);
                head.truncate(n);
                t.head = head;
                r.tails.remove(&t.key);
            }
            if !r.drain(t).await {
                return Ok(r.report);
            }
            if t.head.len() < HEAD {
                let mut head = vec![0u8; HEAD];
                let n = t.file.read_at(&mut head, 0).unwrap_or(0);
                head.truncate(n);
                if head.starts_with(&t.head) {
                    t.head = head;
                }
            }
        }
        follow_rotation(&cfg, &mut tails, &mut r);
        // Rotated files that are drained and past their wait are done.
        tails.retain(|t| {
            let done = t.rotated_at.is_some_and(|at| at.elapsed() >= rotate_wait);
            if done {
                tracker.close_file(t.key);
            }
            !done
        });
        tracker.set_known(r.known.iter().copied().collect());
        tracker.save()?;
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tick.tick() => {}
            _ = wake.notified() => {}
        }
    }
    // What is left of the live file and rotated ones is read on the next start.
    Ok(r.report)
}

/// Sees a rename: the live file becomes a rotated one (still read), files created and
/// rotated since the last look are picked up, the new live file is opened.
fn follow_rotation(cfg: &TetragonFileConfig, tails: &mut Vec<Tail>, r: &mut Reading) {
    let live = std::fs::metadata(&cfg.path).ok().map(|m| FileKey { dev: m.dev(), ino: m.ino() });
    let current = tails.iter().find(|t| t.rotated_at.is_none()).map(|t| t.key);
    if live == current {
        // No rotation: files that appear meanwhile (a copytruncate's copy) hold lines
        // already read; they are known, so a restart does not read them.
        // (Not the live name: it may have just become a new file, to be read.)
        for (p, k, _) in siblings(&cfg.path) {
            if p != cfg.path {
                r.known.insert(k);
            }
        }
        return;
    }
    if let Some(t) = tails.iter_mut().find(|t| t.rotated_at.is_none()) {
        r.report.rotations += 1;
        tracing::info!(path = %cfg.path.display(), "tetragon_file: rotated; draining the old file, following the new one");
        t.rotated_at = Some(Instant::now());
    }
    let Some(live) = live else { return };
    // Files that appeared and were rotated away between two looks.
    let mut missed: Vec<_> =
        siblings(&cfg.path).into_iter().filter(|(_, k, _)| *k != live && !r.known.contains(k)).collect();
    missed.sort_by_key(|(_, _, m)| *m);
    for (p, k, _) in missed {
        if let Some(mut t) = Tail::open(&p, 0, cfg.max_line_bytes) {
            r.report.rotations += 1;
            tracing::info!(file = %p.display(), "tetragon_file: a file was created and rotated between two looks; reading it");
            t.rotated_at = Some(Instant::now());
            r.tracker.start_file(k, 0);
            r.known.insert(k);
            tails.push(t);
        }
    }
    if let Some(t) = Tail::open(&cfg.path, 0, cfg.max_line_bytes) {
        r.known.insert(t.key);
        r.tracker.start_file(t.key, 0);
        tails.push(t);
    }
}

#[cfg(test)]
mod tests;
