//! The one path walker every hook shares (Tetragon's `prepend_path`): from a (dentry,
//! vfsmount) pair up to the root of the task's mount namespace, crossing mount points,
//! one component per `bpf_loop` iteration (the verifier checks the body once). Where the
//! components go is the caller's choice: leaf first into the record being assembled in
//! `SCRATCH` (exec records), or right-aligned into a policy string slot (arguments).
use core::ffi::c_void;

use aya_ebpf::helpers::generated as gen;
use nightjar_common::limits;

use crate::{
    kread::{off, rd, rd_ptr, rd_str, MISSING},
    maps::{SCRATCH, SCRATCH_MASK},
    policy::{argbuf, PATH_MASK, PATH_MAX},
};

/// Where a walk writes: NUL-terminated components, leaf first, from `SCRATCH[start]`.
pub const LEAF_FIRST: u64 = 0;
/// Where a walk writes: `/a/b/c`, right-aligned, ending at the end of a policy string slot.
pub const PREPEND: u64 = 1;

/// State of one walk, carried across `bpf_loop` iterations.
#[repr(C)]
pub struct Walk {
    dentry: u64,
    mnt: u64,
    vfs: u64,
    mode: u64,
    /// LEAF_FIRST: the record offset to write at. PREPEND: the string slot.
    target: u64,
    /// LEAF_FIRST: bytes written. PREPEND: start of what is written (PATH_MAX = nothing).
    pos: u64,
    truncated: u64,
}

/// Walks the path of (`dentry`, `vfsmnt`) into `target` per `mode`. Returns (bytes
/// written or start position, truncated), or None when the path is unreadable here.
#[inline(always)]
pub fn walk(dentry: u64, vfsmnt: u64, mode: u64, target: u64) -> Option<(u64, bool)> {
    let o_mnt = off!(mount_mnt);
    // No vfsmount (a bare dentry): the walk stays within the dentry's mount.
    if dentry == 0 || (vfsmnt == 0 && mode != PREPEND) || o_mnt == MISSING || off!(dentry_d_name_name) == MISSING {
        return None;
    }
    let mut w =
        Walk { dentry, mnt: vfsmnt.wrapping_sub(o_mnt as u64), vfs: vfsmnt, mode, target, pos: 0, truncated: 1 };
    if mode == PREPEND {
        // The position lives in the slot's map value, not in `w` on the stack: the verifier
        // tracks stack values exactly, so a position there made every iteration a new state
        // (kernels since 6.7 verify a callback until its states repeat: 6.18 gave up).
        let Some(ab) = argbuf() else { return None };
        ab.spos[crate::policy::slot_idx(target as usize)] = PATH_MAX as u32;
    }
    // SAFETY: step only touches the Walk passed as its context and per-CPU buffers.
    unsafe {
        gen::bpf_loop(limits::PATH_DEPTH, step as *mut c_void, &mut w as *mut Walk as *mut c_void, 0);
    }
    if mode == PREPEND {
        let Some(ab) = argbuf() else { return None };
        w.pos = ab.spos[crate::policy::slot_idx(target as usize)] as u64;
    }
    Some((w.pos, w.truncated != 0))
}

/// The (dentry, vfsmount) of a `struct path` at `path`.
#[inline(always)]
pub fn path_of(path: u64) -> (u64, u64) {
    (rd_ptr(path, off!(path_dentry)), rd_ptr(path, off!(path_mnt)))
}

/// The `struct path` inside a `struct file`.
#[inline(always)]
pub fn file_path(file: u64) -> u64 {
    let o = off!(file_f_path);
    if file == 0 || o == MISSING {
        0
    } else {
        file + o as u64
    }
}

/// One component. Returns 1 to stop, 0 to go on.
extern "C" fn step(_i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the &mut Walk handed to bpf_loop by walk.
    let w = unsafe { &mut *(ctx as *mut Walk) };
    let o_mnt = off!(mount_mnt) as u64;
    if w.vfs != 0 && w.dentry == rd_ptr(w.vfs, off!(vfsmount_mnt_root)) {
        let parent = rd_ptr(w.mnt, off!(mount_mnt_parent));
        if parent == w.mnt || parent == 0 {
            w.truncated = 0;
            return 1;
        }
        w.dentry = rd_ptr(w.mnt, off!(mount_mnt_mountpoint));
        w.mnt = parent;
        w.vfs = parent.wrapping_add(o_mnt);
        return 0; // the mount point may itself be a mount's root: check again
    }
    let parent = rd_ptr(w.dentry, off!(dentry_d_parent));
    if parent == 0 || parent == w.dentry {
        w.truncated = 0;
        return 1;
    }
    let ok = if w.mode == PREPEND { prepend(w) } else { leaf_first(w) };
    if !ok {
        return 1;
    }
    w.dentry = parent;
    0
}

/// Appends the component NUL-terminated at `target + pos` of SCRATCH.
#[inline(always)]
fn leaf_first(w: &mut Walk) -> bool {
    let written = w.pos & (limits::PATH_MAX as u64 - 1);
    if written + limits::NAME_MAX as u64 > limits::PATH_MAX as u64 {
        return false; // truncated stays set
    }
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else { return false };
    let at = ((w.target + written) as usize) & SCRATCH_MASK;
    let name = rd_ptr(w.dentry, off!(dentry_d_name_name));
    // SAFETY: at ≤ SCRATCH_MASK and the scratch value has ARGS_MAX ≥ NAME_MAX bytes of
    // slack after SCRATCH.
    let n = rd_str(unsafe { (*scratch).buf.as_mut_ptr().add(at) }, limits::NAME_MAX as u32, name);
    if n == 0 {
        return false;
    }
    w.pos = written + n as u64;
    true
}

/// Writes `/name` in front of what the slot holds.
#[inline(always)]
fn prepend(w: &mut Walk) -> bool {
    let len = rd::<u32>(w.dentry, off!(dentry_d_name_len)).unwrap_or(0) as u64 & 0xff;
    let Some(ab) = argbuf() else { return false };
    let slot = crate::policy::slot_idx(w.target as usize);
    let pos = ab.spos[slot] as u64;
    if pos < len + 2 {
        return false; // no room: the path is cut at the front
    }
    let name = rd_ptr(w.dentry, off!(dentry_d_name_name));
    let start = ((pos - len) as usize) & PATH_MASK;
    // The mask is applied to an opaque copy so the compiler cannot fold it away: every
    // kernel's verifier then sees the size bounded right at the call.
    let size = (core::hint::black_box(len) as u32) & 0xff;
    // SAFETY: start ≤ PATH_MASK and size < 256: inside the slot (PATH_MAX + 256 bytes).
    unsafe {
        gen::bpf_probe_read_kernel(ab.strs[slot].as_mut_ptr().add(start) as *mut c_void, size, name as *const c_void);
    }
    let slash = (start.wrapping_sub(1)) & PATH_MASK;
    ab.strs[slot][slash] = b'/';
    ab.spos[slot] = slash as u32;
    true
}
