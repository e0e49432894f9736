//! The policy corpus (`tests/corpus/policies/*.yaml`, Tetragon's syntax): every policy is
//! loaded into one running sensor, its hook triggered from a process this test starts, and
//! the event's arguments compared exactly with what Tetragon exports (`*_arg` field names
//! and value types of its `KprobeArgument`) — or, where this kernel cannot serve the hook,
//! the refusal must name what is missing. The table below says, policy by policy, which of
//! the two this host (tracepoints and uprobes only) and a kernel with kprobes, fentry and
//! BPF-LSM (the VMs of `scripts/vm-test.sh`) must give.
//!
//! The trigger is a copy of this test executable run as a helper
//! (`NIGHTJAR_CORPUS_HELPER=<action>`, see `helper`), so `@HELPER@` in a policy names a
//! binary nothing else on the machine runs, and enforcement reaches only it.
mod netns;
use std::{
    collections::BTreeMap,
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use nightjar_sensor::{loader::Command as SensorCommand, policy, Sensor, SensorConfig};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};

/// What a kernel must do with a policy.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// Load, fire on the trigger and report the expected event.
    Pass,
    /// Be refused with an error containing this text.
    Refused(&'static str),
}

use Want::{Pass, Refused};

struct Case {
    file: &'static str,
    /// The helper's action (see `helper`).
    trigger: &'static str,
    /// The event key and its expected fields (placeholders: @DIR@, @HELPER@, @BASH@, @PID@).
    event: &'static str,
    expect: fn() -> Value,
    /// How the trigger must end (None: exit 0; Some(sig): killed by that signal).
    signal: Option<i32>,
    /// Exactly this many matching events (rateLimit), else at least one.
    count: Option<usize>,
    host: Want,
    kfunc: Want,
    /// From this kernel version on (major, minor), a kernel with kprobes must give this
    /// instead of `kfunc` (a function the kernel dropped).
    kfunc_from: Option<(u32, u32, Want)>,
    /// An event the trigger also causes that the policy must not report.
    unwanted: Option<fn() -> Value>,
    /// A further check of the matching event (fields whose values vary: "@ANY@" in `expect`).
    check: Option<Check>,
}

/// A further check of an event: Err says what is wrong.
type Check = fn(&Value) -> Result<(), String>;

const NEEDS_KPROBES: &str = "needs kprobes, which this kernel does not have";

/// The initial user namespace as Tetragon exports it (`UserNamespace`; inum PROC_USER_INIT_INO).
fn init_user_ns() -> Value {
    json!({"level": 0, "uid": 0, "gid": 0, "ns": {"inum": 4026531837u32, "is_host": true}})
}

fn cases() -> Vec<Case> {
    let c = |file, trigger, event, expect: fn() -> Value, host, kfunc| Case {
        file,
        trigger,
        event,
        expect,
        signal: None,
        count: None,
        host,
        kfunc,
        kfunc_from: None,
        unwanted: None,
        check: None,
    };
    vec![
        c(
            "file-open-sensitive",
            "open:secret",
            "process_kprobe",
            || json!({"function_name": "security_file_open", "args": [{"file_arg": {"path": "@DIR@/secret"}}]}),
            Pass,
            Pass,
        ),
        c(
            "fd-install",
            "open:fd-target",
            "process_kprobe",
            || json!({"function_name": "fd_install", "args": [{"int_arg": "@FD@"}, {"file_arg": {"path": "@DIR@/fd-target"}}]}),
            Pass,
            Pass,
        ),
        c(
            "openat-tracepoint",
            "open:tp-file",
            "process_tracepoint",
            || json!({"subsys": "syscalls", "event": "sys_enter_openat", "args": [{"int_arg": -100}, {"string_arg": "@DIR@/tp-file"}, {"int_arg": 64}]}),
            Pass,
            Pass,
        ),
        c(
            "sys-setuid-root",
            "setuid",
            "process_kprobe",
            || json!({"function_name": "__x64_sys_setuid", "args": [{"int_arg": 65534}]}),
            Pass,
            Pass,
        ),
        Case {
            signal: Some(9),
            ..c(
                "sys-ptrace-kill",
                "ptrace",
                "process_kprobe",
                || json!({"function_name": "__x64_sys_ptrace", "action": "KPROBE_ACTION_SIGKILL", "args": [{"int_arg": 16}]}),
                Pass,
                Pass,
            )
        },
        c(
            "sys-unshare-userns",
            "unshare-user",
            "process_kprobe",
            || json!({"function_name": "__x64_sys_unshare", "args": [{"size_arg": "268435456", "label": "flags"}]}),
            Pass,
            Pass,
        ),
        c(
            "sys-mount",
            "mount",
            "process_kprobe",
            || json!({"function_name": "__x64_sys_mount", "args": [{"string_arg": "nightjar-src"}, {"string_arg": "@DIR@/mnt"}]}),
            Pass,
            Pass,
        ),
        c(
            "cap-capable-sys-admin",
            "unshare-mnt",
            "process_kprobe",
            || json!({"function_name": "cap_capable", "args": [{"int_arg": 21}]}),
            Pass,
            Pass,
        ),
        c(
            "mmap-file",
            "mmap-file",
            "process_kprobe",
            || json!({"function_name": "security_mmap_file", "args": [{"file_arg": {"path": "@DIR@/mapped"}}, {"uint_arg": 1}]}),
            Pass,
            Pass,
        ),
        c(
            "file-permission-write",
            "write-file",
            "process_kprobe",
            || json!({"function_name": "security_file_permission", "args": [{"file_arg": {"path": "@DIR@/written"}}, {"int_arg": 2}]}),
            Refused(NEEDS_KPROBES),
            Pass,
        ),
        c(
            "bash-readline",
            "bash",
            "process_uprobe",
            || json!({"path": "@BASH@", "symbol": "readline", "args": [{"string_arg": "nightjar-corpus> "}]}),
            Pass,
            Pass,
        ),
        c(
            "commit-creds",
            "setuid",
            "process_kprobe",
            || {
                json!({"function_name": "commit_creds", "args": [{"process_credentials_arg": {
                "uid": 65534, "gid": 0, "euid": 65534, "egid": 0, "suid": 65534, "sgid": 0, "fsuid": 65534, "fsgid": 0,
                "caps": {}, "user_ns": init_user_ns()}}]})
            },
            Refused(NEEDS_KPROBES),
            Pass,
        ),
        c(
            "do-init-module",
            "init-module",
            "process_kprobe",
            || json!({"function_name": "do_init_module", "args": [{"module_arg": {"name": "nls_utf8", "signature_ok": false}}]}),
            Refused(NEEDS_KPROBES),
            Pass,
        ),
        c(
            "tcp-connect",
            "tcp-connect",
            "process_kprobe",
            || json!({"function_name": "tcp_connect", "args": [{"sock_arg": {"family": "AF_INET", "type": "SOCK_STREAM", "protocol": "IPPROTO_TCP", "saddr": "127.0.0.1", "daddr": "127.0.0.1", "sport": "@SPORT@", "dport": "@DPORT@", "cookie": "@ANY@", "state": "TCP_SYN_SENT"}}]}),
            Pass,
            Pass,
        ),
        c(
            "lists-syscalls",
            "dup",
            "process_tracepoint",
            || json!({"subsys": "raw_syscalls", "event": "sys_enter", "args": [{"syscall_id": {"id": 32, "abi": "x64"}}]}),
            Pass,
            Pass,
        ),
        c(
            "kprobe-list-dups",
            "dup",
            "process_kprobe",
            || json!({"function_name": "__x64_sys_dup", "args": [{"int_arg": 0}]}),
            Pass,
            Pass,
        ),
        c(
            "kprobe-list-generated-syscalls",
            "getppid-getpid",
            "process_kprobe",
            || json!({"function_name": "__x64_sys_getppid"}),
            Pass,
            Pass,
        ),
        Case {
            unwanted: Some(|| json!({"function_name": "__x64_sys_getppid"})),
            ..c(
                "kprobe-list-many-syscalls",
                "getppid-getpid",
                "process_kprobe",
                || json!({"function_name": "__x64_sys_getpid"}),
                Pass,
                Pass,
            )
        },
        c(
            "ignore-call-not-found",
            "dup",
            "process_kprobe",
            || json!({"function_name": "__x64_sys_dup", "args": [{"int_arg": 0}]}),
            Pass,
            Pass,
        ),
        c(
            "raw-syscalls-enter",
            "getuid",
            "process_tracepoint",
            || json!({"subsys": "raw_syscalls", "event": "sys_enter", "args": [{"long_arg": "102"}]}),
            Pass,
            Pass,
        ),
        c(
            "raw-tracepoint-sys-enter",
            "getuid",
            "process_tracepoint",
            || json!({"subsys": "raw_syscalls", "event": "sys_enter", "args": [{"long_arg": "102"}]}),
            Pass,
            Pass,
        ),
        c(
            "lsm-file-open-override",
            "open-forbidden",
            "process_lsm",
            || json!({"function_name": "file_open", "action": "KPROBE_ACTION_OVERRIDE", "args": [{"file_arg": {"path": "@DIR@/forbidden"}}]}),
            Refused("this kernel cannot run BPF-LSM programs"),
            Pass,
        ),
        Case {
            signal: Some(9),
            ..c(
                "lsm-bprm-check-sigkill",
                "exec-xmrig",
                "process_lsm",
                || json!({"function_name": "bprm_check_security", "action": "KPROBE_ACTION_SIGKILL", "args": [{"linux_binprm_arg": {"path": "@DIR@/xmrig"}}]}),
                Pass,
                Pass,
            )
        },
        c(
            "bprm-check-notin",
            "exec-denied",
            "process_kprobe",
            || json!({"function_name": "security_bprm_check", "args": [{"linux_binprm_arg": {"path": "@DIR@/denied"}}]}),
            Pass,
            Pass,
        ),
        Case {
            count: Some(1),
            ..c(
                "rate-limited-opens",
                "open-burst",
                "process_kprobe",
                || json!({"function_name": "security_file_open", "args": [{"file_arg": {"path": "@DIR@/burst"}}]}),
                Pass,
                Pass,
            )
        },
        c(
            "match-pids-not-init",
            "setns",
            "process_kprobe",
            || json!({"function_name": "__x64_sys_setns", "args": [{"int_arg": "@FD@"}, {"int_arg": 131072}]}),
            Pass,
            Pass,
        ),
        c(
            "match-capabilities-admin",
            "unshare-mnt",
            "process_kprobe",
            || json!({"function_name": "__x64_sys_unshare", "args": [{"size_arg": "131072"}]}),
            Pass,
            Pass,
        ),
        Case {
            // The helper's first unshare (CLONE_NEWUTS) is root's, in the host's user namespace.
            unwanted: Some(|| json!({"function_name": "__x64_sys_unshare", "args": [{"size_arg": "67108864"}]})),
            ..c(
                "match-capabilities-userns",
                "unshare-uts-then-userns-mnt",
                "process_kprobe",
                || json!({"function_name": "__x64_sys_unshare", "args": [{"size_arg": "131072"}]}),
                Pass,
                Pass,
            )
        },
        Case {
            // The helper's first unshare comes before it drops the capability.
            unwanted: Some(|| json!({"function_name": "__x64_sys_unshare", "args": [{"size_arg": "67108864"}]})),
            ..c(
                "match-capability-changes",
                "unshare-uts-drop-admin-mnt",
                "process_kprobe",
                || json!({"function_name": "__x64_sys_unshare", "args": [{"size_arg": "131072"}]}),
                Pass,
                Pass,
            )
        },
        c(
            "match-namespaces-host-mnt",
            "setns",
            "process_kprobe",
            || json!({"function_name": "__x64_sys_setns", "args": [{"int_arg": "@FD@"}, {"int_arg": 131072}]}),
            Pass,
            Pass,
        ),
        Case {
            signal: Some(10),
            ..c(
                "signal-usr1",
                "ptrace",
                "process_kprobe",
                || json!({"function_name": "__x64_sys_ptrace", "action": "KPROBE_ACTION_SIGNAL", "args": [{"int_arg": 16}]}),
                Pass,
                Pass,
            )
        },
        c(
            "message-and-tags",
            "getuid",
            "process_kprobe",
            || json!({"function_name": "__x64_sys_getuid", "args": [], "message": "getuid by a binary under test", "tags": ["observability.identity", "test"]}),
            Pass,
            Pass,
        ),
        c(
            "openat-return",
            "open-missing:ret-missing",
            "process_kprobe",
            || json!({"function_name": "do_sys_openat2", "args": [{"int_arg": -100}, {"string_arg": "@DIR@/ret-missing"}], "return": {"int_arg": -2}}),
            Refused(NEEDS_KPROBES),
            Pass,
        ),
        c(
            "sys-write-buf",
            "write",
            "process_kprobe",
            || json!({"function_name": "__x64_sys_write", "args": [{"int_arg": 1}, {"bytes_arg": "bmlnaHRqYXItY29ycHVzCg=="}, {"size_arg": "16"}]}),
            Pass,
            Pass,
        ),
        c(
            "sys-writev-iovec",
            "writev",
            "process_kprobe",
            || json!({"function_name": "__x64_sys_writev", "args": [{"int_arg": 77}, {"bytes_arg": "bmlnaHRqYXItaW92ZWMK"}]}),
            Pass,
            Pass,
        ),
        c(
            "sys-read-returncopy",
            "read-file",
            "process_kprobe",
            || json!({"function_name": "__x64_sys_read", "args": [{"int_arg": "@FD@"}, {"bytes_arg": "bmlnaHRqYXItcmVhZAo="}, {"size_arg": "64"}], "return": {"size_arg": "14"}}),
            Refused(NEEDS_KPROBES),
            Pass,
        ),
        c(
            "tty-write",
            "tty-write",
            "process_kprobe",
            || json!({"function_name": "tty_write", "args": [{"file_arg": {"path": "@DIR@/pts/ptmx"}}, {"bytes_arg": "bmlnaHRqYXItdHR5Cg=="}]}),
            Refused(NEEDS_KPROBES),
            Pass,
        ),
        c(
            "bpf-prog-load",
            "bpf-prog-load",
            "process_kprobe",
            || json!({"function_name": "bpf_check", "args": [{"bpf_attr_arg": {"ProgType": "BPF_PROG_TYPE_SOCKET_FILTER", "InsnCnt": 2, "ProgName": "nightjar_prog"}}]}),
            Refused(NEEDS_KPROBES),
            Pass,
        ),
        Case {
            // 6.9 replaced security_bpf_map_alloc with security_bpf_map_create.
            kfunc_from: Some((
                6,
                9,
                Refused("kernel function \"security_bpf_map_alloc\" is not in this kernel's /proc/kallsyms"),
            )),
            ..c(
                "bpf-map-create",
                "bpf-map-create",
                "process_kprobe",
                || json!({"function_name": "security_bpf_map_alloc", "args": [{"bpf_map_arg": {"MapType": "BPF_MAP_TYPE_HASH", "KeySize": 4, "ValueSize": 8, "MaxEntries": 16, "MapName": "nightjar_map"}}]}),
                Refused(NEEDS_KPROBES),
                Pass,
            )
        },
        c(
            "perf-event-alloc",
            "perf-event-open",
            "process_kprobe",
            || json!({"function_name": "security_perf_event_alloc", "args": [{"perf_event_arg": {"KprobeFunc": "nightjar_func", "Type": "PERF_TYPE_SOFTWARE", "Config": "9", "ProbeOffset": "7"}}]}),
            Refused(NEEDS_KPROBES),
            Pass,
        ),
        c(
            "user-namespace-capable",
            "unshare-mnt",
            "process_kprobe",
            || json!({"function_name": "cap_capable", "args": [{"user_ns_arg": init_user_ns()}, {"capability_arg": {"value": 21, "name": "CAP_SYS_ADMIN"}}]}),
            Pass,
            Pass,
        ),
        c(
            "usdt-probe",
            "usdt",
            "process_usdt",
            || {
                json!({"path": "@HELPER@", "provider": "nightjar", "name": "corpus",
                       "args": [{"int_arg": 42}, {"int_arg": -7}, {"int_arg": 1234}]})
            },
            Pass,
            Pass,
        ),
        c(
            "pivot-root",
            "pivot-root",
            "process_tracepoint",
            || json!({"subsys": "syscalls", "event": "sys_enter_pivot_root", "args": [{"string_arg": "@DIR@/new"}, {"string_arg": "@DIR@/new/old"}]}),
            Pass,
            Pass,
        ),
        c(
            "mprotect-exec",
            "mprotect",
            "process_kprobe",
            || json!({"function_name": "__x64_sys_mprotect", "args": [{"size_arg": "5", "label": "prot"}]}),
            Pass,
            Pass,
        ),
        c(
            "memfd-create",
            "memfd",
            "process_kprobe",
            || json!({"function_name": "__x64_sys_memfd_create", "args": [{"string_arg": "nightjar-corpus"}, {"uint_arg": 1}]}),
            Pass,
            Pass,
        ),
        c(
            "linkat-hardlink",
            "link",
            "process_kprobe",
            || json!({"function_name": "__x64_sys_linkat", "args": [{"string_arg": "@DIR@/link-src"}, {"string_arg": "@DIR@/link-dst"}]}),
            Pass,
            Pass,
        ),
        c(
            "fchmodat-mode",
            "chmod-setuid",
            "process_kprobe",
            || json!({"function_name": "__x64_sys_fchmodat", "args": [{"string_arg": "@DIR@/chmod-me"}, {"uint_arg": 2541}]}),
            Pass,
            Pass,
        ),
        c(
            "kill-signal",
            "kill0",
            "process_kprobe",
            || json!({"function_name": "__x64_sys_kill", "args": [{"int_arg": "@PID@"}, {"int_arg": 0}]}),
            Pass,
            Pass,
        ),
        c(
            "nopost-filter",
            "getppid-getpid",
            "process_tracepoint",
            || json!({"subsys": "raw_syscalls", "event": "sys_enter", "args": [{"long_arg": "39"}]}),
            Pass,
            Pass,
        ),
        c(
            "cap-capable-tracepoint",
            "unshare-mnt",
            "process_tracepoint",
            || json!({"subsys": "capability", "event": "cap_capable", "args": [{"int_arg": 21}, {"int_arg": 0}]}),
            Pass,
            Refused("tracepoint capability:cap_capable does not exist on this kernel"),
        ),
        c(
            "sched-process-fork",
            "fork",
            "process_tracepoint",
            || json!({"subsys": "sched", "event": "sched_process_fork", "args": [{"int_arg": "@TID@"}, {"int_arg": "@CHILD@"}]}),
            Pass,
            Pass,
        ),
        c(
            "follow-fd",
            "follow-fd",
            "process_kprobe",
            || json!({"function_name": "__x64_sys_write", "args": [{"file_arg": {"path": "@DIR@/followed"}}, {"size_arg": "7"}]}),
            Pass,
            Pass,
        ),
        c(
            "copy-fd",
            "copy-fd",
            "process_kprobe",
            || json!({"function_name": "__x64_sys_write", "args": [{"file_arg": {"path": "@DIR@/copied"}}, {"size_arg": "5"}]}),
            Pass,
            Pass,
        ),
        c(
            "unfollow-fd",
            "unfollow-fd",
            "process_kprobe",
            || json!({"function_name": "__x64_sys_write", "args": [{"file_arg": {"path": "@DIR@/second-moved"}}, {"size_arg": "9"}]}),
            Pass,
            Pass,
        ),
        Case {
            signal: Some(9),
            ..c(
                "enforcer-dup-kill",
                "dup-77",
                "process_kprobe",
                || json!({"function_name": "__x64_sys_dup", "action": "KPROBE_ACTION_NOTIFYENFORCER", "args": [{"int_arg": 77}]}),
                Pass,
                Pass,
            )
        },
        // The dup event carries the fd the helper printed after its ptrace returned: the
        // notified thread was not killed before its enforced call.
        Case {
            signal: Some(9),
            ..c(
                "enforcer-ptrace-then-dup",
                "ptrace-then-dup",
                "process_kprobe",
                || json!({"function_name": "__x64_sys_dup", "action": "KPROBE_ACTION_POST", "args": [{"int_arg": "@FD@"}]}),
                Pass,
                Pass,
            )
        },
        c(
            "raw-tracepoint-resolve",
            "exec-miner-name",
            "process_tracepoint",
            || json!({"subsys": "sched", "event": "sched_process_exec", "args": [{"int_arg": "@PID@"}, {"int_arg": "@PID@"}, {"string_arg": "nightjar-corpus-miner"}]}),
            Pass,
            Pass,
        ),
        c(
            "kprobe-resolve-bprm",
            "exec-miner-name",
            "process_kprobe",
            || json!({"function_name": "security_bprm_committed_creds", "args": [{"string_arg": "@DIR@/nightjar-corpus-miner"}]}),
            Refused(NEEDS_KPROBES),
            Pass,
        ),
        c(
            "kprobe-data-current-task",
            "dup-77",
            "process_kprobe",
            || json!({"function_name": "__x64_sys_dup", "args": [{"int_arg": 77}], "data": [{"int_arg": "@PID@"}, {"string_arg": "nightjar-corpus"}]}),
            Pass,
            Pass,
        ),
        Case {
            check: Some(kernel_stack),
            ..c(
                "kprobe-kernel-stack-trace",
                "dup-77",
                "process_kprobe",
                || json!({"function_name": "__x64_sys_dup", "args": [{"int_arg": 77}], "kernel_stack_trace": "@ANY@"}),
                Pass,
                Pass,
            )
        },
        c(
            "match-binaries-running",
            "self-dup-78",
            "process_kprobe",
            || json!({"function_name": "__x64_sys_dup", "args": [{"int_arg": 78}]}),
            Pass,
            Pass,
        ),
        c(
            "match-parent-binaries",
            "dup-77",
            "process_kprobe",
            || json!({"function_name": "__x64_sys_dup", "action": "KPROBE_ACTION_POST", "args": [{"int_arg": 77}]}),
            Pass,
            Pass,
        ),
        Case {
            check: Some(user_stack),
            ..c(
                "kprobe-user-stack-trace",
                "dup-77",
                "process_kprobe",
                || json!({"function_name": "__x64_sys_dup", "args": [{"int_arg": 77}], "user_stack_trace": "@ANY@"}),
                Pass,
                Pass,
            )
        },
        c(
            "match-namespace-changes",
            "unshare-mnt-dup",
            "process_kprobe",
            || json!({"function_name": "__x64_sys_dup", "action": "KPROBE_ACTION_POST", "args": [{"int_arg": 77}]}),
            Pass,
            Pass,
        ),
        c(
            "list-generated-ftrace",
            "fsync",
            "process_kprobe",
            || json!({"function_name": "vfs_fsync_range", "args": [{"file_arg": {"path": "@DIR@/fsynced"}}]}),
            Refused(NEEDS_KPROBES),
            Pass,
        ),
        c(
            "exec-binary-postfix",
            "exec-miner-name",
            "process_kprobe",
            || json!({"function_name": "security_bprm_check", "args": [{"linux_binprm_arg": {"path": "@DIR@/nightjar-corpus-miner"}}]}),
            Pass,
            Pass,
        ),
    ]
}

/// The helper side: when this executable runs with `NIGHTJAR_CORPUS_HELPER`, it performs
/// that action and exits (the sensor side never sets it).
#[test]
fn zz_corpus_helper() {
    let Ok(action) = std::env::var("NIGHTJAR_CORPUS_HELPER") else { return };
    let dir = PathBuf::from(std::env::var("NIGHTJAR_CORPUS_DIR").unwrap_or_default());
    let code = helper(&action, &dir);
    std::process::exit(code);
}

fn cstr(s: &str) -> std::ffi::CString {
    std::ffi::CString::new(s).unwrap()
}

/// Performs `action` (the trigger of a corpus policy); returns the exit code. Prints
/// `fd=N` / `child=N` when a policy's expected event needs them.
fn helper(action: &str, dir: &Path) -> i32 {
    let p = |name: &str| dir.join(name).display().to_string();
    // SAFETY (all libc calls below): plain syscalls on this process's own resources, with
    // valid NUL-terminated strings and buffers that outlive the call.
    unsafe {
        match action {
            a if a.starts_with("open:") => {
                let path = p(&a[5..]);
                let fd = libc::open(cstr(&path).as_ptr(), libc::O_RDONLY | libc::O_CREAT, 0o644);
                println!("fd={fd}");
            }
            a if a.starts_with("open-missing:") => {
                let fd = libc::open(cstr(&p(&a[13..])).as_ptr(), libc::O_RDONLY);
                println!("fd={fd}");
            }
            "open-forbidden" => {
                let fd = libc::open(cstr(&p("forbidden")).as_ptr(), libc::O_RDONLY);
                let err = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
                println!("fd={fd} errno={err}");
            }
            "open-burst" => {
                for _ in 0..20 {
                    let fd = libc::open(cstr(&p("burst")).as_ptr(), libc::O_RDONLY | libc::O_CREAT, 0o644);
                    libc::close(fd);
                }
            }
            "write-file" => {
                let fd = libc::open(cstr(&p("written")).as_ptr(), libc::O_WRONLY | libc::O_CREAT, 0o644);
                libc::write(fd, b"x".as_ptr().cast(), 1);
            }
            "setuid" => {
                libc::setuid(65534);
                // Out at once: the test harness's teardown is not meant to run as nobody
                // (in the VMs it crashed there).
                libc::_exit(0);
            }
            "ptrace" => {
                // PTRACE_ATTACH to a pid that cannot exist: the syscall runs and fails.
                libc::ptrace(libc::PTRACE_ATTACH, 0x3fff_ffff, 0, 0);
                // Give a signal sent on the way out of the syscall time to land.
                std::thread::sleep(Duration::from_millis(200));
            }
            "fsync" => {
                let fd = libc::open(cstr(&p("fsynced")).as_ptr(), libc::O_WRONLY | libc::O_CREAT, 0o644);
                libc::write(fd, b"x".as_ptr().cast(), 1);
                libc::fsync(fd);
            }
            "unshare-mnt-dup" => {
                libc::unshare(libc::CLONE_NEWNS);
                libc::dup(77);
                std::thread::sleep(Duration::from_millis(200));
            }
            "dup-77" => {
                // fd 77 is not open: the syscall runs and fails; the enforcer's signal
                // comes on its way out.
                libc::dup(77);
                std::thread::sleep(Duration::from_millis(200));
            }
            "ptrace-then-dup" => {
                libc::ptrace(libc::PTRACE_ATTACH, 0x3fff_ffff, 0, 0);
                std::thread::sleep(Duration::from_millis(100));
                println!("fd=77");
                libc::dup(77);
                std::thread::sleep(Duration::from_millis(200));
            }
            "unshare-user" => {
                libc::unshare(libc::CLONE_NEWUSER);
            }
            "unshare-mnt" => {
                libc::unshare(libc::CLONE_NEWNS);
            }
            // unshare(CLONE_NEWUTS), then CAP_SYS_ADMIN dropped from this thread's effective
            // set, then unshare(CLONE_NEWNS) (refused now, but attempted).
            "unshare-uts-drop-admin-mnt" => {
                libc::unshare(libc::CLONE_NEWUTS);
                // _LINUX_CAPABILITY_VERSION_3: two u32 triples (effective, permitted, inheritable).
                let hdr = [0x2008_0522u32, 0];
                let mut data = [0u32; 6];
                if libc::syscall(libc::SYS_capget, hdr.as_ptr(), data.as_mut_ptr()) != 0 {
                    return 4;
                }
                data[0] &= !(1 << 21);
                if libc::syscall(libc::SYS_capset, hdr.as_ptr(), data.as_ptr()) != 0 {
                    return 5;
                }
                libc::unshare(libc::CLONE_NEWNS);
            }
            // unshare(CLONE_NEWUTS) as root in the host's user namespace, then (the same
            // process, through exec: a threaded process cannot change its user namespace)
            // unshare(1)'s new user namespace, mapped root there, and unshare(CLONE_NEWNS).
            "unshare-uts-then-userns-mnt" => {
                libc::unshare(libc::CLONE_NEWUTS);
                let me = std::env::current_exe().unwrap().display().to_string();
                std::env::set_var("NIGHTJAR_CORPUS_HELPER", "unshare-mnt");
                let argv: Vec<std::ffi::CString> =
                    ["unshare", "-U", "-r", &me, "--exact", "zz_corpus_helper", "--nocapture", "--test-threads=1"]
                        .iter()
                        .map(|a| cstr(a))
                        .collect();
                let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
                ptrs.push(std::ptr::null());
                libc::execv(cstr("/usr/bin/unshare").as_ptr(), ptrs.as_ptr());
                return 4;
            }
            "setns" => {
                let fd = libc::open(cstr("/proc/self/ns/mnt").as_ptr(), libc::O_RDONLY);
                println!("fd={fd}");
                libc::setns(fd, libc::CLONE_NEWNS);
            }
            "mount" => {
                let target = p("mnt");
                libc::mount(
                    cstr("nightjar-src").as_ptr(),
                    cstr(&target).as_ptr(),
                    cstr("nightjar-nofs").as_ptr(),
                    0,
                    std::ptr::null(),
                );
            }
            "pivot-root" => {
                libc::syscall(libc::SYS_pivot_root, cstr(&p("new")).as_ptr(), cstr(&p("new/old")).as_ptr());
            }
            "mmap-file" => {
                let fd = libc::open(cstr(&p("mapped")).as_ptr(), libc::O_RDWR | libc::O_CREAT, 0o644);
                libc::ftruncate(fd, 4096);
                libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ, libc::MAP_PRIVATE, fd, 0);
            }
            "mprotect" => {
                let m = libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                libc::mprotect(m, 4096, libc::PROT_READ | libc::PROT_EXEC);
            }
            "memfd" => {
                libc::memfd_create(cstr("nightjar-corpus").as_ptr(), libc::MFD_CLOEXEC);
            }
            "link" => {
                let src = p("link-src");
                libc::close(libc::open(cstr(&src).as_ptr(), libc::O_WRONLY | libc::O_CREAT, 0o644));
                libc::linkat(libc::AT_FDCWD, cstr(&src).as_ptr(), libc::AT_FDCWD, cstr(&p("link-dst")).as_ptr(), 0);
            }
            "chmod-setuid" => {
                let f = p("chmod-me");
                libc::close(libc::open(cstr(&f).as_ptr(), libc::O_WRONLY | libc::O_CREAT, 0o644));
                libc::syscall(libc::SYS_fchmodat, libc::AT_FDCWD, cstr(&f).as_ptr(), 0o4755);
            }
            "kill0" => {
                libc::kill(libc::getpid(), 0);
            }
            "getuid" => {
                libc::syscall(libc::SYS_getuid);
            }
            "getppid-getpid" => {
                libc::syscall(libc::SYS_getppid);
                libc::syscall(libc::SYS_getpid);
            }
            "dup" => {
                libc::dup(0);
            }
            "tcp-connect" => {
                // In a network namespace of its own: loopback only, nothing else sees it.
                if libc::unshare(libc::CLONE_NEWNET) != 0 || !netns::loopback_up() {
                    return 4;
                }
                let Ok(l) = std::net::TcpListener::bind("127.0.0.1:0") else { return 5 };
                let dport = l.local_addr().map(|a| a.port()).unwrap_or(0);
                let Ok(c) = std::net::TcpStream::connect(("127.0.0.1", dport)) else { return 6 };
                println!("sport={} dport={dport}", c.local_addr().map(|a| a.port()).unwrap_or(0));
            }
            "init-module" => {
                // Only in the VMs of scripts/vm-test.sh, which put this kernel's own
                // nls_utf8.ko there: never a module into the host's kernel.
                let module = std::env::var("NIGHTJAR_TEST_MODULE").unwrap_or_default();
                if std::env::var("NIGHTJAR_VM").as_deref() != Ok("1") || module.is_empty() {
                    eprintln!("init-module: only in the test VM (NIGHTJAR_VM=1, NIGHTJAR_TEST_MODULE)");
                    return 4;
                }
                let fd = libc::open(cstr(&module).as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
                let rc = libc::syscall(libc::SYS_finit_module, fd, cstr("").as_ptr(), 0);
                println!("rc={rc} errno={}", std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
                if rc != 0 {
                    return 5;
                }
            }
            "read-file" => {
                let f = p("readme");
                std::fs::write(&f, "nightjar-read\n").unwrap();
                let fd = libc::open(cstr(&f).as_ptr(), libc::O_RDONLY);
                println!("fd={fd}");
                let mut buf = [0u8; 64];
                libc::read(fd, buf.as_mut_ptr().cast(), 64);
            }
            // FollowFD: the file is written under another name than it was opened with.
            "follow-fd" => {
                let fd = libc::open(cstr(&p("followed")).as_ptr(), libc::O_WRONLY | libc::O_CREAT, 0o644);
                libc::rename(cstr(&p("followed")).as_ptr(), cstr(&p("renamed")).as_ptr());
                libc::write(fd, b"follow\n".as_ptr().cast(), 7);
                libc::close(fd);
            }
            "copy-fd" => {
                let fd = libc::open(cstr(&p("copied")).as_ptr(), libc::O_WRONLY | libc::O_CREAT, 0o644);
                libc::rename(cstr(&p("copied")).as_ptr(), cstr(&p("moved")).as_ptr());
                libc::dup2(fd, 100);
                libc::write(100, b"copy\n".as_ptr().cast(), 5);
            }
            // The fd number of a closed followed file comes back for another file.
            "unfollow-fd" => {
                let fd = libc::open(cstr(&p("unfollowed")).as_ptr(), libc::O_WRONLY | libc::O_CREAT, 0o644);
                libc::close(fd);
                let fd2 = libc::open(cstr(&p("second")).as_ptr(), libc::O_WRONLY | libc::O_CREAT, 0o644);
                libc::rename(cstr(&p("second")).as_ptr(), cstr(&p("second-moved")).as_ptr());
                println!("fd={fd} fd2={fd2}");
                libc::write(fd2, b"unfollow\n".as_ptr().cast(), 9);
            }
            // BPF_PROG_LOAD of `r0 = 0; exit` as a socket filter named nightjar_prog.
            "bpf-prog-load" => {
                let insns: [u64; 2] = [0xb7, 0x95];
                let license = c"GPL";
                let mut attr = [0u8; 128];
                attr[0..4].copy_from_slice(&1u32.to_ne_bytes());
                attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
                attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
                attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
                attr[48..61].copy_from_slice(b"nightjar_prog");
                let fd = libc::syscall(libc::SYS_bpf, 5, attr.as_ptr(), attr.len() as u32);
                println!("fd={fd}");
                if fd < 0 {
                    return 5;
                }
            }
            "write" => {
                libc::write(1, b"nightjar-corpus\n".as_ptr().cast(), 16);
            }
            "writev" => return writev_segments(dir),
            // BPF_MAP_CREATE of a hash map named nightjar_map (4-byte keys, 8-byte values, 16).
            "bpf-map-create" => {
                let mut attr = [0u8; 72];
                for (i, v) in [1u32, 4, 8, 16].iter().enumerate() {
                    attr[4 * i..4 * i + 4].copy_from_slice(&v.to_ne_bytes());
                }
                attr[28..40].copy_from_slice(b"nightjar_map");
                let fd = libc::syscall(libc::SYS_bpf, 0, attr.as_ptr(), attr.len() as u32);
                println!("fd={fd}");
                if fd < 0 {
                    return 5;
                }
            }
            // perf_event_open of a software dummy event on itself, with config1 pointing to
            // a string and config2 = 7 (where a kprobe event has kprobe_func and
            // probe_offset; Tetragon reads them whatever the type).
            "perf-event-open" => {
                let func = c"nightjar_func";
                let mut attr = [0u8; 128];
                attr[0..4].copy_from_slice(&1u32.to_ne_bytes()); // PERF_TYPE_SOFTWARE
                attr[4..8].copy_from_slice(&128u32.to_ne_bytes()); // size
                attr[8..16].copy_from_slice(&9u64.to_ne_bytes()); // PERF_COUNT_SW_DUMMY
                attr[40..48].copy_from_slice(&1u64.to_ne_bytes()); // disabled
                attr[56..64].copy_from_slice(&(func.as_ptr() as u64).to_ne_bytes());
                attr[64..72].copy_from_slice(&7u64.to_ne_bytes());
                let fd = libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), 0, -1, -1, 0);
                println!("fd={fd}");
                if fd < 0 {
                    return 5;
                }
            }
            // A write to a terminal (tty_write): the master of a pty of its own, from a
            // devpts instance mounted in a mount namespace of its own (nothing else sees it).
            "tty-write" => {
                let pts = p("pts");
                let _ = std::fs::create_dir_all(&pts);
                let private = (libc::MS_REC | libc::MS_PRIVATE) as libc::c_ulong;
                if libc::unshare(libc::CLONE_NEWNS) != 0
                    || libc::mount(std::ptr::null(), cstr("/").as_ptr(), std::ptr::null(), private, std::ptr::null())
                        != 0
                {
                    return 4;
                }
                let opts = cstr("newinstance,ptmxmode=0666");
                if libc::mount(
                    cstr("devpts").as_ptr(),
                    cstr(&pts).as_ptr(),
                    cstr("devpts").as_ptr(),
                    0,
                    opts.as_ptr().cast(),
                ) != 0
                {
                    return 5;
                }
                let fd = libc::open(cstr(&format!("{pts}/ptmx")).as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
                if fd < 0 {
                    return 6;
                }
                libc::write(fd, b"nightjar-tty\n".as_ptr().cast(), 13);
            }
            "fork" => {
                let child = libc::fork();
                if child == 0 {
                    libc::_exit(0);
                }
                // The tracepoint's parent_pid is the forking thread's id.
                println!("child={child} tid={}", libc::gettid());
                libc::waitpid(child, std::ptr::null_mut(), 0);
            }
            "usdt" => {
                let v: i32 = 1234;
                fire_usdt(42, &v);
                fire_usdt(5, &v);
            }
            _ => return 3,
        }
    }
    0
}

struct Run {
    rx: mpsc::Receiver<nightjar_event::Event>,
    control: mpsc::Sender<SensorCommand>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Run {
    async fn add(&self, l: policy::Loaded) -> Result<policy::engine::PolicyStatus, String> {
        let (tx, rx) = oneshot::channel();
        self.control.send(SensorCommand::AddPolicy(Box::new(l), tx)).await.map_err(|e| e.to_string())?;
        rx.await.map_err(|e| e.to_string())?
    }

    /// What the kernel counted as rate-limited for policy `name`'s hooks.
    async fn rate_limited(&self, name: &str) -> u64 {
        let (tx, rx) = oneshot::channel();
        let _ = self.control.send(SensorCommand::Status(tx)).await;
        let Ok(st) = rx.await else { return 0 };
        st.policies.iter().filter(|p| p.name == name).flat_map(|p| &p.hooks).map(|h| h.rate_limited).sum()
    }

    async fn delete(&self, name: &str) {
        let (tx, rx) = oneshot::channel();
        let _ = self.control.send(SensorCommand::DeletePolicy(name.to_owned(), tx)).await;
        let _ = rx.await;
    }

    /// Events of process `pid` under key `key` until `timeout` (or the first match).
    async fn events_of(
        &mut self,
        key: &str,
        pid: u32,
        timeout: Duration,
        mut done: impl FnMut(&Value) -> bool,
    ) -> Vec<Value> {
        let mut out = Vec::new();
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(100), self.rx.recv()).await else { continue };
            let v: Value = serde_json::from_str(&e.to_json()).unwrap();
            if v[key]["process"]["pid"] == pid {
                let stop = done(&v[key]);
                out.push(v[key].clone());
                if stop {
                    break;
                }
            }
        }
        out
    }

    /// Drops what is queued (events of the previous case).
    fn drain(&mut self) {
        while self.rx.try_recv().is_ok() {}
    }
}

/// Replaces the placeholders of a policy or an expected value.
fn fill(text: &str, vars: &BTreeMap<&str, String>) -> String {
    let mut t = text.to_owned();
    for (k, v) in vars {
        t = t.replace(k, v);
    }
    t
}

/// Placeholders in expected JSON: strings "@X@" become the variable (as a number when it is one).
fn fill_value(v: &Value, vars: &BTreeMap<&str, String>) -> Value {
    match v {
        Value::String(s) => {
            let f = fill(s, vars);
            if s.starts_with('@') && s.ends_with('@') {
                if let Ok(n) = f.parse::<i64>() {
                    return json!(n);
                }
            }
            Value::String(f)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| fill_value(x, vars)).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (k.clone(), fill_value(x, vars))).collect()),
        other => other.clone(),
    }
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus/policies")
}

/// The helper: a hard link to (or copy of) this executable under `dir`.
/// A USDT probe `nightjar:corpus` with three arguments — `a` in a register, the constant
/// -7, and the i32 at `p` (memory) — written as `<sys/sdt.h>` writes one: a nop at the
/// probe site and a `stapsdt` note naming it (provider, name, where each argument is).
#[inline(never)]
#[allow(named_asm_labels)]
fn fire_usdt(a: i32, p: *const i32) {
    // SAFETY: a nop; the rest only emits a note and its base symbol into their own sections.
    unsafe {
        std::arch::asm!(
            "990: nop",
            ".pushsection .note.stapsdt,\"\",\"note\"",
            ".balign 4",
            ".4byte 992f-991f, 994f-993f, 3",
            "991: .asciz \"stapsdt\"",
            "992: .balign 4",
            "993: .8byte 990b",
            ".8byte _.stapsdt.base",
            ".8byte 0",
            ".asciz \"nightjar\"",
            ".asciz \"corpus\"",
            ".asciz \"-4@{a:e} -4@$-7 -4@({p})\"",
            "994: .balign 4",
            ".popsection",
            ".ifndef _.stapsdt.base",
            ".pushsection .stapsdt.base,\"aG\",\"progbits\",.stapsdt.base,comdat",
            ".weak _.stapsdt.base",
            ".hidden _.stapsdt.base",
            "_.stapsdt.base: .space 1",
            ".size _.stapsdt.base, 1",
            ".popsection",
            ".endif",
            a = in(reg) a,
            p = in(reg) p,
            options(att_syntax, nostack, preserves_flags),
        );
    }
}

fn helper_binary(dir: &Path) -> String {
    let exe = std::env::current_exe().unwrap();
    let h = dir.join("nightjar-corpus-helper");
    if std::fs::hard_link(&exe, &h).is_err() {
        std::fs::copy(&exe, &h).unwrap();
    }
    std::fs::canonicalize(&h).unwrap().display().to_string()
}

/// Runs the trigger; returns (pid, exit status, stdout).
fn trigger(action: &str, dir: &Path, helper: &str, bash: &str) -> (u32, std::process::ExitStatus, String) {
    if action == "self-dup-78" {
        // This test process, running since before the policy loaded: fd 78 is not open.
        // SAFETY: a plain syscall on this process's own descriptor table.
        unsafe { libc::dup(78) };
        return (std::process::id(), std::process::ExitStatus::from_raw(0), String::new());
    }
    let mut cmd = match action {
        "bash" => {
            let mut c = Command::new(bash);
            c.args(["--norc", "--noprofile", "-i"]).env("PS1", "nightjar-corpus> ");
            c
        }
        "exec-xmrig" | "exec-denied" | "exec-miner-name" => {
            let name = match action {
                "exec-xmrig" => "xmrig",
                "exec-denied" => "denied",
                _ => "nightjar-corpus-miner",
            };
            let bin = dir.join(name);
            // A dynamically linked program that exits 0 with any argv[0] (in the VMs,
            // /bin/true is busybox, which needs its own name).
            let _ = std::fs::copy("/bin/echo", &bin);
            Command::new(bin)
        }
        _ => {
            let mut c = Command::new(helper);
            c.args(["--exact", "zz_corpus_helper", "--nocapture", "--test-threads=1"])
                .env("NIGHTJAR_CORPUS_HELPER", action)
                .env("NIGHTJAR_CORPUS_DIR", dir);
            c
        }
    };
    let mut child = cmd
        .current_dir(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    if action == "bash" {
        use std::io::Write;
        let _ = child.stdin.take().unwrap().write_all(b"true\nexit\n");
    }
    let out = child.wait_with_output().unwrap();
    (pid, out.status, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// writev(2) to fd 77 of eight segments, one empty: Tetragon's char_iovec reads the first
/// seven ("nightjar-iovec\n"), the eighth is left out.
fn writev_segments(dir: &Path) -> i32 {
    let segs: [&[u8]; 8] = [b"night", b"jar", b"-", b"", b"io", b"vec", b"\n", b"left-out"];
    let iov: Vec<libc::iovec> =
        segs.iter().map(|s| libc::iovec { iov_base: s.as_ptr() as *mut libc::c_void, iov_len: s.len() }).collect();
    let path = cstr(&dir.join("writev-target").display().to_string());
    // SAFETY: plain syscalls on this process's own fds; the iovecs point to live slices.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CREAT, 0o644);
        if fd < 0 || libc::dup2(fd, 77) != 77 {
            return 6;
        }
        if libc::writev(77, iov.as_ptr(), iov.len() as libc::c_int) < 0 {
            return 7;
        }
    }
    0
}

/// (major, minor) of a kernel release such as `6.12.57+deb13-amd64`.
fn kernel_version(release: &str) -> (u32, u32) {
    let mut n = release.split(|c: char| !c.is_ascii_digit()).map(|p| p.parse().unwrap_or(0));
    (n.next().unwrap_or(0), n.next().unwrap_or(0))
}

/// A syscall's kernel stack as Tetragon exports it: frames with a decimal address, offset
/// and symbol, through the syscall entry (do_syscall_64).
fn kernel_stack(e: &Value) -> Result<(), String> {
    let frames = e["kernel_stack_trace"].as_array().ok_or("no kernel_stack_trace array")?;
    let bad = frames
        .iter()
        .find(|f| f["address"].as_str().and_then(|a| a.parse::<u64>().ok()).is_none_or(|a| a < 0xffff_0000_0000_0000));
    if let Some(f) = bad {
        return Err(format!("a frame without a kernel address: {f}"));
    }
    if !frames.iter().any(|f| f["symbol"] == "do_syscall_64" && f["offset"].as_str().is_some()) {
        return Err(format!("no do_syscall_64 frame in {frames:?}"));
    }
    Ok(())
}

/// A user stack as Tetragon exports it: the innermost frame is libc's dup, with the
/// module it is in; the helper's own code is among the callers.
fn user_stack(e: &Value) -> Result<(), String> {
    let frames = e["user_stack_trace"].as_array().ok_or("no user_stack_trace array")?;
    let top = frames.first().ok_or("an empty user stack")?;
    let libc = top["module"].as_str().is_some_and(|m| m.ends_with("/libc.so.6"));
    if !libc || !matches!(top["symbol"].as_str(), Some("dup" | "__dup")) || top["offset"].as_str().is_none() {
        return Err(format!("the innermost frame is not libc's dup: {top}"));
    }
    if !frames.iter().any(|f| f["module"].as_str().is_some_and(|m| m.ends_with("/nightjar-corpus-helper"))) {
        return Err(format!("no frame in the helper itself: {frames:?}"));
    }
    Ok(())
}

/// `fd=3` → ("@FD@", "3") from the helper's output.
fn printed(out: &str, key: &str) -> Option<String> {
    out.split_whitespace().find_map(|w| w.strip_prefix(&format!("{key}=")).map(str::to_owned))
}

/// Equal, where the expected string "@ANY@" stands for any value that is there (a
/// socket's cookie, its kernel address).
fn same(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (_, Value::String(w)) if w == "@ANY@" => true,
        (Value::Object(g), Value::Object(w)) => {
            g.len() == w.len() && w.iter().all(|(k, v)| g.get(k).is_some_and(|x| same(x, v)))
        }
        (Value::Array(g), Value::Array(w)) => g.len() == w.len() && g.iter().zip(w).all(|(x, v)| same(x, v)),
        _ => got == want,
    }
}

/// Every expected field must be in the event, equal (extra fields are allowed only
/// outside `args`, which must match exactly).
fn compare(got: &Value, want: &Value) -> Result<(), String> {
    let Value::Object(w) = want else { return Ok(()) };
    for (k, v) in w {
        let equal = got.get(k).is_some_and(|g| same(g, v));
        let no_args = k == "args" && v == &json!([]) && got.get(k).is_none();
        if !equal && !no_args {
            return Err(format!("{k}: want {v}, got {}", got.get(k).unwrap_or(&Value::Null)));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_policies_load_and_report_exactly_as_tetragon_exports() {
    if std::env::var("NIGHTJAR_CORPUS_HELPER").is_ok() {
        return;
    }
    let cfg = SensorConfig { policies_dir: PathBuf::new(), ..SensorConfig::default() };
    let sensor = Sensor::load(&cfg, "corpus-node").expect("load the sensor (root)");
    let kfunc_kernel = sensor.features.kprobes;
    let release = sensor.features.kernel_release.clone();
    let control = sensor.control();
    let (tx, rx) = mpsc::channel(65536);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move { sensor.run(tx, stop_rx).await.expect("run") });
    let mut run = Run { rx, control, stop, task };

    let tmp = tempfile::Builder::new().prefix("hooks-corpus").tempdir().unwrap();
    let dir = std::fs::canonicalize(tmp.path()).unwrap();
    std::fs::create_dir_all(dir.join("mnt")).unwrap();
    std::fs::create_dir_all(dir.join("new/old")).unwrap();
    std::fs::write(dir.join("secret"), "s").unwrap();
    std::fs::write(dir.join("forbidden"), "f").unwrap();
    let helper = helper_binary(&dir);
    let bash = std::fs::canonicalize("/bin/bash").map(|p| p.display().to_string()).unwrap_or_default();
    let mut vars: BTreeMap<&str, String> = BTreeMap::new();
    vars.insert("@DIR@", dir.display().to_string());
    vars.insert("@HELPER@", helper.clone());
    let me = std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
    vars.insert("@SELF@", me.display().to_string());
    vars.insert("@BASH@", bash.clone());
    vars.insert("@RUNNER@", std::process::id().to_string());

    let cases = cases();
    let mut files: Vec<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.strip_suffix(".yaml").map(str::to_owned))
        .collect();
    files.sort();
    let listed: Vec<&str> = cases.iter().map(|c| c.file).collect();
    for f in &files {
        assert!(listed.contains(&f.as_str()), "corpus policy {f}.yaml has no case in corpus.rs");
    }
    assert!(files.len() >= 40, "the corpus has {} policies", files.len());

    let mut table = Vec::new();
    let mut failures = Vec::new();
    let version = kernel_version(&release);
    for case in &cases {
        let want = match case.kfunc_from {
            _ if !kfunc_kernel => case.host,
            Some((major, minor, w)) if version >= (major, minor) => w,
            _ => case.kfunc,
        };
        let text = fill(&std::fs::read_to_string(corpus_dir().join(format!("{}.yaml", case.file))).unwrap(), &vars);
        let t0 = Instant::now();
        let verdict = run_case(&mut run, case, want, &text, &dir, &helper, &bash, &vars).await;
        eprintln!("corpus: {} ({:.1} s): {verdict:?}", case.file, t0.elapsed().as_secs_f64());
        let loads = match &verdict {
            Ok(s) | Err(s) => s.clone(),
        };
        table.push(format!("| {} | {} | {} |", case.file, loads, if verdict.is_ok() { "ok" } else { "FAIL" }));
        if let Err(e) = verdict {
            failures.push(format!("{}: {e}", case.file));
        }
    }
    println!("| policy | this kernel | result |\n|---|---|---|\n{}", table.join("\n"));
    let _ = run.stop.send(true);
    let Run { mut rx, task, .. } = run;
    let d = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    task.await.unwrap();
    d.await.unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} corpus policies failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[allow(clippy::too_many_arguments)]
async fn run_case(
    run: &mut Run,
    case: &Case,
    want: Want,
    text: &str,
    dir: &Path,
    helper: &str,
    bash: &str,
    vars: &BTreeMap<&str, String>,
) -> Result<String, String> {
    let loaded = policy::parse(&format!("{}.yaml", case.file), text);
    let added = match loaded {
        Ok(l) => run.add(l).await,
        Err(e) => Err(e.to_string()),
    };
    let name = match (&added, want) {
        (Err(e), Refused(why)) if e.contains(why) => return Ok(format!("refused: {why}")),
        (Err(e), _) => return Err(format!("refused: {e}")),
        (Ok(st), Refused(why)) => {
            let n = st.name.clone();
            run.delete(&n).await;
            return Err(format!(
                "loaded ({:?}), but must be refused with {why:?}",
                st.hooks.iter().map(|h| &h.backend).collect::<Vec<_>>()
            ));
        }
        (Ok(st), Pass) => st.name.clone(),
    };
    let backends: Vec<String> = match &added {
        Ok(st) => st.hooks.iter().map(|h| h.backend.clone()).collect(),
        Err(_) => Vec::new(),
    };
    run.drain();
    let (pid, status, out) = trigger(case.trigger, dir, helper, bash);
    let mut vars = vars.clone();
    vars.insert("@PID@", pid.to_string());
    if let Some(fd) = printed(&out, "fd") {
        vars.insert("@FD@", fd);
    }
    if let Some(c) = printed(&out, "child") {
        vars.insert("@CHILD@", c);
    }
    if let Some(t) = printed(&out, "tid") {
        vars.insert("@TID@", t);
    }
    for (key, var) in [("sport", "@SPORT@"), ("dport", "@DPORT@")] {
        if let Some(p) = printed(&out, key) {
            vars.insert(var, p);
        }
    }
    let want_event = fill_value(&(case.expect)(), &vars);
    let events = match case.count {
        // All events of a short window, to count them.
        Some(_) => run.events_of(case.event, pid, Duration::from_secs(3), |_| false).await,
        None => run.events_of(case.event, pid, Duration::from_secs(15), |e| compare(e, &want_event).is_ok()).await,
    };
    let limited = run.rate_limited(&name).await;
    run.delete(&name).await;
    let loads = format!("loads ({})", backends.join(", "));
    match case.signal {
        None if !status.success() => return Err(format!("{loads}: the trigger failed: {status:?} {out}")),
        Some(sig) if status.signal() != Some(sig) => {
            return Err(format!("{loads}: the trigger must end by signal {sig}: {status:?}"))
        }
        _ => {}
    }
    if let Some(u) = case.unwanted {
        let u = fill_value(&u(), &vars);
        if events.iter().any(|e| compare(e, &u).is_ok()) {
            return Err(format!("{loads}: reported {u}, which the policy must not match"));
        }
    }
    if let Some(chk) = case.check {
        for e in events.iter().filter(|e| compare(e, &want_event).is_ok()) {
            chk(e).map_err(|why| format!("{loads}: {why}"))?;
        }
    }
    let hits = events.iter().filter(|e| compare(e, &want_event).is_ok()).count();
    match case.count {
        // The helper's burst is 20 identical opens: the rest are counted in the kernel.
        Some(n) if hits == n && limited == 20 - n as u64 => {
            return Ok(format!("{loads}, {hits} event(s) of the burst of 20, {limited} rate-limited"))
        }
        Some(n) if hits == n => return Err(format!("{loads}: {limited} counted as rate-limited, want {}", 20 - n)),
        Some(n) => return Err(format!("{loads}: {hits} matching events, want exactly {n}")),
        None if hits > 0 => return Ok(loads),
        None => {}
    }
    let why = events.first().map(|e| compare(e, &want_event).unwrap_err()).unwrap_or_else(|| "no event".into());
    let seen: Vec<String> = events.iter().map(|e| e["args"].to_string()).collect();
    eprintln!("corpus: {}: the trigger printed {out:?}; events' args: {seen:?}", case.file);
    Err(format!("{loads}: {} events of pid {pid}; {why}; want {want_event}", events.len()))
}
