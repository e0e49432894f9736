//! The process cache: every known process execution (exec image or fork clone), its
//! parent, and reference counts so a long tree's exits release exactly what they held.
//!
//! Identity: `exec_id` = base64("node:ktime:pid"), ktime being the boot-relative time of
//! the exec (or of the fork, for a clone that has not exec'd), so it is unique per
//! execution across a cluster and stable for idempotent writes downstream.
//!
//! Lifetime: an entry holds one reference for being alive plus one per child entry whose
//! `parent_exec_id` names it. Exit (or being replaced by a new exec of the same pid) drops
//! the alive reference; an entry whose count reaches zero is removed and releases its
//! parent. So ancestry stays available while any descendant lives, and nothing leaks.
use std::{collections::HashMap, sync::Arc};

use base64::Engine;
use nightjar_event::event::SharedProcess;

/// One execution as the cache keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcInfo {
    pub exec_id: Arc<str>,
    pub pid: u32,
    /// Boot-relative start of the task (fork time), to tell a reused pid apart.
    pub start_boottime: u64,
    /// A fork child that has not exec'd: it runs its parent's image.
    pub clone: bool,
    pub parent_exec_id: Option<Arc<str>>,
    /// The process as exported (without refcnt, which is filled at export time), shared
    /// by every event of this execution: its JSON is encoded once.
    pub process: SharedProcess,
}

#[derive(Debug)]
struct Entry {
    info: Arc<ProcInfo>,
    refcnt: u32,
    alive: bool,
}

/// Counters the sensor exports and tests assert on.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub inserted: u64,
    pub removed: u64,
    /// Inserts refused because the cache was at its limit.
    pub refused: u64,
}

pub struct ProcessCache {
    node: String,
    by_id: HashMap<Arc<str>, Entry>,
    by_pid: HashMap<u32, Arc<str>>,
    max_entries: usize,
    pub stats: CacheStats,
}

/// Builds an exec_id from node name, boot-relative ns and pid.
pub fn exec_id(node: &str, ktime: u64, pid: u32) -> Arc<str> {
    base64::engine::general_purpose::STANDARD.encode(format!("{node}:{ktime}:{pid}")).into()
}

impl ProcessCache {
    pub fn new(node: &str, max_entries: usize) -> Self {
        ProcessCache {
            node: node.to_owned(),
            by_id: HashMap::new(),
            by_pid: HashMap::new(),
            max_entries: max_entries.max(1),
            stats: CacheStats::default(),
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Number of live pids tracked.
    pub fn live(&self) -> usize {
        self.by_pid.len()
    }

    pub fn get(&self, exec_id: &str) -> Option<Arc<ProcInfo>> {
        self.by_id.get(exec_id).map(|e| e.info.clone())
    }

    /// Reference count of an entry (alive + children), for exit events and tests.
    pub fn refcnt(&self, exec_id: &str) -> Option<u32> {
        self.by_id.get(exec_id).map(|e| e.refcnt)
    }

    /// The current execution of a live pid, if its start time matches (`None` = any).
    pub fn current(&self, pid: u32, start_boottime: Option<u64>) -> Option<Arc<ProcInfo>> {
        let id = self.by_pid.get(&pid)?;
        let info = &self.by_id.get(id)?.info;
        match start_boottime {
            Some(t) if !crate::procfs::same_start(t, info.start_boottime) => None,
            _ => Some(info.clone()),
        }
    }

    pub fn parent_of(&self, info: &ProcInfo) -> Option<Arc<ProcInfo>> {
        info.parent_exec_id.as_deref().and_then(|id| self.get(id))
    }

    /// Ancestors from the grandparent up, at most `max`.
    pub fn ancestors(&self, info: &ProcInfo, max: usize) -> Vec<Arc<ProcInfo>> {
        let mut out = Vec::new();
        let mut cur = self.parent_of(info).and_then(|p| self.parent_of(&p));
        while let Some(p) = cur {
            if out.len() >= max {
                break;
            }
            cur = self.parent_of(&p);
            out.push(p);
        }
        out
    }

    /// Inserts a new live execution for `info.pid`, replacing the pid's previous one (whose
    /// alive reference is dropped). Returns false if the cache is full (counted).
    pub fn insert(&mut self, info: ProcInfo) -> bool {
        if self.by_id.contains_key(&info.exec_id) {
            return true; // a duplicate record: the entry is already there
        }
        if self.by_id.len() >= self.max_entries {
            self.stats.refused += 1;
            return false;
        }
        let id = info.exec_id.clone();
        let pid = info.pid;
        if let Some(parent) = info.parent_exec_id.as_deref() {
            match self.by_id.get_mut(parent) {
                Some(p) => p.refcnt += 1,
                None => return self.insert_orphan(info),
            }
        }
        self.by_id.insert(id.clone(), Entry { info: Arc::new(info), refcnt: 1, alive: true });
        self.stats.inserted += 1;
        if let Some(prev) = self.by_pid.insert(pid, id) {
            self.drop_alive(&prev);
        }
        true
    }

    fn insert_orphan(&mut self, mut info: ProcInfo) -> bool {
        info.parent_exec_id = None;
        self.insert(info)
    }

    /// The pid's execution ended: drops its alive reference and forgets the pid.
    /// Returns the entry (still readable until its children are gone).
    pub fn exit(&mut self, pid: u32, start_boottime: Option<u64>) -> Option<Arc<ProcInfo>> {
        let info = self.current(pid, start_boottime)?;
        self.by_pid.remove(&pid);
        self.drop_alive(&info.exec_id);
        Some(info)
    }

    fn drop_alive(&mut self, id: &str) {
        if let Some(e) = self.by_id.get_mut(id) {
            if e.alive {
                e.alive = false;
                self.release(id);
            }
        }
    }

    /// Drops one reference; removes entries that reach zero, walking up the parents.
    fn release(&mut self, id: &str) {
        let mut next: Option<Arc<str>> = Some(id.into());
        while let Some(id) = next.take() {
            let Some(e) = self.by_id.get_mut(&id) else { return };
            e.refcnt = e.refcnt.saturating_sub(1);
            if e.refcnt == 0 {
                let e = self.by_id.remove(&id).expect("present");
                self.stats.removed += 1;
                next = e.info.parent_exec_id.clone();
            }
        }
    }

    /// Drops every live pid for which `is_gone(pid, start_boottime)` holds (exits the
    /// sensor missed). Returns how many were collected.
    pub fn collect_gone(&mut self, mut is_gone: impl FnMut(u32, u64) -> bool) -> usize {
        let gone: Vec<(u32, u64)> = self
            .by_pid
            .iter()
            .filter_map(|(pid, id)| self.by_id.get(id).map(|e| (*pid, e.info.start_boottime)))
            .filter(|(pid, t)| is_gone(*pid, *t))
            .collect();
        for (pid, _) in &gone {
            if let Some(id) = self.by_pid.remove(pid) {
                self.drop_alive(&id);
            }
        }
        gone.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(node: &str, pid: u32, t: u64, parent: Option<&Arc<str>>, clone: bool) -> ProcInfo {
        ProcInfo {
            exec_id: exec_id(node, t, pid),
            pid,
            start_boottime: t,
            clone,
            parent_exec_id: parent.cloned(),
            process: nightjar_event::event::Process { pid: Some(pid), ..Default::default() }.into(),
        }
    }

    #[test]
    fn exec_id_is_tetragon_shaped() {
        let id = exec_id("node1", 1234, 42);
        let raw = base64::engine::general_purpose::STANDARD.decode(id.as_bytes()).unwrap();
        assert_eq!(raw, b"node1:1234:42");
    }

    #[test]
    fn a_deep_tree_exiting_in_any_order_leaves_nothing() {
        let mut c = ProcessCache::new("n", 100_000);
        let root = info("n", 1, 1, None, false);
        let root_id = root.exec_id.clone();
        c.insert(root);
        let mut parent = root_id.clone();
        for pid in 2..1002u32 {
            let i = info("n", pid, pid as u64, Some(&parent), false);
            parent = i.exec_id.clone();
            c.insert(i);
        }
        assert_eq!(c.len(), 1001);
        // The leaf's ancestry is intact while everyone above it has exited.
        for pid in (2..1001u32).rev() {
            c.exit(pid, None).unwrap();
        }
        let leaf = c.current(1001, None).unwrap();
        assert_eq!(c.parent_of(&leaf).unwrap().pid, 1000);
        assert_eq!(c.ancestors(&leaf, 5).len(), 5);
        c.exit(1001, None).unwrap();
        assert_eq!(c.len(), 1, "only the live root remains");
        c.exit(1, None).unwrap();
        assert!(c.is_empty());
        assert_eq!(c.stats.inserted, c.stats.removed);
    }

    #[test]
    fn exec_in_place_replaces_the_image_and_keeps_it_as_parent() {
        let mut c = ProcessCache::new("n", 100);
        let sh = info("n", 10, 5, None, false);
        let sh_id = sh.exec_id.clone();
        c.insert(sh);
        let echo = info("n", 10, 6, Some(&sh_id), false);
        c.insert(echo);
        assert_eq!(c.len(), 2, "the old image stays while the new one names it as parent");
        assert_eq!(c.current(10, None).unwrap().exec_id, exec_id("n", 6, 10));
        c.exit(10, None).unwrap();
        assert!(c.is_empty());
    }

    #[test]
    fn reused_pid_is_not_confused() {
        let mut c = ProcessCache::new("n", 100);
        c.insert(info("n", 7, 100, None, false));
        assert!(c.current(7, Some(100_000_000_000)).is_none());
        assert!(c.exit(7, Some(100_000_000_000)).is_none());
        assert!(c.exit(7, Some(100)).is_some());
    }

    #[test]
    fn full_cache_refuses_and_counts() {
        let mut c = ProcessCache::new("n", 2);
        assert!(c.insert(info("n", 1, 1, None, false)));
        assert!(c.insert(info("n", 2, 2, None, false)));
        assert!(!c.insert(info("n", 3, 3, None, false)));
        assert_eq!(c.stats.refused, 1);
    }

    #[test]
    fn missed_exits_are_collected() {
        let mut c = ProcessCache::new("n", 100);
        c.insert(info("n", 1, 1, None, false));
        c.insert(info("n", 2, 2, None, false));
        assert_eq!(c.collect_gone(|pid, _| pid == 2), 1);
        assert_eq!(c.len(), 1);
    }
}
