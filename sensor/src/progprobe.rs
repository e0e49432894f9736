//! Whether this kernel lets fentry and BPF-LSM programs load, learned by loading a
//! two-instruction program (`r0 = 0; exit`) with one raw bpf(2) call against the kernel
//! function's BTF id. A kernel may list both and still refuse the load (EPERM under
//! lockdown, no CONFIG_BPF_LSM...), so only a load tells. Doing it without aya keeps the
//! start fast: aya would first parse the whole kernel BTF (hundreds of milliseconds) just to
//! find that one id, which `btf::Btf` already has.
use std::os::fd::{FromRawFd, OwnedFd};

use crate::btf::Btf;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_TRACING: u32 = 26;
const BPF_PROG_TYPE_LSM: u32 = 29;
const BPF_TRACE_FENTRY: u32 = 24;
const BPF_LSM_MAC: u32 = 27;

/// The start of `union bpf_attr` as BPF_PROG_LOAD reads it (include/uapi/linux/bpf.h),
/// up to `attach_btf_id`; the kernel zero-fills what a shorter attr leaves out.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
}

/// `mov64 r0, 0` and `exit`.
const RETURN_ZERO: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];

/// What a probe found: usable, or why not.
pub type Probe = Result<(), String>;

/// Can an fentry program attach to `function` here?
pub fn fentry(btf: &Btf, function: &str) -> Probe {
    load(btf, function, BPF_PROG_TYPE_TRACING, BPF_TRACE_FENTRY)
}

/// Can a BPF-LSM program run on `hook` (e.g. `file_open`) here?
pub fn lsm(btf: &Btf, hook: &str) -> Probe {
    load(btf, &format!("bpf_lsm_{hook}"), BPF_PROG_TYPE_LSM, BPF_LSM_MAC)
}

fn load(btf: &Btf, function: &str, prog_type: u32, attach: u32) -> Probe {
    let id = btf.func_id(function).ok_or_else(|| format!("the kernel BTF has no function {function}"))?;
    // Closing the descriptor unloads the probe program.
    load_return_zero(prog_type, attach, id)
        .map(drop)
        .map_err(|e| format!("BPF_PROG_LOAD of a program on {function}: {e}"))
}

/// `BPF_PROG_TYPE_TRACEPOINT`, for [`load_return_zero`].
pub const BPF_PROG_TYPE_TRACEPOINT: u32 = 5;
/// `BPF_PROG_TYPE_RAW_TRACEPOINT`, for [`load_return_zero`].
pub const BPF_PROG_TYPE_RAW_TRACEPOINT: u32 = 17;

/// Loads `r0 = 0; exit` as a program of `prog_type` (a no-op: the benchmark's baseline for
/// what any program on a hook costs, and the probes above); the fd owns it.
pub fn load_return_zero(prog_type: u32, expected_attach_type: u32, attach_btf_id: u32) -> std::io::Result<OwnedFd> {
    let license = c"GPL";
    let attr = ProgLoadAttr {
        prog_type,
        insn_cnt: RETURN_ZERO.len() as u32,
        insns: RETURN_ZERO.as_ptr() as u64,
        license: license.as_ptr() as u64,
        expected_attach_type,
        attach_btf_id,
        ..Default::default()
    };
    // SAFETY: bpf(2) reads `size_of::<ProgLoadAttr>()` bytes of `attr`, whose pointers
    // (insns, license) stay valid for the call; it returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>() as u32,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a descriptor the kernel just gave us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_layout_matches_the_kernel_abi() {
        // Offsets of include/uapi/linux/bpf.h's BPF_PROG_LOAD attr.
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, line_info), 96);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, attach_btf_id), 108);
    }

    #[test]
    fn an_unknown_function_is_named() {
        let btf = Btf::from_sys_fs().expect("this kernel has BTF");
        let e = fentry(&btf, "no_such_function_nightjar").unwrap_err();
        assert!(e.contains("no function no_such_function_nightjar"), "{e}");
    }

    /// In the VM runner (`NIGHTJAR_EXPECT_KERNEL`), the kernels that have fentry and BPF-LSM
    /// must be found to have them; here (lockdown refuses both) the reason is the kernel's.
    #[test]
    fn probes_agree_with_what_the_kernel_offers() {
        let btf = Btf::from_sys_fs().expect("this kernel has BTF");
        let expect = std::env::var("NIGHTJAR_EXPECT_KERNEL").unwrap_or_default();
        let wants = |f: &str| expect.split(',').any(|w| w.trim() == f);
        let fentry = fentry(&btf, "security_file_open");
        if wants("fentry") {
            assert_eq!(fentry, Ok(()));
        } else if let Err(e) = &fentry {
            assert!(e.contains("BPF_PROG_LOAD of a program on security_file_open"), "{e}");
        }
        if wants("bpf_lsm") {
            assert_eq!(lsm(&btf, "file_open"), Ok(()));
        }
    }
}
