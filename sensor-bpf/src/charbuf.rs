//! Buffers as policy arguments (`char_buf`), user side in `sensor/src/hooks/charbuf.rs`:
//! the bytes a pointer argument points to, as many as another argument (`sizeArgIndex`) or
//! the return value (`returnCopy`, read when the function returns) says, at most
//! `argsrc::CHAR_BUF_MAX`. The slot holds the size (u64) and then the bytes read; the
//! slot's value (what selectors compare) is the bytes, the record gets both. An `iov_iter`
//! is read the same way: its `count` is the size, its first segment the bytes.
use core::ffi::c_void;

use aya_ebpf::helpers::generated as gen;
use nightjar_common::{argsrc, plimits};

use crate::{
    kread::{off, rd, rd_ptr},
    policy::{argbuf, slot_idx},
};

/// Reads the buffer of argument source `src` into string slot `slot`: for CHAR_BUF the
/// bytes at `word` whose size is the raw word `aux` names, for IOV_ITER those the
/// `struct iov_iter *` at `word` holds.
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
        (word, size, size)
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
