//! Rotated JSON-lines file sink — what SOCs tail, like `/var/log/tetragon/tetragon.log`.
//! Whole lines only: a batch is encoded first, rotation happens between batches.
pub mod config;

use std::{
    fs::{File, OpenOptions},
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use async_trait::async_trait;
pub use config::FileConfig;
use pipeline::Event;

use crate::{Health, SendOutcome, Sink};

pub struct FileSink {
    cfg: FileConfig,
    file: Option<File>,
    size: u64,
    buf: Vec<u8>,
    last_error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FileSinkError {
    #[error("file sink: cannot create directory {dir}: {source}")]
    Dir { dir: PathBuf, source: std::io::Error },
    #[error("file sink: cannot open {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
}

impl FileSink {
    /// Opens (creating with the configured mode) the file; fails with a clear error.
    pub fn new(cfg: &FileConfig) -> Result<Self, FileSinkError> {
        let mut s = FileSink { cfg: cfg.clone(), file: None, size: 0, buf: Vec::new(), last_error: None };
        s.open()?;
        Ok(s)
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
        self.file = Some(f);
        Ok(())
    }

    fn backup_name(path: &Path, n: u32) -> PathBuf {
        let mut s = path.as_os_str().to_owned();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    /// `log` → `log.1` → `log.2` … keeping `max_backups`.
    fn rotate(&mut self) -> std::io::Result<()> {
        if let Some(f) = self.file.take() {
            f.sync_all()?;
        }
        let path = self.cfg.path.clone();
        if self.cfg.max_backups == 0 {
            std::fs::remove_file(&path).or_else(ignore_missing)?;
        } else {
            std::fs::remove_file(Self::backup_name(&path, self.cfg.max_backups)).or_else(ignore_missing)?;
            for n in (1..self.cfg.max_backups).rev() {
                std::fs::rename(Self::backup_name(&path, n), Self::backup_name(&path, n + 1))
                    .or_else(ignore_missing)?;
            }
            std::fs::rename(&path, Self::backup_name(&path, 1))?;
        }
        self.open().map_err(std::io::Error::other)
    }

    fn write_batch(&mut self) -> std::io::Result<()> {
        if self.file.is_none() {
            self.open().map_err(std::io::Error::other)?;
        }
        if self.cfg.max_size.0 > 0 && self.size > 0 && self.size + self.buf.len() as u64 > self.cfg.max_size.0 {
            self.rotate()?;
        }
        let Some(f) = self.file.as_mut() else { return Err(std::io::Error::other("file not open")) };
        f.write_all(&self.buf)?;
        self.size += self.buf.len() as u64;
        Ok(())
    }
}

fn ignore_missing(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

#[async_trait]
impl Sink for FileSink {
    fn name(&self) -> &'static str {
        "file"
    }

    async fn send(&mut self, batch: &[Arc<Event>]) -> SendOutcome {
        self.buf.clear();
        for e in batch {
            self.buf.extend_from_slice(e.to_json().as_bytes());
            self.buf.push(b'\n');
        }
        match self.write_batch() {
            Ok(()) => {
                self.last_error = None;
                SendOutcome::Delivered
            }
            Err(e) => {
                // A partial write leaves a torn line: reopen so the next batch starts clean.
                self.file = None;
                let msg = format!("{}: {e}", self.cfg.path.display());
                self.last_error = Some(msg.clone());
                SendOutcome::Retryable(msg)
            }
        }
    }

    async fn flush(&mut self) -> Result<(), String> {
        match &self.file {
            Some(f) => f.sync_data().map_err(|e| format!("{}: {e}", self.cfg.path.display())),
            None => Ok(()),
        }
    }

    fn health(&self) -> Health {
        match &self.last_error {
            None => Health::Healthy,
            Some(e) => Health::Degraded(e.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn ev(i: u32) -> Arc<Event> {
        Arc::new(
            Event::from_json(&format!(
                r#"{{"process_exec":{{"process":{{"pid":{i},"binary":"/bin/x"}}}},"time":"2024-01-01T00:00:00Z"}}"#
            ))
            .unwrap(),
        )
    }

    #[tokio::test]
    async fn writes_lines_rotates_and_keeps_backups() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = FileConfig {
            path: dir.path().join("sub/nightjar.log"),
            max_size: pipeline::config::ByteSize(2000),
            max_backups: 2,
            ..FileConfig::default()
        };
        let mut s = FileSink::new(&cfg).unwrap();
        for i in 0..100 {
            assert!(matches!(s.send(&[ev(i)]).await, SendOutcome::Delivered));
        }
        s.flush().await.unwrap();
        let mode = std::fs::metadata(&cfg.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let mut lines = 0;
        for p in [cfg.path.clone(), FileSink::backup_name(&cfg.path, 1), FileSink::backup_name(&cfg.path, 2)] {
            let text = std::fs::read_to_string(&p).unwrap();
            for l in text.lines() {
                Event::from_json(l).unwrap();
                lines += 1;
            }
        }
        assert!(!FileSink::backup_name(&cfg.path, 3).exists());
        assert!(lines > 0 && lines < 100, "older backups must be pruned: {lines}");
    }

    #[test]
    fn uncreatable_dir_is_a_clear_error() {
        let cfg = FileConfig { path: "/proc/nightjar/x.log".into(), ..FileConfig::default() };
        let e = FileSink::new(&cfg).err().unwrap().to_string();
        assert!(e.contains("cannot create directory /proc/nightjar"), "{e}");
    }
}
