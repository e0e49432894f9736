//! Kubernetes scope of a policy's hooks (podSelector, containerSelector, hostSelector,
//! TracingPolicyNamespaced): which scopes admit the current task's cgroup. User space
//! writes the masks per container cgroup (`sensor/src/hooks/scope.rs`).
use aya_ebpf::{helpers::generated as gen, macros::map, maps::HashMap};
use nightjar_common::{plimits, SCOPE_HOST_KEY};

/// Cgroup id → mask of the scopes (bit = scope - 1) that admit it; `SCOPE_HOST_KEY` holds
/// the mask for cgroups that are no container's.
#[map]
pub static SCOPES: HashMap<u64, u64> = HashMap::with_max_entries(plimits::SCOPE_CGROUPS, 0);

/// True when scope `scope` (1..=64) admits the current task.
#[inline(always)]
pub fn admits(scope: u8) -> bool {
    // The key lives in the per-CPU arg buffer: 6.1 caps the callbacks' combined stack.
    let Some(ab) = crate::policy::argbuf() else { return false };
    // SAFETY: helper without arguments.
    ab.cgid = unsafe { gen::bpf_get_current_cgroup_id() };
    // SAFETY: read of a hash map value.
    let mask = match unsafe { SCOPES.get(&ab.cgid) } {
        Some(m) => *m,
        None => {
            ab.cgid = SCOPE_HOST_KEY;
            // SAFETY: as above.
            unsafe { SCOPES.get(&ab.cgid) }.copied().unwrap_or(0)
        }
    };
    (mask >> ((scope.wrapping_sub(1)) & 63)) & 1 == 1
}
