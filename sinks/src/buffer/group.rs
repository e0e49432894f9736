//! The one writer of a data dir's disk buffers. The fan-out hands it each event once (one
//! output for every disk-buffered sink); it encodes the event's JSON once, appends it to
//! each sink's log under that log's size bound and `when_full`, and after each batch
//! records the commit point of all logs in one write ([`super::commit`]). Only then do the
//! sinks see the events and do their source tokens go: an event is accepted by every disk
//! buffer or by none, whenever the agent dies.
//!
//! The blocking buffers pool their room: one that is full goes on taking events while
//! the blocking buffers together hold at most the sum of their `max_size` (a stalled
//! sink's log borrows what the others do not use, counted in
//! `nightjar_buffer_borrowed_bytes`), so a slow sink holds the others up only once that
//! shared room is used up. A `drop_newest` buffer keeps to its own `max_size`.
use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use pipeline::fanout::{Entry, OutputCounters};
use tokio::sync::mpsc;

use super::{
    commit::CommitFile,
    disk::{Member, Room},
};

/// Events taken from the staging channel per commit.
const BATCH: usize = 1024;

struct Group {
    /// Each sink's log, and the fan-out's counts for that sink.
    members: Vec<(Member, Arc<OutputCounters>)>,
    commit: CommitFile,
    /// The commit point last recorded, per member.
    recorded: Vec<u64>,
    payload: Vec<u8>,
    /// Entries appended and not yet committed (their source tokens are let go at commit).
    accepted: Vec<Entry>,
    /// A member holds more than its own max_size (logged once).
    borrowing: Option<&'static str>,
}

/// Starts the writer thread; returns the staging channel the fan-out fills.
pub(super) fn spawn(
    members: Vec<(Member, Arc<OutputCounters>)>,
    commit: CommitFile,
    idle: Duration,
) -> std::io::Result<mpsc::Sender<Entry>> {
    let (tx, rx) = mpsc::channel(BATCH);
    let recorded = members.iter().map(|(m, _)| m.next_id).collect();
    let g = Group {
        members,
        commit,
        recorded,
        payload: Vec::with_capacity(8 << 10),
        accepted: Vec::new(),
        borrowing: None,
    };
    let rt = tokio::runtime::Handle::current();
    let names: Vec<&str> = g.members.iter().map(|(m, _)| m.name()).collect();
    let name = if names.len() == 1 { format!("nj-buf-{}", names[0]) } else { "nj-buf".to_owned() };
    std::thread::Builder::new().name(name).spawn(move || g.run(rx, rt, idle))?;
    Ok(tx)
}

impl Group {
    fn run(mut self, mut rx: mpsc::Receiver<Entry>, rt: tokio::runtime::Handle, idle: Duration) {
        let mut batch: Vec<Entry> = Vec::with_capacity(BATCH);
        loop {
            match rt.block_on(async { tokio::time::timeout(idle, rx.recv()).await }) {
                Ok(Some(e)) => batch.push(e),
                Ok(None) => break,
                Err(_) => {
                    self.sync_idle();
                    continue;
                }
            }
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
            for e in batch.drain(..) {
                self.append(e);
            }
            self.commit();
        }
        self.commit();
        self.commit.sync();
        for (m, _) in self.members {
            m.finish();
        }
    }

    /// Appends one event to every member. Where a full one blocks, first waits for its room
    /// (committing what came before, so that its sink can read and acknowledge): no member
    /// gets the event before every member can take it, so a commit never splits it.
    fn append(&mut self, e: Entry) {
        self.payload.clear();
        e.event.write_json(&mut self.payload);
        let len = (super::disk::HEADER + self.payload.len()) as u64;
        while let Some(i) = self.members.iter().position(|(m, _)| m.room(len) == Room::Full) {
            if self.pool_takes(len) {
                self.say_borrowing(i);
                break;
            }
            self.commit();
            self.members[i].0.wait_for_room();
        }
        if self.borrowing.is_some() && self.members.iter().all(|(m, _)| m.room(len) != Room::Full) {
            self.borrowing = None;
            tracing::info!("disk buffers: every blocking buffer is back within its own max_size");
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&self.payload);
        let ts = super::now_ms();
        for (m, counters) in &mut self.members {
            counters.queued.fetch_add(1, Ordering::Relaxed);
            m.append(&self.payload, &crc, ts, &e.event);
        }
        self.accepted.push(e);
    }

    /// Whether the blocking members' pooled room takes one more record of `len` bytes in
    /// each of them.
    fn pool_takes(&self, len: u64) -> bool {
        let (mut used, mut room, mut n) = (0u64, 0u64, 0u64);
        for (total, max) in self.members.iter().filter_map(|(m, _)| m.blocking_usage()) {
            used += total;
            room += max;
            n += 1;
        }
        used + n * len <= room
    }

    /// Logs (once until every member is back within its own size) that member `i` borrows.
    fn say_borrowing(&mut self, i: usize) {
        if self.borrowing.is_none() {
            let name = self.members[i].0.name();
            self.borrowing = Some(name);
            tracing::warn!(sink = name,
                "disk buffer full (max_size); its events go on in the room the other blocking disk buffers leave (nightjar_buffer_borrowed_bytes), and the fan-out waits only once that is used up");
        }
    }

    /// Flushes every member, records the commit point, then makes the events readable and
    /// lets their source tokens go.
    fn commit(&mut self) {
        let mut synced = false;
        for (m, _) in &mut self.members {
            synced |= m.flush();
        }
        let moved = self.members.iter().zip(&self.recorded).any(|((m, _), &r)| m.next_id != r);
        if moved {
            self.record_point();
            if synced {
                self.commit.sync();
            }
            for ((m, _), r) in self.members.iter_mut().zip(&mut self.recorded) {
                *r = m.next_id;
                m.publish();
            }
        }
        self.accepted.clear();
    }

    /// Writes the commit point, retrying (with a growing pause, up to 5 s) until the write
    /// succeeds: until then nothing after the last point is accepted, and the fan-out waits
    /// on this writer (the kernel's ring buffer takes the stall, its misses counted).
    fn record_point(&mut self) {
        let mut pause = Duration::from_millis(10);
        let points =
            |ms: &[(Member, Arc<OutputCounters>)]| ms.iter().map(|(m, _)| (m.name(), m.next_id)).collect::<Vec<_>>();
        let now = points(&self.members);
        while !self.commit.write(now.iter().copied()) {
            metrics::counter!(pipeline::metrics::names::BUFFER_COMMIT_FAILURES).increment(1);
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    fn sync_idle(&mut self) {
        let mut synced = false;
        for (m, _) in &mut self.members {
            synced |= m.sync_if_due(true);
        }
        if synced {
            self.commit.sync();
        }
    }
}
