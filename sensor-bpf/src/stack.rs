//! Stack traces (Tetragon's `kernelStackTrace` and `userStackTrace` on Post), user side in
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

/// BPF_F_USER_STACK: the user stack (the task's user registers) instead.
const USER_STACK: u64 = 1 << 8;

/// The current kernel stack's id in `STACKS`, or -1.
#[inline(always)]
pub fn kernel(ctx: *mut c_void) -> i32 {
    stack_id(ctx, REUSE_STACKID)
}

/// The current task's user stack's id in `STACKS`, or -1.
#[inline(always)]
pub fn user(ctx: *mut c_void) -> i32 {
    stack_id(ctx, REUSE_STACKID | USER_STACK)
}

#[inline(always)]
fn stack_id(ctx: *mut c_void, flags: u64) -> i32 {
    // The map's address is its definition's (StackTrace is a transparent MapDef).
    let map = core::ptr::addr_of!(STACKS) as *mut c_void;
    // SAFETY: ctx is the program's own context; the helper walks the kernel stack.
    let id = unsafe { gen::bpf_get_stackid(ctx, map, flags) };
    if id < 0 {
        -1
    } else {
        id as i32
    }
}
