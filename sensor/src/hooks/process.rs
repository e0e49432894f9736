//! Process lifecycle, user side of `sensor-bpf/src/process.rs`: exec, fork and exit
//! records update the process cache and become `process_exec` / `process_exit` events.
use std::sync::Arc;

use nightjar_common::{exec_flags, ns, ExitRecord, ForkRecord};
use nightjar_event::{
    event::{
        Capabilities, Cgroup, Container, Credentials, Namespace, Namespaces, Pod, Process, ProcessExec, ProcessExit,
        SharedProcess,
    },
    Event, EventKind,
};
use serde_json::Value;

use crate::{
    cache::{exec_id, ProcInfo, ProcessCache},
    clock::Clock,
    container,
    decode::{cstr, join_leaf_first, Exec},
    procfs::ProcSnapshot,
};

use nightjar_event::event::{CapSet, CAP_NAMES};

/// Bit number of a capability name (`CAP_SYS_ADMIN` → 21).
pub fn cap_bit(name: &str) -> Option<u32> {
    CAP_NAMES.iter().position(|n| *n == name).map(|b| b as u32)
}

/// Capability names of a mask (unknown bits as `CAP_<n>`).
pub fn cap_names(mask: u64) -> Vec<String> {
    CapSet::Mask(mask).names()
}

/// Signal names for exit events.
fn signal_name(sig: u32) -> String {
    const NAMES: [&str; 32] = [
        "",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    NAMES.get(sig as usize).map(|s| (*s).to_owned()).unwrap_or_else(|| format!("SIG{sig}"))
}

/// argv (NUL-separated) as Tetragon prints `arguments`: argv[1..] joined by spaces,
/// an argument with a space in double quotes.
pub fn format_arguments(block: &[u8]) -> String {
    let mut parts = block.split(|b| *b == 0);
    parts.next(); // argv[0]
    let mut out = String::new();
    for (i, a) in parts.enumerate() {
        if a.is_empty() && i > 0 {
            continue;
        }
        let a = String::from_utf8_lossy(a);
        if !out.is_empty() {
            out.push(' ');
        }
        if a.contains(' ') {
            out.push('"');
            out.push_str(&a);
            out.push('"');
        } else {
            out.push_str(&a);
        }
    }
    out.trim_end().to_owned()
}

/// `pts0` (the kernel's tty name) → `pts/0`.
fn tty_name(raw: &[u8]) -> Option<String> {
    let s = cstr(raw);
    if s.is_empty() {
        return None;
    }
    Some(match s.strip_prefix("pts") {
        Some(n) if !n.starts_with('/') => format!("pts/{n}"),
        _ => s,
    })
}

/// The host's namespaces: pid 1's, or where /proc/1/ns cannot be read (a sandbox), the
/// agent's own — nightjar runs in the host namespaces (hostPID, hostNetwork, privileged).
pub fn host_namespaces() -> [u32; ns::COUNT] {
    let init = crate::procfs::namespaces(1);
    let me = crate::procfs::namespaces(std::process::id());
    let mut out = init;
    for (slot, v) in out.iter_mut().enumerate() {
        if *v == 0 {
            *v = me[slot];
        }
    }
    out
}

pub struct ProcessHook {
    pub cache: ProcessCache,
    clock: Clock,
    host_ns: [u32; ns::COUNT],
}

/// Fields of a process shared by exec records and /proc snapshots.
struct Identity<'a> {
    pid: u32,
    tid: u32,
    uid: u32,
    euid: u32,
    gid: u32,
    egid: u32,
    auid: u32,
    binary: String,
    args: &'a [u8],
    cwd: String,
    caps: (u64, u64, u64),
    ns: [u32; ns::COUNT],
    cgroup_id: Option<u64>,
    cgroup_path: String,
    tty: Option<String>,
    flags: Vec<&'static str>,
}

impl ProcessHook {
    pub fn new(node: &str, max_entries: usize) -> Self {
        ProcessHook { cache: ProcessCache::new(node, max_entries), clock: Clock::new(), host_ns: host_namespaces() }
    }

    /// Wall-clock time of a boot-relative kernel time.
    pub fn wall(&self, boot_ns: u64) -> nightjar_event::time::Timestamp {
        self.clock.wall(boot_ns)
    }

    /// Fills the cache from /proc (processes that predate the agent).
    pub fn seed_from_proc(&mut self, snaps: &[ProcSnapshot]) -> usize {
        let mut n = 0;
        for s in snaps {
            let parent = self.cache.current(s.ppid, None);
            let kernel_thread = s.exe.is_empty();
            let id = Identity {
                pid: s.pid,
                tid: s.pid,
                uid: s.uid,
                euid: s.euid,
                gid: s.gid,
                egid: s.egid,
                auid: s.auid,
                binary: if kernel_thread { format!("[{}]", s.comm) } else { s.exe.clone() },
                args: &s.cmdline,
                cwd: s.cwd.clone(),
                caps: (s.cap_effective, s.cap_permitted, s.cap_inheritable),
                ns: s.ns,
                cgroup_id: None,
                cgroup_path: s.cgroup.clone(),
                tty: None,
                flags: vec!["procFS"],
            };
            let eid = exec_id(self.cache.node(), s.start_boottime, s.pid);
            let process = self.build_process(&id, eid.clone(), s.start_boottime, parent.as_deref());
            n += usize::from(self.cache.insert(ProcInfo {
                exec_id: eid,
                pid: s.pid,
                start_boottime: s.start_boottime,
                clone: false,
                parent_exec_id: parent.map(|p| p.exec_id.clone()),
                process: process.into(),
            }));
        }
        n
    }

    fn build_process(&self, id: &Identity, eid: Arc<str>, ktime: u64, parent: Option<&ProcInfo>) -> Process {
        let container = container::from_cgroup_path(&id.cgroup_path);
        let nsv = |slot: usize| {
            (id.ns[slot] != 0).then(|| Namespace {
                inum: Some(id.ns[slot]),
                is_host: Some(self.host_ns[slot] != 0 && id.ns[slot] == self.host_ns[slot]),
                ..Default::default()
            })
        };
        let mut flags = id.flags.clone();
        if id.cwd == "/" {
            flags.push("rootcwd");
        }
        let mut p = Process {
            exec_id: Some(eid.to_string()),
            pid: Some(id.pid),
            uid: Some(id.uid),
            cwd: Some(id.cwd.clone()),
            binary: Some(id.binary.clone()),
            arguments: Some(format_arguments(id.args)),
            flags: Some(flags.join(" ")),
            start_time: Some(self.clock.wall(ktime)),
            auid: Some(id.auid),
            parent_exec_id: parent.map(|p| p.exec_id.to_string()),
            tid: Some(id.tid),
            cap: Some(Capabilities {
                permitted: Some(CapSet::Mask(id.caps.1)),
                effective: Some(CapSet::Mask(id.caps.0)),
                inheritable: (id.caps.2 != 0).then_some(CapSet::Mask(id.caps.2)),
                ..Default::default()
            }),
            ns: Some(Namespaces {
                uts: nsv(ns::UTS),
                ipc: nsv(ns::IPC),
                mnt: nsv(ns::MNT),
                pid: nsv(ns::PID),
                pid_for_children: nsv(ns::PID_FOR_CHILDREN),
                net: nsv(ns::NET),
                time: nsv(ns::TIME),
                time_for_children: nsv(ns::TIME_FOR_CHILDREN),
                cgroup: nsv(ns::CGROUP),
                user: nsv(ns::USER),
                ..Default::default()
            }),
            ..Default::default()
        };
        if let Some(c) = container {
            p.docker = Some(c.bare_id.chars().take(31).collect());
            let mut pod = Pod {
                container: Some(Container { id: Some(c.id.clone()), ..Default::default() }),
                ..Default::default()
            };
            if let Some(uid) = &c.pod_uid {
                pod.extra.insert("uid".into(), Value::String(uid.clone()));
            }
            p.pod = Some(pod);
        }
        p.process_credentials = Some(Credentials {
            uid: Some(id.uid),
            gid: Some(id.gid),
            euid: Some(id.euid),
            egid: Some(id.egid),
            ..Default::default()
        });
        let cg = Cgroup {
            id: id.cgroup_id.map(|c| c.to_string()),
            path: (!id.cgroup_path.is_empty()).then(|| id.cgroup_path.clone()),
            ..Default::default()
        };
        if cg.id.is_some() || cg.path.is_some() {
            p.cgroup = Some(cg);
        }
        p.tty = id.tty.clone();
        p
    }

    /// An exec record: the new image replaces the pid's previous one in the cache.
    pub fn on_exec(&mut self, e: &Exec) -> Event {
        let r = &e.fixed;
        let prev = self.cache.current(r.pid, Some(r.start_boottime));
        // Exec in place (no fork since the last exec): the previous image is the parent,
        // as Tetragon reports `bash -c curl`. A fork clone execs: its parent is the forker.
        let parent = match &prev {
            Some(p) if !p.clone => Some(p.clone()),
            Some(p) => self.cache.parent_of(p),
            None => self.cache.current(r.ppid, Some(r.parent_start_boottime)),
        };
        let mut flags = vec!["execve"];
        if r.flags & exec_flags::ARGS_TRUNCATED != 0 {
            flags.push("truncArgs");
        }
        if r.flags & exec_flags::PATH_TRUNCATED != 0 {
            flags.push("truncFilename");
        }
        if r.flags & exec_flags::CWD_TRUNCATED != 0 {
            flags.push("errorCWD");
        }
        let binary = join_leaf_first(&e.path);
        let id = Identity {
            pid: r.pid,
            tid: r.tid,
            uid: r.uid,
            euid: r.euid,
            gid: r.gid,
            egid: r.egid,
            auid: r.auid,
            binary: if binary.is_empty() { cstr(&r.comm) } else { binary },
            args: &e.args,
            cwd: join_leaf_first(&e.cwd),
            caps: (r.cap_effective, r.cap_permitted, r.cap_inheritable),
            ns: r.ns,
            cgroup_id: Some(r.cgroup_id),
            cgroup_path: {
                let p = join_leaf_first(&e.cgroup);
                if p.is_empty() {
                    "/".into()
                } else {
                    p
                }
            },
            tty: tty_name(&r.tty),
            flags,
        };
        let eid = exec_id(self.cache.node(), r.hdr.ktime, r.pid);
        let process = SharedProcess::new(self.build_process(&id, eid.clone(), r.hdr.ktime, parent.as_deref()));
        let info = ProcInfo {
            exec_id: eid,
            pid: r.pid,
            start_boottime: r.start_boottime,
            clone: false,
            parent_exec_id: parent.as_ref().map(|p| p.exec_id.clone()),
            process: process.clone(),
        };
        if !self.cache.insert(info) {
            nightjar_event::metrics::count_stage_drop("process_cache", "cache_full", 1);
        }
        nightjar_event::metrics::count_exec();
        let exec =
            ProcessExec { process: Some(process), parent: parent.map(|p| p.process.clone()), ..Default::default() };
        Event::new(EventKind::ProcessExec(Box::new(exec)), self.cache.node(), self.clock.wall(r.hdr.ktime))
    }

    /// A fork: the child runs the parent's image under a new exec_id until it execs.
    pub fn on_fork(&mut self, f: &ForkRecord) {
        let Some(parent) = self.cache.current(f.ppid, Some(f.parent_start_boottime)) else {
            return; // unknown parent: the child's exec will look its parent up by ppid
        };
        let eid = exec_id(self.cache.node(), f.start_boottime, f.pid);
        let mut process = Process::clone(&parent.process);
        process.exec_id = Some(eid.to_string());
        process.pid = Some(f.pid);
        process.tid = Some(f.pid);
        process.parent_exec_id = Some(parent.exec_id.to_string());
        process.start_time = Some(self.clock.wall(f.start_boottime));
        process.flags = Some(match process.flags.as_deref() {
            Some(fl) if !fl.split(' ').any(|w| w == "clone") => format!("{fl} clone"),
            Some(fl) => fl.to_owned(),
            None => "clone".into(),
        });
        let ok = self.cache.insert(ProcInfo {
            exec_id: eid,
            pid: f.pid,
            start_boottime: f.start_boottime,
            clone: true,
            parent_exec_id: Some(parent.exec_id.clone()),
            process: process.into(),
        });
        if !ok {
            nightjar_event::metrics::count_stage_drop("process_cache", "cache_full", 1);
        }
    }

    /// An exit: the event carries the process as it last exec'd; the cache lets it go.
    pub fn on_exit(&mut self, x: &ExitRecord) -> Option<Event> {
        let info = self.cache.current(x.pid, Some(x.start_boottime))?;
        let parent = self.cache.parent_of(&info);
        let mut process = info.process.clone();
        // The exit's own copy (once per execution): every other event shares the cached one.
        process.make_mut().refcnt = self.cache.refcnt(&info.exec_id);
        self.cache.exit(x.pid, Some(x.start_boottime));
        let sig = x.exit_code & 0x7f;
        let exit = ProcessExit {
            process: Some(process),
            parent: parent.map(|p| p.process.clone()),
            signal: (sig != 0).then(|| signal_name(sig)),
            status: Some((x.exit_code >> 8) & 0xff),
            time: Some(self.clock.wall(x.hdr.ktime)),
            ..Default::default()
        };
        Some(Event::new(EventKind::ProcessExit(Box::new(exit)), self.cache.node(), self.clock.wall(x.hdr.ktime)))
    }

    /// Collects pids whose exit the sensor did not see (ring overflow, agent restart).
    pub fn collect_gone(&mut self) -> usize {
        self.cache.collect_gone(|pid, start| match crate::procfs::start_boottime(pid) {
            None => true,
            Some(t) => !crate::procfs::same_start(t, start),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_like_tetragon() {
        assert_eq!(format_arguments(b"/bin/echo\0a\0b\0c\0"), "a b c");
        assert_eq!(format_arguments(b"bash\0-c\0curl https://x\0"), "-c \"curl https://x\"");
        assert_eq!(format_arguments(b"/bin/true\0"), "");
        assert_eq!(format_arguments(b""), "");
    }

    #[test]
    fn caps_and_signals() {
        assert_eq!(cap_names(1 << 21 | 1), vec!["CAP_CHOWN", "CAP_SYS_ADMIN"]);
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(tty_name(b"pts3\0\0").as_deref(), Some("pts/3"));
        assert_eq!(tty_name(b"\0"), None);
    }
}
