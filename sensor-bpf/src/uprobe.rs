//! Policy hooks on user functions (`uprobes:` entries): one program attached at every
//! (binary, symbol or offset) a policy names, with the hook's `HOOK_LISTS` key as the
//! attach cookie. The function's arguments are its registers (x86_64 SysV: di, si, dx,
//! cx, r8, r9), written as words into the policy arg buffer; selectors and actions are the
//! ones every hook shares (`policy.rs`).
use aya_ebpf::{helpers::generated as gen, macros::uprobe, programs::ProbeContext, EbpfContext};

use crate::{
    kread::in_scope,
    policy::{argbuf, run_hooks},
};

/// Puts the six argument registers of `ctx` as words at the start of the arg buffer.
#[inline(always)]
pub fn regs_to_args(ctx: &ProbeContext) -> bool {
    let Some(ab) = argbuf() else { return false };
    ab.ret = 0;
    ab.ovr = 0;
    for i in 0..6 {
        let v: u64 = ctx.arg(i).unwrap_or(0);
        ab.raw[i * 8..i * 8 + 8].copy_from_slice(&v.to_ne_bytes());
    }
    true
}

#[uprobe]
pub fn uprobe_policy(ctx: ProbeContext) -> u32 {
    if !in_scope() {
        return 0;
    }
    // SAFETY: helper on our own context.
    let key = unsafe { gen::bpf_get_attach_cookie(ctx.as_ptr()) } as u32;
    if regs_to_args(&ctx) {
        run_hooks(key, ctx.as_ptr());
    }
    0
}
