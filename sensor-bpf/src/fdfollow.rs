//! FollowFD / UnfollowFD / CopyFD (Tetragon's fd tracking), user side in the selector
//! compiler (`sensor/src/policy/selectors.rs`): a selector's action remembers the name a
//! file descriptor was installed with (FollowFD: `argFd`, `argName`), forgets it
//! (UnfollowFD, on close) or copies it to a new descriptor (CopyFD, on dup). An `fd`
//! argument of a followed descriptor is then that name, as Tetragon reports it (even
//! after a rename); any other fd is resolved through the task's fd table.
use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated as gen},
    macros::map,
    maps::{LruHashMap, PerCpuArray},
};
use nightjar_common::{action, limits, plimits, FdKey, FdName, HookConfig, Selector};

use crate::policy::{argbuf, slot_idx};

/// Followed descriptors, per (process, fd).
#[map]
static FOLLOWED: LruHashMap<FdKey, FdName> = LruHashMap::with_max_entries(1024, 0);

/// Where a name is assembled before it goes into FOLLOWED (too large for the stack).
#[map]
static FD_SCRATCH: PerCpuArray<FdName> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn key(fd: u64) -> FdKey {
    FdKey { tgid: (bpf_get_current_pid_tgid() >> 32) as u32, fd: fd as u32 }
}

/// Does selector `s`'s fd action with the arguments just captured for hook `conf`.
/// (A function of its own, not inlined: 6.1's verifier caps the stack of a bpf_loop
/// callback chain at 512 bytes, and the hook callback's frame is on the deepest chain.)
#[inline(never)]
pub fn act(conf: &HookConfig, s: &Selector) {
    let Some(ab) = argbuf() else { return };
    let (fi, ni) = (s.fd_arg as usize, s.fd_name as usize);
    if fi >= plimits::ARGS || ni >= plimits::ARGS {
        return;
    }
    let k = key(ab.ints[fi]);
    match s.fd_action {
        action::FOLLOW_FD => {
            let spec = &conf.args[ni];
            let slot = slot_idx(spec.slot as usize);
            let Some(v) = FD_SCRATCH.get_ptr_mut(0) else { return };
            // SAFETY: per-CPU scratch value; copies the slot's first PATH_MAX bytes.
            unsafe {
                (*v).pos = ab.spos[slot];
                (*v).len = ab.slen[slot];
                gen::bpf_probe_read_kernel(
                    (*v).data.as_mut_ptr() as *mut c_void,
                    limits::PATH_MAX as u32,
                    ab.strs[slot].as_ptr() as *const c_void,
                );
                let _ = FOLLOWED.insert(&k, &*v, 0);
            }
        }
        action::UNFOLLOW_FD => {
            let _ = FOLLOWED.remove(&k);
        }
        action::COPY_FD => {
            let newfd = ab.ints[ni];
            // SAFETY: the value is copied into the map at once.
            if let Some(v) = unsafe { FOLLOWED.get(&k) } {
                let _ = FOLLOWED.insert(&key(newfd), v, 0);
            }
        }
        _ => {}
    }
}

/// When `fd` is followed, its name into string slot `slot`; false otherwise. (Not
/// inlined, for the same reason as [`act`].)
#[inline(never)]
pub fn lookup(slot: usize, fd: u64) -> bool {
    // SAFETY: read of a map value copied into the slot at once.
    let Some(v) = (unsafe { FOLLOWED.get(&key(fd)) }) else { return false };
    let Some(ab) = argbuf() else { return false };
    let slot = slot_idx(slot);
    // SAFETY: PATH_MAX bytes into the slot (PATH_MAX + 256 bytes).
    unsafe {
        gen::bpf_probe_read_kernel(
            ab.strs[slot].as_mut_ptr() as *mut c_void,
            limits::PATH_MAX as u32,
            v.data.as_ptr() as *const c_void,
        );
    }
    ab.spos[slot] = v.pos;
    ab.slen[slot] = v.len;
    true
}
