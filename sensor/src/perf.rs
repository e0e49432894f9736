//! Attaching a tracepoint program with a BPF cookie (aya's `TracePoint::attach` takes
//! none): the kernel overwrites the first 8 bytes of a tracepoint record with a `pt_regs`
//! pointer before a BPF program sees it, so `common_type` cannot tell the program which
//! tracepoint fired; the cookie (`bpf_get_attach_cookie`, kernels from 5.15) does.
use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd},
};

const PERF_TYPE_TRACEPOINT: u32 = 2;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PERF_EVENT: u32 = 41;

/// An attached tracepoint: the link (detaches when dropped) and its perf event.
#[derive(Debug)]
pub struct CookieLink {
    _link: OwnedFd,
    _perf: OwnedFd,
}

/// Attaches `prog` to tracepoint `id` (its tracefs id) with `cookie`.
pub fn attach_tracepoint(prog: BorrowedFd<'_>, id: u32, cookie: u64) -> io::Result<CookieLink> {
    // struct perf_event_attr, as far as a tracepoint needs it (the kernel takes any size
    // from PERF_ATTR_SIZE_VER0 on, zeroes beyond what it knows).
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&PERF_TYPE_TRACEPOINT.to_ne_bytes());
    attr[4..8].copy_from_slice(&128u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&u64::from(id).to_ne_bytes());
    attr[16..24].copy_from_slice(&1u64.to_ne_bytes()); // sample_period
    attr[48..52].copy_from_slice(&1u32.to_ne_bytes()); // wakeup_events
                                                       // SAFETY: perf_event_open with a valid, fully initialised attr buffer; pid -1, cpu 0
                                                       // (a tracepoint's BPF programs run on every CPU).
    let fd = unsafe {
        libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), -1 as libc::pid_t, 0, -1, PERF_FLAG_FD_CLOEXEC)
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us.
    let perf = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // union bpf_attr for BPF_LINK_CREATE: prog_fd, target_fd, attach_type, flags, then
    // perf_event.bpf_cookie.
    let mut battr = [0u8; 64];
    battr[0..4].copy_from_slice(&(prog.as_raw_fd() as u32).to_ne_bytes());
    battr[4..8].copy_from_slice(&(perf.as_raw_fd() as u32).to_ne_bytes());
    battr[8..12].copy_from_slice(&BPF_PERF_EVENT.to_ne_bytes());
    battr[16..24].copy_from_slice(&cookie.to_ne_bytes());
    // SAFETY: bpf(BPF_LINK_CREATE) with a valid attr buffer of the size we pass.
    let link = unsafe { libc::syscall(libc::SYS_bpf, BPF_LINK_CREATE, battr.as_ptr(), battr.len() as u32) };
    if link < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    Ok(CookieLink { _link: unsafe { OwnedFd::from_raw_fd(link as i32) }, _perf: perf })
}
