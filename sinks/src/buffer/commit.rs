//! The commit point of a data dir's disk buffers: for each sink, the first record id its
//! log does not hold as accepted. The group writer appends an event to every sink's log,
//! then records the new ids here in one write; only then is the event accepted (readable
//! by the sinks, its source token let go). A SIGKILL between the two leaves records past
//! the commit point, which opening cuts: every log then holds the same events, the ones
//! accepted before the kill.
//!
//! `<data_dir>/commit`: two 4 KiB slots written in turn, each `"NJC1" | seq u64 | count u32
//! | (name_len u8 | name | next_id u64)* | crc32 u32` (little endian, the CRC over what
//! precedes it); the valid slot with the higher `seq` counts, so a write torn by a power
//! cut leaves the previous point. The file is locked (flock): one agent per data dir.
use std::{
    fs::File,
    io,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

const SLOT: usize = 4096;
const MAGIC: &[u8; 4] = b"NJC1";

pub(super) struct CommitFile {
    file: File,
    path: PathBuf,
    seq: u64,
    /// (sink, first id not committed), sinks of earlier runs included.
    entries: Vec<(String, u64)>,
    buf: Vec<u8>,
    failed: bool,
}

fn decode(b: &[u8]) -> Option<(u64, Vec<(String, u64)>)> {
    if b.get(..4)? != MAGIC {
        return None;
    }
    let seq = u64::from_le_bytes(b.get(4..12)?.try_into().ok()?);
    let n = u32::from_le_bytes(b.get(12..16)?.try_into().ok()?) as usize;
    let mut off = 16;
    let mut entries = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let len = *b.get(off)? as usize;
        let name = std::str::from_utf8(b.get(off + 1..off + 1 + len)?).ok()?.to_owned();
        let id = u64::from_le_bytes(b.get(off + 1 + len..off + 9 + len)?.try_into().ok()?);
        entries.push((name, id));
        off += 9 + len;
    }
    let c = u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?);
    (crc32fast::hash(&b[..off]) == c).then_some((seq, entries))
}

impl CommitFile {
    /// Opens (or creates) `path`, locked. Err(None): another agent holds it.
    pub(super) fn open(path: &Path) -> Result<CommitFile, Option<io::Error>> {
        let file = super::disk::lock_file(path)?;
        let mut slots = vec![0u8; 2 * SLOT];
        let n = file.read_at(&mut slots, 0).map_err(Some)?;
        slots.truncate(n);
        let best = slots.chunks(SLOT).filter_map(decode).max_by_key(|(seq, _)| *seq);
        let (seq, entries) = best.unwrap_or_default();
        Ok(CommitFile { file, path: path.to_path_buf(), seq, entries, buf: Vec::with_capacity(SLOT), failed: false })
    }

    /// The commit point of `sink` (None: this file never saw it).
    pub(super) fn get(&self, sink: &str) -> Option<u64> {
        self.entries.iter().find(|(n, _)| n == sink).map(|e| e.1)
    }

    /// Records the new points of `points` (sink, next id) in one write. False when the
    /// write failed (logged once per run of failures): the caller must not treat the
    /// records as accepted, and writes again.
    pub(super) fn write(&mut self, points: impl Iterator<Item = (&'static str, u64)>) -> bool {
        for (name, id) in points {
            match self.entries.iter_mut().find(|(n, _)| n == name) {
                Some(e) => e.1 = id,
                None => self.entries.push((name.to_owned(), id)),
            }
        }
        self.seq += 1;
        let b = &mut self.buf;
        b.clear();
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&self.seq.to_le_bytes());
        let fits: Vec<&(String, u64)> = {
            let mut room = SLOT - 20;
            self.entries
                .iter()
                .filter(|(n, _)| n.len() < 256)
                .take_while(|(n, _)| room.checked_sub(9 + n.len()).map(|r| room = r).is_some())
                .collect()
        };
        b.extend_from_slice(&(fits.len() as u32).to_le_bytes());
        for (name, id) in fits {
            b.push(name.len() as u8);
            b.extend_from_slice(name.as_bytes());
            b.extend_from_slice(&id.to_le_bytes());
        }
        let c = crc32fast::hash(b);
        b.extend_from_slice(&c.to_le_bytes());
        let at = (self.seq % 2) * SLOT as u64;
        match self.file.write_all_at(b, at) {
            Ok(()) => {
                if std::mem::take(&mut self.failed) {
                    tracing::info!(file = %self.path.display(), "disk buffers: the commit point is recorded again");
                }
                true
            }
            Err(e) => {
                // The slot may be torn: the next write goes to the same slot again, so the
                // other one keeps the last good point.
                self.seq -= 1;
                if !std::mem::replace(&mut self.failed, true) {
                    tracing::error!(file = %self.path.display(), error = %e,
                        "disk buffers: cannot record the commit point; the events since the last one stay unaccepted (not readable by the sinks, their sources not acknowledged) and the writer retries, holding the fan-out");
                }
                false
            }
        }
    }

    pub(super) fn sync(&self) {
        if let Err(e) = self.file.sync_data() {
            tracing::error!(file = %self.path.display(), error = %e,
                "disk buffers: fsync of the commit point failed; a power cut may lose what it covers");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_valid_slot_counts_and_a_torn_one_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("commit");
        let mut c = CommitFile::open(&p).unwrap();
        assert_eq!(c.get("es"), None);
        c.write([("es", 10), ("kafka", 7)].into_iter());
        c.write([("es", 20)].into_iter());
        drop(c);
        let c = CommitFile::open(&p).unwrap();
        assert_eq!((c.get("es"), c.get("kafka")), (Some(20), Some(7)));
        assert!(matches!(CommitFile::open(&p), Err(None)), "locked while open");
        drop(c);
        // Tear the newest slot (seq 2, slot 0): the previous point counts.
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all_at(&[0xff; 8], 20).unwrap();
        let c = CommitFile::open(&p).unwrap();
        assert_eq!((c.get("es"), c.get("kafka")), (Some(10), Some(7)));
    }

    #[test]
    fn a_failed_write_says_so_and_keeps_the_last_point() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("commit");
        let mut c = CommitFile::open(&p).unwrap();
        assert!(c.write([("es", 10)].into_iter()));
        // A descriptor that refuses writes (EBADF), as a failing disk would.
        let good = std::mem::replace(&mut c.file, File::open(&p).unwrap());
        assert!(!c.write([("es", 20)].into_iter()), "the failure is reported to the writer");
        assert!(!c.write([("es", 30)].into_iter()));
        c.file = good;
        assert!(c.write([("es", 40)].into_iter()), "and it recovers");
        drop(c);
        let c = CommitFile::open(&p).unwrap();
        assert_eq!(c.get("es"), Some(40));
        // The failed writes did not advance the slot sequence: the good writes alternate.
        assert_eq!(c.seq, 2);
    }
}
