//! Buffers as policy arguments (`char_buf`), user side in `sensor/src/hooks/charbuf.rs`:
//! the bytes a pointer argument points to, as many as another argument (`sizeArgIndex`) or
//! the return value (`returnCopy`, read when the function returns) says, at most
//! `argsrc::CHAR_BUF_MAX`. The slot holds the size (u64) and then the bytes read; the
//! slot's value (what selectors compare) is the bytes, the record gets both.
use core::ffi::c_void;

use aya_ebpf::helpers::generated as gen;
use nightjar_common::{argsrc, plimits};

use crate::policy::{argbuf, slot_idx};

/// Reads the buffer at `ptr` whose size is the raw word `aux` names into string slot `slot`.
#[inline(always)]
pub fn capture(slot: usize, ptr: u64, aux: u16) {
    let Some(ab) = argbuf() else { return };
    let s = slot_idx(slot);
    ab.spos[s] = 8;
    ab.slen[s] = 0;
    ab.strs[s][..8].copy_from_slice(&0u64.to_ne_bytes());
    if aux & argsrc::CHAR_BUF_SIZED == 0 {
        return;
    }
    let o = (aux & argsrc::CHAR_BUF_SIZE_MASK) as usize & (plimits::RAW - 1);
    let r = &ab.raw;
    let size = u64::from_ne_bytes([r[o], r[o + 1], r[o + 2], r[o + 3], r[o + 4], r[o + 5], r[o + 6], r[o + 7]]);
    // A negative return (an error) read nothing.
    let size = if (size as i64) < 0 { 0 } else { size };
    ab.strs[s][..8].copy_from_slice(&size.to_ne_bytes());
    let n = if size > argsrc::CHAR_BUF_MAX as u64 { argsrc::CHAR_BUF_MAX } else { size as usize };
    let n = core::hint::black_box(n) & 0xfff;
    let n = if n > argsrc::CHAR_BUF_MAX { argsrc::CHAR_BUF_MAX } else { n };
    // SAFETY: n ≤ CHAR_BUF_MAX bytes after the 8-byte size, inside the slot; a bad
    // address fails the helper instead of faulting. The compat helper reads user or
    // kernel memory (a syscall's buffer is the caller's).
    let rc =
        unsafe { gen::bpf_probe_read(ab.strs[s].as_mut_ptr().add(8) as *mut c_void, n as u32, ptr as *const c_void) };
    ab.slen[s] = if rc == 0 { n as u32 } else { 0 };
}
