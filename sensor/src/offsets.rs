//! Kernel struct offsets for the eBPF programs, computed from the running kernel's BTF.
//! This stands in for compiler CO-RE, which Rust's BPF target does not emit: the same
//! object reads `task_struct` & co. correctly on any kernel whose BTF we can read.
use nightjar_common::{ns, KstructOffsets, Offsets};

use crate::btf::{Btf, BtfError};

/// What could not be resolved, for the log and `status` (the programs skip those reads).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OffsetReport {
    pub missing: Vec<String>,
}

/// Resolves every offset the programs use. Fails only if the essentials are missing.
pub fn compute(btf: &Btf, args_max: u32) -> Result<(Offsets, OffsetReport), BtfError> {
    let mut o = Offsets::missing();
    let mut report = OffsetReport::default();
    // Essentials: without these the sensor cannot identify processes.
    o.task_pid = btf.offset("task_struct", &["pid"])?;
    o.task_tgid = btf.offset("task_struct", &["tgid"])?;
    o.task_real_parent = btf.offset("task_struct", &["real_parent"])?;
    o.task_start_boottime = btf.offset_any("task_struct", &[&["start_boottime"], &["real_start_time"]])?;

    let mut opt = |name: &str, r: Result<u32, BtfError>| -> u32 {
        match r {
            Ok(v) => v,
            Err(e) => {
                report.missing.push(format!("{name}: {e}"));
                Offsets::MISSING
            }
        }
    };
    o.task_mm = opt("task_struct.mm", btf.offset("task_struct", &["mm"]));
    o.task_fs = opt("task_struct.fs", btf.offset("task_struct", &["fs"]));
    o.task_nsproxy = opt("task_struct.nsproxy", btf.offset("task_struct", &["nsproxy"]));
    o.task_real_cred = opt("task_struct.real_cred", btf.offset("task_struct", &["real_cred"]));
    o.task_loginuid = opt("task_struct.loginuid", btf.offset("task_struct", &["loginuid"]));
    o.task_signal = opt("task_struct.signal", btf.offset("task_struct", &["signal"]));
    o.task_cgroups = opt("task_struct.cgroups", btf.offset("task_struct", &["cgroups"]));
    o.task_exit_code = opt("task_struct.exit_code", btf.offset("task_struct", &["exit_code"]));
    o.task_thread_pid = opt("task_struct.thread_pid", btf.offset("task_struct", &["thread_pid"]));
    o.task_files = opt("task_struct.files", btf.offset("task_struct", &["files"]));
    o.files_fdt = opt("files_struct.fdt", btf.offset("files_struct", &["fdt"]));
    o.fdtable_fd = opt("fdtable.fd", btf.offset("fdtable", &["fd"]));
    o.fdtable_max_fds = opt("fdtable.max_fds", btf.offset("fdtable", &["max_fds"]));
    o.dentry_d_name_len = opt("dentry.d_name.len", btf.offset("dentry", &["d_name", "len"]));
    o.mm_arg_start = opt("mm_struct.arg_start", btf.offset("mm_struct", &["arg_start"]));
    o.mm_arg_end = opt("mm_struct.arg_end", btf.offset("mm_struct", &["arg_end"]));
    o.mm_exe_file = opt("mm_struct.exe_file", btf.offset("mm_struct", &["exe_file"]));
    o.file_f_path = opt("file.f_path", btf.offset("file", &["f_path"]));
    o.path_mnt = opt("path.mnt", btf.offset("path", &["mnt"]));
    o.path_dentry = opt("path.dentry", btf.offset("path", &["dentry"]));
    o.fs_pwd = opt("fs_struct.pwd", btf.offset("fs_struct", &["pwd"]));
    o.dentry_d_parent = opt("dentry.d_parent", btf.offset("dentry", &["d_parent"]));
    o.dentry_d_name_name = opt("dentry.d_name.name", btf.offset("dentry", &["d_name", "name"]));
    o.vfsmount_mnt_root = opt("vfsmount.mnt_root", btf.offset("vfsmount", &["mnt_root"]));
    o.mount_mnt = opt("mount.mnt", btf.offset("mount", &["mnt"]));
    o.mount_mnt_parent = opt("mount.mnt_parent", btf.offset("mount", &["mnt_parent"]));
    o.mount_mnt_mountpoint = opt("mount.mnt_mountpoint", btf.offset("mount", &["mnt_mountpoint"]));
    o.cred_uid = opt("cred.uid", btf.offset("cred", &["uid"]));
    o.cred_gid = opt("cred.gid", btf.offset("cred", &["gid"]));
    o.cred_euid = opt("cred.euid", btf.offset("cred", &["euid"]));
    o.cred_egid = opt("cred.egid", btf.offset("cred", &["egid"]));
    o.cred_cap_inheritable = opt("cred.cap_inheritable", btf.offset("cred", &["cap_inheritable"]));
    o.cred_cap_permitted = opt("cred.cap_permitted", btf.offset("cred", &["cap_permitted"]));
    o.cred_cap_effective = opt("cred.cap_effective", btf.offset("cred", &["cap_effective"]));
    o.cred_user_ns = opt("cred.user_ns", btf.offset("cred", &["user_ns"]));

    let ns_structs: [(usize, &str, &str); ns::COUNT] = [
        (ns::UTS, "uts_namespace", "uts_ns"),
        (ns::IPC, "ipc_namespace", "ipc_ns"),
        (ns::MNT, "mnt_namespace", "mnt_ns"),
        (ns::PID, "pid_namespace", ""),
        (ns::PID_FOR_CHILDREN, "pid_namespace", "pid_ns_for_children"),
        (ns::NET, "net", "net_ns"),
        (ns::TIME, "time_namespace", "time_ns"),
        (ns::CGROUP, "cgroup_namespace", "cgroup_ns"),
        (ns::USER, "user_namespace", ""),
        (ns::TIME_FOR_CHILDREN, "time_namespace", "time_ns_for_children"),
    ];
    for (slot, st, field) in ns_structs {
        o.ns_inum[slot] = opt(&format!("{st}.ns.inum"), btf.offset(st, &["ns", "inum"]));
        if !field.is_empty() {
            o.nsproxy_ns[slot] = opt(&format!("nsproxy.{field}"), btf.offset("nsproxy", &[field]));
        }
    }
    o.pid_level = opt("pid.level", btf.offset("pid", &["level"]));
    o.pid_numbers = opt("pid.numbers", btf.offset("pid", &["numbers"]));
    o.upid_size = opt("sizeof(upid)", btf.struct_size("upid"));
    o.upid_nr = opt("upid.nr", btf.offset("upid", &["nr"]));
    o.upid_ns = opt("upid.ns", btf.offset("upid", &["ns"]));
    o.signal_tty = opt("signal_struct.tty", btf.offset("signal_struct", &["tty"]));
    o.tty_name = opt("tty_struct.name", btf.offset("tty_struct", &["name"]));
    o.css_set_dfl_cgrp = opt("css_set.dfl_cgrp", btf.offset("css_set", &["dfl_cgrp"]));
    o.cgroup_kn = opt("cgroup.kn", btf.offset("cgroup", &["kn"]));
    o.kernfs_node_name = opt("kernfs_node.name", btf.offset("kernfs_node", &["name"]));
    o.kernfs_node_parent = opt("kernfs_node.parent", btf.offset_any("kernfs_node", &[&["__parent"], &["parent"]]));
    o.binprm_file = opt("linux_binprm.file", btf.offset("linux_binprm", &["file"]));
    o.kiocb_ki_filp = opt("kiocb.ki_filp", btf.offset("kiocb", &["ki_filp"]));
    o.kstruct = kstruct(btf, &mut opt);
    o.net = crate::hooks::net::offsets(btf, &mut report.missing);
    o.args_max = args_max.min(nightjar_common::limits::ARGS_MAX as u32 - 1);
    Ok((o, report))
}

/// The fields of the structs typed policy arguments read whole (`cred`, `user_namespace`,
/// `module`, `load_info`, `iov_iter`, `bpf_map`, `perf_event`). `load_info.sig_ok` exists only with CONFIG_MODULE_SIG.
fn kstruct(btf: &Btf, opt: &mut impl FnMut(&str, Result<u32, BtfError>) -> u32) -> KstructOffsets {
    let mut k = KstructOffsets::missing();
    let mut f = |st: &str, field: &str| opt(&format!("{st}.{field}"), btf.offset(st, &[field]));
    k.cred_suid = f("cred", "suid");
    k.cred_sgid = f("cred", "sgid");
    k.cred_fsuid = f("cred", "fsuid");
    k.cred_fsgid = f("cred", "fsgid");
    k.cred_securebits = f("cred", "securebits");
    k.user_ns_level = f("user_namespace", "level");
    k.user_ns_owner = f("user_namespace", "owner");
    k.user_ns_group = f("user_namespace", "group");
    k.module_name = f("module", "name");
    k.module_taints = f("module", "taints");
    // load_info is module-loader internal: absent from a kernel without loadable modules
    // (CONFIG_MODULES=n, as this host's), sig_ok without CONFIG_MODULE_SIG. Not reported:
    // a `load_info` argument needs a function that only such kernels have.
    let quiet = |field: &str| btf.offset("load_info", &[field]).unwrap_or(Offsets::MISSING);
    k.load_info_name = quiet("name");
    k.load_info_mod = quiet("mod");
    k.load_info_sig_ok = quiet("sig_ok");
    k.iov_iter_type = f("iov_iter", "iter_type");
    k.iov_iter_offset = f("iov_iter", "iov_offset");
    k.iov_iter_count = f("iov_iter", "count");
    // One union holds every kind's pointer (`iov` is `__iov` since 6.4).
    k.iov_iter_ptr = f("iov_iter", "ubuf");
    let iter = |v: &str| btf.enum_value("iter_type", v).unwrap_or(Offsets::MISSING);
    k.iter_ubuf = iter("ITER_UBUF");
    k.iter_iovec = iter("ITER_IOVEC");
    k.iter_kvec = iter("ITER_KVEC");
    k.bpf_map_type = f("bpf_map", "map_type");
    k.bpf_map_key_size = f("bpf_map", "key_size");
    k.bpf_map_value_size = f("bpf_map", "value_size");
    k.bpf_map_max_entries = f("bpf_map", "max_entries");
    k.bpf_map_name = f("bpf_map", "name");
    k.perf_event_attr = f("perf_event", "attr");
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_kernel_resolves_everything() {
        let btf = Btf::from_sys_fs().expect("kernel BTF");
        let (o, report) = compute(&btf, 1024).unwrap();
        assert!(report.missing.is_empty(), "unresolved: {:?}", report.missing);
        assert_ne!(o.task_mm, Offsets::MISSING);
        assert!(o.ns_inum.iter().all(|v| *v != Offsets::MISSING));
        assert_eq!(o.nsproxy_ns[ns::USER], Offsets::MISSING, "user ns is reached through cred");
    }
}
