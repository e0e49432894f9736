//! What this kernel offers nightjar: BTF, tracefs, kprobes, BPF-LSM, privileges.
//! Run once at startup; the result is logged and shown by `nightjar status`.
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Kernel features relevant to choosing hook backends.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KernelFeatures {
    pub kernel_release: String,
    /// `/sys/kernel/btf/vmlinux` is present (needed for struct offsets).
    pub btf: bool,
    /// Where tracefs is mounted (after mounting it if it was missing).
    pub tracefs: Option<PathBuf>,
    /// `kprobe_events` exists in tracefs (kernel built with kprobes).
    pub kprobes: bool,
    /// `bpf` is in the active LSM list (and, once the sensor has loaded, BPF-LSM
    /// programs load here).
    pub bpf_lsm: bool,
    /// Why the active LSM list could not be read (securityfs not mounted, say): that is not
    /// `bpf` being absent from it, and it leaves BPF-LSM unusable (a program loads whether
    /// or not `bpf` is active, and runs only if it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsm_list_unreadable: Option<String>,
    /// fentry programs load here: learned by the sensor at start (loading one), so false
    /// from `probe()` alone.
    #[serde(default)]
    pub fentry: bool,
    pub euid: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("tracefs is not mounted at /sys/kernel/tracing and mounting it failed: {0} (run as root, or `mount -t tracefs nodev /sys/kernel/tracing`)")]
    Tracefs(std::io::Error),
}

const TRACEFS: &str = "/sys/kernel/tracing";
const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";

/// Probes the kernel; mounts tracefs if it is missing and `mount_missing` is set.
pub fn probe(mount_missing: bool) -> Result<KernelFeatures, ProbeError> {
    let tracefs =
        find_tracefs().or_else(|| if mount_missing { mount_tracefs().ok().and_then(|_| find_tracefs()) } else { None });
    if tracefs.is_none() && mount_missing {
        return Err(ProbeError::Tracefs(
            mount_tracefs().err().unwrap_or_else(|| std::io::Error::other("tracefs mounted but has no events/")),
        ));
    }
    let kprobes = tracefs.as_deref().map(|t| t.join("kprobe_events").exists()).unwrap_or(false);
    let (bpf_lsm, lsm_list_unreadable) = lsm_list(std::fs::read_to_string(LSM_LIST));
    Ok(KernelFeatures {
        kernel_release: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
        btf: Path::new("/sys/kernel/btf/vmlinux").exists(),
        tracefs,
        kprobes,
        bpf_lsm,
        lsm_list_unreadable,
        fentry: false,
        // SAFETY: geteuid has no preconditions and cannot fail.
        euid: unsafe { libc::geteuid() },
    })
}

const LSM_LIST: &str = "/sys/kernel/security/lsm";

/// Whether `bpf` is an active LSM, from the list securityfs shows; when the list cannot be
/// read, why (which is not the same as `bpf` being absent from it).
fn lsm_list(read: std::io::Result<String>) -> (bool, Option<String>) {
    match read {
        Ok(s) => (s.trim().split(',').any(|l| l == "bpf"), None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            (false, Some(format!("the active LSM list is unknown: {LSM_LIST} does not exist (securityfs is not mounted at /sys/kernel/security)")))
        }
        Err(e) => (false, Some(format!("the active LSM list is unknown: cannot read {LSM_LIST}: {e}"))),
    }
}

fn find_tracefs() -> Option<PathBuf> {
    [TRACEFS, DEBUGFS_TRACING].into_iter().map(PathBuf::from).find(|p| p.join("events").is_dir())
}

fn mount_tracefs() -> std::io::Result<()> {
    let src = c"nodev";
    let target = c"/sys/kernel/tracing";
    let fstype = c"tracefs";
    // SAFETY: static NUL-terminated strings; mount(2) does not keep the pointers.
    let rc = unsafe { libc::mount(src.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Reads the byte offset of `field` in a tracepoint's record from its tracefs `format` file.
pub fn tracepoint_field_offset(tracefs: &Path, category: &str, name: &str, field: &str) -> Option<u32> {
    let text = std::fs::read_to_string(tracefs.join("events").join(category).join(name).join("format")).ok()?;
    for line in text.lines() {
        let line = line.trim();
        let Some(decl) = line.strip_prefix("field:") else { continue };
        let decl_name = decl.split(';').next()?.trim();
        let ident = decl_name.rsplit(|c: char| c.is_whitespace() || c == '*').next()?;
        let ident = ident.split('[').next()?;
        if ident == field {
            let off = line.split("offset:").nth(1)?.split(';').next()?.trim();
            return off.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe on the running kernel, against evidence it does not read itself. A runner
    /// that knows its kernel says what must be there in `NIGHTJAR_EXPECT_KERNEL` (the VM
    /// runner: `btf,kprobes,bpf_lsm` for Debian's stock kernel, from its config); those are
    /// what the kprobe, fentry and BPF-LSM backends will be chosen on.
    #[test]
    fn probe_sees_what_this_kernel_offers() {
        let f = probe(false).expect("probe without mounting never fails");
        // SAFETY: utsname is plain bytes; all-zero is a valid value.
        let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: uname fills the struct it is given and has no other effect.
        assert_eq!(unsafe { libc::uname(&mut uts) }, 0);
        // SAFETY: uname NUL-terminates release.
        let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) }.to_string_lossy();
        assert_eq!(f.kernel_release, release);
        if f.tracefs.is_some() {
            // perf's kprobe PMU and tracefs' kprobe_events come with the same kernel option.
            assert_eq!(f.kprobes, Path::new("/sys/bus/event_source/devices/kprobe").is_dir(), "{f:?}");
        }
        let expect = std::env::var("NIGHTJAR_EXPECT_KERNEL").unwrap_or_default();
        for want in expect.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let have = match want {
                "btf" => f.btf,
                "tracefs" => f.tracefs.is_some(),
                "kprobes" => f.kprobes,
                "bpf_lsm" => f.bpf_lsm,
                // Only a load tells (the sensor does it at start); policy tests check it.
                "fentry" => continue,
                other => panic!("NIGHTJAR_EXPECT_KERNEL: unknown feature {other:?}"),
            };
            assert!(have, "this kernel should offer {want}; the probe says {f:?}");
        }
    }

    #[test]
    fn an_unreadable_lsm_list_is_not_an_absent_bpf() {
        assert_eq!(lsm_list(Ok("lockdown,capability,bpf\n".into())), (true, None));
        assert_eq!(lsm_list(Ok("lockdown,capability".into())), (false, None));
        let (bpf, why) = lsm_list(Err(std::io::ErrorKind::NotFound.into()));
        assert!(!bpf);
        assert!(why.is_some_and(|w| w.contains("securityfs is not mounted")));
    }

    #[test]
    fn parses_format_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("events/sched/sched_process_exit");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(
            p.join("format"),
            "name: x\nformat:\n\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n\tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;\n",
        )
        .unwrap();
        let off = |f| tracepoint_field_offset(dir.path(), "sched", "sched_process_exit", f);
        assert_eq!(off("group_dead"), Some(32));
        assert_eq!(off("comm"), Some(8));
        assert_eq!(off("nope"), None);
    }
}
