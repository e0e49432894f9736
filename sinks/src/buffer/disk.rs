//! The disk buffer: a segmented, checksummed write-ahead log per sink.
//!
//! Written by our own code, not a crate: none we found does what a sink buffer needs
//! together — checksummed records whose corruption is skipped and counted exactly (not a
//! crash or a silent loss), a bound in bytes with block/drop when full, an fsync policy,
//! and deletion only of what the sink acknowledged (okaywal warns against production use;
//! yaque has no checksums or byte bound; disk_backed_queue is SQLite without acks;
//! Vector's own buffer is not published as a crate).
//!
//! Layout of `<data_dir>/<sink>/`: `<first id, 20 digits>.seg` segments, oldest first;
//! `acked` (the first id not yet acknowledged, with a CRC); `lock` (flock: one agent per
//! buffer). A record is `len u32 | crc32 u32 | id u64 | enqueued unix ms u64 | payload`
//! (little endian; the CRC covers id, time and payload; the payload is the event's JSON).
//! Ids are consecutive, so a corrupt stretch is skipped by finding the next valid record
//! (or the next segment) and the ids in between are exactly the records lost.
//!
//! One thread writes every sink's log ([`super::group`]: the event's JSON encoded once, then
//! appended to each log, and a commit point recorded for all of them at once); the sink's
//! driver reads only what is committed (recently written events come from memory, older
//! ones from the files) and acknowledges; a segment is deleted once every record in it is
//! acknowledged. On opening, what a log holds past its commit point is cut: it was never
//! accepted (see [`super::commit`]).
use std::{
    collections::VecDeque,
    fs::{File, OpenOptions},
    io::{self, BufWriter, Read, Seek, SeekFrom, Write},
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use pipeline::{fanout::QueuePolicy, metrics::names, Event};
use tokio::sync::Notify;

use super::{BufferStats, DiskFsync};

pub(super) const HEADER: usize = 24;
/// Largest record accepted (an event's JSON is far smaller).
const MAX_RECORD: usize = 64 << 20;
/// Recently written events kept in memory, so a reader that keeps up never parses JSON.
const HOT_MAX: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("disk buffer {dir}: {what}: {source}")]
    Io { dir: PathBuf, what: &'static str, source: io::Error },
    #[error("disk buffer {dir} is in use by another nightjar agent")]
    Locked { dir: PathBuf },
}

/// Settings of one disk buffer.
#[derive(Debug, Clone)]
pub struct DiskConfig {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub segment_bytes: u64,
    pub when_full: QueuePolicy,
    pub fsync: DiskFsync,
    pub fsync_interval: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Seg {
    first_id: u64,
    bytes: u64,
}

struct Hot {
    id: u64,
    seg: u64,
    end: u64,
    ts_ms: u64,
    event: Arc<Event>,
}

struct State {
    segs: VecDeque<Seg>,
    /// Ids below are written (readable).
    committed: u64,
    /// Ids below are acknowledged.
    acked: u64,
    total_bytes: u64,
    writer_done: bool,
    /// The sink is gone for good: the writer counts and drops what it is given.
    closed: bool,
    hot: VecDeque<Hot>,
}

pub(super) struct Shared {
    cfg: DiskConfig,
    name: &'static str,
    state: Mutex<State>,
    space: Condvar,
    readable: Notify,
    stats: Arc<BufferStats>,
    ack_file: File,
    _lock: File,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a buffer thread panicked; the state is still consistent
        // (every update is a few assignments), so go on.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn io(&self, what: &'static str) -> impl FnOnce(io::Error) -> DiskError + '_ {
        move |source| DiskError::Io { dir: self.cfg.dir.clone(), what, source }
    }

    fn publish(&self, st: &State) {
        self.stats.set(st.committed.saturating_sub(st.acked), st.total_bytes);
        let borrowed = st.total_bytes.saturating_sub(self.cfg.max_bytes);
        metrics::gauge!(names::BUFFER_BORROWED_BYTES, "sink" => self.name).set(borrowed as f64);
    }

    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.space.notify_all();
    }
}

fn seg_path(dir: &Path, first_id: u64) -> PathBuf {
    dir.join(format!("{first_id:020}.seg"))
}

fn crc(id: u64, ts: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&id.to_le_bytes());
    h.update(&ts.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// A record parsed from `buf` at its start: (id, ts, payload range end) if valid.
fn parse(buf: &[u8]) -> Option<(u64, u64, usize)> {
    let h = buf.get(..HEADER)?;
    let len = u32::from_le_bytes(h[0..4].try_into().ok()?) as usize;
    if len > MAX_RECORD {
        return None;
    }
    let c = u32::from_le_bytes(h[4..8].try_into().ok()?);
    let id = u64::from_le_bytes(h[8..16].try_into().ok()?);
    let ts = u64::from_le_bytes(h[16..24].try_into().ok()?);
    let payload = buf.get(HEADER..HEADER + len)?;
    (crc(id, ts, payload) == c).then_some((id, ts, HEADER + len))
}

/// Scans a whole segment's bytes: the valid records in order as (offset, id, ts, len),
/// resynchronising byte by byte only after corrupt stretches (a valid record has a
/// matching CRC and an id in `expected..`). A valid record below `expected` (entering a
/// segment in the middle after a restart) is stepped over whole: a byte-wise walk over it
/// cost a CRC at every offset whose bytes looked like a length (minutes for a 30 MB
/// segment) and could take bytes inside a payload for a record.
fn scan(buf: &[u8], mut expected: u64) -> (Vec<(usize, u64, u64, usize)>, usize) {
    let mut out = Vec::new();
    let (mut off, mut valid_end) = (0usize, 0usize);
    while off + HEADER <= buf.len() {
        match parse(&buf[off..]) {
            Some((id, ts, len)) if id >= expected => {
                out.push((off, id, ts, len));
                expected = id + 1;
                off += len;
                valid_end = off;
            }
            Some((_, _, len)) => {
                off += len;
                valid_end = off;
            }
            None => off += 1,
        }
    }
    (out, valid_end)
}

fn read_acked(f: &File) -> Option<u64> {
    let mut b = [0u8; 16];
    f.read_exact_at(&mut b, 0).ok()?;
    let id = u64::from_le_bytes(b[0..8].try_into().ok()?);
    let c = u32::from_le_bytes(b[8..12].try_into().ok()?);
    (crc32fast::hash(&b[0..8]) == c).then_some(id)
}

fn write_acked(f: &File, id: u64) -> io::Result<()> {
    let mut b = [0u8; 16];
    b[0..8].copy_from_slice(&id.to_le_bytes());
    let c = crc32fast::hash(&b[0..8]);
    b[8..12].copy_from_slice(&c.to_le_bytes());
    f.write_all_at(&b, 0)
}

/// What opening found on disk, for the log and the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    /// Records written by an earlier run and not acknowledged: they are delivered again.
    pub pending: u64,
    /// Bytes cut from the end of the newest segment (a record torn by a crash).
    pub torn_bytes: u64,
    /// Records written after the last commit point (never accepted: the agent died
    /// before every disk buffer had the event), cut.
    pub uncommitted: u64,
}

/// Scans the newest segment and cuts what lies past the commit point (`commit`: the first
/// id not committed, if the commit file knows this buffer) or past the last whole record;
/// segments wholly past the commit point are deleted. Returns the first id not written
/// (None: no segment is left).
fn recover_head(
    name: &'static str,
    dir: &Path,
    segs: &mut VecDeque<Seg>,
    commit: Option<u64>,
    recovered: &mut Recovered,
) -> Result<Option<u64>, DiskError> {
    let io = |what: &'static str| move |source| DiskError::Io { dir: dir.to_path_buf(), what, source };
    loop {
        let several = segs.len() > 1;
        let Some(head) = segs.back_mut() else { return Ok(None) };
        let path = seg_path(dir, head.first_id);
        if commit.is_some_and(|c| head.first_id > c || (head.first_id == c && several)) {
            // Wholly past the commit point: count its records and delete it.
            let buf = std::fs::read(&path).map_err(io("read a segment past the commit point"))?;
            recovered.uncommitted += scan(&buf, head.first_id).0.len() as u64;
            std::fs::remove_file(&path).map_err(io("delete a segment past the commit point"))?;
            segs.pop_back();
            continue;
        }
        let buf = std::fs::read(&path).map_err(io("read the newest segment"))?;
        let (recs, valid_end) = scan(&buf, head.first_id);
        let written = recs.last().map(|r| r.1 + 1).unwrap_or(head.first_id);
        let next = commit.map_or(written, |c| written.min(c));
        // Where the kept records end: after record `next - 1`.
        let keep = recs.iter().take_while(|r| r.1 < next).last().map(|r| r.0 + r.3).unwrap_or(0);
        let keep = if next == written { valid_end } else { keep };
        if keep < buf.len() {
            recovered.torn_bytes += (buf.len() - valid_end) as u64;
            recovered.uncommitted += written - next;
            tracing::warn!(sink = name, file = %path.display(), torn_bytes = buf.len() - valid_end,
                uncommitted = written - next,
                "disk buffer: cut from the end of the newest segment what no commit point covers");
            let f = OpenOptions::new().write(true).open(&path).map_err(io("open the newest segment"))?;
            f.set_len(keep as u64).map_err(io("cut a torn record"))?;
            head.bytes = keep as u64;
        }
        return Ok(Some(next));
    }
}

/// Opens (or creates) the buffer in `cfg.dir` and recovers it up to `commit` (the commit
/// file's point for it). Returns its writer (run by a [`super::group`] thread), its reader
/// and what recovery found.
pub(super) fn open_member(
    name: &'static str,
    cfg: DiskConfig,
    stats: Arc<BufferStats>,
    commit: Option<u64>,
) -> Result<(Member, DiskReader, Recovered), DiskError> {
    let dir = cfg.dir.clone();
    let io = |what: &'static str| {
        let dir = dir.clone();
        move |source| DiskError::Io { dir, what, source }
    };
    std::fs::create_dir_all(&dir).map_err(io("create the directory"))?;
    let lock = lock_file(&dir.join("lock")).map_err(|e| match e {
        None => DiskError::Locked { dir: dir.clone() },
        Some(source) => DiskError::Io { dir: dir.clone(), what: "open lock", source },
    })?;
    let ack_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(dir.join("acked"))
        .map_err(io("open the acknowledgement file"))?;
    let mut firsts: Vec<u64> = std::fs::read_dir(&dir)
        .map_err(io("list segments"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".seg")?.parse().ok())
        .collect();
    firsts.sort_unstable();
    let ack_read = read_acked(&ack_file);
    let mut acked = ack_read.unwrap_or(firsts.first().copied().unwrap_or(0));
    if ack_read.is_none() && !firsts.is_empty() {
        tracing::warn!(sink = name, dir = %dir.display(),
            "disk buffer: the acknowledgement file is missing or damaged; everything buffered is delivered again");
    }
    let mut recovered = Recovered::default();
    let mut segs: VecDeque<Seg> = VecDeque::new();
    for &f in &firsts {
        let bytes = std::fs::metadata(seg_path(&dir, f)).map(|m| m.len()).map_err(io("stat a segment"))?;
        segs.push_back(Seg { first_id: f, bytes });
    }
    let committed = match recover_head(name, &dir, &mut segs, commit, &mut recovered)? {
        Some(next) => next,
        None => {
            segs.push_back(Seg { first_id: acked, bytes: 0 });
            File::create(seg_path(&dir, acked)).map_err(io("create a segment"))?;
            acked
        }
    };
    if acked > committed {
        acked = committed;
    }
    // Segments wholly acknowledged (an ack whose deletion a crash interrupted).
    while segs.len() > 1 && segs[1].first_id <= acked {
        if let Some(s) = segs.pop_front() {
            let _ = std::fs::remove_file(seg_path(&dir, s.first_id));
        }
    }
    if acked < segs[0].first_id {
        acked = segs[0].first_id;
    }
    let committed = committed.max(acked);
    recovered.pending = committed - acked;
    let total_bytes = segs.iter().map(|s| s.bytes).sum();
    let head = segs.back().copied().unwrap_or(Seg { first_id: committed, bytes: 0 });
    let head_file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(seg_path(&dir, head.first_id))
        .map_err(io("open the newest segment"))?;
    let state = State { segs, committed, acked, total_bytes, writer_done: false, closed: false, hot: VecDeque::new() };
    let shared = Arc::new(Shared {
        cfg,
        name,
        state: Mutex::new(state),
        space: Condvar::new(),
        readable: Notify::new(),
        stats,
        ack_file,
        _lock: lock,
    });
    shared.publish(&shared.lock());
    let member = Member {
        shared: shared.clone(),
        file: BufWriter::with_capacity(256 << 10, head_file),
        head,
        next_id: committed,
        last_sync: Instant::now(),
        dirty: false,
        failed: false,
        hot: Vec::new(),
        written: 0,
    };
    let reader = DiskReader { shared, pos: None, next_id: acked, replay_until: committed };
    Ok((member, reader, recovered))
}

/// An exclusive flock on `path` (created if missing). Err(None): another process holds it.
pub(super) fn lock_file(path: &Path) -> Result<File, Option<io::Error>> {
    let f = OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path).map_err(Some)?;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(None);
    }
    Ok(f)
}

/// Whether a record of some length can be appended to a member now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Room {
    Fits,
    /// Refused, for this reason (full under drop_newest, too large, the sink is gone).
    Drop(&'static str),
    /// Full under `block`: commit what is written, wait ([`Member::wait_for_room`]), ask again.
    Full,
}

/// One sink's disk buffer as the group writer sees it: appends, and makes what it appended
/// readable once the group has committed it.
pub(super) struct Member {
    pub(super) shared: Arc<Shared>,
    file: BufWriter<File>,
    head: Seg,
    pub(super) next_id: u64,
    last_sync: Instant,
    dirty: bool,
    /// A write failed: what comes is counted and dropped until a write works again.
    failed: bool,
    /// Appended since the last commit (made readable by [`Member::publish`]).
    hot: Vec<Hot>,
    written: u64,
}

/// Whether a record of `len` bytes (header included) fits in a log in state `st`.
fn room(cfg: &DiskConfig, st: &State, len: u64) -> Room {
    if len > cfg.max_bytes {
        Room::Drop("too_large")
    } else if st.closed {
        Room::Drop("sink_closed")
    } else if st.total_bytes + len <= cfg.max_bytes {
        Room::Fits
    } else if cfg.when_full == QueuePolicy::DropNewest {
        Room::Drop("buffer_full")
    } else {
        Room::Full
    }
}

impl Member {
    pub(super) fn name(&self) -> &'static str {
        self.shared.name
    }

    /// Syncs if the fsync policy says it is time (`idle`: the writer has nothing to do).
    /// True if it synced.
    pub(super) fn sync_if_due(&mut self, idle: bool) -> bool {
        let due = match self.shared.cfg.fsync {
            DiskFsync::Never => false,
            DiskFsync::Always => true,
            DiskFsync::Interval => idle || self.last_sync.elapsed() >= self.shared.cfg.fsync_interval,
        };
        if !(due && self.dirty) {
            return false;
        }
        if let Err(e) = self.file.get_ref().sync_data() {
            tracing::error!(sink = self.shared.name, error = %e, "disk buffer: fsync failed");
        }
        self.dirty = false;
        self.last_sync = Instant::now();
        true
    }

    fn drop_counted(&self, reason: &'static str) {
        self.shared.stats.dropped(1);
        pipeline::metrics::count_stage_drop("buffer", reason, 1);
        metrics::counter!(names::SINK_EVENTS, "sink" => self.shared.name, "outcome" => "dropped").increment(1);
    }

    /// (bytes held, `max_size`) if this buffer blocks when full: its share of the room the
    /// blocking buffers of the group pool ([`super::group`]); None under drop_newest.
    pub(super) fn blocking_usage(&self) -> Option<(u64, u64)> {
        let cfg = &self.shared.cfg;
        (cfg.when_full == QueuePolicy::Block).then(|| (self.shared.lock().total_bytes, cfg.max_bytes))
    }

    /// Whether a record of `len` bytes (header included) can be appended. Only the group
    /// writer adds bytes, so what fits now still fits when it appends.
    pub(super) fn room(&self, len: u64) -> Room {
        room(&self.shared.cfg, &self.shared.lock(), len)
    }

    /// Appends one record, the event's JSON `payload` (`payload_crc`: its CRC state), or
    /// drops it (counted) if [`Member::room`] says so; the caller has waited out `Full`.
    pub(super) fn append(&mut self, payload: &[u8], payload_crc: &crc32fast::Hasher, ts: u64, ev: &Arc<Event>) {
        let len = (HEADER + payload.len()) as u64;
        {
            // Checked and reserved under one lock (this runs per event and per sink).
            let mut st = self.shared.lock();
            if let Room::Drop(reason) = room(&self.shared.cfg, &st, len) {
                drop(st);
                return self.drop_counted(reason);
            }
            st.total_bytes += len;
        }
        if self.head.bytes > 0 && self.head.bytes + len > self.shared.cfg.segment_bytes {
            self.rotate_segment();
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&self.next_id.to_le_bytes());
        h.update(&ts.to_le_bytes());
        h.combine(payload_crc);
        let mut header = [0u8; HEADER];
        header[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        header[4..8].copy_from_slice(&h.finalize().to_le_bytes());
        header[8..16].copy_from_slice(&self.next_id.to_le_bytes());
        header[16..24].copy_from_slice(&ts.to_le_bytes());
        if let Err(err) = self.file.write_all(&header).and_then(|_| self.file.write_all(payload)) {
            self.shared.lock().total_bytes -= len;
            if !self.failed {
                tracing::error!(sink = self.shared.name, error = %err, "disk buffer: write failed; events are dropped (counted) until writes work again");
            }
            self.failed = true;
            return self.drop_counted("buffer_write_failed");
        }
        self.failed = false;
        self.head.bytes += len;
        self.hot.push(Hot {
            id: self.next_id,
            seg: self.head.first_id,
            end: self.head.bytes,
            ts_ms: ts,
            event: ev.clone(),
        });
        self.next_id += 1;
        self.written += 1;
        self.dirty = true;
    }

    /// Full and blocking (everything written is committed): frees the head segment if it
    /// is all acknowledged, else waits a little for acknowledgements.
    pub(super) fn wait_for_room(&mut self) {
        let st = self.shared.lock();
        if st.acked >= self.next_id && self.head.bytes > 0 {
            drop(st);
            self.rotate_segment();
            return;
        }
        let _ = self.shared.space.wait_timeout(st, Duration::from_millis(200));
    }

    fn rotate_segment(&mut self) {
        let _ = self.file.flush();
        self.sync_if_due(true);
        let path = seg_path(&self.shared.cfg.dir, self.next_id);
        match OpenOptions::new().append(true).create(true).open(&path) {
            Ok(f) => {
                self.file = BufWriter::with_capacity(256 << 10, f);
                let old = std::mem::replace(&mut self.head, Seg { first_id: self.next_id, bytes: 0 });
                let mut st = self.shared.lock();
                // The old head's final size (a segment's bytes leave the total when deleted).
                if let Some(s) = st.segs.back_mut().filter(|s| s.first_id == old.first_id) {
                    s.bytes = old.bytes;
                }
                st.segs.push_back(self.head);
                delete_acked_segments(&self.shared, &mut st);
                self.shared.publish(&st);
            }
            Err(e) => tracing::error!(sink = self.shared.name, file = %path.display(), error = %e,
                "disk buffer: cannot start a new segment; writing on in the old one"),
        }
    }

    /// Hands what is appended to the kernel (and the disk, per the fsync policy). True if
    /// it synced.
    pub(super) fn flush(&mut self) -> bool {
        if let Err(e) = self.file.flush() {
            tracing::error!(sink = self.shared.name, error = %e, "disk buffer: write failed");
        }
        self.sync_if_due(false)
    }

    /// After the group's commit: what is appended becomes readable.
    pub(super) fn publish(&mut self) {
        let mut st = self.shared.lock();
        st.committed = self.next_id;
        if let Some(s) = st.segs.back_mut() {
            if s.first_id == self.head.first_id {
                s.bytes = self.head.bytes;
            }
        }
        st.hot.extend(self.hot.drain(..));
        while st.hot.len() > HOT_MAX {
            st.hot.pop_front();
        }
        self.shared.stats.written(std::mem::take(&mut self.written));
        self.shared.publish(&st);
        drop(st);
        self.shared.readable.notify_one();
    }

    /// The group writer is done: nothing more will come.
    pub(super) fn finish(mut self) {
        self.flush();
        if let Err(e) = self.file.get_ref().sync_data() {
            tracing::error!(sink = self.shared.name, error = %e, "disk buffer: fsync at shutdown failed");
        }
        self.publish();
        self.shared.lock().writer_done = true;
        self.shared.readable.notify_one();
    }
}

fn delete_acked_segments(shared: &Shared, st: &mut State) {
    while st.segs.len() > 1 && st.segs[1].first_id <= st.acked {
        if let Some(s) = st.segs.pop_front() {
            if let Err(e) = std::fs::remove_file(seg_path(&shared.cfg.dir, s.first_id)) {
                tracing::warn!(sink = shared.name, error = %e, "disk buffer: cannot delete an acknowledged segment");
            }
            st.total_bytes = st.total_bytes.saturating_sub(s.bytes);
        }
    }
}

/// One record read back.
pub(super) struct Record {
    pub id: u64,
    pub ts_ms: u64,
    pub event: Arc<Event>,
}

/// What one read returned.
#[derive(Default)]
pub(super) struct ReadOut {
    pub records: Vec<Record>,
    /// Records skipped as corrupt in this read.
    pub corrupt: u64,
    /// Records of an earlier run among `records`.
    pub replayed: u64,
    /// The first id not read yet (acknowledging up to it also covers skipped records).
    pub next_id: u64,
    /// Nothing more will ever come.
    pub ended: bool,
}

pub(super) struct DiskReader {
    pub(super) shared: Arc<Shared>,
    /// Open segment: (its first id, the file, the offset of `next_id`'s record).
    pos: Option<(u64, File, u64)>,
    next_id: u64,
    replay_until: u64,
}

impl DiskReader {
    /// Waits until something is readable (or nothing more will come).
    pub(super) async fn readable(&self) {
        loop {
            let notified = self.shared.readable.notified();
            {
                let st = self.shared.lock();
                if st.committed > self.next_id || st.writer_done {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Reads up to `max` records (blocking file I/O: call from a blocking thread).
    pub(super) fn read(&mut self, max: usize) -> ReadOut {
        let mut out = ReadOut::default();
        let (committed, ended) = {
            let st = self.shared.lock();
            (st.committed, st.writer_done)
        };
        while out.records.len() < max && self.next_id < committed {
            if let Some(r) = self.take_hot() {
                out.records.push(r);
                continue;
            }
            match self.read_disk(committed) {
                Ok(Some(r)) => out.records.push(r),
                Ok(None) => {}
                Err(skipped) => out.corrupt += skipped,
            }
        }
        if out.corrupt > 0 {
            tracing::error!(sink = self.shared.name, records = out.corrupt, dir = %self.shared.cfg.dir.display(),
                "disk buffer: corrupt records skipped");
            metrics::counter!(names::BUFFER_CORRUPT, "sink" => self.shared.name).increment(out.corrupt);
            self.shared.stats.corrupt(out.corrupt);
        }
        out.replayed = out.records.iter().filter(|r| r.id < self.replay_until).count() as u64;
        if out.replayed > 0 {
            metrics::counter!(names::BUFFER_REPLAYED, "sink" => self.shared.name).increment(out.replayed);
        }
        out.next_id = self.next_id;
        out.ended = ended && self.next_id >= committed;
        out
    }

    fn take_hot(&mut self) -> Option<Record> {
        let mut st = self.shared.lock();
        while st.hot.front().is_some_and(|h| h.id < self.next_id) {
            st.hot.pop_front();
        }
        let h = st.hot.front().filter(|h| h.id == self.next_id)?;
        let r = Record { id: h.id, ts_ms: h.ts_ms, event: h.event.clone() };
        let (seg, end) = (h.seg, h.end);
        st.hot.pop_front();
        drop(st);
        match &mut self.pos {
            Some((s, _, off)) if *s == seg => *off = end,
            _ => self.pos = None,
        }
        if self.pos.is_none() {
            // Reopened lazily at the right offset if a disk read is needed later.
            if let Ok(f) = File::open(seg_path(&self.shared.cfg.dir, seg)) {
                self.pos = Some((seg, f, end));
            }
        }
        self.next_id += 1;
        Some(r)
    }

    /// The segment holding `id`: (its first id, the next segment's first id).
    fn seg_of(&self, id: u64, committed: u64) -> Option<(u64, u64)> {
        let st = self.shared.lock();
        let i = st.segs.iter().rposition(|s| s.first_id <= id)?;
        Some((st.segs[i].first_id, st.segs.get(i + 1).map(|s| s.first_id).unwrap_or(committed)))
    }

    /// Reads the record `next_id`. Err(n): n records skipped as corrupt.
    fn read_disk(&mut self, committed: u64) -> Result<Option<Record>, u64> {
        let Some((seg, seg_end_id)) = self.seg_of(self.next_id, committed) else {
            // Its segment is gone (deleted after an acknowledgement): nothing to read below.
            let first = self.shared.lock().segs.front().map(|s| s.first_id).unwrap_or(committed);
            let skip = first.saturating_sub(self.next_id).max(1);
            self.next_id += skip;
            return Ok(None);
        };
        if self.pos.as_ref().is_none_or(|(s, _, _)| *s != seg) {
            match File::open(seg_path(&self.shared.cfg.dir, seg)) {
                Ok(f) => self.pos = Some((seg, f, 0)),
                Err(e) => {
                    tracing::error!(sink = self.shared.name, error = %e, "disk buffer: cannot open a segment; its records are skipped");
                    let n = seg_end_id - self.next_id;
                    self.next_id = seg_end_id;
                    return Err(n);
                }
            }
            if seg != self.next_id {
                // Entering a segment in the middle (after a restart): find the record.
                return self.resync(seg_end_id, 0).map(|_| None);
            }
        }
        let Some((_, f, off)) = self.pos.as_mut() else { return Ok(None) };
        let mut head = [0u8; HEADER];
        let good = f.read_exact_at(&mut head, *off).ok().and_then(|_| {
            let len = u32::from_le_bytes(head[0..4].try_into().ok()?) as usize;
            if len > MAX_RECORD {
                return None;
            }
            let mut rec = vec![0u8; HEADER + len];
            f.read_exact_at(&mut rec, *off).ok()?;
            let (id, ts, n) = parse(&rec)?;
            (id == self.next_id).then_some((id, ts, n, rec))
        });
        let Some((id, ts, n, rec)) = good else {
            let from = *off;
            return self.resync(seg_end_id, from).map(|_| None);
        };
        *off += n as u64;
        self.next_id += 1;
        let text = std::str::from_utf8(&rec[HEADER..n]).ok();
        match text.map(Event::from_json) {
            Some(Ok(ev)) => Ok(Some(Record { id, ts_ms: ts, event: Arc::new(ev) })),
            _ => Err(1),
        }
    }

    /// After a bad record at `from`: the next valid one in this segment, or the next
    /// segment. Err(n) counts the records skipped (Ok when none was lost).
    fn resync(&mut self, seg_end_id: u64, from: u64) -> Result<(), u64> {
        let Some((seg, f, off)) = self.pos.as_mut() else { return Err(0) };
        let mut buf = Vec::new();
        let _ = f.seek(SeekFrom::Start(from)).and_then(|_| f.read_to_end(&mut buf));
        let (recs, _) = scan(&buf, self.next_id);
        let found = recs.into_iter().find(|r| r.1 < seg_end_id);
        let before = self.next_id;
        match found {
            Some((o, id, _, _)) => {
                *off = from + o as u64;
                self.next_id = id;
            }
            None => {
                let _ = seg;
                self.next_id = seg_end_id;
                self.pos = None;
            }
        }
        match self.next_id - before {
            0 => Ok(()),
            n => Err(n),
        }
    }
}

impl Shared {
    /// Acknowledges every record below `upto`: persisted, and wholly acknowledged
    /// segments deleted (blocking file I/O).
    pub(super) fn ack(&self, upto: u64) {
        let mut st = self.lock();
        if upto <= st.acked {
            return;
        }
        st.acked = upto.min(st.committed);
        if let Err(e) = write_acked(&self.ack_file, st.acked).map_err(self.io("write acked")) {
            tracing::error!(sink = self.name, error = %e, "disk buffer: cannot record acknowledgements; they will be delivered again after a restart");
        }
        if self.cfg.fsync == DiskFsync::Always {
            let _ = self.ack_file.sync_data();
        }
        delete_acked_segments(self, &mut st);
        self.publish(&st);
        drop(st);
        self.space.notify_all();
    }

    /// Records written and not yet acknowledged (what a restart would deliver again).
    pub(super) fn pending(&self) -> u64 {
        let st = self.lock();
        st.committed.saturating_sub(st.acked)
    }
}

#[cfg(test)]
mod scan_tests {
    use super::*;

    fn record(id: u64, payload: &[u8]) -> Vec<u8> {
        let mut r = (payload.len() as u32).to_le_bytes().to_vec();
        r.extend(crc(id, 7, payload).to_le_bytes());
        r.extend(id.to_le_bytes());
        r.extend(7u64.to_le_bytes());
        r.extend(payload);
        r
    }

    #[test]
    fn records_below_the_expected_id_are_stepped_over_whole() {
        // Record 5 carries, inside its payload, the bytes of a valid record 9.
        let mut inner = b"{\"x\":\"".to_vec();
        inner.extend(record(9, b"{}"));
        inner.extend(b"\"}");
        let mut seg = record(5, &inner);
        let c = seg.len();
        seg.extend(record(6, b"{\"y\":1}"));
        let (recs, end) = scan(&seg, 6);
        assert_eq!(recs.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(), vec![(c, 6)]);
        assert_eq!(end, seg.len());
        // From the start, both outer records and nothing of the payload.
        let (recs, _) = scan(&seg, 5);
        assert_eq!(recs.iter().map(|r| r.1).collect::<Vec<_>>(), vec![5, 6]);
        // Corrupt bytes before a record are still walked over byte by byte.
        let mut torn = vec![0xffu8; 40];
        torn.extend(record(6, b"{}"));
        assert_eq!(scan(&torn, 0).0.iter().map(|r| (r.0, r.1)).collect::<Vec<_>>(), vec![(40, 6)]);
    }
}
