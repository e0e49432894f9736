//! Reading processes from /proc: the start-up scan (processes older than the agent get
//! identities and parents) and the liveness check that collects exits the sensor missed.
use std::path::Path;

/// Kernel ticks per second (`sysconf(_SC_CLK_TCK)`).
fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// One process as /proc shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcSnapshot {
    pub pid: u32,
    pub ppid: u32,
    /// Boot-relative start, ns (tick resolution).
    pub start_boottime: u64,
    pub comm: String,
    /// Empty for kernel threads.
    pub exe: String,
    /// argv, NUL-separated, as the kernel keeps it.
    pub cmdline: Vec<u8>,
    pub cwd: String,
    pub uid: u32,
    pub euid: u32,
    pub gid: u32,
    pub egid: u32,
    pub auid: u32,
    pub cap_effective: u64,
    pub cap_permitted: u64,
    pub cap_inheritable: u64,
    /// Namespace inums in `nightjar_common::ns` order (0 when unknown).
    pub ns: [u32; nightjar_common::ns::COUNT],
    /// The cgroup v2 path (`0::/...` line).
    pub cgroup: String,
}

/// Parses `/proc/<pid>/stat`: (ppid, start_boottime ns, comm).
pub fn parse_stat(text: &str) -> Option<(u32, u64, String)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] = state (field 3); ppid = field 4; starttime = field 22.
    let ppid = rest.get(1)?.parse().ok()?;
    let ticks: u64 = rest.get(19)?.parse().ok()?;
    Some((ppid, ticks.saturating_mul(1_000_000_000 / clk_tck()), comm))
}

/// Boot-relative start of `pid`, or None if it is gone.
pub fn start_boottime(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text).map(|(_, t, _)| t)
}

/// True when two start times name the same task (/proc has tick resolution).
pub fn same_start(a: u64, b: u64) -> bool {
    a == 0 || b == 0 || a.abs_diff(b) < 2 * (1_000_000_000 / clk_tck())
}

fn ns_inum(pid: u32, name: &str) -> u32 {
    std::fs::read_link(format!("/proc/{pid}/ns/{name}"))
        .ok()
        .and_then(|l| {
            let s = l.to_string_lossy().into_owned();
            s.split('[').nth(1)?.trim_end_matches(']').parse().ok()
        })
        .unwrap_or(0)
}

/// Namespace inums of `pid` in `nightjar_common::ns` order.
pub fn namespaces(pid: u32) -> [u32; nightjar_common::ns::COUNT] {
    use nightjar_common::ns;
    let mut out = [0; ns::COUNT];
    for (slot, name) in [
        (ns::UTS, "uts"),
        (ns::IPC, "ipc"),
        (ns::MNT, "mnt"),
        (ns::PID, "pid"),
        (ns::PID_FOR_CHILDREN, "pid_for_children"),
        (ns::NET, "net"),
        (ns::TIME, "time"),
        (ns::CGROUP, "cgroup"),
        (ns::USER, "user"),
        (ns::TIME_FOR_CHILDREN, "time_for_children"),
    ] {
        out[slot] = ns_inum(pid, name);
    }
    out
}

/// The effective, permitted and inheritable capabilities of `pid` (0 when unreadable).
pub fn caps(pid: u32) -> [u64; 3] {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    [status_hex(&status, "CapEff:"), status_hex(&status, "CapPrm:"), status_hex(&status, "CapInh:")]
}

fn status_ids(text: &str, key: &str) -> Option<(u32, u32)> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let mut it = line[key.len()..].split_whitespace().map(|v| v.parse::<u32>().ok());
    Some((it.next()??, it.next()??))
}

fn status_hex(text: &str, key: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| u64::from_str_radix(l[key.len()..].trim(), 16).ok())
        .unwrap_or(0)
}

/// Reads one process; None if it vanished meanwhile.
pub fn read(pid: u32) -> Option<ProcSnapshot> {
    let dir = format!("/proc/{pid}");
    let (ppid, start_boottime, comm) = parse_stat(&std::fs::read_to_string(format!("{dir}/stat")).ok()?)?;
    let status = std::fs::read_to_string(format!("{dir}/status")).unwrap_or_default();
    let (uid, euid) = status_ids(&status, "Uid:").unwrap_or((u32::MAX, u32::MAX));
    let (gid, egid) = status_ids(&status, "Gid:").unwrap_or((u32::MAX, u32::MAX));
    let link = |n: &str| std::fs::read_link(format!("{dir}/{n}")).map(|p| p.to_string_lossy().into_owned());
    let cgroup = std::fs::read_to_string(format!("{dir}/cgroup"))
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("0::").map(str::to_owned)))
        .unwrap_or_default();
    Some(ProcSnapshot {
        pid,
        ppid,
        start_boottime,
        comm,
        exe: link("exe").unwrap_or_default(),
        cmdline: std::fs::read(format!("{dir}/cmdline")).unwrap_or_default(),
        cwd: link("cwd").unwrap_or_default(),
        uid,
        euid,
        gid,
        egid,
        auid: std::fs::read_to_string(format!("{dir}/loginuid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(u32::MAX),
        cap_effective: status_hex(&status, "CapEff:"),
        cap_permitted: status_hex(&status, "CapPrm:"),
        cap_inheritable: status_hex(&status, "CapInh:"),
        ns: namespaces(pid),
        cgroup,
    })
}

/// Every process in /proc, parents before children (by start time).
pub fn scan() -> Vec<ProcSnapshot> {
    let mut out: Vec<ProcSnapshot> = std::fs::read_dir("/proc")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).filter_map(read).collect())
        .unwrap_or_default();
    out.sort_by_key(|p| (p.start_boottime, p.pid));
    out
}

pub fn exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_and_parens_in_comm() {
        let (ppid, t, comm) =
            parse_stat("123 (a (b) c) S 45 123 123 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 500 0 0").unwrap();
        assert_eq!((ppid, comm.as_str()), (45, "a (b) c"));
        assert_eq!(t, 500 * (1_000_000_000 / clk_tck()));
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn reads_itself() {
        let me = read(std::process::id()).unwrap();
        assert!(me.exe.ends_with(std::env::current_exe().unwrap().file_name().unwrap().to_str().unwrap()));
        assert!(me.ns.iter().all(|n| *n != 0) || me.ns[nightjar_common::ns::TIME] == 0);
        assert!(scan().iter().any(|p| p.pid == 1));
    }
}
