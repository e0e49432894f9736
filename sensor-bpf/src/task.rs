//! What every hook reads about the current task, in one place: its pid namespace (and its
//! pid there), its other namespaces, its credentials.
use nightjar_common::ns;

use crate::kread::{off, rd, rd_ptr, MISSING};

/// The current task (`struct task_struct *`).
#[inline(always)]
pub fn current() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { aya_ebpf::helpers::generated::bpf_get_current_task() }
}

/// The task's own pid namespace (`thread_pid->numbers[level]`): (its inum, the task's pid
/// in it). (0, 0) when this kernel's layout is not known.
#[inline(always)]
pub fn pid_ns(task: u64) -> (u32, u32) {
    let pid = rd_ptr(task, off!(task_thread_pid));
    let numbers = off!(pid_numbers);
    let size = off!(upid_size);
    if pid == 0 || numbers == MISSING || size == MISSING {
        return (0, 0);
    }
    let level = rd::<u32>(pid, off!(pid_level)).unwrap_or(0) & 31;
    let upid = pid + numbers as u64 + (level as u64) * (size as u64 & 0xff);
    let pidns = rd_ptr(upid, off!(upid_ns));
    (rd::<u32>(pidns, off!(ns_inum[ns::PID])).unwrap_or(0), rd::<u32>(upid, off!(upid_nr)).unwrap_or(0))
}

/// Inum of the task's namespace in `slot` (`ns` order).
#[inline(always)]
pub fn ns_inum(task: u64, slot: usize) -> u32 {
    match slot {
        ns::USER => {
            let cred = rd_ptr(task, off!(task_real_cred));
            let user_ns = rd_ptr(cred, off!(cred_user_ns));
            rd::<u32>(user_ns, off!(ns_inum[ns::USER])).unwrap_or(0)
        }
        ns::PID => pid_ns(task).0,
        s if s < ns::COUNT => {
            let nsproxy = rd_ptr(task, off!(task_nsproxy));
            let p = rd_ptr(nsproxy, off!(nsproxy_ns[s]));
            rd::<u32>(p, off!(ns_inum[s])).unwrap_or(0)
        }
        _ => 0,
    }
}
