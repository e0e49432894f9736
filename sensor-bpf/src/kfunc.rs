//! Policy hooks on kernel functions and LSM hooks, where the kernel has them: fentry
//! (preferred) or kprobe on `security_file_open`, `security_bprm_check` and syscalls by
//! their kernel symbol (`__x64_sys_*`), and BPF-LSM on `file_open` and
//! `bprm_check_security`. Each program puts the function's arguments (or, for a syscall,
//! the user registers that carry its arguments) as 8-byte words at the start of the
//! policy arg buffer and runs the hooks of its key, so selectors and actions are the very
//! ones the tracepoint programs evaluate (`policy.rs`). LSM programs return what a matched
//! `Override` selector says (a negative errno): the act fails before it happens.
use core::ffi::c_void;

use aya_ebpf::{
    macros::{fentry, kprobe, lsm},
    programs::{FEntryContext, LsmContext, ProbeContext},
    EbpfContext,
};
use nightjar_common::{
    KFUNC_BPRM_CHECK_KEY, KFUNC_FILE_OPEN_KEY, LSM_BPRM_CHECK_KEY, LSM_FILE_OPEN_KEY, SYSCALL_KFUNC,
};

use crate::{
    kread::{in_scope, rd},
    policy::{argbuf, run_hooks},
};

/// Runs the hooks of `key` with `arg0` as the first argument word; returns the LSM verdict.
#[inline(always)]
fn one_arg(ctx: *mut c_void, arg0: u64, key: u32) -> i32 {
    if !in_scope() {
        return 0;
    }
    let Some(ab) = argbuf() else { return 0 };
    ab.ret = 0;
    ab.raw[..8].copy_from_slice(&arg0.to_ne_bytes());
    run_hooks(key, ctx);
    lsm_verdict(ab.ret)
}

/// An LSM verdict every verifier accepts (6.12 checks R0 in [-MAX_ERRNO, 0] as a 64-bit
/// value): the Override error sign-extended, or 0.
#[inline(always)]
fn lsm_verdict(err: i32) -> i32 {
    // The opaque copy keeps the sign extension in the register the program returns.
    let r = core::hint::black_box(err as i64);
    if (-4095..0).contains(&r) {
        r as i32
    } else {
        0
    }
}

/// x86_64 `struct pt_regs` offsets of the syscall argument registers (di, si, dx, r10, r8,
/// r9) and of `orig_ax` (the syscall number).
const SYSCALL_ARG_REGS: [u32; 6] = [112, 104, 96, 56, 72, 64];
const ORIG_AX: u32 = 120;

/// A syscall wrapper (`__x64_sys_*(const struct pt_regs *regs)`): its arguments are the
/// user registers; hooks are keyed by the syscall number.
#[inline(always)]
fn syscall(ctx: *mut c_void, regs: u64) {
    if !in_scope() || regs == 0 {
        return;
    }
    let Some(nr) = rd::<u64>(regs, ORIG_AX) else { return };
    let Some(ab) = argbuf() else { return };
    ab.ret = 0;
    for (i, off) in SYSCALL_ARG_REGS.iter().enumerate() {
        let v = rd::<u64>(regs, *off).unwrap_or(0);
        ab.raw[i * 8..i * 8 + 8].copy_from_slice(&v.to_ne_bytes());
    }
    run_hooks(SYSCALL_KFUNC | (nr as u32 & 0xffff), ctx);
}

#[fentry(function = "security_file_open")]
pub fn fentry_file_open(ctx: FEntryContext) -> i32 {
    one_arg(ctx.as_ptr(), ctx.arg(0), KFUNC_FILE_OPEN_KEY);
    0
}

#[fentry(function = "security_bprm_check")]
pub fn fentry_bprm_check(ctx: FEntryContext) -> i32 {
    one_arg(ctx.as_ptr(), ctx.arg(0), KFUNC_BPRM_CHECK_KEY);
    0
}

#[kprobe]
pub fn kprobe_file_open(ctx: ProbeContext) -> u32 {
    one_arg(ctx.as_ptr(), ctx.arg(0).unwrap_or(0), KFUNC_FILE_OPEN_KEY);
    0
}

#[kprobe]
pub fn kprobe_bprm_check(ctx: ProbeContext) -> u32 {
    one_arg(ctx.as_ptr(), ctx.arg(0).unwrap_or(0), KFUNC_BPRM_CHECK_KEY);
    0
}

/// Any `__x64_sys_*`: attached to as many syscall symbols as policies name.
#[kprobe]
pub fn kprobe_syscall(ctx: ProbeContext) -> u32 {
    syscall(ctx.as_ptr(), ctx.arg(0).unwrap_or(0));
    0
}

/// fentry programs are bound to one function when they load: a pool of identical
/// programs, one per hooked syscall symbol (`plimits::FENTRY_SYSCALLS`); the engine
/// falls back to `kprobe_syscall` when the pool is used up.
macro_rules! fentry_syscalls {
    ($($name:ident),+) => {
        $(
            #[fentry]
            pub fn $name(ctx: FEntryContext) -> i32 {
                syscall(ctx.as_ptr(), ctx.arg(0));
                0
            }
        )+
    };
}
fentry_syscalls!(
    fentry_sys_0,
    fentry_sys_1,
    fentry_sys_2,
    fentry_sys_3,
    fentry_sys_4,
    fentry_sys_5,
    fentry_sys_6,
    fentry_sys_7
);

/// LSM programs see the verdict of the BPF-LSM programs before them as the last argument:
/// a denial stands.
#[lsm(hook = "file_open")]
pub fn lsm_file_open(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(1);
    if prev != 0 {
        return prev;
    }
    one_arg(ctx.as_ptr(), ctx.arg(0), LSM_FILE_OPEN_KEY)
}

#[lsm(hook = "bprm_check_security")]
pub fn lsm_bprm_check(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(1);
    if prev != 0 {
        return prev;
    }
    one_arg(ctx.as_ptr(), ctx.arg(0), LSM_BPRM_CHECK_KEY)
}

/// Loaded (never attached) at start to learn whether this kernel lets fentry programs
/// load; the real ones load when a policy first needs them.
#[fentry(function = "security_file_open")]
pub fn probe_fentry(_ctx: FEntryContext) -> i32 {
    0
}

/// Same for BPF-LSM programs.
#[lsm(hook = "file_open")]
pub fn probe_lsm(_ctx: LsmContext) -> i32 {
    0
}
