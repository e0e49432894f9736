//! The benchmark's baseline for hook overhead: a no-op BPF program (`r0 = 0; exit`) attached
//! to the same tracepoints as the agent, so a storm's slowdown with the agent can be compared
//! with what any program on those hooks costs.
//!   noop tp:sched/sched_process_exec raw:sched_process_fork ...
//! Prints `attached N` once every point is attached, then holds them until stdin closes.
use std::{io::Read, os::fd::AsFd};

use sensor::{perf, progprobe};

const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;

fn main() {
    if let Err(e) = run() {
        eprintln!("noop: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let tracefs = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .into_iter()
        .find(|p| std::path::Path::new(p).join("events").is_dir())
        .ok_or("tracefs is not mounted")?;
    let tp =
        progprobe::load_return_zero(progprobe::BPF_PROG_TYPE_TRACEPOINT, 0, 0).map_err(|e| format!("load: {e}"))?;
    let raw =
        progprobe::load_return_zero(progprobe::BPF_PROG_TYPE_RAW_TRACEPOINT, 0, 0).map_err(|e| format!("load: {e}"))?;
    let mut links = Vec::new();
    let mut raw_links = Vec::new();
    for point in std::env::args().skip(1) {
        if let Some(tp_name) = point.strip_prefix("tp:") {
            let id_path = format!("{tracefs}/events/{tp_name}/id");
            let id: u32 = std::fs::read_to_string(&id_path)
                .map_err(|e| format!("{id_path}: {e}"))?
                .trim()
                .parse()
                .map_err(|e| format!("{id_path}: {e}"))?;
            links.push(perf::attach_tracepoint(tp.as_fd(), id, 0).map_err(|e| format!("attach {point}: {e}"))?);
        } else if let Some(name) = point.strip_prefix("raw:") {
            raw_links.push(raw_open(&raw, name).map_err(|e| format!("attach {point}: {e}"))?);
        } else {
            return Err(format!("{point}: expected tp:<category>/<name> or raw:<name>"));
        }
    }
    println!("attached {}", links.len() + raw_links.len());
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    Ok(())
}

/// BPF_RAW_TRACEPOINT_OPEN: the returned fd keeps the program attached.
fn raw_open(prog: &std::os::fd::OwnedFd, name: &str) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let cname = std::ffi::CString::new(name).map_err(std::io::Error::other)?;
    let mut attr = [0u8; 16];
    attr[0..8].copy_from_slice(&(cname.as_ptr() as u64).to_ne_bytes());
    attr[8..12].copy_from_slice(&(prog.as_raw_fd() as u32).to_ne_bytes());
    // SAFETY: bpf(BPF_RAW_TRACEPOINT_OPEN) reads the name pointer (alive for the call) and
    // the program fd from an attr buffer of the size we pass.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_RAW_TRACEPOINT_OPEN, attr.as_ptr(), attr.len() as u32) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}
