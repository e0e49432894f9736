//! Kernel stack traces (Tetragon's `kernelStackTrace` on Post), user side in
//! `sensor/src/hooks/stack.rs`: the program takes the stack once, before its hooks run,
//! when a hook on it wants it (`HookList::stacks`); a matching selector that asks for it
//! puts the stack's id in its record; user space reads `STACKS` and symbolizes.
use core::ffi::c_void;

use aya_ebpf::{helpers::generated as gen, macros::map, maps::StackTrace};

/// Kernel stacks by id (identical stacks share one; a colliding one replaces it).
#[map]
pub static STACKS: StackTrace = StackTrace::with_max_entries(2048, 0);

/// BPF_F_REUSE_STACKID: a new stack whose hash collides replaces the old one.
const REUSE_STACKID: u64 = 1 << 10;

/// The current kernel stack's id in `STACKS`, or -1.
#[inline(always)]
pub fn kernel(ctx: *mut c_void) -> i32 {
    // The map's address is its definition's (StackTrace is a transparent MapDef).
    let map = core::ptr::addr_of!(STACKS) as *mut c_void;
    // SAFETY: ctx is the program's own context; the helper walks the kernel stack.
    let id = unsafe { gen::bpf_get_stackid(ctx, map, REUSE_STACKID) };
    if id < 0 {
        -1
    } else {
        id as i32
    }
}
