//! Maps shared by every hook: the event ring buffer, the missed counters, scratch space.
use aya_ebpf::{
    bindings as gen_flags,
    helpers::generated as gen,
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use nightjar_common::{limits, missed_index};

/// Records for user space. Its size is set by the loader from the config.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Lost records, per CPU, indexed by `missed_index(kind, cause)`.
/// Submit flags for a record: below an eighth of the ring waiting, no wake-up (the agent's
/// 10 ms poll picks records up); above it, the kernel's own adaptive choice.
#[inline(always)]
pub fn wake_flags() -> u64 {
    let avail = EVENTS.query(gen_flags::BPF_RB_AVAIL_DATA as u64);
    let size = EVENTS.query(gen_flags::BPF_RB_RING_SIZE as u64);
    if avail >= size / 8 {
        // The kernel's own choice (a wake-up only when the reader had caught up): forcing
        // one per record here cost the producer an irq_work and an IPI each, ~5 µs.
        0
    } else {
        gen_flags::BPF_RB_NO_WAKEUP as u64
    }
}

#[map]
pub static MISSED: PerCpuArray<u64> = PerCpuArray::with_max_entries(nightjar_common::MISSED_ENTRIES, 0);

/// Mask that keeps a write offset inside the scratch buffer (SCRATCH is a power of two).
pub const SCRATCH_MASK: usize = limits::SCRATCH - 1;

/// A per-CPU buffer a variable-length record is assembled in. The slack after SCRATCH
/// lets a write of up to NAME_MAX bytes start at any masked offset.
#[repr(C)]
pub struct Scratch {
    pub buf: [u8; limits::SCRATCH + limits::ARGS_MAX],
}

#[map]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn count_missed(kind: u16, cause: u32) {
    if let Some(p) = MISSED.get_ptr_mut(missed_index(kind, cause)) {
        // SAFETY: per-CPU slot; programs do not nest on one CPU.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { gen::bpf_ktime_get_boot_ns() }
}
