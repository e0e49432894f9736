//! The I/O of the file sink: the rotated file (see the module doc of [`super`]).
use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use super::{
    config::{FileConfig, FsyncPolicy},
    rotate,
};

/// The rotated file itself: open, write whole batches, rotate, sync, reopen.
pub struct FileWriter {
    cfg: FileConfig,
    file: Option<File>,
    size: u64,
    pub(crate) opened_at: Instant,
    /// Written but not yet fdatasync'ed.
    dirty: bool,
    last_sync: Instant,
    /// Set by the SIGHUP listener (or [`FileWriter::reopen_handle`]).
    reopen: Arc<AtomicBool>,
    /// The background gzip of the newest backup.
    compressing: Option<std::thread::JoinHandle<io::Result<()>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum FileSinkError {
    #[error("file sink: cannot create directory {dir}: {source}")]
    Dir { dir: PathBuf, source: io::Error },
    #[error("file sink: cannot open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("file sink: cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("file sink: cannot rotate {path}: {step}: {source}")]
    Rotate { path: PathBuf, step: &'static str, source: io::Error },
    #[error("file sink: cannot sync {path}: {source}")]
    Sync { path: PathBuf, source: io::Error },
}

impl FileWriter {
    /// Opens (creating with the configured mode) the file; fails with a clear error.
    /// Inside a tokio runtime and with `reopen_on_sighup`, also listens for SIGHUP.
    pub fn new(cfg: &FileConfig) -> Result<Self, FileSinkError> {
        let now = Instant::now();
        let mut s = FileWriter {
            cfg: cfg.clone(),
            file: None,
            size: 0,
            opened_at: now,
            dirty: false,
            last_sync: now,
            reopen: Arc::new(AtomicBool::new(false)),
            compressing: None,
        };
        s.open()?;
        for p in rotate::cleanup(&cfg.path, cfg.max_backups) {
            tracing::warn!(file = %p.display(), "file sink: removed a partial file left by an earlier run");
        }
        // A crash between the hard link and the end of the gzip leaves a plain `.1`.
        let (p1, g1) = (rotate::plain(&cfg.path, 1), rotate::gz(&cfg.path, 1));
        if cfg.compress && cfg.max_backups > 0 && p1.exists() && !g1.exists() {
            s.start_compress();
        }
        if cfg.reopen_on_sighup {
            s.listen_sighup();
        }
        Ok(s)
    }

    /// A flag that makes the sink reopen its file before the next write (what SIGHUP sets).
    pub fn reopen_handle(&self) -> Arc<AtomicBool> {
        self.reopen.clone()
    }

    fn listen_sighup(&self) {
        use tokio::signal::unix::{signal, SignalKind};
        if tokio::runtime::Handle::try_current().is_err() {
            tracing::debug!("file sink: no runtime, SIGHUP not handled");
            return;
        }
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "file sink: cannot listen for SIGHUP; reopen is not available");
                return;
            }
        };
        let flag = Arc::downgrade(&self.reopen);
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match flag.upgrade() {
                    Some(f) => f.store(true, Ordering::Release),
                    None => break,
                }
            }
        });
    }

    fn open(&mut self) -> Result<(), FileSinkError> {
        let path = &self.cfg.path;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| FileSinkError::Dir { dir: dir.to_owned(), source })?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(self.cfg.mode)
            .open(path)
            .map_err(|source| FileSinkError::Open { path: path.clone(), source })?;
        self.size = f.metadata().map(|m| m.len()).unwrap_or(0);
        self.opened_at = Instant::now();
        self.file = Some(f);
        Ok(())
    }

    pub fn sync(&mut self) -> Result<(), FileSinkError> {
        if let Some(f) = &self.file {
            if self.dirty {
                f.sync_data().map_err(|source| FileSinkError::Sync { path: self.cfg.path.clone(), source })?;
            }
        }
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    /// Closes the file (synced) and reopens `path`, which an external rotation may have moved.
    pub fn reopen_now(&mut self) -> Result<(), FileSinkError> {
        let synced = self.sync();
        self.file = None;
        tracing::info!(path = %self.cfg.path.display(), "file sink: reopening (SIGHUP)");
        synced.and(self.open())
    }

    pub fn wait_compression(&mut self) {
        if let Some(h) = self.compressing.take() {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(
                    path = %rotate::plain(&self.cfg.path, 1).display(), error = %e,
                    "file sink: cannot gzip the backup; it stays uncompressed"
                ),
                Err(_) => tracing::error!("file sink: the gzip thread panicked; the backup stays uncompressed"),
            }
        }
    }

    fn start_compress(&mut self) {
        let path = self.cfg.path.clone();
        let mode = self.cfg.mode;
        let spawned = std::thread::Builder::new().name("nightjar-gzip".into()).spawn(move || {
            rotate::compress(&rotate::plain(&path, 1), &rotate::gz_tmp(&path, 1), &rotate::gz(&path, 1), mode)
        });
        match spawned {
            Ok(h) => self.compressing = Some(h),
            Err(e) => {
                tracing::error!(error = %e, "file sink: cannot start the gzip thread; the backup stays uncompressed")
            }
        }
    }

    fn rotation_due(&self, incoming: u64) -> bool {
        if self.size == 0 {
            return false;
        }
        let by_size = self.cfg.max_size.0 > 0 && self.size + incoming > self.cfg.max_size.0;
        let by_age = self.cfg.rotate_interval_secs > 0
            && self.opened_at.elapsed() >= Duration::from_secs(self.cfg.rotate_interval_secs);
        by_size || by_age
    }

    /// `log` → `log.1` → `log.2` … keeping `max_backups`; see the module doc for the order.
    fn rotate(&mut self) -> Result<(), FileSinkError> {
        let path = self.cfg.path.clone();
        let err = |step: &'static str| {
            let path = path.clone();
            move |source| FileSinkError::Rotate { path, step, source }
        };
        self.wait_compression();
        self.sync()?;
        let keep = self.cfg.max_backups;
        if keep > 0 {
            rotate::shift(&path, keep).map_err(err("shift backups"))?;
            rotate::link_or_rename(&path, &rotate::plain(&path, 1)).map_err(err("link the backup"))?;
        }
        let fresh = rotate::fresh(&path);
        let created = rotate::remove_if_exists(&fresh)
            .and_then(|_| OpenOptions::new().create_new(true).append(true).mode(self.cfg.mode).open(&fresh))
            .and_then(|f| std::fs::rename(&fresh, &path).map(|_| f));
        let f = match created {
            Ok(f) => f,
            Err(e) => {
                // Undo the link so the next attempt does not keep the same lines twice.
                if keep > 0 && path.exists() {
                    let _ = std::fs::remove_file(rotate::plain(&path, 1));
                }
                self.file = None;
                return Err(err("create the new file")(e));
            }
        };
        self.file = Some(f);
        self.size = 0;
        self.opened_at = Instant::now();
        if keep > 0 && self.cfg.compress {
            self.start_compress();
        }
        Ok(())
    }

    /// Writes one encoded batch (whole lines) with a single `write_all`.
    pub fn write_batch(&mut self, buf: &[u8]) -> Result<(), FileSinkError> {
        if self.reopen.swap(false, Ordering::AcqRel) {
            self.reopen_now()?;
        }
        if self.file.is_none() {
            self.open()?;
        }
        if self.rotation_due(buf.len() as u64) {
            self.rotate()?;
        }
        let path = &self.cfg.path;
        let Some(f) = self.file.as_mut() else {
            return Err(FileSinkError::Write { path: path.clone(), source: io::Error::other("file not open") });
        };
        // Where this batch begins, so a partial write can be cut off (no torn line).
        let start = f.metadata().map(|m| m.len()).unwrap_or(self.size);
        if let Err(source) = f.write_all(buf) {
            if let Err(e) = f.set_len(start) {
                tracing::error!(path = %path.display(), error = %e, "file sink: cannot cut a partial write");
            }
            self.file = None;
            return Err(FileSinkError::Write { path: path.clone(), source });
        }
        self.size = start + buf.len() as u64;
        self.dirty = true;
        match self.cfg.fsync {
            FsyncPolicy::Never => Ok(()),
            FsyncPolicy::Batch => self.sync(),
            FsyncPolicy::Interval => {
                if self.last_sync.elapsed() >= Duration::from_millis(self.cfg.fsync_interval_ms) {
                    self.sync()
                } else {
                    Ok(())
                }
            }
        }
    }

    /// The path this sink writes.
    pub fn path(&self) -> &Path {
        &self.cfg.path
    }

    /// Housekeeping: reopen after SIGHUP, `fsync: interval` when idle, reap the gzip.
    pub fn tick(&mut self) -> Result<(), FileSinkError> {
        if self.reopen.swap(false, Ordering::AcqRel) {
            self.reopen_now()?;
        }
        if self.cfg.fsync == FsyncPolicy::Interval
            && self.dirty
            && self.last_sync.elapsed() >= Duration::from_millis(self.cfg.fsync_interval_ms)
        {
            self.sync()?;
        }
        // Reap a finished gzip so its error is logged now rather than at the next rotation.
        if self.compressing.as_ref().is_some_and(|h| h.is_finished()) {
            self.wait_compression();
        }
        Ok(())
    }

    pub fn tick_interval(&self) -> Duration {
        match self.cfg.fsync {
            FsyncPolicy::Interval => Duration::from_millis(self.cfg.fsync_interval_ms.clamp(10, 1000)),
            _ => Duration::from_secs(1),
        }
    }
}
