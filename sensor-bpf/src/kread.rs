//! Reading kernel memory at offsets resolved by user space from BTF (see `Offsets`).
use core::ffi::c_void;

use aya_ebpf::helpers::generated as gen;
use nightjar_common::Offsets;

/// Filled in by the loader (`EbpfLoader::set_global`) before the programs load.
#[no_mangle]
pub static OFFSETS: Offsets = Offsets::missing();

/// Only processes in this cgroup v2 (by id) are traced; 0 traces every process.
/// Set by the loader from `sensor.cgroup_filter`.
#[no_mangle]
pub static CGROUP_FILTER: u64 = 0;

/// False when the current task is outside the configured cgroup.
#[inline(always)]
pub fn in_scope() -> bool {
    // SAFETY: read of a static patched at load time.
    let f = unsafe { core::ptr::read_volatile(&CGROUP_FILTER) };
    // SAFETY: helper without arguments.
    f == 0 || unsafe { aya_ebpf::helpers::generated::bpf_get_current_cgroup_id() } == f
}

/// Reads one offset from the read-only global (volatile: the value is patched at load time).
macro_rules! off {
    ($($f:tt)+) => {
        // SAFETY: reading a field of a static; volatile so the compiler keeps the load.
        unsafe { core::ptr::read_volatile(&$crate::kread::OFFSETS.$($f)+) }
    };
}
pub(crate) use off;

pub const MISSING: u32 = Offsets::MISSING;

/// Reads a `T` at `base + off` from kernel memory; None if the base is null, the
/// offset is missing on this kernel, or the read faults.
#[inline(always)]
pub fn rd<T: Copy>(base: u64, off: u32) -> Option<T> {
    if base == 0 || off == MISSING {
        return None;
    }
    let mut v = core::mem::MaybeUninit::<T>::uninit();
    // SAFETY: bpf_probe_read_kernel copies size_of::<T>() bytes into our stack slot and
    // fails (non-zero) instead of faulting on a bad address.
    let rc = unsafe {
        gen::bpf_probe_read_kernel(
            v.as_mut_ptr() as *mut c_void,
            core::mem::size_of::<T>() as u32,
            (base + off as u64) as *const c_void,
        )
    };
    if rc == 0 {
        // SAFETY: fully written by the helper on success.
        Some(unsafe { v.assume_init() })
    } else {
        None
    }
}

/// Reads a kernel pointer (0 when unavailable).
#[inline(always)]
pub fn rd_ptr(base: u64, off: u32) -> u64 {
    rd::<u64>(base, off).unwrap_or(0)
}

/// Copies a NUL-terminated kernel string to `dst` (at most `max` bytes, NUL included).
/// Returns the bytes written including the NUL, or 0 on failure.
#[inline(always)]
pub fn rd_str(dst: *mut u8, max: u32, src: u64) -> usize {
    if src == 0 {
        return 0;
    }
    // SAFETY: the caller guarantees dst..dst+max lies inside a map value it owns.
    let n = unsafe { gen::bpf_probe_read_kernel_str(dst as *mut c_void, max, src as *const c_void) };
    if n > 0 {
        n as usize
    } else {
        0
    }
}
