//! Process lifecycle: sched_process_exec / sched_process_exit (tracepoints) and
//! sched_process_fork (raw tracepoint, for the child's task pointer).
use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, generated as gen},
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
    EbpfContext,
};
use nightjar_common::{cause, exec_flags, kind, limits, ns, ExecRecord, ExitRecord, ForkRecord, RecordHeader};

use crate::{
    kread::{off, rd, rd_ptr, rd_str, MISSING},
    maps::{count_missed, now, wake_flags, EVENTS, SCRATCH, SCRATCH_MASK},
};

const REC: usize = core::mem::size_of::<ExecRecord>();

#[tracepoint]
pub fn sched_process_exec(_ctx: TracePointContext) -> u32 {
    if !crate::kread::in_scope() {
        return 0;
    }
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        count_missed(kind::EXEC, cause::SCRATCH);
        return 0;
    };
    // SAFETY: the per-CPU scratch value is ours for the duration of this program.
    let base = unsafe { (*scratch).buf.as_mut_ptr() };
    let total = fill_exec(base);
    // SAFETY: total ≤ SCRATCH, inside the map value.
    let data = unsafe { core::slice::from_raw_parts(base, total) };
    if EVENTS.output::<[u8]>(data, wake_flags()).is_err() {
        count_missed(kind::EXEC, cause::RINGBUF_FULL);
    }
    0
}

/// Assembles the exec record in `base`; returns its length.
#[inline(always)]
fn fill_exec(base: *mut u8) -> usize {
    // SAFETY: base points at a map value of SCRATCH + ARGS_MAX bytes, aligned for
    // ExecRecord (map values are 8-byte aligned); we only write within it.
    let rec = unsafe { &mut *(base as *mut ExecRecord) };
    let task = unsafe { gen::bpf_get_current_task() };
    let pid_tgid = bpf_get_current_pid_tgid();
    rec.hdr.kind = kind::EXEC;
    rec.hdr._pad = 0;
    rec.hdr.ktime = now();
    rec.ns_pid = 0;
    rec.comm = [0; 16];
    rec.tty = [0; 16];
    rec.pid = (pid_tgid >> 32) as u32;
    rec.tid = pid_tgid as u32;
    if let Ok(c) = bpf_get_current_comm() {
        rec.comm = c;
    }
    let parent = rd_ptr(task, off!(task_real_parent));
    rec.ppid = rd::<u32>(parent, off!(task_tgid)).unwrap_or(0);
    rec.start_boottime = rd::<u64>(task, off!(task_start_boottime)).unwrap_or(0);
    rec.parent_start_boottime = rd::<u64>(parent, off!(task_start_boottime)).unwrap_or(0);
    rec.auid = rd::<u32>(task, off!(task_loginuid)).unwrap_or(u32::MAX);
    // SAFETY: helper without arguments.
    rec.cgroup_id = unsafe { gen::bpf_get_current_cgroup_id() };

    let cred = rd_ptr(task, off!(task_real_cred));
    rec.uid = rd::<u32>(cred, off!(cred_uid)).unwrap_or(u32::MAX);
    rec.gid = rd::<u32>(cred, off!(cred_gid)).unwrap_or(u32::MAX);
    rec.euid = rd::<u32>(cred, off!(cred_euid)).unwrap_or(u32::MAX);
    rec.egid = rd::<u32>(cred, off!(cred_egid)).unwrap_or(u32::MAX);
    rec.cap_effective = rd::<u64>(cred, off!(cred_cap_effective)).unwrap_or(0);
    rec.cap_permitted = rd::<u64>(cred, off!(cred_cap_permitted)).unwrap_or(0);
    rec.cap_inheritable = rd::<u64>(cred, off!(cred_cap_inheritable)).unwrap_or(0);

    fill_namespaces(rec, task, cred);

    let signal = rd_ptr(task, off!(task_signal));
    let tty = rd_ptr(signal, off!(signal_tty));
    if tty != 0 {
        rec.tty = rd::<[u8; 16]>(tty, off!(tty_name)).unwrap_or([0; 16]);
    }

    // Verifier note: flags and lengths live in the record (map memory), not in registers,
    // so the branches below do not multiply into distinct verifier states.
    rec.flags = 0;
    rec.path_len = 0;
    rec.args_len = 0;
    rec.cwd_len = 0;
    rec.cgroup_len = 0;

    // Binary: mm->exe_file->f_path.
    let mm = rd_ptr(task, off!(task_mm));
    let exe = rd_ptr(mm, off!(mm_exe_file));
    let fpath = off!(file_f_path);
    if exe != 0 && fpath != MISSING {
        let mnt = rd_ptr(exe, fpath.wrapping_add(off!(path_mnt)));
        let dentry = rd_ptr(exe, fpath.wrapping_add(off!(path_dentry)));
        let (n, trunc) = walk_path(REC, dentry, mnt);
        rec.path_len = n as u16;
        if trunc {
            rec.flags |= exec_flags::PATH_TRUNCATED;
        }
    } else {
        rec.flags |= exec_flags::PATH_TRUNCATED;
    }

    // Arguments: the new image's argv block, mm->arg_start..arg_end (user memory).
    let at = (REC + rec.path_len as usize) & SCRATCH_MASK;
    let arg_start = rd::<u64>(mm, off!(mm_arg_start)).unwrap_or(0);
    let arg_end = rd::<u64>(mm, off!(mm_arg_end)).unwrap_or(0);
    let max = off!(args_max) as u64;
    let mut len = arg_end.saturating_sub(arg_start);
    if len > max {
        len = max;
        rec.flags |= exec_flags::ARGS_TRUNCATED;
    }
    let len = (len as u32) & (limits::ARGS_MAX as u32 - 1);
    if arg_start != 0 && len > 0 {
        // SAFETY: at ≤ SCRATCH_MASK and len < ARGS_MAX, the slack after SCRATCH.
        let dst = unsafe { base.add(at) };
        let rc = unsafe { gen::bpf_probe_read_user(dst as *mut c_void, len, arg_start as *const c_void) };
        if rc == 0 {
            rec.args_len = len as u16;
        } else {
            rec.flags |= exec_flags::ARGS_UNREADABLE;
        }
    } else if arg_start == 0 {
        rec.flags |= exec_flags::ARGS_UNREADABLE;
    }

    // Working directory: task->fs->pwd.
    let at = REC + rec.path_len as usize + rec.args_len as usize;
    let fs = rd_ptr(task, off!(task_fs));
    let pwd = off!(fs_pwd);
    if fs != 0 && pwd != MISSING {
        let mnt = rd_ptr(fs, pwd.wrapping_add(off!(path_mnt)));
        let dentry = rd_ptr(fs, pwd.wrapping_add(off!(path_dentry)));
        let (n, trunc) = walk_path(at, dentry, mnt);
        rec.cwd_len = n as u16;
        if trunc {
            rec.flags |= exec_flags::CWD_TRUNCATED;
        }
    } else {
        rec.flags |= exec_flags::CWD_TRUNCATED;
    }

    // cgroup (v2 default hierarchy): css_set->dfl_cgrp->kn, walked to the root.
    let at = REC + rec.path_len as usize + rec.args_len as usize + rec.cwd_len as usize;
    let cgroups = rd_ptr(task, off!(task_cgroups));
    let cgrp = rd_ptr(cgroups, off!(css_set_dfl_cgrp));
    let kn = rd_ptr(cgrp, off!(cgroup_kn));
    let (n, trunc) = walk_cgroup(at, kn);
    rec.cgroup_len = n as u16;
    if trunc {
        rec.flags |= exec_flags::CGROUP_TRUNCATED;
    }

    let at = REC + rec.path_len as usize + rec.args_len as usize + rec.cwd_len as usize + rec.cgroup_len as usize;
    let total = if at > limits::SCRATCH { limits::SCRATCH } else { at };
    rec.hdr.size = total as u32;
    total
}

#[inline(always)]
fn fill_namespaces(rec: &mut ExecRecord, task: u64, cred: u64) {
    let nsproxy = rd_ptr(task, off!(task_nsproxy));
    macro_rules! from_nsproxy {
        ($slot:expr) => {{
            let p = rd_ptr(nsproxy, off!(nsproxy_ns[$slot]));
            rec.ns[$slot] = rd::<u32>(p, off!(ns_inum[$slot])).unwrap_or(0);
        }};
    }
    from_nsproxy!(ns::UTS);
    from_nsproxy!(ns::IPC);
    from_nsproxy!(ns::MNT);
    from_nsproxy!(ns::PID_FOR_CHILDREN);
    from_nsproxy!(ns::NET);
    from_nsproxy!(ns::TIME);
    from_nsproxy!(ns::TIME_FOR_CHILDREN);
    from_nsproxy!(ns::CGROUP);
    let user_ns = rd_ptr(cred, off!(cred_user_ns));
    rec.ns[ns::USER] = rd::<u32>(user_ns, off!(ns_inum[ns::USER])).unwrap_or(0);

    // The task's own pid namespace, and its pid there.
    (rec.ns[ns::PID], rec.ns_pid) = crate::task::pid_ns(task);
}

/// State of the cgroup walk (kernfs names, leaf first into SCRATCH).
#[repr(C)]
struct Walk {
    dentry: u64,
    start: u64,
    written: u64,
    /// Largest number of bytes the walk may write.
    max: u64,
    truncated: u64,
}

/// Writes the path of (dentry, vfsmount) leaf first as NUL-terminated components from
/// `start` (the shared walker of `vfs.rs`). Returns (bytes written, truncated).
#[inline(always)]
fn walk_path(start: usize, dentry: u64, vfsmnt: u64) -> (usize, bool) {
    match crate::vfs::walk(dentry, vfsmnt, crate::vfs::LEAF_FIRST, start as u64) {
        Some((n, truncated)) => ((n as usize) & (limits::PATH_MAX - 1), truncated),
        None => (0, true),
    }
}

/// Appends one NUL-terminated name at `start + written`; false when the walk must stop.
#[inline(always)]
fn put_component(w: &mut Walk, name: u64) -> bool {
    let written = w.written & (limits::PATH_MAX as u64 - 1);
    if written + limits::NAME_MAX as u64 > w.max {
        return false; // truncated stays set
    }
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else { return false };
    let at = ((w.start + written) as usize) & SCRATCH_MASK;
    // SAFETY: at ≤ SCRATCH_MASK and the scratch value has ARGS_MAX ≥ NAME_MAX bytes of
    // slack after SCRATCH.
    let n = rd_str(unsafe { (*scratch).buf.as_mut_ptr().add(at) }, limits::NAME_MAX as u32, name);
    if n == 0 {
        return false;
    }
    w.written = written + n as u64;
    true
}

/// Writes the cgroup path (kernfs names) leaf first; the root's name is omitted.
#[inline(always)]
fn walk_cgroup(start: usize, kn: u64) -> (usize, bool) {
    if kn == 0 || off!(kernfs_node_parent) == MISSING || off!(kernfs_node_name) == MISSING {
        return (0, false);
    }
    let mut w = Walk { dentry: kn, start: start as u64, written: 0, max: limits::CGROUP_MAX as u64, truncated: 1 };
    for i in 0..limits::CGROUP_DEPTH {
        if cgroup_step(i as u64, &mut w as *mut Walk as *mut c_void) != 0 {
            break;
        }
    }
    ((w.written as usize) & (limits::PATH_MAX - 1), w.truncated != 0)
}

#[inline(always)]
fn cgroup_step(_i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the &mut Walk handed to bpf_loop by walk_cgroup.
    let w = unsafe { &mut *(ctx as *mut Walk) };
    let parent = rd_ptr(w.dentry, off!(kernfs_node_parent));
    if parent == 0 {
        w.truncated = 0;
        return 1;
    }
    let name = rd_ptr(w.dentry, off!(kernfs_node_name));
    if !put_component(w, name) {
        return 1;
    }
    w.dentry = parent;
    0
}

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    if !crate::kread::in_scope() {
        return 0;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let (pid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    // Report once per process: when the last thread goes (group_dead), or, on kernels
    // whose tracepoint lacks group_dead, when the leader exits.
    let gd = off!(tp_exit_group_dead);
    let group_dead = if gd != MISSING {
        // SAFETY: offset read from this tracepoint's format file.
        unsafe { ctx.read_at::<u8>(gd as usize) }.unwrap_or(0) != 0
    } else {
        pid == tid
    };
    if !group_dead {
        return 0;
    }
    crate::policy::forget(pid);
    let task = unsafe { gen::bpf_get_current_task() };
    let rec = ExitRecord {
        hdr: RecordHeader { kind: kind::EXIT, _pad: 0, size: core::mem::size_of::<ExitRecord>() as u32, ktime: now() },
        pid,
        tid,
        exit_code: rd::<u32>(task, off!(task_exit_code)).unwrap_or(0),
        _pad: 0,
        start_boottime: rd::<u64>(task, off!(task_start_boottime)).unwrap_or(0),
    };
    if EVENTS.output::<ExitRecord>(rec, wake_flags()).is_err() {
        count_missed(kind::EXIT, cause::RINGBUF_FULL);
    }
    let _ = ctx.as_ptr();
    0
}

#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> u32 {
    if !crate::kread::in_scope() {
        return 0;
    }
    let child: u64 = ctx.arg(1);
    let pid = rd::<u32>(child, off!(task_pid)).unwrap_or(0);
    let tgid = rd::<u32>(child, off!(task_tgid)).unwrap_or(0);
    if pid != tgid {
        return 0; // a new thread, not a new process
    }
    let parent = rd_ptr(child, off!(task_real_parent));
    let rec = ForkRecord {
        hdr: RecordHeader { kind: kind::FORK, _pad: 0, size: core::mem::size_of::<ForkRecord>() as u32, ktime: now() },
        pid: tgid,
        ppid: rd::<u32>(parent, off!(task_tgid)).unwrap_or(0),
        start_boottime: rd::<u64>(child, off!(task_start_boottime)).unwrap_or(0),
        parent_start_boottime: rd::<u64>(parent, off!(task_start_boottime)).unwrap_or(0),
    };
    crate::policy::inherit(rec.ppid, rec.pid);
    if EVENTS.output::<ForkRecord>(rec, wake_flags()).is_err() {
        count_missed(kind::FORK, cause::RINGBUF_FULL);
    }
    0
}
