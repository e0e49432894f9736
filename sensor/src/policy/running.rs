//! matchBinaries for processes already running when a policy loads: the kernel sets a
//! process's matchBinaries bits when it execs (`exec_binmask`), so without this a policy
//! loaded after, say, a long-running server started would never match it. The running
//! processes' binaries (/proc/PID/exe) are compared with the new set, as the kernel
//! compares an exec's, and their bits set in `PROCS`; with followChildren, every
//! descendant of a match too. A process that execs meanwhile gets its bits from the
//! kernel (the set is written before the scan).
use std::collections::{HashMap, HashSet};

use aya::{
    maps::{HashMap as BpfHashMap, MapData},
    Ebpf,
};
use nightjar_common::{op, ProcState};

/// Whether binary `exe` is in a matchBinaries set of positive operator `opr`.
pub fn matches(opr: u8, values: &[String], exe: &str) -> bool {
    values.iter().any(|v| match opr {
        op::PREFIX => exe.starts_with(v.as_str()),
        op::POSTFIX => exe.ends_with(v.as_str()),
        _ => exe == v,
    })
}

/// Running processes: tgid → (binary, parent tgid).
pub type Processes = HashMap<u32, (String, u32)>;

/// A snapshot of the running processes (one /proc walk).
pub fn processes() -> Processes {
    let Ok(dir) = std::fs::read_dir("/proc") else { return HashMap::new() };
    let mut out = HashMap::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(exe) = std::fs::read_link(e.path().join("exe")) else { continue };
        let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        let ppid = status.lines().find_map(|l| l.strip_prefix("PPid:")).and_then(|v| v.trim().parse().ok());
        out.insert(pid, (exe.display().to_string(), ppid.unwrap_or(0)));
    }
    out
}

/// The running processes in the set (and, with `follow`, their descendants).
pub fn members(procs: &Processes, opr: u8, values: &[String], follow: bool) -> HashSet<u32> {
    let mut hit: HashSet<u32> =
        procs.iter().filter(|(_, (exe, _))| matches(opr, values, exe)).map(|(p, _)| *p).collect();
    if follow {
        let descends = |mut p: u32| {
            for _ in 0..64 {
                match procs.get(&p) {
                    Some((_, pp)) if *pp != 0 && *pp != p => p = *pp,
                    _ => return false,
                }
                if hit.contains(&p) {
                    return true;
                }
            }
            false
        };
        let more: Vec<u32> = procs.keys().copied().filter(|p| !hit.contains(p) && descends(*p)).collect();
        hit.extend(more);
    }
    hit
}

/// Sets bit `bit` in `PROCS` for the running members of the set (of the snapshot
/// `procs`); returns how many.
pub fn mark(ebpf: &mut Ebpf, procs: &Processes, bit: u32, opr: u8, values: &[String], follow: bool) -> usize {
    let set = members(procs, opr, values, follow);
    let Some(m) = ebpf.map_mut("PROCS") else { return 0 };
    let Ok(mut procs) = BpfHashMap::<&mut MapData, u32, ProcState>::try_from(m) else { return 0 };
    let mut n = 0;
    for pid in set {
        let mut st = procs.get(&pid, 0).unwrap_or_default();
        st.binmask |= 1u64 << (bit & 63);
        if procs.insert(pid, st, 0).is_ok() {
            n += 1;
        }
    }
    n
}

/// matchNamespaceChanges and matchCapabilityChanges compare with what the kernel recorded
/// at exec; a process that has not exec'd since that recording began has nothing
/// recorded (its namespaces are 0) and would never count as changed. Such processes get
/// their namespaces and capabilities of now, so changes from the policy's load on count.
/// Returns how many were seeded.
pub fn seed_exec_state(ebpf: &mut Ebpf, procs: &Processes) -> usize {
    let Some(m) = ebpf.map_mut("PROCS") else { return 0 };
    let Ok(mut map) = BpfHashMap::<&mut MapData, u32, ProcState>::try_from(m) else { return 0 };
    let mut n = 0;
    for &pid in procs.keys() {
        let known = map.get(&pid, 0).ok();
        let mut st = known.unwrap_or_default();
        if st.ns.iter().any(|v| *v != 0) {
            continue;
        }
        st.ns = crate::procfs::namespaces(pid);
        st.caps = crate::procfs::caps(pid);
        // BPF_NOEXIST where there was no entry: an exec that recorded meanwhile wins.
        let flags = if known.is_some() { 0 } else { 1 };
        if map.insert(pid, st, flags).is_ok() {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_match_as_the_kernel_compares_them() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(matches(op::EQUAL, &v(&["/usr/bin/a", "/bin/b"]), "/bin/b"));
        assert!(!matches(op::EQUAL, &v(&["/bin/b"]), "/bin/bb"));
        assert!(matches(op::PREFIX, &v(&["/usr/"]), "/usr/sbin/nginx"));
        assert!(matches(op::POSTFIX, &v(&["/nginx"]), "/usr/sbin/nginx"));
        assert!(!matches(op::POSTFIX, &v(&["/nginx"]), "/usr/sbin/nginx2"));
    }

    /// This test process is running: it is a member of a set naming its binary, and so are
    /// its children with followChildren.
    #[test]
    fn running_processes_are_found_by_their_binary() {
        let me = std::fs::read_link("/proc/self/exe").unwrap().display().to_string();
        let pid = std::process::id();
        assert!(members(&processes(), op::EQUAL, std::slice::from_ref(&me), false).contains(&pid));
        let mut child = std::process::Command::new("/bin/sleep").arg("5").spawn().unwrap();
        let cpid = child.id();
        // Until its exec is visible in /proc, the child is still this binary.
        let exe = || std::fs::read_link(format!("/proc/{cpid}/exe")).map(|p| p.display().to_string()).ok();
        for _ in 0..500 {
            if exe().as_deref() != Some(me.as_str()) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let procs = processes();
        assert!(!members(&procs, op::EQUAL, std::slice::from_ref(&me), false).contains(&cpid));
        assert!(members(&procs, op::EQUAL, &[me], true).contains(&cpid));
        let _ = child.kill();
        let _ = child.wait();
    }
}
