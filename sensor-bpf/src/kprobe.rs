//! Policy hooks on any kernel function (generic `kprobes:` entries), where the kernel has
//! kprobes: `kprobe_policy` at the entry of every function a policy names, and
//! `kretprobe_policy` at its return when a hook asks for `return: true`. Both find the
//! function's hooks by its address (`bpf_get_func_ip`) in `KFUNC_KEYS`. Arguments are the
//! function's registers (or, for a syscall, the user registers its `pt_regs` holds); a
//! return probe gets the arguments saved at entry plus the return value as word 6.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated as gen},
    macros::{kprobe, kretprobe, map},
    maps::{HashMap, LruHashMap},
    programs::{ProbeContext, RetProbeContext},
    EbpfContext,
};
use nightjar_common::{kfunc_flags, KfuncKeys, RetKey, RetSave};

use crate::{
    kread::{in_scope, rd},
    policy::{argbuf, run_hooks},
};

/// The hooks of each hooked function, by address.
#[map]
pub static KFUNC_KEYS: HashMap<u64, KfuncKeys> = HashMap::with_max_entries(1024, 0);

/// Arguments saved at entry for the return probe, per (thread, function).
#[map]
static RET_SAVE: LruHashMap<RetKey, RetSave> = LruHashMap::with_max_entries(8192, 0);

/// x86_64 `struct pt_regs` offsets of the syscall argument registers (di, si, dx, r10, r8, r9).
const SYSCALL_ARG_REGS: [u32; 6] = [112, 104, 96, 56, 72, 64];

/// The six argument words of this call into the arg buffer's record area.
#[inline(always)]
fn load_args(ctx: &ProbeContext, syscall: bool) -> Option<[u64; 6]> {
    let mut w = [0u64; 6];
    if syscall {
        let regs: u64 = ctx.arg(0).unwrap_or(0);
        for (i, off) in SYSCALL_ARG_REGS.iter().enumerate() {
            w[i] = rd::<u64>(regs, *off).unwrap_or(0);
        }
    } else {
        for (i, v) in w.iter_mut().enumerate() {
            *v = ctx.arg(i).unwrap_or(0);
        }
    }
    Some(w)
}

#[inline(always)]
fn put_words(w: &[u64; 6], ret: Option<u64>) -> bool {
    let Some(ab) = argbuf() else { return false };
    ab.ret = 0;
    ab.ovr = 0;
    for (i, v) in w.iter().enumerate() {
        ab.raw[i * 8..i * 8 + 8].copy_from_slice(&v.to_ne_bytes());
    }
    ab.raw[48..56].copy_from_slice(&ret.unwrap_or(0).to_ne_bytes());
    true
}

#[kprobe]
pub fn kprobe_policy(ctx: ProbeContext) -> u32 {
    if !in_scope() {
        return 0;
    }
    // SAFETY: helper on our own context.
    let ip = unsafe { gen::bpf_get_func_ip(ctx.as_ptr()) };
    // SAFETY: read-only use of the map value.
    let Some(k) = (unsafe { KFUNC_KEYS.get(&ip) }).copied() else { return 0 };
    let Some(w) = load_args(&ctx, k.flags & kfunc_flags::SYSCALL != 0) else { return 0 };
    if k.ret != 0 {
        let key = RetKey { pid_tgid: bpf_get_current_pid_tgid(), ip };
        let _ = RET_SAVE.insert(&key, &RetSave { words: w }, 0);
    }
    if k.entry != 0 && put_words(&w, None) {
        run_hooks(k.entry, ctx.as_ptr());
    }
    0
}

#[kretprobe]
pub fn kretprobe_policy(ctx: RetProbeContext) -> u32 {
    if !in_scope() {
        return 0;
    }
    // SAFETY: helper on our own context.
    let ip = unsafe { gen::bpf_get_func_ip(ctx.as_ptr()) };
    // SAFETY: read-only use of the map value.
    let Some(k) = (unsafe { KFUNC_KEYS.get(&ip) }).copied() else { return 0 };
    if k.ret == 0 {
        return 0;
    }
    let key = RetKey { pid_tgid: bpf_get_current_pid_tgid(), ip };
    // SAFETY: read of a map value we copy out at once.
    let Some(saved) = (unsafe { RET_SAVE.get(&key) }).copied() else { return 0 };
    let _ = RET_SAVE.remove(&key);
    let ret: u64 = ctx.ret();
    if put_words(&saved.words, Some(ret)) {
        run_hooks(k.ret, ctx.as_ptr());
    }
    0
}
