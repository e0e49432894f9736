//! Buffers as policy arguments (`char_buf`), user side in `sensor/src/hooks/charbuf.rs`:
//! the bytes a pointer argument points to, as many as another argument (`sizeArgIndex`) or
//! the return value (`returnCopy`, read when the function returns) says, at most
//! `argsrc::CHAR_BUF_MAX`. The slot holds the size (u64) and then the bytes read; the
//! slot's value (what selectors compare) is the bytes, the record gets both. An `iov_iter`
//! is read the same way: its `count` is the size, its first segment the bytes. A
//! `char_iovec` (a user `struct iovec` array, its count of segments `sizeArgIndex`) is
//! its first `argsrc::IOVEC_SEGS` segments concatenated: their total length is the size.
use core::ffi::c_void;

use aya_ebpf::{helpers::generated as gen, macros::map, maps::PerCpuArray};
use nightjar_common::{argsrc, plimits};

use crate::{
    kread::{off, rd, rd_ptr},
    policy::{argbuf, slot_idx},
};

/// Where a `char_iovec`'s segments are concatenated (per CPU): each copy starts below
/// 4096 and is at most 4095 bytes, so `bytes` bounds it on its own.
#[repr(C)]
pub struct IovScratch {
    /// The `struct iovec` being read: base, len.
    seg: [u64; 2],
    /// The user address of the iovec array.
    vec: u64,
    /// Bytes copied so far (at most CHAR_BUF_MAX).
    pos: u64,
    /// The segments' total length (what the size word reports).
    total: u64,
    /// 1 once a segment could not be read: the rest is left out.
    fault: u64,
    bytes: [u8; 2 * 4096],
}

#[map]
static IOV: PerCpuArray<IovScratch> = PerCpuArray::with_max_entries(1, 0);

/// Reads the buffer of argument source `src` into string slot `slot`: for CHAR_BUF the
/// bytes at `word` whose size is the raw word `aux` names, for CHAR_IOVEC those of the
/// iovec array at `word` whose count it names, for IOV_ITER those the `struct iov_iter *`
/// at `word` holds.
#[inline(always)]
pub fn capture(slot: usize, src: u8, word: u64, aux: u16) {
    let Some(ab) = argbuf() else { return };
    let s = slot_idx(slot);
    ab.spos[s] = 8;
    ab.slen[s] = 0;
    ab.strs[s][..8].copy_from_slice(&0u64.to_ne_bytes());
    let (ptr, size, seg) = if src == argsrc::IOV_ITER {
        iter(word)
    } else {
        if aux & argsrc::CHAR_BUF_SIZED == 0 {
            return;
        }
        let o = (aux & argsrc::CHAR_BUF_SIZE_MASK) as usize & (plimits::RAW - 1);
        let r = &ab.raw;
        let size = u64::from_ne_bytes([r[o], r[o + 1], r[o + 2], r[o + 3], r[o + 4], r[o + 5], r[o + 6], r[o + 7]]);
        // A negative return (an error) read nothing.
        let size = if (size as i64) < 0 { 0 } else { size };
        if src == argsrc::CHAR_IOVEC {
            iovec(word, size)
        } else {
            (word, size, size)
        }
    };
    ab.strs[s][..8].copy_from_slice(&size.to_ne_bytes());
    // The bytes of the first segment, at most CHAR_BUF_MAX (the size says what is left out).
    let n = if seg > argsrc::CHAR_BUF_MAX as u64 { argsrc::CHAR_BUF_MAX } else { seg as usize };
    let n = core::hint::black_box(n) & 0xfff;
    let n = if n > argsrc::CHAR_BUF_MAX { argsrc::CHAR_BUF_MAX } else { n };
    // SAFETY: n ≤ CHAR_BUF_MAX bytes after the 8-byte size, inside the slot; a bad
    // address fails the helper instead of faulting. The compat helper reads user or
    // kernel memory (a syscall's buffer is the caller's).
    let rc =
        unsafe { gen::bpf_probe_read(ab.strs[s].as_mut_ptr().add(8) as *mut c_void, n as u32, ptr as *const c_void) };
    ab.slen[s] = if rc == 0 { n as u32 } else { 0 };
}

/// The data of a `struct iov_iter`: (address, bytes left in all, bytes in its first
/// segment). A user buffer (ITER_UBUF, what write(2) makes since 6.0) or the first
/// `iovec`/`kvec` (same layout: base, len); any other kind (pages, pipes) reads as empty,
/// as Tetragon's reader does.
#[inline(always)]
fn iter(it: u64) -> (u64, u64, u64) {
    let ty = rd::<u8>(it, off!(kstruct.iov_iter_type)).map_or(u32::MAX, u32::from);
    let count = rd::<u64>(it, off!(kstruct.iov_iter_count)).unwrap_or(0);
    let skip = rd::<u64>(it, off!(kstruct.iov_iter_offset)).unwrap_or(0);
    let p = rd_ptr(it, off!(kstruct.iov_iter_ptr));
    if ty == off!(kstruct.iter_ubuf) {
        return (p + skip, count, count);
    }
    if ty == off!(kstruct.iter_iovec) || ty == off!(kstruct.iter_kvec) {
        let base = rd_ptr(p, 0);
        let len = rd::<u64>(p, 8).unwrap_or(0);
        let seg = if len > skip { len - skip } else { 0 };
        return (base + skip, count, if seg < count { seg } else { count });
    }
    (0, 0, 0)
}

/// The segments of the iovec array at `vec` (`count` of them, at most IOVEC_SEGS)
/// concatenated in the per-CPU `IOV` buffer: (its address, the segments' total length,
/// bytes copied). One segment per bpf_loop iteration, its state in `IOV`, not the stack.
#[inline(always)]
fn iovec(vec: u64, count: u64) -> (u64, u64, u64) {
    let Some(st) = IOV.get_ptr_mut(0) else { return (0, 0, 0) };
    // SAFETY: per-CPU value; programs do not nest on one CPU.
    let st = unsafe { &mut *st };
    st.vec = vec;
    st.pos = 0;
    st.total = 0;
    st.fault = 0;
    let n = if count > argsrc::IOVEC_SEGS as u64 { argsrc::IOVEC_SEGS } else { count as u32 };
    // SAFETY: iov_cb touches only the per-CPU IOV value.
    unsafe { gen::bpf_loop(n, iov_cb as *mut c_void, core::ptr::null_mut(), 0) };
    (st.bytes.as_ptr() as u64, st.total, st.pos)
}

/// Segment `i`: its length counts in the total, its bytes (as many as fit under
/// CHAR_BUF_MAX) go after those of the segments before it.
extern "C" fn iov_cb(i: u64, _ctx: *mut c_void) -> i64 {
    let Some(st) = IOV.get_ptr_mut(0) else { return 1 };
    // SAFETY: per-CPU value; programs do not nest on one CPU.
    let st = unsafe { &mut *st };
    let at = st.vec.wrapping_add(16 * (i & 7));
    // SAFETY: 16 bytes into the per-CPU value; a bad address fails the helper (the compat
    // helper reads the caller's memory for a syscall, kernel memory for a kernel copy).
    let rc = unsafe { gen::bpf_probe_read(st.seg.as_mut_ptr() as *mut c_void, 16, at as *const c_void) };
    if rc != 0 {
        return 1;
    }
    let (base, len) = (st.seg[0], st.seg[1]);
    st.total = st.total.wrapping_add(len);
    if st.fault != 0 {
        return 0;
    }
    let pos = core::hint::black_box(st.pos as usize) & 0xfff;
    let room = argsrc::CHAR_BUF_MAX.saturating_sub(pos) as u64;
    let n = if len > room { room as usize } else { len as usize };
    let n = core::hint::black_box(n) & 0xfff;
    // SAFETY: pos < 4096 and n < 4096: inside `bytes` (8192); a bad address fails the helper.
    let rc =
        unsafe { gen::bpf_probe_read(st.bytes.as_mut_ptr().add(pos) as *mut c_void, n as u32, base as *const c_void) };
    if rc == 0 {
        st.pos = (pos + n) as u64;
    } else {
        st.fault = 1;
    }
    0
}
