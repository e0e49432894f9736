//! Process lifecycle: sched_process_exec / sched_process_exit / sched_process_fork.
use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, generated as gen},
    macros::{map, tracepoint},
    maps::{PerCpuArray, RingBuf},
    programs::TracePointContext,
};
use nightjar_common::{cause, kind, missed_index, ExecRecord, ExitRecord, ForkRecord, RecordHeader, MISSED_ENTRIES};

/// Records for user space. Its size is set by the loader from the config.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Lost records, per CPU, indexed by `missed_index(kind, cause)`.
#[map]
static MISSED: PerCpuArray<u64> = PerCpuArray::with_max_entries(MISSED_ENTRIES, 0);

#[inline(always)]
fn count_missed(k: u16, c: u32) {
    if let Some(p) = MISSED.get_ptr_mut(missed_index(k, c)) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
fn now() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { gen::bpf_ktime_get_boot_ns() }
}

#[tracepoint]
pub fn sched_process_exec(_ctx: TracePointContext) -> u32 {
    let Some(mut entry) = EVENTS.reserve::<ExecRecord>(0) else {
        count_missed(kind::EXEC, cause::RINGBUF_FULL);
        return 0;
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    let mut rec = ExecRecord {
        hdr: RecordHeader { kind: kind::EXEC, _pad: 0, size: core::mem::size_of::<ExecRecord>() as u32, ktime: now() },
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        uid: uid_gid as u32,
        euid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        egid: (uid_gid >> 32) as u32,
        ..ExecRecord::default()
    };
    if let Ok(c) = bpf_get_current_comm() {
        rec.comm = c;
    }
    entry.write(rec);
    entry.submit(0);
    0
}

#[tracepoint]
pub fn sched_process_exit(_ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let (pid, tid) = ((pid_tgid >> 32) as u32, pid_tgid as u32);
    if pid != tid {
        return 0;
    }
    let Some(mut entry) = EVENTS.reserve::<ExitRecord>(0) else {
        count_missed(kind::EXIT, cause::RINGBUF_FULL);
        return 0;
    };
    entry.write(ExitRecord {
        hdr: RecordHeader { kind: kind::EXIT, _pad: 0, size: core::mem::size_of::<ExitRecord>() as u32, ktime: now() },
        pid,
        tid,
        ..ExitRecord::default()
    });
    entry.submit(0);
    0
}

#[tracepoint]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets from the tracepoint's format (parent_pid at 12, child_pid at 20).
    let ppid: i32 = unsafe { ctx.read_at(12) }.unwrap_or(0);
    let pid: i32 = unsafe { ctx.read_at(20) }.unwrap_or(0);
    let Some(mut entry) = EVENTS.reserve::<ForkRecord>(0) else {
        count_missed(kind::FORK, cause::RINGBUF_FULL);
        return 0;
    };
    entry.write(ForkRecord {
        hdr: RecordHeader { kind: kind::FORK, _pad: 0, size: core::mem::size_of::<ForkRecord>() as u32, ktime: now() },
        pid: pid as u32,
        ppid: ppid as u32,
        ..ForkRecord::default()
    });
    entry.submit(0);
    0
}
