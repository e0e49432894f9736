//! Backup files of the rotated file sink: names, shifting, gzip, and start-up recovery.
//!
//! Layout for `path = nightjar.log`: the live file, then `nightjar.log.1[.gz]` (newest)
//! … `nightjar.log.N[.gz]` (oldest). A backup is first a hard link `nightjar.log.1` to the
//! old file (so `nightjar.log` never stops existing for a `tail -F` reader), then, with
//! `compress`, `nightjar.log.1.gz.tmp` is written, synced and renamed to
//! `nightjar.log.1.gz`, and only then is the plain `nightjar.log.1` removed.
use std::{
    fs::{File, OpenOptions},
    io::{self, BufReader, BufWriter, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use flate2::{write::GzEncoder, Compression};

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// `nightjar.log.N` (uncompressed backup).
pub fn plain(path: &Path, n: u32) -> PathBuf {
    with_suffix(path, &format!(".{n}"))
}

/// `nightjar.log.N.gz`.
pub fn gz(path: &Path, n: u32) -> PathBuf {
    with_suffix(path, &format!(".{n}.gz"))
}

/// `nightjar.log.N.gz.tmp`: a compression in progress (removed at start-up if left over).
pub fn gz_tmp(path: &Path, n: u32) -> PathBuf {
    with_suffix(path, &format!(".{n}.gz.tmp"))
}

/// The name under which a fresh file is created before it replaces the live one.
pub fn fresh(path: &Path) -> PathBuf {
    with_suffix(path, ".new")
}

pub fn remove_if_exists(p: &Path) -> io::Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Drops the oldest backup and shifts `.i` → `.i+1` (both plain and gz forms), leaving
/// slot 1 free. `keep` ≥ 1.
pub fn shift(path: &Path, keep: u32) -> io::Result<()> {
    remove_if_exists(&plain(path, keep))?;
    remove_if_exists(&gz(path, keep))?;
    for n in (1..keep).rev() {
        rename_if_exists(&plain(path, n), &plain(path, n + 1))?;
        rename_if_exists(&gz(path, n), &gz(path, n + 1))?;
    }
    Ok(())
}

/// Makes `backup` a second name of `path` (hard link); falls back to a rename on file
/// systems without hard links (then `path` is briefly missing).
pub fn link_or_rename(path: &Path, backup: &Path) -> io::Result<()> {
    match std::fs::hard_link(path, backup) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EXDEV) | Some(libc::EOPNOTSUPP)) => {
            std::fs::rename(path, backup)
        }
        Err(e) => Err(e),
    }
}

/// Gzips `src` into `dst` through `dst.tmp`; removes `src` only when `dst` is complete.
pub fn compress(src: &Path, tmp: &Path, dst: &Path, mode: u32) -> io::Result<()> {
    let input = File::open(src)?;
    let out = OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(tmp)?;
    let res = (|| {
        let mut enc = GzEncoder::new(BufWriter::with_capacity(1 << 16, &out), Compression::fast());
        io::copy(&mut BufReader::with_capacity(1 << 16, input), &mut enc)?;
        enc.finish()?.flush()?;
        out.sync_all()?;
        std::fs::rename(tmp, dst)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    res?;
    std::fs::remove_file(src)
}

/// Start-up: removes half-written `.gz.tmp` files and the stale `.new` file a crash may
/// have left. Returns what it removed, for the log.
pub fn cleanup(path: &Path, keep: u32) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for p in (1..=keep.max(1)).map(|n| gz_tmp(path, n)).chain([fresh(path)]) {
        if p.exists() && std::fs::remove_file(&p).is_ok() {
            removed.push(p);
        }
    }
    removed
}
