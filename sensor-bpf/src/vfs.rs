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
    /// The root dentry of `vfs` (read once per mount, not once per component).
    root: u64,
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
    let root = rd_ptr(vfsmnt, off!(vfsmount_mnt_root));
    let mut w =
        Walk { dentry, mnt: vfsmnt.wrapping_sub(o_mnt as u64), vfs: vfsmnt, root, mode, target, pos: 0, truncated: 1 };
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
    let (d, m) = pair(path, off!(path_dentry), off!(path_mnt));
    (d, m)
}

/// Two words of `base` at offsets `a` and `b`: one read when they are adjacent (a
/// `struct path`'s mnt and dentry, an fdtable's max_fds and fd array), else two. Read
/// through the per-CPU window, not the stack (6.1 caps the callbacks' combined stack).
#[inline(always)]
pub fn pair(base: u64, a: u32, b: u32) -> (u64, u64) {
    if base != 0 && a != MISSING && b != MISSING && (a + 8 == b || b + 8 == a) {
        let Some(ab) = argbuf() else { return (0, 0) };
        let lo = if a < b { a } else { b };
        // SAFETY: 16 bytes into the per-CPU window (40 bytes); a bad address fails the helper.
        let rc = unsafe {
            gen::bpf_probe_read_kernel(ab.win.as_mut_ptr() as *mut c_void, 16, (base + lo as u64) as *const c_void)
        };
        if rc != 0 {
            return (0, 0);
        }
        let w = &ab.win;
        let first = u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        let second = u64::from_ne_bytes([w[8], w[9], w[10], w[11], w[12], w[13], w[14], w[15]]);
        return if a < b { (first, second) } else { (second, first) };
    }
    (rd_ptr(base, a), rd_ptr(base, b))
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
    if w.vfs != 0 && w.dentry == w.root {
        let parent = rd_ptr(w.mnt, off!(mount_mnt_parent));
        if parent == w.mnt || parent == 0 {
            w.truncated = 0;
            return 1;
        }
        w.dentry = rd_ptr(w.mnt, off!(mount_mnt_mountpoint));
        w.mnt = parent;
        w.vfs = parent.wrapping_add(o_mnt);
        w.root = rd_ptr(w.vfs, off!(vfsmount_mnt_root));
        return 0; // the mount point may itself be a mount's root: check again
    }
    let Some((parent, len, name)) = fields(w.dentry) else { return 1 };
    if parent == 0 || parent == w.dentry {
        w.truncated = 0;
        return 1;
    }
    let ok = if w.mode == PREPEND { prepend(w, len, name) } else { leaf_first(w, name) };
    if !ok {
        return 1;
    }
    w.dentry = parent;
    0
}

/// A dentry's parent, name length and name pointer. `d_parent` and `d_name` (length,
/// then the name pointer) sit within 32 bytes of each other on every kernel nightjar
/// knows: one read then serves the three (this walk is every path argument's cost).
#[inline(always)]
fn fields(dentry: u64) -> Option<(u64, u64, u64)> {
    let (p, l, n) = (off!(dentry_d_parent), off!(dentry_d_name_len), off!(dentry_d_name_name));
    if p != MISSING && l >= p && n >= p && l - p <= 28 && n - p <= 24 {
        let ab = argbuf()?;
        // SAFETY: 32 bytes into the per-CPU window (40 bytes); a bad address fails the helper.
        let rc = unsafe {
            gen::bpf_probe_read_kernel(ab.win.as_mut_ptr() as *mut c_void, 32, (dentry + p as u64) as *const c_void)
        };
        if rc != 0 {
            return Some((0, 0, 0));
        }
        let at = |o: u32| ((o - p) as usize) & 31;
        let word = |i: usize| {
            let w = &ab.win;
            u64::from_ne_bytes([w[i], w[i + 1], w[i + 2], w[i + 3], w[i + 4], w[i + 5], w[i + 6], w[i + 7]])
        };
        let (li, ni) = (at(l), at(n));
        return Some((word(0), word(li) & 0xffff_ffff, word(ni)));
    }
    let parent = rd_ptr(dentry, off!(dentry_d_parent));
    let len = rd::<u32>(dentry, off!(dentry_d_name_len)).unwrap_or(0) as u64;
    Some((parent, len, rd_ptr(dentry, off!(dentry_d_name_name))))
}

/// Appends the component NUL-terminated at `target + pos` of SCRATCH.
#[inline(always)]
fn leaf_first(w: &mut Walk, name: u64) -> bool {
    let written = w.pos & (limits::PATH_MAX as u64 - 1);
    if written + limits::NAME_MAX as u64 > limits::PATH_MAX as u64 {
        return false; // truncated stays set
    }
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else { return false };
    let at = ((w.target + written) as usize) & SCRATCH_MASK;
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
fn prepend(w: &mut Walk, len: u64, name: u64) -> bool {
    let len = len & 0xff;
    let Some(ab) = argbuf() else { return false };
    let slot = crate::policy::slot_idx(w.target as usize);
    let pos = ab.spos[slot] as u64;
    if pos < len + 2 {
        return false; // no room: the path is cut at the front
    }
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
