//! Owns: the `#[repr(C)]` records that nightjar's eBPF programs write into the ring
//! buffer, the layout of their maps and globals, and the numeric codes both sides agree on.
//! Must not know about: aya's loader, tokio, the pipeline or any user-space type.
#![no_std]

/// Record kinds, the first field of every ring-buffer record.
pub mod kind {
    pub const EXEC: u16 = 1;
    pub const EXIT: u16 = 2;
    pub const FORK: u16 = 3;
    pub const POLICY: u16 = 4;
}

/// Causes of a lost record, the second index of the `MISSED` per-CPU counters.
pub mod cause {
    /// `bpf_ringbuf_reserve`/`output` failed: user space fell behind and the ring is full.
    pub const RINGBUF_FULL: u32 = 0;
    /// The per-CPU scratch buffer could not be looked up (never expected).
    pub const SCRATCH: u32 = 1;
    pub const COUNT: u32 = 2;
}

/// Number of record kinds tracked by `MISSED` (index = kind * cause::COUNT + cause).
pub const KINDS: u32 = 5;
/// Entries of the `MISSED` per-CPU array.
pub const MISSED_ENTRIES: u32 = KINDS * cause::COUNT;

/// Index into `MISSED` for a record kind and a cause.
#[inline(always)]
pub const fn missed_index(kind: u16, cause: u32) -> u32 {
    (kind as u32) * cause::COUNT + cause
}

/// Flags of [`ExecRecord::flags`].
pub mod exec_flags {
    /// The argument block was longer than the configured maximum and was cut.
    pub const ARGS_TRUNCATED: u32 = 1 << 0;
    /// The binary path had more components (or bytes) than the walker reads.
    pub const PATH_TRUNCATED: u32 = 1 << 1;
    /// The cwd had more components (or bytes) than the walker reads.
    pub const CWD_TRUNCATED: u32 = 1 << 2;
    pub const CGROUP_TRUNCATED: u32 = 1 << 3;
    /// `mm->exe_file` was unavailable; the path is the `filename` given to execve.
    pub const PATH_FROM_FILENAME: u32 = 1 << 4;
    /// The process has no `mm` (kernel thread) or its argument block could not be read.
    pub const ARGS_UNREADABLE: u32 = 1 << 5;
}

/// Namespace slots of [`ExecRecord::ns`].
pub mod ns {
    pub const UTS: usize = 0;
    pub const IPC: usize = 1;
    pub const MNT: usize = 2;
    pub const PID: usize = 3;
    pub const PID_FOR_CHILDREN: usize = 4;
    pub const NET: usize = 5;
    pub const TIME: usize = 6;
    pub const CGROUP: usize = 7;
    pub const USER: usize = 8;
    pub const TIME_FOR_CHILDREN: usize = 9;
    pub const COUNT: usize = 10;
}

/// Common header of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordHeader {
    pub kind: u16,
    pub _pad: u16,
    /// Total length of the record in bytes, header included.
    pub size: u32,
    /// `bpf_ktime_get_boot_ns()` when the record was made.
    pub ktime: u64,
}

/// Fixed part of an exec record. It is followed by `path_len + args_len + cwd_len +
/// cgroup_len` bytes of variable data, in that order. Paths (binary, cwd, cgroup) are
/// written leaf first as NUL-terminated components (`"echo\0bin\0"` for `/bin/echo`);
/// the argument block is argv as the kernel keeps it (NUL-separated).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecRecord {
    pub hdr: RecordHeader,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    /// pid as seen inside the process's own pid namespace.
    pub ns_pid: u32,
    pub uid: u32,
    pub euid: u32,
    pub gid: u32,
    pub egid: u32,
    pub auid: u32,
    pub flags: u32,
    /// Boot-relative start time of the process (`task->start_boottime`), ns.
    pub start_boottime: u64,
    /// Boot-relative start time of the parent (`real_parent->start_boottime`), ns.
    pub parent_start_boottime: u64,
    pub cgroup_id: u64,
    pub cap_effective: u64,
    pub cap_permitted: u64,
    pub cap_inheritable: u64,
    pub ns: [u32; ns::COUNT],
    pub path_len: u16,
    pub args_len: u16,
    pub cwd_len: u16,
    pub cgroup_len: u16,
    pub comm: [u8; 16],
    pub tty: [u8; 16],
}

/// Process exit (the whole thread group is gone).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitRecord {
    pub hdr: RecordHeader,
    pub pid: u32,
    pub tid: u32,
    /// `task->exit_code`: exit status in bits 8..15, terminating signal in bits 0..6.
    pub exit_code: u32,
    pub _pad: u32,
    pub start_boottime: u64,
}

/// A new process (not a thread) was forked: it runs its parent's binary until it execs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForkRecord {
    pub hdr: RecordHeader,
    pub pid: u32,
    pub ppid: u32,
    pub start_boottime: u64,
    pub parent_start_boottime: u64,
}

/// Limits of the variable data of an exec record.
pub mod limits {
    /// Bytes reserved for one path (binary or cwd), components included.
    pub const PATH_MAX: usize = 4096;
    /// Longest component the walker copies (NAME_MAX + NUL).
    pub const NAME_MAX: usize = 256;
    /// Most components walked for one path.
    pub const PATH_DEPTH: u32 = 64;
    /// Most components walked for a cgroup path.
    pub const CGROUP_DEPTH: u32 = 16;
    pub const CGROUP_MAX: usize = 1024;
    /// Hard upper bound of the argument block (the configurable maximum is below it).
    pub const ARGS_MAX: usize = 4096;
    /// Size of the per-CPU scratch buffer an exec record is assembled in.
    pub const SCRATCH: usize = 16384;
}

/// Offsets (in bytes) of the kernel struct fields the programs read, computed by user
/// space from the running kernel's BTF and handed to the programs as a read-only global.
/// This is how one object works across kernels without compiler CO-RE support.
/// A value of `u32::MAX` means "this kernel does not have the field".
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offsets {
    pub task_real_parent: u32,
    pub task_tgid: u32,
    pub task_pid: u32,
    pub task_start_boottime: u32,
    pub task_mm: u32,
    pub task_fs: u32,
    pub task_nsproxy: u32,
    pub task_real_cred: u32,
    pub task_loginuid: u32,
    pub task_signal: u32,
    pub task_cgroups: u32,
    pub task_exit_code: u32,
    pub task_thread_pid: u32,
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdtable_fd: u32,
    pub fdtable_max_fds: u32,
    pub dentry_d_name_len: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub mm_exe_file: u32,
    pub file_f_path: u32,
    pub path_mnt: u32,
    pub path_dentry: u32,
    pub fs_pwd: u32,
    pub dentry_d_parent: u32,
    pub dentry_d_name_name: u32,
    pub vfsmount_mnt_root: u32,
    pub mount_mnt: u32,
    pub mount_mnt_parent: u32,
    pub mount_mnt_mountpoint: u32,
    pub cred_uid: u32,
    pub cred_gid: u32,
    pub cred_euid: u32,
    pub cred_egid: u32,
    pub cred_cap_inheritable: u32,
    pub cred_cap_permitted: u32,
    pub cred_cap_effective: u32,
    pub cred_user_ns: u32,
    /// `inum` of each namespace struct (`<ns>.ns.inum`), indexed like [`ns`].
    pub ns_inum: [u32; ns::COUNT],
    /// Offset in `nsproxy` of each namespace pointer (USER and PID are not in nsproxy).
    pub nsproxy_ns: [u32; ns::COUNT],
    pub pid_level: u32,
    pub pid_numbers: u32,
    pub upid_size: u32,
    pub upid_nr: u32,
    pub upid_ns: u32,
    pub signal_tty: u32,
    pub tty_name: u32,
    pub css_set_dfl_cgrp: u32,
    pub cgroup_kn: u32,
    pub kernfs_node_name: u32,
    pub kernfs_node_parent: u32,
    /// Offset of `group_dead` in the `sched_process_exit` tracepoint record (or MAX).
    pub tp_exit_group_dead: u32,
    /// Offset of the `__data_loc` of `filename` in the `sched_process_exec` record.
    pub tp_exec_filename: u32,
    /// Configured maximum of the argument block, ≤ limits::ARGS_MAX.
    pub args_max: u32,
    /// `linux_binprm.file` (the binary an exec hook is about to run).
    pub binprm_file: u32,
    /// `kiocb.ki_filp`.
    pub kiocb_ki_filp: u32,
    /// What the network argument readers need (see [`NetOffsets`]).
    pub net: NetOffsets,
    /// The structs typed policy arguments read (cred, user_namespace, module, load_info).
    pub kstruct: KstructOffsets,
}

/// Offsets of the socket structs the network argument readers use (`sock`, `socket`,
/// `file` of a socket fd). `u32::MAX`: missing on this kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetOffsets {
    pub skc_family: u32,
    pub skc_state: u32,
    pub skc_daddr: u32,
    pub skc_rcv_saddr: u32,
    pub skc_dport: u32,
    pub skc_num: u32,
    pub skc_v6_daddr: u32,
    pub skc_v6_rcv_saddr: u32,
    pub sk_type: u32,
    pub sk_protocol: u32,
    pub sk_mark: u32,
    pub sk_priority: u32,
    /// `socket.sk`.
    pub socket_sk: u32,
    /// `file.private_data` (a socket file's `struct socket *`).
    pub file_private_data: u32,
    /// `file.f_inode` and `inode.i_mode` (a socket file has S_IFSOCK).
    pub file_f_inode: u32,
    pub inode_i_mode: u32,
    /// `net_device.name` (char[IFNAMSIZ]).
    pub net_device_name: u32,
    /// `sk_buff.head`, `.network_header`, `.transport_header` (u16 offsets from head),
    /// `.len`, `.hash`, `.mark`, `.priority`.
    pub skb_head: u32,
    pub skb_network_header: u32,
    pub skb_transport_header: u32,
    pub skb_len: u32,
    pub skb_hash: u32,
    pub skb_mark: u32,
    pub skb_priority: u32,
}

impl NetOffsets {
    pub const fn missing() -> Self {
        let m = u32::MAX;
        NetOffsets {
            skc_family: m,
            skc_state: m,
            skc_daddr: m,
            skc_rcv_saddr: m,
            skc_dport: m,
            skc_num: m,
            skc_v6_daddr: m,
            skc_v6_rcv_saddr: m,
            sk_type: m,
            sk_protocol: m,
            sk_mark: m,
            sk_priority: m,
            socket_sk: m,
            file_private_data: m,
            file_f_inode: m,
            inode_i_mode: m,
            net_device_name: m,
            skb_head: m,
            skb_network_header: m,
            skb_transport_header: m,
            skb_len: m,
            skb_hash: m,
            skb_mark: m,
            skb_priority: m,
        }
    }
}

/// Offsets of the kernel structs read whole as typed policy arguments (`cred`,
/// `user_namespace`, `module`, `load_info`; the rest of `cred` is in [`Offsets`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KstructOffsets {
    pub cred_suid: u32,
    pub cred_sgid: u32,
    pub cred_fsuid: u32,
    pub cred_fsgid: u32,
    pub cred_securebits: u32,
    pub user_ns_level: u32,
    pub user_ns_owner: u32,
    pub user_ns_group: u32,
    /// `module.name` (an inline array of MODULE_NAME_LEN bytes).
    pub module_name: u32,
    pub module_taints: u32,
    pub load_info_name: u32,
    pub load_info_mod: u32,
    /// `load_info.sig_ok` (CONFIG_MODULE_SIG only).
    pub load_info_sig_ok: u32,
    /// `iov_iter.iter_type` (a u8), `iov_offset`, `count`, and the union of its `ubuf` /
    /// `iov` / `kvec` pointers.
    pub iov_iter_type: u32,
    pub iov_iter_offset: u32,
    pub iov_iter_count: u32,
    pub iov_iter_ptr: u32,
    /// The values of `enum iter_type` this kernel gives ITER_UBUF, ITER_IOVEC, ITER_KVEC
    /// (they moved between 6.1 and 6.12); MISSING when absent.
    pub iter_ubuf: u32,
    pub iter_iovec: u32,
    pub iter_kvec: u32,
    pub bpf_map_type: u32,
    pub bpf_map_key_size: u32,
    pub bpf_map_value_size: u32,
    pub bpf_map_max_entries: u32,
    /// `bpf_map.name` (an inline char[16]).
    pub bpf_map_name: u32,
    /// `perf_event.attr` (an embedded `struct perf_event_attr`).
    pub perf_event_attr: u32,
}

impl KstructOffsets {
    pub const fn missing() -> Self {
        let m = Offsets::MISSING;
        KstructOffsets {
            cred_suid: m,
            cred_sgid: m,
            cred_fsuid: m,
            cred_fsgid: m,
            cred_securebits: m,
            user_ns_level: m,
            user_ns_owner: m,
            user_ns_group: m,
            module_name: m,
            module_taints: m,
            load_info_name: m,
            load_info_mod: m,
            load_info_sig_ok: m,
            iov_iter_type: m,
            iov_iter_offset: m,
            iov_iter_count: m,
            iov_iter_ptr: m,
            iter_ubuf: m,
            iter_iovec: m,
            iter_kvec: m,
            bpf_map_type: m,
            bpf_map_key_size: m,
            bpf_map_value_size: m,
            bpf_map_max_entries: m,
            bpf_map_name: m,
            perf_event_attr: m,
        }
    }
}

/// Layouts of the struct arguments the kernel writes into a string slot (little-endian
/// words at these byte offsets), decoded by `sensor/src/hooks/kstruct.rs`.
pub mod kstruct {
    /// `cred`: uid, gid, euid, egid, suid, sgid, fsuid, fsgid, securebits (u32 each).
    pub const CRED_IDS: usize = 0;
    /// `cred`: cap_permitted, cap_effective, cap_inheritable (u64 each).
    pub const CRED_CAPS: usize = 40;
    /// `cred`: its user namespace, as [`USER_NS_LEN`] bytes.
    pub const CRED_USER_NS: usize = 64;
    pub const CRED_LEN: usize = 80;
    /// `user_namespace`: level (i32), owner, group, ns.inum (u32 each).
    pub const USER_NS_LEN: usize = 16;
    /// `module` / `load_info`: taints (u64), sig_ok (u32), 0 (u32), then the name.
    pub const MODULE_NAME: usize = 16;
    /// Bytes of a module name read (MODULE_NAME_LEN on 64-bit kernels).
    pub const MODULE_NAME_LEN: usize = 56;
    pub const MODULE_LEN: usize = MODULE_NAME + MODULE_NAME_LEN;
    /// `bpf_attr` (BPF_PROG_LOAD): prog_type (u32), insn_cnt (u32), prog_name (16 bytes).
    pub const BPF_ATTR_NAME: usize = 8;
    pub const BPF_ATTR_LEN: usize = 24;
    /// UAPI offsets in `union bpf_attr` (include/uapi/linux/bpf.h: a stable ABI).
    pub const UAPI_PROG_TYPE: u32 = 0;
    pub const UAPI_INSN_CNT: u32 = 4;
    pub const UAPI_PROG_NAME: u32 = 48;
    /// `bpf_map`: map_type, key_size, value_size, max_entries (u32 each), name (16 bytes).
    pub const BPF_MAP_NAME: usize = 16;
    pub const BPF_MAP_LEN: usize = 32;
    /// `perf_event` (its `attr`): type (u32), 0 (u32), config (u64), probe_offset (u64),
    /// then the NUL-less kprobe_func string, at most PERF_FUNC_LEN bytes.
    pub const PERF_CONFIG: usize = 8;
    pub const PERF_PROBE_OFFSET: usize = 16;
    pub const PERF_FUNC: usize = 24;
    pub const PERF_FUNC_LEN: usize = 128;
    /// UAPI offsets in `struct perf_event_attr` (include/uapi/linux/perf_event.h).
    pub const UAPI_PERF_TYPE: u32 = 0;
    pub const UAPI_PERF_CONFIG: u32 = 8;
    /// `kprobe_func` (union with config1) and `probe_offset` (union with config2).
    pub const UAPI_PERF_KPROBE_FUNC: u32 = 56;
    pub const UAPI_PERF_PROBE_OFFSET: u32 = 64;
}

impl Offsets {
    pub const MISSING: u32 = u32::MAX;
    /// All fields missing: the programs then emit only what helpers give them.
    pub const fn missing() -> Self {
        let m = Self::MISSING;
        Offsets {
            task_real_parent: m,
            task_tgid: m,
            task_pid: m,
            task_start_boottime: m,
            task_mm: m,
            task_fs: m,
            task_nsproxy: m,
            task_real_cred: m,
            task_loginuid: m,
            task_signal: m,
            task_cgroups: m,
            task_exit_code: m,
            task_thread_pid: m,
            task_files: m,
            files_fdt: m,
            fdtable_fd: m,
            fdtable_max_fds: m,
            dentry_d_name_len: m,
            mm_arg_start: m,
            mm_arg_end: m,
            mm_exe_file: m,
            file_f_path: m,
            path_mnt: m,
            path_dentry: m,
            fs_pwd: m,
            dentry_d_parent: m,
            dentry_d_name_name: m,
            vfsmount_mnt_root: m,
            mount_mnt: m,
            mount_mnt_parent: m,
            mount_mnt_mountpoint: m,
            cred_uid: m,
            cred_gid: m,
            cred_euid: m,
            cred_egid: m,
            cred_cap_inheritable: m,
            cred_cap_permitted: m,
            cred_cap_effective: m,
            cred_user_ns: m,
            ns_inum: [m; ns::COUNT],
            nsproxy_ns: [m; ns::COUNT],
            pid_level: m,
            pid_numbers: m,
            upid_size: m,
            upid_nr: m,
            upid_ns: m,
            signal_tty: m,
            tty_name: m,
            css_set_dfl_cgrp: m,
            cgroup_kn: m,
            kernfs_node_name: m,
            kernfs_node_parent: m,
            tp_exit_group_dead: m,
            tp_exec_filename: m,
            args_max: 1024,
            binprm_file: m,
            kiocb_ki_filp: m,
            kstruct: KstructOffsets::missing(),
            net: NetOffsets::missing(),
        }
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY (all): plain-old-data, repr(C), every bit pattern valid, no padding holes
    // read by the kernel.
    unsafe impl aya::Pod for super::Offsets {}
}

// ---------------------------------------------------------------------------------------
// Policy engine: TracingPolicy selectors compiled into maps (see sensor/src/policy/).
// ---------------------------------------------------------------------------------------

/// Policy limits (a policy beyond them is rejected at load, with the reason).
pub mod plimits {
    /// Hooks (policy × hook point) loaded at once.
    pub const HOOKS: u32 = 64;
    /// Hooks served by one tracepoint.
    pub const HOOKS_PER_TP: usize = 8;
    /// Selector slots of a hook (a power of two, for the kernel's index masks).
    pub const SELECTORS: usize = 8;
    /// Selectors a policy hook may have (Tetragon's limit).
    pub const MAX_SELECTORS: usize = 5;
    /// Argument slots of a hook: 5 declared arguments and a return value.
    pub const ARGS: usize = 6;
    /// Arguments a policy hook may declare (Tetragon's limit; the 6th slot is the return).
    pub const MAX_ARGS: usize = 5;
    pub const MATCH_ARGS: usize = 4;
    /// Steps of an argument's `resolve:` path ([`super::Resolve`]).
    pub const RESOLVE_STEPS: usize = 8;
    pub const INT_VALUES: usize = 8;
    pub const NS_CONDS: usize = 2;
    pub const PID_VALUES: usize = 4;
    pub const NS_VALUES: usize = 4;
    /// matchPIDs entries per selector.
    pub const PID_CONDS: usize = 2;
    /// Ancestors a followForks matchPIDs looks at.
    pub const PID_ANCESTORS: u32 = 16;
    /// Bytes of a string argument compared in the kernel (NUL included).
    pub const STR: usize = 252;
    /// matchBinaries conditions (each is one bit of a process's binary mask).
    pub const BIN_SETS: u32 = 64;
    /// Kubernetes scopes loaded at once (one bit each of a `SCOPES` mask).
    pub const SCOPES: u32 = 64;
    /// Container cgroups the `SCOPES` map holds.
    pub const SCOPE_CGROUPS: u32 = 16384;
    /// String, path or buffer arguments per hook (a power of two: the kernel masks slot
    /// indexes with STR_SLOTS - 1 so every verifier can bound them).
    pub const STR_SLOTS: usize = 4;
    /// Bytes of the tracepoint record copied for argument reads.
    pub const RAW: usize = 128;
    /// Bytes of one argument reported to user space.
    pub const ARG_REPORT: usize = 4096;
    /// Syscall symbols hooked with fentry at once (the `fentry_sys_N` pool); more use kprobes.
    pub const FENTRY_SYSCALLS: usize = 8;
    /// Raw tracepoints hooked at once (the `raw_tp_N` pool).
    pub const RAW_TPS: usize = 8;
}

/// Where a hook argument comes from.
pub mod argsrc {
    pub const NONE: u8 = 0;
    /// An integer of `size` bytes at `offset` in the tracepoint record.
    pub const INT: u8 = 1;
    /// A pointer at `offset` to a NUL-terminated string in user memory.
    pub const USER_STR: u8 = 2;
    /// The tracepoint's return value at `offset` is a new fd: its file's absolute path.
    pub const RET_FD_PATH: u8 = 3;
    /// An fd argument at `offset`: its file's absolute path.
    pub const FD_PATH: u8 = 4;
    /// The binary being executed (exec hooks): its absolute path.
    pub const EXEC_PATH: u8 = 5;
    /// The word at `offset` is a `struct file *` (fentry/kprobe/LSM on a file hook): its path.
    pub const FILE_PTR: u8 = 6;
    /// The word at `offset` is a `struct linux_binprm *`: the path of its `file`.
    pub const BPRM_FILE: u8 = 7;
    /// A pointer at `offset` to a NUL-terminated string (kernel or user memory).
    pub const KERNEL_STR: u8 = 8;
    /// A `struct path *`: its path.
    pub const PATH_PTR: u8 = 9;
    /// A `struct dentry *`: its path within its mount.
    pub const DENTRY_PTR: u8 = 10;
    /// A `struct filename *`: its `name`.
    pub const FILENAME_PTR: u8 = 11;
    /// A `struct kiocb *`: the path of its `ki_filp`.
    pub const KIOCB_FILE: u8 = 12;
    /// A `struct cred *`: ids, capabilities and user namespace (`kstruct::CRED_*`).
    pub const CRED: u8 = 13;
    /// A `struct user_namespace *` (`kstruct::USER_NS_LEN`).
    pub const USER_NS: u8 = 14;
    /// A `struct module *`: name and taints (`kstruct::MODULE_*`).
    pub const MODULE: u8 = 15;
    /// A `struct load_info *`: name, its module's taints, sig_ok (`kstruct::MODULE_*`).
    pub const LOAD_INFO: u8 = 16;
    /// A buffer (`char_buf`) whose size is the word at raw offset `aux & CHAR_BUF_SIZE_MASK`
    /// (a size argument, or the return value for returnCopy); reported as the size (u64)
    /// then at most [`CHAR_BUF_MAX`] bytes.
    pub const CHAR_BUF: u8 = 17;
    /// A `union bpf_attr *` of BPF_PROG_LOAD (UAPI layout): prog_type, insn_cnt, prog_name
    /// (`kstruct::BPF_ATTR_*`).
    pub const BPF_ATTR: u8 = 18;
    /// A `struct iov_iter *` (`iov_iter` and the bytes it holds): reported as a `char_buf`
    /// (its `count`, then at most [`CHAR_BUF_MAX`] bytes of its first segment).
    pub const IOV_ITER: u8 = 19;
    /// A `struct bpf_map *`: type, sizes, name (`kstruct::BPF_MAP_*`).
    pub const BPF_MAP: u8 = 20;
    /// A `struct perf_event *`: its attr's type, config, kprobe_func, probe_offset
    /// (`kstruct::PERF_*`).
    pub const PERF_EVENT: u8 = 21;
    /// A user array of `struct iovec` (`char_iovec`) whose count of segments is the word at
    /// raw offset `aux & CHAR_BUF_SIZE_MASK`: reported as a `char_buf` (the bytes of its
    /// first [`IOVEC_SEGS`] segments, concatenated: their total length, then at most
    /// [`CHAR_BUF_MAX`] bytes).
    pub const CHAR_IOVEC: u8 = 25;
    /// Segments of a `char_iovec` read (Tetragon's reader stops at 7 too).
    pub const IOVEC_SEGS: u32 = 7;
    /// True for the buffer sources (CHAR_BUF, IOV_ITER, CHAR_IOVEC), reported with a size
    /// word before their bytes. One compare (27, reserved, stays unused for it): two made
    /// 6.1's verifier lose the bounds of the argument index in `emit_cb`.
    #[inline(always)]
    pub const fn is_buf(src: u8) -> bool {
        src | 0b01010 == 0b11011
    }
    const _: () = {
        let mut s = 0u8;
        loop {
            assert!(is_buf(s) == matches!(s, CHAR_BUF | IOV_ITER | CHAR_IOVEC | 27));
            if s == u8::MAX {
                break;
            }
            s += 1;
        }
    };
    /// Set in `aux` when a char_buf's size word is given.
    pub const CHAR_BUF_SIZED: u16 = 0x8000;
    pub const CHAR_BUF_SIZE_MASK: u16 = 0x7f;
    /// Bytes of a buffer reported (the rest is counted in its size).
    pub const CHAR_BUF_MAX: usize = 4080;
    // Network sources (32..=47): each writes a [`SockArg`](crate::SockArg) or a
    // [`SockaddrArg`](crate::SockaddrArg) into the argument's string slot.
    /// A `struct sock *`.
    pub const SOCK_PTR: u8 = 32;
    /// A `struct socket *`: its `sk`.
    pub const SOCKET_PTR: u8 = 33;
    /// A `struct sockaddr *` in kernel memory.
    pub const SOCKADDR_KPTR: u8 = 34;
    /// A `struct sockaddr *` in user memory (a syscall's argument).
    pub const SOCKADDR_UPTR: u8 = 35;
    /// A file descriptor of the current task (the word at `offset`): its socket's `sk`.
    pub const FD_SOCK: u8 = 36;
    /// Syscall argument `aux & 7` of the current task's user registers is a file
    /// descriptor: its socket's `sk` (syscall exit tracepoints, whose record lacks it).
    pub const REGS_FD_SOCK: u8 = 37;
    /// A `struct net_device *`: its name (at most IFNAMSIZ bytes) as a string, compared by
    /// the string operators like any other (Tetragon's `net_device`, `net_dev_arg`).
    pub const NET_DEV: u8 = 38;
    /// A `struct sk_buff *`: its IP/TCP/UDP header fields and a few of its own, as a
    /// [`SkbArg`](crate::SkbArg) (Tetragon's `skb`, `skb_arg`).
    pub const SKB_PTR: u8 = 39;
    pub const NET_FIRST: u8 = 32;
    pub const NET_LAST: u8 = 47;
}

/// Guards of the network sources, in `ArgSpec.aux` (a stand-in hook fires only for the
/// sockets the function it stands for sees): the hook is skipped when one fails.
pub mod net_guard {
    /// Bits 0..2: the syscall argument register (REGS_FD_SOCK).
    pub const REG_MASK: u16 = 7;
    /// The socket must be TCP (AF_INET/AF_INET6, IPPROTO_TCP).
    pub const TCP: u16 = 1 << 8;
    /// The socket must be UDP (AF_INET/AF_INET6, IPPROTO_UDP).
    pub const UDP: u16 = 1 << 9;
    /// The syscall's return value (the exit record's `ret`, offset 16) must be 0 or
    /// -EINPROGRESS.
    pub const RET_OK: u16 = 1 << 10;
    /// There must be a socket (the fd is one).
    pub const SOCKET: u16 = 1 << 11;
    /// Report the state as TCP_SYN_SENT, the state `tcp_connect` always sees (its
    /// stand-in reads the socket after connect(2), when loopback may have finished the
    /// handshake).
    pub const SYN_SENT: u16 = 1 << 12;
    /// returnArgAction TrackSock / UntrackSock on this (return) argument: the socket is
    /// tracked for the current process, or no longer, whatever the selectors say.
    pub const TRACK: u16 = 1 << 13;
    pub const UNTRACK: u16 = 1 << 14;
}

/// A socket as the kernel readers capture it (`sock`, `socket` arguments). Addresses are
/// in network order (IPv4 in the first 4 bytes), ports in host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockArg {
    pub family: u16,
    pub sock_type: u16,
    pub protocol: u16,
    pub state: u16,
    pub sport: u16,
    pub dport: u16,
    pub mark: u32,
    pub priority: u32,
    pub _pad: u32,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    /// The `struct sock` address (Tetragon's cookie).
    pub cookie: u64,
}

/// A packet as the `skb` reader captures it: the 5-tuple of its IPv4/IPv6 header and TCP/UDP
/// header (ports in host order), and `len`, `hash`, `mark`, `priority` of the sk_buff. The
/// tuple fields lie where [`SockArg`]'s do, so the network operators read both alike.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SkbArg {
    pub family: u16,
    pub _type: u16,
    pub protocol: u16,
    pub _state: u16,
    pub sport: u16,
    pub dport: u16,
    pub mark: u32,
    pub priority: u32,
    pub len: u32,
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub hash: u32,
    pub _pad: u32,
}

const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(offset_of!(SkbArg, family) == offset_of!(SockArg, family));
    assert!(offset_of!(SkbArg, protocol) == offset_of!(SockArg, protocol));
    assert!(offset_of!(SkbArg, sport) == offset_of!(SockArg, sport));
    assert!(offset_of!(SkbArg, dport) == offset_of!(SockArg, dport));
    assert!(offset_of!(SkbArg, saddr) == offset_of!(SockArg, saddr));
    assert!(offset_of!(SkbArg, daddr) == offset_of!(SockArg, daddr));
    assert!(size_of::<SkbArg>() == size_of::<SockArg>());
};

/// A `struct sockaddr` (`sockaddr` arguments): family, port (host order), address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockaddrArg {
    pub family: u16,
    pub port: u16,
    pub _pad: u32,
    pub addr: [u8; 16],
}

/// Condition operators (matchArgs, matchBinaries, matchNamespaces, matchPIDs, matchCapabilities).
pub mod op {
    pub const EQUAL: u8 = 1;
    pub const NOT_EQUAL: u8 = 2;
    pub const PREFIX: u8 = 3;
    pub const NOT_PREFIX: u8 = 4;
    pub const POSTFIX: u8 = 5;
    pub const NOT_POSTFIX: u8 = 6;
    pub const IN: u8 = 7;
    pub const NOT_IN: u8 = 8;
    pub const GT: u8 = 9;
    pub const LT: u8 = 10;
    pub const MASK: u8 = 11;
    /// The value is a bit set in the condition's values read as a 512-bit map (InMap).
    pub const IN_MAP: u8 = 12;
    pub const NOT_IN_MAP: u8 = 13;
    // Network operators (32..=47), on sock/socket/sockaddr arguments (`sensor-bpf/src/net.rs`).
    /// The address is in one of the condition's CIDRs (`STRINGS` entries: cond, 4 or 6,
    /// the address; prefix = 32 + 8 + the CIDR's bits).
    pub const SADDR: u8 = 32;
    pub const NOT_SADDR: u8 = 33;
    pub const DADDR: u8 = 34;
    pub const NOT_DADDR: u8 = 35;
    /// The port is in one of `vals`: each `lo | hi << 16` (a range; lo == hi for a port).
    pub const SPORT: u8 = 36;
    pub const NOT_SPORT: u8 = 37;
    pub const DPORT: u8 = 38;
    pub const NOT_DPORT: u8 = 39;
    /// The port is privileged (below 1024).
    pub const SPORT_PRIV: u8 = 40;
    pub const NOT_SPORT_PRIV: u8 = 41;
    pub const DPORT_PRIV: u8 = 42;
    pub const NOT_DPORT_PRIV: u8 = 43;
    /// The protocol, family or TCP state is one of `vals`.
    pub const PROTOCOL: u8 = 44;
    pub const FAMILY: u8 = 45;
    pub const STATE: u8 = 46;
    pub const NET_FIRST: u8 = 32;
    pub const NET_LAST: u8 = 47;
}

pub mod action {
    pub const POST: u8 = 1;
    pub const NO_POST: u8 = 2;
    pub const SIGKILL: u8 = 3;
    pub const SIGNAL: u8 = 4;
    /// BPF-LSM hooks only: the hook returns the selector's `error` (the act fails).
    pub const OVERRIDE: u8 = 5;
    /// FollowFD / UnfollowFD / CopyFD ([`Selector::fd_action`]; also what the record says
    /// was done when the selector posts).
    pub const FOLLOW_FD: u8 = 14;
    pub const UNFOLLOW_FD: u8 = 15;
    pub const COPY_FD: u8 = 16;
    /// NotifyEnforcer: notes (thread, hook, argSig) in `ENFORCER_NOTES`; the enforcer
    /// program signals the thread at the exit of one of the policy's `enforcers` calls.
    pub const NOTIFY_ENFORCER: u8 = 17;
    /// CleanupEnforcerNotification: forgets the thread's note.
    pub const CLEANUP_ENFORCER: u8 = 19;
    /// TrackSock / UntrackSock (network range 32..=47; in [`Selector::fd_action`], argSock
    /// in `fd_arg`): the socket of a `sock`/`socket` argument is attributed to the current
    /// process from then on ([`SockOwner`]), or no longer.
    pub const TRACK_SOCK: u8 = 32;
    pub const UNTRACK_SOCK: u8 = 33;
}

/// A NotifyEnforcer's note for one thread: the hook that notified (its policy's
/// `enforcers` calls are keyed by it in `ENFORCER_CALLS`) and the signal to send.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnforcerNote {
    pub hook: u32,
    pub sig: u32,
}

/// `ENFORCER_CALLS` key: the notifying hook and a syscall number it enforces at.
pub const fn enforcer_call(hook: u32, nr: u32) -> u64 {
    (hook as u64) << 32 | nr as u64
}

/// Who tracked a socket (TrackSock): every later event with that socket as a `sock` or
/// `socket` argument is that process's (and thread's), whichever task the hook ran in.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockOwner {
    pub pid: u32,
    pub tid: u32,
}

/// Key of the followed file descriptors (FollowFD): the process and the fd.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FdKey {
    pub tgid: u32,
    pub fd: u32,
}

/// The name a followed fd was installed with: a policy string slot's first PATH_MAX
/// bytes and where the value lies in them.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdName {
    pub pos: u32,
    pub len: u32,
    pub data: [u8; limits::PATH_MAX],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArgSpec {
    pub src: u8,
    /// Integer width in bytes (1, 2, 4, 8) for INT.
    pub size: u8,
    /// Sign-extend an INT.
    pub signed: u8,
    /// String slot (0..STR_SLOTS) of a string or path argument.
    pub slot: u8,
    /// Offset in the tracepoint record.
    pub offset: u16,
    /// Per-source extra data (e.g. a size argument's index; network sources: `net_guard`);
    /// 0 when unused.
    pub aux: u16,
    /// `resolve:`: the walk from the argument's word to the value read (n = 0: none).
    pub res: Resolve,
}

/// [`Resolve::base`] of a `data:` argument read from the current task.
pub const RES_CURRENT_TASK: u8 = 1;

/// An argument's `resolve:` path through struct members, from BTF: step k adds `offs[k]`
/// to the address, then (bit k of `deref`) reads the word there (a pointer member, or
/// the scalar the path ends at). The result stands for the argument's word.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resolve {
    pub n: u8,
    pub deref: u8,
    /// 1 when the argument has a `resolve:` path (which may need no step at all).
    pub set: u8,
    /// Where the walk starts: 0 the argument's word, [`RES_CURRENT_TASK`] the current
    /// task (a `data:` argument with `source: current_task`).
    pub base: u8,
    pub offs: [u32; plimits::RESOLVE_STEPS],
}

/// One matchArgs condition. Integer operators compare with `vals[..nvals]`; string
/// operators look up `STRINGS` with key `(cond, string)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArgCond {
    /// Index into the hook's captured args.
    pub arg: u8,
    pub op: u8,
    pub nvals: u8,
    pub _pad: u8,
    /// Id of this condition's strings in `STRINGS` (string operators).
    pub cond: u32,
    pub vals: [u64; plimits::INT_VALUES],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NsCond {
    /// Slot in `ns` order; 0xff = unused.
    pub slot: u8,
    pub op: u8,
    pub nvals: u8,
    pub _pad: u8,
    pub vals: [u32; plimits::NS_VALUES],
}

/// One matchPIDs entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PidCond {
    /// IN / NOT_IN (0: unused).
    pub op: u8,
    pub nvals: u8,
    /// Values are pids in the process's own pid namespace.
    pub ns: u8,
    /// followForks: the process or one of its ancestors.
    pub follow: u8,
    pub vals: [u32; plimits::PID_VALUES],
}

/// Scopes of a rate limit ([`Selector::rate_scope`]).
pub mod rate_scope {
    pub const THREAD: u8 = 0;
    pub const PROCESS: u8 = 1;
    pub const GLOBAL: u8 = 2;
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    pub nargs: u8,
    /// Bit of the process's binary mask this selector needs (0xff: no matchBinaries).
    pub bin_bit: u8,
    /// The bit must be clear instead (NotIn / NotPrefix / NotPostfix).
    pub bin_negate: u8,
    pub nns: u8,
    /// matchPIDs entries in use.
    pub npids: u8,
    /// rateLimit scope (`rate_scope`).
    pub rate_scope: u8,
    /// kernelStackTrace / userStackTrace: the event carries the kernel stack
    /// ([`STACK_KERNEL`]) and/or the user stack ([`STACK_USER`]).
    pub stack: u8,
    /// matchCapabilities: op (0 = none) and which set (0 eff, 1 perm, 2 inh).
    pub cap_op: u8,
    pub cap_set: u8,
    pub action: u8,
    /// Signal number for SIGNAL.
    pub signal: u8,
    pub _pad: u8,
    pub pids: [PidCond; plimits::PID_CONDS],
    /// rateLimit: at most one event per this many ns per scope and arguments (0: none).
    pub rate_ns: u64,
    /// OVERRIDE: what the LSM hook returns (a negative errno, e.g. -1 = -EPERM).
    pub error: i32,
    /// matchCapabilities with isNamespaceCapability: the host's user namespace (its inode
    /// number); the selector matches only a task outside it. 0: any namespace.
    pub cap_userns: u32,
    pub cap_mask: u64,
    pub args: [ArgCond; plimits::MATCH_ARGS],
    pub ns: [NsCond; plimits::NS_CONDS],
    /// FollowFD / UnfollowFD / CopyFD (`action::FOLLOW_FD`..) or TrackSock / UntrackSock
    /// (`action::TRACK_SOCK`..), 0: none; done before `action`.
    pub fd_action: u8,
    /// Position among the hook's arguments of the fd (argFd) or the socket (argSock), and of
    /// the name (FollowFD's argName) or the new fd (CopyFD's argName).
    pub fd_arg: u8,
    pub fd_name: u8,
    /// matchCapabilityChanges: op (0 = none) and which set (as `cap_set`); the selector
    /// matches when the `capchg_mask` bits of that set differ (In) or not (NotIn) from
    /// what the process had at exec. `capchg_userns` as `cap_userns`.
    pub capchg_op: u8,
    pub capchg_set: u8,
    /// matchParentBinaries: the bit of the parent's binary mask this selector needs
    /// (0xff: none), clear instead with `pbin_negate` (as `bin_bit`, `bin_negate`).
    pub pbin_bit: u8,
    pub pbin_negate: u8,
    pub _pad_fd: u8,
    pub capchg_userns: u32,
    pub capchg_mask: u64,
    /// matchNamespaceChanges: op (0 = none, In: one of the `nschg_mask` namespaces differs
    /// from the process's at exec, NotIn: none does), the namespaces by `ns` slot bit.
    pub nschg_mask: u16,
    pub nschg_op: u8,
    pub _pad_ns: [u8; 5],
}

/// One hook: a policy's hook point with its argument sources and selectors.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HookConfig {
    pub policy: u32,
    pub nargs: u8,
    pub nsel: u8,
    /// 1 when the hook is loaded (entries of deleted policies are 0).
    pub active: u8,
    /// The policy's Kubernetes scope (podSelector, containerSelector, a namespaced policy):
    /// 0 for none, else the scope's bit + 1 in the `SCOPES` masks.
    pub scope: u8,
    pub args: [ArgSpec; plimits::ARGS],
    pub sels: [Selector; plimits::SELECTORS],
}

/// Key of the rate-limit map: a hook's selector, the scope's id, a hash of the arguments.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateKey {
    pub hook: u32,
    pub sel: u32,
    pub scope: u64,
    pub args: u64,
}

/// Hooks served by one tracepoint (keyed by its tracefs event id), `u32::MAX` padded.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HookList {
    pub ids: [u32; plimits::HOOKS_PER_TP],
    /// Some hook of the list wants stack traces ([`STACK_KERNEL`]): the program takes the
    /// stack once, before the hooks run.
    pub stacks: u32,
    /// How many of `ids` are hooks (the rest is padding).
    pub count: u32,
}

/// [`Selector::stack`] / [`HookList::stacks`]: the kernel stack (kernelStackTrace).
pub const STACK_KERNEL: u8 = 1;
/// ... and the user stack (userStackTrace).
pub const STACK_USER: u8 = 2;

/// The `SCOPES` entry for processes in no container's cgroup: the scopes that admit the
/// host (hostSelector: {}).
pub const SCOPE_HOST_KEY: u64 = u64::MAX;

/// Key of `HOOK_LISTS` for exec hooks (no tracefs id is this large).
pub const EXEC_HOOKS_KEY: u32 = 0xffff_0001;
/// `HOOK_LISTS` keys of syscall tracepoints: this flag | the syscall number.
pub const SYSCALL_ENTER: u32 = 0x0001_0000;
pub const SYSCALL_EXIT: u32 = 0x0002_0000;
/// `HOOK_LISTS` keys of syscalls hooked by their kernel symbol (`__x64_sys_*`, fentry or
/// kprobe): this flag | the syscall number (the user registers' `orig_ax`).
pub const SYSCALL_KFUNC: u32 = 0x0004_0000;
/// `HOOK_LISTS` keys of uprobe hooks: this flag | a number the engine gives each
/// (binary, symbol) it attaches to; the key is the uprobe's attach cookie.
pub const UPROBE_KEY: u32 = 0x0008_0000;
/// `HOOK_LISTS` keys of generic kernel-function hooks (kprobe or kretprobe): this flag | a
/// number the engine gives each (function, entry or return) it attaches to.
pub const KFUNC_KEY: u32 = 0x0010_0000;

/// `HOOK_LISTS` keys of raw tracepoint hooks: this flag | the slot of the pool program
/// (`raw_tp_N`) the engine attached to the tracepoint.
pub const RAW_TP_KEY: u32 = 0x0020_0000;

/// Flags of [`KfuncKeys`].
pub mod kfunc_flags {
    /// The function is a syscall wrapper: its arguments are in the `pt_regs` it is given.
    pub const SYSCALL: u32 = 1;
}

/// The hooks of one kernel function hooked by kprobe (map `KFUNC_KEYS`, by address).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KfuncKeys {
    /// `HOOK_LISTS` key of its entry hooks (0: none).
    pub entry: u32,
    /// `HOOK_LISTS` key of its return hooks (0: none).
    pub ret: u32,
    pub flags: u32,
    pub _pad: u32,
}

/// Key of the arguments a kprobe saves for its kretprobe.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetKey {
    pub pid_tgid: u64,
    pub ip: u64,
}

/// The argument words saved at entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetSave {
    pub words: [u64; 6],
}

/// Kinds of a USDT argument's location ([`UsdtArg::kind`]).
pub mod usdt_loc {
    /// Slot not used (the argument reads as 0).
    pub const NONE: u8 = 0;
    /// A constant (`$5`): `off` is the value.
    pub const CONST: u8 = 1;
    /// A register (`%rdi`): the word at `reg` in `pt_regs`.
    pub const REG: u8 = 2;
    /// Memory at a register plus `off` (`-8(%rbp)`), in the probed process.
    pub const DEREF: u8 = 3;
}

/// Where one argument of a USDT probe site is (its `.note.stapsdt` spec, parsed by the
/// agent), and how wide it is.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsdtArg {
    pub kind: u8,
    /// Width in bytes (1, 2, 4, 8).
    pub size: u8,
    /// Sign-extend to 64 bits.
    pub signed: u8,
    /// Byte offset of the register in `struct pt_regs`.
    pub reg: u8,
    pub _pad: u32,
    pub off: i64,
}

/// The arguments of one USDT probe site (map `USDT_SPECS`, by the site's `HOOK_LISTS` key).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsdtSpec {
    pub args: [UsdtArg; plimits::ARGS],
}

/// `HOOK_LISTS` keys of kernel-function and LSM hooks.
pub const KFUNC_FILE_OPEN_KEY: u32 = 0xffff_0002;
pub const KFUNC_BPRM_CHECK_KEY: u32 = 0xffff_0003;
pub const LSM_FILE_OPEN_KEY: u32 = 0xffff_0004;
pub const LSM_BPRM_CHECK_KEY: u32 = 0xffff_0005;

/// Data of the `STRINGS` LPM trie key (after its `prefix_len`): condition id, then the
/// string (reversed for Postfix; NUL-terminated for Equal). prefix_len = 32 + 8 × bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StrData {
    pub cond: [u8; 4],
    pub data: [u8; plimits::STR],
}

/// What a process carries across syscalls for matchBinaries.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcState {
    /// Bit b set: the binary matches matchBinaries set b (positive form).
    pub binmask: u64,
    /// The effective, permitted and inheritable capabilities at exec (for
    /// matchCapabilityChanges).
    pub caps: [u64; 3],
    /// The namespaces at exec, in `ns` order (0: not recorded), for matchNamespaceChanges.
    pub ns: [u32; ns::COUNT],
    pub _pad: u32,
}

/// matchBinaries set b: its operator (positive form: EQUAL, PREFIX, POSTFIX), or 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BinSet {
    pub op: u8,
    /// matchBinaries followChildren: a process whose parent (at fork) or earlier image (at
    /// exec) was in the set stays in it.
    pub follow: u8,
    pub _pad: [u8; 2],
    /// Condition id of its strings in `STRINGS`.
    pub cond: u32,
}

/// A policy hook fired (record kind POLICY). Followed by the args: each is
/// `len: u16, kind: u8, pad: u8` then `len` bytes (u64 for INT, a path or string otherwise).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyRecord {
    pub hdr: RecordHeader,
    pub pid: u32,
    pub tid: u32,
    pub hook: u32,
    pub action: u8,
    pub nargs: u8,
    /// The selector that matched.
    pub selector: u8,
    /// 1 when a Sigkill/Signal was sent successfully.
    pub signalled: u8,
    /// The kernel stack's id in `STACKS` (kernelStackTrace), or -1.
    pub kstack: i32,
    /// The user stack's id in `STACKS` (userStackTrace), or -1.
    pub ustack: i32,
    /// The `HOOK_LISTS` key of the point that fired (one hook may serve many points: the
    /// symbols of a `uprobes:` entry).
    pub point: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArgHeader {
    pub len: u16,
    pub src: u8,
    /// 1 when the value was cut to fit.
    pub truncated: u8,
}

#[cfg(feature = "user")]
mod user_policy {
    // SAFETY (all): repr(C) plain-old-data without invalid bit patterns.
    unsafe impl aya::Pod for super::HookConfig {}
    unsafe impl aya::Pod for super::HookList {}
    unsafe impl aya::Pod for super::StrData {}
    unsafe impl aya::Pod for super::ProcState {}
    unsafe impl aya::Pod for super::BinSet {}
    unsafe impl aya::Pod for super::KfuncKeys {}
    unsafe impl aya::Pod for super::UsdtSpec {}
}
