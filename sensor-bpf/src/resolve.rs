//! `resolve:` arguments (Tetragon's path through struct members, e.g.
//! `file.f_path.dentry.d_name.name` of a `linux_binprm *`), user side in
//! `sensor/src/hooks/resolve.rs`, which turns the path into offsets from the kernel's BTF.
//! Here the walk: each step adds a member's offset and, for a pointer member (or the
//! scalar the path ends at), reads the word there. A failed read yields 0, which every
//! argument source reads as absent. A `data:` argument (`source: current_task`) starts
//! from the current task instead of an argument.
use nightjar_common::{plimits, Resolve, RES_CURRENT_TASK};

use crate::kread::rd_ptr;

/// The word `resolve` leads to from the argument's word `addr`. (Not inlined: it runs in
/// the capture callback, whose stack 6.1's verifier counts with its caller's.)
#[inline(never)]
pub fn walk(r: &Resolve, mut addr: u64) -> u64 {
    if r.base == RES_CURRENT_TASK {
        addr = crate::task::current();
    }
    for k in 0..plimits::RESOLVE_STEPS {
        if k < r.n as usize {
            addr = addr.wrapping_add(u64::from(r.offs[k]));
            if (r.deref >> k) & 1 == 1 {
                addr = rd_ptr(addr, 0);
            }
        }
    }
    addr
}
