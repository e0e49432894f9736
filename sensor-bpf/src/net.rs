//! Network arguments, kernel side of `sensor/src/hooks/net.rs`: a `sock`, `socket` or
//! `sockaddr` argument (from a kernel pointer, a user pointer, or a file descriptor of the
//! current task) read into a fixed [`SockArg`] / [`SockaddrArg`] in the argument's string
//! slot, which the policy engine then reports like any other captured value. Guards
//! (`net_guard`, in `ArgSpec.aux`) let a tracepoint stand-in fire only for the sockets the
//! kernel function it stands for would see (TCP only, a successful syscall).
use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated as gen},
    macros::map,
    maps::LruHashMap,
};
use nightjar_common::{
    action, argsrc, net_guard, op, plimits, ArgCond, ArgSpec, HookConfig, Selector, SkbArg, SockArg, SockOwner,
    SockaddrArg,
};

use crate::{
    kread::{off, rd, rd_ptr},
    policy::{argbuf, slot_idx},
};

/// Tracked sockets (TrackSock), by `struct sock` address: the process they belong to.
#[map]
static SOCK_OWNERS: LruHashMap<u64, SockOwner> = LruHashMap::with_max_entries(32768, 0);

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const IPPROTO_TCP: u16 = 6;
const IPPROTO_UDP: u16 = 17;
const S_IFMT: u16 = 0o170000;
const S_IFSOCK: u16 = 0o140000;
const EINPROGRESS: i64 = 115;
const TCP_SYN_SENT: u16 = 2;
/// Bytes of a network device's name, its NUL included.
const IFNAMSIZ: u32 = 16;
/// x86_64 `struct pt_regs` offsets of the syscall argument registers (di, si, dx, r10, r8, r9).
const SYSCALL_ARG_REGS: [u32; 8] = [112, 104, 96, 56, 72, 64, 112, 112];

/// Captures network argument `spec` (`word`: its 8-byte value; `ret`: the syscall exit
/// record's return value) into `dst`, a string slot of the arg buffer (map memory: the
/// record is assembled there, not on the stack, which the uprobe chain has little of).
/// Returns the bytes written, or None when a guard of the spec fails (the hook is then
/// skipped).
#[inline(always)]
pub fn capture(spec: &ArgSpec, word: u64, ret: i64, dst: *mut u8) -> Option<usize> {
    let g = spec.aux;
    if g & net_guard::RET_OK != 0 && ret != 0 && ret != -EINPROGRESS {
        return None;
    }
    let sk = match spec.src {
        argsrc::NET_DEV => return Some(read_dev_name(word, dst)),
        argsrc::SKB_PTR => {
            read_skb(word, dst as *mut SkbArg);
            return Some(core::mem::size_of::<SkbArg>());
        }
        argsrc::SOCKADDR_KPTR | argsrc::SOCKADDR_UPTR => {
            read_sockaddr(word, spec.src == argsrc::SOCKADDR_UPTR, dst);
            return Some(core::mem::size_of::<SockaddrArg>());
        }
        argsrc::SOCK_PTR => word,
        argsrc::SOCKET_PTR => rd_ptr(word, off!(net.socket_sk)),
        argsrc::FD_SOCK => fd_sock(word),
        argsrc::REGS_FD_SOCK => fd_sock(user_arg((g & net_guard::REG_MASK) as usize)),
        _ => 0,
    };
    if g & (net_guard::SOCKET | net_guard::TCP | net_guard::UDP) != 0 && sk == 0 {
        return None;
    }
    let p = dst as *mut SockArg;
    read_sock(sk, p);
    // SAFETY: p points into the slot, written just above.
    let (family, protocol) = unsafe { ((*p).family, (*p).protocol) };
    let inet = family == AF_INET || family == AF_INET6;
    if g & net_guard::TCP != 0 && !(inet && protocol == IPPROTO_TCP) {
        return None;
    }
    if g & net_guard::UDP != 0 && !(inet && protocol == IPPROTO_UDP) {
        return None;
    }
    if g & net_guard::SYN_SENT != 0 {
        // SAFETY: as above.
        unsafe { (*p).state = TCP_SYN_SENT };
    }
    owner(sk, g);
    Some(core::mem::size_of::<SockArg>())
}

/// A tracked socket's event is its owner's (Tetragon's `update_pid_tid_from_sock`, after
/// the socket is read); then a returnArgAction TrackSock / UntrackSock of this argument.
/// (Not inlined: its map key and value stay off the capture chain's stack.)
#[inline(never)]
fn owner(sk: u64, g: u16) {
    if sk == 0 {
        return;
    }
    // SAFETY: the value is copied out at once.
    if let (Some(o), Some(ab)) = (unsafe { SOCK_OWNERS.get(&sk) }, argbuf()) {
        ab.owner = *o;
    }
    if g & net_guard::TRACK != 0 {
        track(sk, true);
    } else if g & net_guard::UNTRACK != 0 {
        track(sk, false);
    }
}

/// Tracks `sk` for the current process and thread, or forgets it.
#[inline(always)]
fn track(sk: u64, on: bool) {
    if on {
        let pid_tgid = bpf_get_current_pid_tgid();
        let o = SockOwner { pid: (pid_tgid >> 32) as u32, tid: pid_tgid as u32 };
        let _ = SOCK_OWNERS.insert(&sk, &o, 0);
    } else {
        let _ = SOCK_OWNERS.remove(&sk);
    }
}

/// Selector `s`'s TrackSock / UntrackSock (argSock in `fd_arg`) on the socket just captured
/// for hook `conf`. (Not inlined, as `fdfollow::act`.)
#[inline(never)]
pub fn act(conf: &HookConfig, s: &Selector) {
    let Some(ab) = argbuf() else { return };
    let i = s.fd_arg as usize;
    if i >= plimits::ARGS {
        return;
    }
    let spec = &conf.args[i];
    if !matches!(spec.src, argsrc::SOCK_PTR | argsrc::SOCKET_PTR | argsrc::FD_SOCK | argsrc::REGS_FD_SOCK) {
        return;
    }
    let p = ab.strs[slot_idx(spec.slot as usize)].as_ptr() as *const SockArg;
    // SAFETY: the slot holds the SockArg capture wrote (a string slot is larger).
    let sk = unsafe { core::ptr::read_unaligned(core::ptr::addr_of!((*p).cookie)) };
    if sk != 0 {
        track(sk, s.fd_action == action::TRACK_SOCK);
    }
}

/// A `struct net_device`'s name into `dst` (NUL-terminated); its length.
#[inline(always)]
fn read_dev_name(dev: u64, dst: *mut u8) -> usize {
    let o = off!(net.net_device_name);
    if dev == 0 || o == crate::kread::MISSING {
        return 0;
    }
    // SAFETY: at most IFNAMSIZ bytes into the caller's slot; a bad source fails the helper.
    let n = unsafe { gen::bpf_probe_read_kernel_str(dst as *mut c_void, IFNAMSIZ, (dev + o as u64) as *const c_void) };
    if n > 0 {
        (n - 1) as usize
    } else {
        0
    }
}

/// The fields of packet `skb` Tetragon reports into `*p`: IPv4 or IPv6 (the fixed header;
/// the ports when TCP or UDP follows it directly), and the sk_buff's own len, hash, mark,
/// priority. All zero when `skb` is 0; the tuple zero when the packet is not IP.
#[inline(always)]
fn read_skb(skb: u64, p: *mut SkbArg) {
    // SAFETY (all): p points to a SkbArg-sized part of a string slot of the arg buffer.
    unsafe {
        *p = SkbArg::default();
        if skb == 0 {
            return;
        }
        (*p).len = rd::<u32>(skb, off!(net.skb_len)).unwrap_or(0);
        (*p).hash = rd::<u32>(skb, off!(net.skb_hash)).unwrap_or(0);
        (*p).mark = rd::<u32>(skb, off!(net.skb_mark)).unwrap_or(0);
        (*p).priority = rd::<u32>(skb, off!(net.skb_priority)).unwrap_or(0);
        let head = rd_ptr(skb, off!(net.skb_head));
        let l3 = rd::<u16>(skb, off!(net.skb_network_header)).unwrap_or(0) as u64;
        if head == 0 {
            return;
        }
        let ip = head + l3;
        let sa = core::ptr::addr_of_mut!((*p).saddr) as *mut u8;
        let da = core::ptr::addr_of_mut!((*p).daddr) as *mut u8;
        let l4 = match rd::<u8>(ip, 0).unwrap_or(0) >> 4 {
            4 => {
                (*p).family = AF_INET;
                (*p).protocol = rd::<u8>(ip, 9).unwrap_or(0) as u16;
                rd_into(sa, 4, ip, 12);
                rd_into(da, 4, ip, 16);
                head + rd::<u16>(skb, off!(net.skb_transport_header)).unwrap_or(0) as u64
            }
            6 => {
                (*p).family = AF_INET6;
                (*p).protocol = rd::<u8>(ip, 6).unwrap_or(0) as u16;
                rd_into(sa, 16, ip, 8);
                rd_into(da, 16, ip, 24);
                ip + 40
            }
            _ => return,
        };
        if (*p).protocol == IPPROTO_TCP || (*p).protocol == IPPROTO_UDP {
            (*p).sport = u16::from_be(rd::<u16>(l4, 0).unwrap_or(0));
            (*p).dport = u16::from_be(rd::<u16>(l4, 2).unwrap_or(0));
        }
    }
}

/// Syscall argument `i` of the current task, from the user registers saved at entry.
#[inline(always)]
fn user_arg(i: usize) -> u64 {
    // SAFETY: helpers on the current task; the result is only read through probe_read.
    let regs = unsafe { gen::bpf_task_pt_regs(gen::bpf_get_current_task_btf()) } as u64;
    rd::<u64>(regs, SYSCALL_ARG_REGS[i & 7]).unwrap_or(u64::MAX)
}

/// The `struct sock` of the current task's descriptor `fd` (0: not a socket).
#[inline(always)]
fn fd_sock(fd: u64) -> u64 {
    if (fd as i64) < 0 {
        return 0;
    }
    let file = crate::policy::fd_file(fd);
    let inode = rd_ptr(file, off!(net.file_f_inode));
    let mode = rd::<u16>(inode, off!(net.inode_i_mode)).unwrap_or(0);
    if mode & S_IFMT != S_IFSOCK {
        return 0;
    }
    let socket = rd_ptr(file, off!(net.file_private_data));
    rd_ptr(socket, off!(net.socket_sk))
}

/// Copies `n` bytes of kernel memory at `base + off` to `dst` (left as is when this
/// kernel lacks the field; zeroed by the helper when the read faults).
#[inline(always)]
fn rd_into(dst: *mut u8, n: u32, base: u64, off: u32) {
    if base == 0 || off == crate::kread::MISSING {
        return;
    }
    // SAFETY: dst..dst+n lies in the caller's slot; a bad source fails the helper.
    unsafe {
        gen::bpf_probe_read_kernel(dst as *mut c_void, n, (base + off as u64) as *const c_void);
    }
}

/// The fields of `sk` Tetragon reports into `*p` (all zero when `sk` is 0).
#[inline(always)]
fn read_sock(sk: u64, p: *mut SockArg) {
    // SAFETY (all): p points to a SockArg-sized part of a string slot of the arg buffer.
    unsafe {
        *p = SockArg::default();
        if sk == 0 {
            return;
        }
        (*p).family = rd::<u16>(sk, off!(net.skc_family)).unwrap_or(0);
        (*p).state = rd::<u8>(sk, off!(net.skc_state)).unwrap_or(0) as u16;
        (*p).sock_type = rd::<u16>(sk, off!(net.sk_type)).unwrap_or(0);
        (*p).protocol = rd::<u16>(sk, off!(net.sk_protocol)).unwrap_or(0);
        (*p).mark = rd::<u32>(sk, off!(net.sk_mark)).unwrap_or(0);
        (*p).priority = rd::<u32>(sk, off!(net.sk_priority)).unwrap_or(0);
        (*p).sport = rd::<u16>(sk, off!(net.skc_num)).unwrap_or(0);
        (*p).dport = u16::from_be(rd::<u16>(sk, off!(net.skc_dport)).unwrap_or(0));
        let sa = core::ptr::addr_of_mut!((*p).saddr) as *mut u8;
        let da = core::ptr::addr_of_mut!((*p).daddr) as *mut u8;
        if (*p).family == AF_INET6 {
            rd_into(sa, 16, sk, off!(net.skc_v6_rcv_saddr));
            rd_into(da, 16, sk, off!(net.skc_v6_daddr));
        } else {
            rd_into(sa, 4, sk, off!(net.skc_rcv_saddr));
            rd_into(da, 4, sk, off!(net.skc_daddr));
        }
        (*p).cookie = sk;
    }
}

/// Bytes of a `struct sockaddr_in6` read; a `sockaddr_in` is 16.
const SOCKADDR_READ: usize = 24;

/// A `struct sockaddr` (in/in6: family, port, address; others: the family only) into
/// `dst` as a SockaddrArg; the raw bytes are read into the slot past it first.
#[inline(always)]
fn read_sockaddr(ptr: u64, user: bool, dst: *mut u8) {
    // SAFETY (all): dst is a string slot (PATH_MAX + 256 bytes): the SockaddrArg at its
    // start, the raw copy at 32..56; a bad source address fails the helper.
    unsafe {
        let raw = dst.add(32);
        let a = dst as *mut SockaddrArg;
        *a = SockaddrArg::default();
        if ptr == 0 {
            return;
        }
        let read = |n: usize| {
            if user {
                gen::bpf_probe_read_user(raw as *mut c_void, n as u32, ptr as *const c_void)
            } else {
                gen::bpf_probe_read_kernel(raw as *mut c_void, n as u32, ptr as *const c_void)
            }
        };
        // A sockaddr_in may end a mapping before 24 bytes: read it again shorter.
        if read(SOCKADDR_READ) != 0 && read(16) != 0 {
            return;
        }
        let b = core::slice::from_raw_parts(raw, SOCKADDR_READ);
        (*a).family = u16::from_ne_bytes([b[0], b[1]]);
        let ad = core::ptr::addr_of_mut!((*a).addr) as *mut u8;
        if (*a).family == AF_INET {
            (*a).port = u16::from_be_bytes([b[2], b[3]]);
            core::ptr::copy_nonoverlapping(raw.add(4), ad, 4);
        } else if (*a).family == AF_INET6 {
            (*a).port = u16::from_be_bytes([b[2], b[3]]);
            core::ptr::copy_nonoverlapping(raw.add(8), ad, 16);
        }
    }
}

/// Evaluates network condition `c` on the captured record at `data` (a SockArg, or a
/// SockaddrArg for `sockaddr` sources, whose one address and port the S* operators test).
#[inline(always)]
pub fn matches(data: *const u8, src: u8, c: &ArgCond) -> bool {
    let sockaddr = src == argsrc::SOCKADDR_KPTR || src == argsrc::SOCKADDR_UPTR;
    // SAFETY (both): data is a string slot of the arg buffer holding the captured record.
    let (family, sport, dport, protocol, state) = unsafe {
        if sockaddr {
            let a = &*(data as *const SockaddrArg);
            (a.family, a.port, a.port, 0, 0)
        } else {
            let s = &*(data as *const SockArg);
            (s.family, s.sport, s.dport, s.protocol, s.state)
        }
    };
    let (saddr, daddr) = if sockaddr {
        (core::mem::offset_of!(SockaddrArg, addr), core::mem::offset_of!(SockaddrArg, addr))
    } else {
        (core::mem::offset_of!(SockArg, saddr), core::mem::offset_of!(SockArg, daddr))
    };
    match c.op {
        op::SADDR | op::NOT_SADDR => addr_in(c.cond, family, data, saddr) == (c.op == op::SADDR),
        op::DADDR | op::NOT_DADDR => addr_in(c.cond, family, data, daddr) == (c.op == op::DADDR),
        op::SPORT | op::NOT_SPORT => port_in(c, sport) == (c.op == op::SPORT),
        op::DPORT | op::NOT_DPORT => port_in(c, dport) == (c.op == op::DPORT),
        op::SPORT_PRIV | op::NOT_SPORT_PRIV => (sport < 1024) == (c.op == op::SPORT_PRIV),
        op::DPORT_PRIV | op::NOT_DPORT_PRIV => (dport < 1024) == (c.op == op::DPORT_PRIV),
        op::PROTOCOL => val_in(c, protocol as u64),
        op::FAMILY => val_in(c, family as u64),
        op::STATE => val_in(c, state as u64),
        _ => false,
    }
}

#[inline(always)]
fn val_in(c: &ArgCond, v: u64) -> bool {
    let mut any = false;
    for i in 0..plimits::INT_VALUES {
        if i < c.nvals as usize && c.vals[i] == v {
            any = true;
        }
    }
    any
}

/// The port is in one of the condition's ranges (`lo | hi << 16`).
#[inline(always)]
fn port_in(c: &ArgCond, port: u16) -> bool {
    let mut any = false;
    for i in 0..plimits::INT_VALUES {
        let (lo, hi) = ((c.vals[i] & 0xffff) as u16, ((c.vals[i] >> 16) & 0xffff) as u16);
        if i < c.nvals as usize && lo <= port && port <= hi {
            any = true;
        }
    }
    any
}

/// The address at `data + at` (of `family`) is in one of condition `cond`'s CIDRs.
#[inline(always)]
fn addr_in(cond: u32, family: u16, data: *const u8, at: usize) -> bool {
    let (tag, n) = match family {
        AF_INET => (4u8, 4usize),
        AF_INET6 => (6u8, 16usize),
        _ => return false,
    };
    let Some(key) = crate::policy::keybuf() else { return false };
    key.data.cond = cond.to_ne_bytes();
    key.data.data[0] = tag;
    // SAFETY: data + at .. + 16 lies in the record in the slot; 16 bytes fit in the key.
    unsafe { core::ptr::copy_nonoverlapping(data.add(at), key.data.data.as_mut_ptr().add(1), 16) };
    key.prefix_len = 32 + 8 + 8 * n as u32;
    crate::policy::STRINGS.get(&*key).is_some_and(|v| *v == cond)
}
