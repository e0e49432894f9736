//! Policy hooks on raw tracepoints (`tracepoints:` entries with `raw: true`): a pool of
//! programs, each attached by the agent to one raw tracepoint, whose `HOOK_LISTS` key is
//! `RAW_TP_KEY | slot`. A raw tracepoint's context is its `TP_PROTO` arguments as words;
//! they are copied into the policy arg buffer (read through the helper, not the context,
//! so one program fits a tracepoint of any arity), then the selectors and actions every
//! hook shares run (`policy.rs`). User side: `raw_tracepoint` in
//! `sensor/src/policy/backends.rs` (args) and the engine (the pool).
use core::ffi::c_void;

use aya_ebpf::{helpers::generated as gen, macros::raw_tracepoint, programs::RawTracePointContext, EbpfContext};
use nightjar_common::{plimits, RAW_TP_KEY};

use crate::{
    kread::in_scope,
    policy::{argbuf, run_hooks},
};

#[inline(always)]
fn raw_tp(ctx: &RawTracePointContext, slot: u32) -> i32 {
    if !in_scope() {
        return 0;
    }
    let Some(ab) = argbuf() else { return 0 };
    ab.ret = 0;
    ab.ovr = 0;
    let mut words = [0u64; plimits::ARGS];
    // SAFETY: the helper copies at most sizeof(words) bytes of kernel memory into our stack
    // array and fails instead of faulting; words past the tracepoint's arity are unused.
    unsafe {
        gen::bpf_probe_read_kernel(
            words.as_mut_ptr() as *mut c_void,
            core::mem::size_of_val(&words) as u32,
            ctx.as_ptr() as *const c_void,
        )
    };
    for (i, w) in words.iter().enumerate() {
        ab.raw[i * 8..i * 8 + 8].copy_from_slice(&w.to_ne_bytes());
    }
    run_hooks(RAW_TP_KEY | slot, ctx.as_ptr());
    0
}

macro_rules! raw_tp_pool {
    ($($name:ident = $slot:expr),*) => {
        $(
            #[raw_tracepoint]
            pub fn $name(ctx: RawTracePointContext) -> i32 {
                raw_tp(&ctx, $slot)
            }
        )*
    };
}

raw_tp_pool!(
    raw_tp_0 = 0,
    raw_tp_1 = 1,
    raw_tp_2 = 2,
    raw_tp_3 = 3,
    raw_tp_4 = 4,
    raw_tp_5 = 5,
    raw_tp_6 = 6,
    raw_tp_7 = 7
);
