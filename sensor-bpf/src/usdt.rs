//! Policy hooks on USDT probes (`usdts:` entries): one program attached at every probe
//! site the agent found in a binary's `.note.stapsdt`, with the site's `HOOK_LISTS` key as
//! the attach cookie. Each site's arguments are where its note says (a register, memory
//! at a register plus an offset, or a constant: `USDT_SPECS`); they are written as words
//! into the policy arg buffer, and the selectors and actions every hook shares run
//! (`policy.rs`). User side: `sensor/src/hooks/usdt.rs`.
use core::ffi::c_void;

use aya_ebpf::{
    helpers::generated as gen, macros::map, macros::uprobe, maps::HashMap, programs::ProbeContext, EbpfContext,
};
use nightjar_common::{plimits, usdt_loc, UsdtArg, UsdtSpec};

use crate::{
    kread::{in_scope, rd},
    policy::{argbuf, run_hooks},
};

/// Argument locations of each probe site, by its `HOOK_LISTS` key.
#[map]
pub static USDT_SPECS: HashMap<u32, UsdtSpec> = HashMap::with_max_entries(256, 0);

/// Reads `size` bytes of user memory at `addr` as an unsigned value (0 on a fault).
#[inline(always)]
fn rd_user(addr: u64, size: u8) -> u64 {
    let mut v: u64 = 0;
    let n = match size {
        1 => 1,
        2 => 2,
        4 => 4,
        _ => 8,
    };
    // SAFETY: the helper writes at most n ≤ 8 bytes into v and fails instead of faulting.
    let rc = unsafe { gen::bpf_probe_read_user(&mut v as *mut u64 as *mut c_void, n, addr as *const c_void) };
    if rc == 0 {
        v
    } else {
        0
    }
}

/// Widens a `size`-byte value to 64 bits, sign-extended when `signed`.
#[inline(always)]
fn widen(v: u64, size: u8, signed: u8) -> u64 {
    let bits: u32 = match size {
        1 => 8,
        2 => 16,
        4 => 32,
        _ => return v,
    };
    let v = v & ((1u64 << bits) - 1);
    if signed != 0 {
        let sh = 64 - bits;
        (((v << sh) as i64) >> sh) as u64
    } else {
        v
    }
}

#[inline(always)]
fn value(regs: u64, a: &UsdtArg) -> u64 {
    let v = match a.kind {
        usdt_loc::CONST => a.off as u64,
        usdt_loc::REG => rd::<u64>(regs, a.reg as u32).unwrap_or(0),
        usdt_loc::DEREF => {
            let base = rd::<u64>(regs, a.reg as u32).unwrap_or(0);
            rd_user(base.wrapping_add(a.off as u64), a.size)
        }
        _ => 0,
    };
    widen(v, a.size, a.signed)
}

#[uprobe]
pub fn usdt_policy(ctx: ProbeContext) -> u32 {
    if !in_scope() {
        return 0;
    }
    // SAFETY: helper on our own context.
    let key = unsafe { gen::bpf_get_attach_cookie(ctx.as_ptr()) } as u32;
    // SAFETY: read-only use of the map value.
    let Some(spec) = (unsafe { USDT_SPECS.get(&key) }) else { return 0 };
    let Some(ab) = argbuf() else { return 0 };
    ab.ret = 0;
    ab.ovr = 0;
    let regs = ctx.as_ptr() as u64;
    for i in 0..plimits::ARGS {
        let v = value(regs, &spec.args[i]);
        ab.raw[i * 8..i * 8 + 8].copy_from_slice(&v.to_ne_bytes());
    }
    run_hooks(key, ctx.as_ptr());
    0
}
