//! Kernel structs read whole as typed policy arguments (`cred`, `user_namespace`, `module`,
//! `load_info`, `bpf_attr`, `bpf_map`, `perf_event`), user side in `sensor/src/hooks/kstruct.rs`. Each is written as fixed
//! little-endian words into the argument's string slot (layouts in `nightjar_common::kstruct`)
//! and reported as the slot's bytes; the fields come from `Offsets.kstruct` (BTF), and a
//! field this kernel lacks reads as 0.
use core::ffi::c_void;

use aya_ebpf::helpers::generated as gen;
use nightjar_common::{argsrc, kstruct as k, ns};

use crate::{
    kread::{off, rd, rd_ptr, rd_str},
    policy::{argbuf, slot_idx},
};

#[inline(always)]
fn put32(slot: usize, at: usize, v: u32) {
    let Some(ab) = argbuf() else { return };
    ab.strs[slot_idx(slot)][at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[inline(always)]
fn put64(slot: usize, at: usize, v: u64) {
    let Some(ab) = argbuf() else { return };
    ab.strs[slot_idx(slot)][at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Reads the struct at `ptr` as argument source `src` into string slot `slot`. False when
/// `src` is not a struct source.
#[inline(always)]
pub fn capture(slot: usize, src: u8, ptr: u64) -> bool {
    let len = match src {
        argsrc::CRED => {
            cred(slot, ptr);
            k::CRED_LEN
        }
        argsrc::USER_NS => {
            user_ns(slot, 0, ptr);
            k::USER_NS_LEN
        }
        argsrc::MODULE | argsrc::LOAD_INFO => module(slot, src, ptr),
        argsrc::BPF_ATTR => {
            bpf_attr(slot, ptr);
            k::BPF_ATTR_LEN
        }
        argsrc::BPF_MAP => {
            bpf_map(slot, ptr);
            k::BPF_MAP_LEN
        }
        argsrc::PERF_EVENT => perf_event(slot, ptr),
        _ => return false,
    };
    let Some(ab) = argbuf() else { return true };
    let s = slot_idx(slot);
    ab.spos[s] = 0;
    ab.slen[s] = len as u32;
    true
}

/// `struct cred`: the eight ids and securebits, the three capability sets, the user
/// namespace (Tetragon's `process_credentials_arg`).
#[inline(always)]
fn cred(slot: usize, c: u64) {
    let ids = [
        off!(cred_uid),
        off!(cred_gid),
        off!(cred_euid),
        off!(cred_egid),
        off!(kstruct.cred_suid),
        off!(kstruct.cred_sgid),
        off!(kstruct.cred_fsuid),
        off!(kstruct.cred_fsgid),
        off!(kstruct.cred_securebits),
    ];
    for (i, o) in ids.iter().enumerate() {
        put32(slot, k::CRED_IDS + 4 * i, rd::<u32>(c, *o).unwrap_or(0));
    }
    put32(slot, k::CRED_IDS + 36, 0);
    let caps = [off!(cred_cap_permitted), off!(cred_cap_effective), off!(cred_cap_inheritable)];
    for (i, o) in caps.iter().enumerate() {
        put64(slot, k::CRED_CAPS + 8 * i, rd::<u64>(c, *o).unwrap_or(0));
    }
    user_ns(slot, k::CRED_USER_NS, rd_ptr(c, off!(cred_user_ns)));
}

/// `struct user_namespace`: level, owner, group, ns.inum at `at` in the slot.
#[inline(always)]
fn user_ns(slot: usize, at: usize, u: u64) {
    put32(slot, at, rd::<u32>(u, off!(kstruct.user_ns_level)).unwrap_or(0));
    put32(slot, at + 4, rd::<u32>(u, off!(kstruct.user_ns_owner)).unwrap_or(0));
    put32(slot, at + 8, rd::<u32>(u, off!(kstruct.user_ns_group)).unwrap_or(0));
    put32(slot, at + 12, rd::<u32>(u, off!(ns_inum[ns::USER])).unwrap_or(0));
}

/// `struct module` (its inline name, its taints) or `struct load_info` (its name, its
/// module's taints, sig_ok), as Tetragon reads them. Returns the bytes written.
#[inline(always)]
fn module(slot: usize, src: u8, p: u64) -> usize {
    let (name, module, sig_ok) = if src == argsrc::LOAD_INFO {
        let sig = rd::<u8>(p, off!(kstruct.load_info_sig_ok)).unwrap_or(0);
        (rd_ptr(p, off!(kstruct.load_info_name)), rd_ptr(p, off!(kstruct.load_info_mod)), sig)
    } else {
        let o = off!(kstruct.module_name);
        (if p == 0 || o == crate::kread::MISSING { 0 } else { p + o as u64 }, p, 0)
    };
    put64(slot, 0, rd::<u64>(module, off!(kstruct.module_taints)).unwrap_or(0));
    put32(slot, 8, u32::from(sig_ok != 0));
    put32(slot, 12, 0);
    let Some(ab) = argbuf() else { return k::MODULE_NAME };
    let dst = ab.strs[slot_idx(slot)][k::MODULE_NAME..].as_mut_ptr();
    let n = rd_str(dst, k::MODULE_NAME_LEN as u32, name);
    k::MODULE_NAME + if n > 0 { n - 1 } else { 0 }
}

/// `union bpf_attr` of BPF_PROG_LOAD (its UAPI layout): type, instruction count, name.
#[inline(always)]
fn bpf_attr(slot: usize, a: u64) {
    put32(slot, 0, rd::<u32>(a, k::UAPI_PROG_TYPE).unwrap_or(0));
    put32(slot, 4, rd::<u32>(a, k::UAPI_INSN_CNT).unwrap_or(0));
    let Some(ab) = argbuf() else { return };
    let dst = ab.strs[slot_idx(slot)][k::BPF_ATTR_NAME..].as_mut_ptr();
    // SAFETY: 16 bytes into the slot; a bad address fails the helper (the name stays 0).
    let rc =
        unsafe { gen::bpf_probe_read_kernel(dst as *mut c_void, 16, (a + k::UAPI_PROG_NAME as u64) as *const c_void) };
    if rc != 0 || a == 0 {
        ab.strs[slot_idx(slot)][k::BPF_ATTR_NAME..k::BPF_ATTR_NAME + 16].fill(0);
    }
}

/// `struct bpf_map`: type, key and value sizes, max entries, its inline name.
#[inline(always)]
fn bpf_map(slot: usize, m: u64) {
    let o = [
        off!(kstruct.bpf_map_type),
        off!(kstruct.bpf_map_key_size),
        off!(kstruct.bpf_map_value_size),
        off!(kstruct.bpf_map_max_entries),
    ];
    for (i, f) in o.iter().enumerate() {
        put32(slot, 4 * i, rd::<u32>(m, *f).unwrap_or(0));
    }
    let Some(ab) = argbuf() else { return };
    let name = &mut ab.strs[slot_idx(slot)][k::BPF_MAP_NAME..k::BPF_MAP_NAME + 16];
    let o = off!(kstruct.bpf_map_name);
    // SAFETY: 16 bytes into the slot; a bad address fails the helper (the name stays 0).
    let rc = if m == 0 || o == crate::kread::MISSING {
        -1
    } else {
        unsafe { gen::bpf_probe_read_kernel(name.as_mut_ptr() as *mut c_void, 16, (m + o as u64) as *const c_void) }
    };
    if rc != 0 {
        name.fill(0);
    }
}

/// `struct perf_event`: its attr's type, config, probe_offset (config2) and the string
/// kprobe_func (config1) points to, as Tetragon reads them. Returns the bytes written.
#[inline(always)]
fn perf_event(slot: usize, p: u64) -> usize {
    let o = off!(kstruct.perf_event_attr);
    let attr = if p == 0 || o == crate::kread::MISSING { 0 } else { p + o as u64 };
    put32(slot, 0, rd::<u32>(attr, k::UAPI_PERF_TYPE).unwrap_or(0));
    put32(slot, 4, 0);
    put64(slot, k::PERF_CONFIG, rd::<u64>(attr, k::UAPI_PERF_CONFIG).unwrap_or(0));
    put64(slot, k::PERF_PROBE_OFFSET, rd::<u64>(attr, k::UAPI_PERF_PROBE_OFFSET).unwrap_or(0));
    let func = rd_ptr(attr, k::UAPI_PERF_KPROBE_FUNC);
    let Some(ab) = argbuf() else { return k::PERF_FUNC };
    let dst = ab.strs[slot_idx(slot)][k::PERF_FUNC..].as_mut_ptr() as *mut c_void;
    // SAFETY: at most PERF_FUNC_LEN bytes into the slot; the pointer is the caller's
    // (perf_event_open's attr), read by the compat helper, which fails on a bad address.
    let n = if func == 0 {
        0
    } else {
        unsafe { gen::bpf_probe_read_str(dst, k::PERF_FUNC_LEN as u32, func as *const c_void) }
    };
    k::PERF_FUNC + if n > 0 { (n - 1) as usize } else { 0 }
}
