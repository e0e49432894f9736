//! The read position of the tail, advanced only as far as every sink has the lines
//! (end-to-end acknowledgement, [`crate::ack`]): each chunk of lines read gets a token;
//! a file's position moves past a chunk once that chunk and every earlier one are done.
use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use serde::{Deserialize, Serialize};

use super::TailError;
use crate::ack::{Ack, AckSink};

/// A file, by device and inode (names change with rotation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
}

/// One file's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Checkpoint {
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
}

/// What the checkpoint file holds: every file still being read (the live one, and
/// rotated ones not yet drained), and when it was written (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Saved {
    pub files: Vec<Checkpoint>,
    /// Every file of the export's directory the tail knew (read, or old when it started):
    /// a file not among them at the next start was rotated in while the agent was down.
    #[serde(default)]
    pub known: Vec<FileKey>,
}

/// Reads the checkpoint file (also the single-file form of earlier versions).
pub fn load(p: &Path) -> Option<Saved> {
    let text = std::fs::read_to_string(p).ok()?;
    if let Ok(s) = serde_json::from_str::<Saved>(&text) {
        return Some(s);
    }
    serde_json::from_str::<Checkpoint>(&text).ok().map(|c| Saved { files: vec![c], known: Vec::new() })
}

fn save_to(p: &Path, s: &Saved) -> Result<(), TailError> {
    let err = |source| TailError::Checkpoint { path: p.to_owned(), source };
    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(s).unwrap_or_default()).map_err(err)?;
    std::fs::rename(&tmp, p).map_err(err)
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    /// Chunks not yet acknowledged by everything downstream, in read order:
    /// seq → (file, offset after the chunk, done).
    pending: BTreeMap<u64, (FileKey, u64, bool)>,
    /// Per file: the offset every sink has everything before.
    acked: HashMap<FileKey, u64>,
    /// Files no longer read (rotated and drained): dropped from the checkpoint once acked.
    closed: Vec<FileKey>,
    /// After a shutdown deadline: acknowledgements that come later (events dropped
    /// undelivered) must not move the checkpoint.
    frozen: bool,
    known: Vec<FileKey>,
    last_saved: Option<Saved>,
}

/// Tracks acknowledgements and writes the checkpoint file.
#[derive(Debug)]
pub struct Tracker {
    path: PathBuf,
    inner: Mutex<Inner>,
}

impl AckSink for Tracker {
    fn done(&self, id: u64) {
        let mut g = self.lock();
        if g.frozen {
            return;
        }
        if let Some(e) = g.pending.get_mut(&id) {
            e.2 = true;
        }
        while let Some(entry) = g.pending.first_entry() {
            if !entry.get().2 {
                break;
            }
            let (file, offset, _) = entry.remove();
            g.acked.insert(file, offset);
        }
    }
}

impl Tracker {
    pub fn new(path: PathBuf) -> Arc<Self> {
        Arc::new(Tracker { path, inner: Mutex::new(Inner::default()) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A file is read from `offset`: everything before is already delivered.
    pub fn start_file(&self, file: FileKey, offset: u64) {
        let mut g = self.lock();
        g.acked.entry(file).or_insert(offset);
        g.closed.retain(|f| *f != file);
    }

    /// A file was truncated: its position starts again at 0 once what came before is done.
    pub fn truncated(&self, file: FileKey) {
        let mut g = self.lock();
        for p in g.pending.values_mut().filter(|p| p.0 == file) {
            p.1 = 0;
        }
        g.acked.insert(file, 0);
    }

    /// The token for a chunk of `file` ending at `end`.
    pub fn chunk(self: &Arc<Self>, file: FileKey, end: u64) -> Ack {
        let mut g = self.lock();
        let id = g.next;
        g.next += 1;
        g.pending.insert(id, (file, end, false));
        drop(g);
        Ack::new(self.clone(), id)
    }

    /// The file is drained and closed; it leaves the checkpoint once acknowledged.
    pub fn close_file(&self, file: FileKey) {
        self.lock().closed.push(file);
    }

    /// Stops taking acknowledgements (after the shutdown deadline).
    pub fn freeze(&self) {
        self.lock().frozen = true;
    }

    fn snapshot(g: &mut Inner) -> Saved {
        let busy: Vec<FileKey> = g.pending.values().map(|p| p.0).collect();
        let closed = std::mem::take(&mut g.closed);
        let (gone, keep): (Vec<FileKey>, Vec<FileKey>) = closed.into_iter().partition(|f| !busy.contains(f));
        for f in &gone {
            g.acked.remove(f);
        }
        g.closed = keep;
        let mut files: Vec<Checkpoint> =
            g.acked.iter().map(|(k, off)| Checkpoint { dev: k.dev, ino: k.ino, offset: *off }).collect();
        files.sort_by_key(|c| (c.dev, c.ino));
        Saved { files, known: g.known.clone() }
    }

    /// Writes the checkpoint file if it changed.
    pub fn save(&self) -> Result<(), TailError> {
        let mut g = self.lock();
        let snap = Self::snapshot(&mut g);
        if g.last_saved.as_ref() == Some(&snap) {
            return Ok(());
        }
        save_to(&self.path, &snap)?;
        g.last_saved = Some(snap);
        Ok(())
    }

    /// The files of the directory the tail knows (saved with the positions).
    pub fn set_known(&self, mut known: Vec<FileKey>) {
        known.sort_unstable();
        known.dedup();
        self.lock().known = known;
    }

    /// Acknowledged position of a file (tests, logs).
    pub fn position(&self, file: FileKey) -> Option<u64> {
        self.lock().acked.get(&file).copied()
    }
}
