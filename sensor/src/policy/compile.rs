//! From a validated TracingPolicy to what the kernel runs: which hook point serves each
//! `kprobes:`/`tracepoints:`/`lsmhooks:` entry on this kernel, where each argument comes
//! from, and the selectors as `HookConfig` + string entries for the `STRINGS` LPM trie.
use std::path::{Path, PathBuf};

use nightjar_common::{
    action, argsrc, ns, op, plimits, ArgCond, ArgSpec, BinSet, HookConfig, NsCond, Selector, StrData,
};
use nightjar_event::config::ConfigError;
use serde::Serialize;

use super::{is_string_type, parse_int, ArgDecl, Loaded, SelectorSpec};

/// How a hook point is served here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Attach {
    /// A tracepoint (category, name), the program that serves it and its `HOOK_LISTS` key.
    Tracepoint { category: String, name: String, program: &'static str, key: u32 },
    /// The exec path (sched:sched_process_exec, after the new image is in place).
    Exec,
    /// fentry on a kernel function, with its `HOOK_LISTS` key.
    Fentry { function: String, key: u32 },
    /// kprobe on a kernel function.
    Kprobe { function: String, key: u32 },
    /// BPF-LSM program on an LSM hook (`file_open`, `bprm_check_security`).
    Lsm { hook: String, key: u32 },
}

impl Attach {
    /// The kind of kernel hook: `tracepoint`, `fentry`, `kprobe` or `lsm`.
    pub fn backend(&self) -> &'static str {
        match self {
            Attach::Tracepoint { .. } | Attach::Exec => "tracepoint",
            Attach::Fentry { .. } => "fentry",
            Attach::Kprobe { .. } => "kprobe",
            Attach::Lsm { .. } => "lsm",
        }
    }

    /// The hook point: `syscalls/sys_exit_openat`, `security_file_open`, `file_open`.
    pub fn point(&self) -> String {
        match self {
            Attach::Tracepoint { category, name, .. } => format!("{category}/{name}"),
            Attach::Exec => "sched/sched_process_exec".to_owned(),
            Attach::Fentry { function, .. } | Attach::Kprobe { function, .. } => function.clone(),
            Attach::Lsm { hook, .. } => hook.clone(),
        }
    }

    /// Its `HOOK_LISTS` key.
    pub fn key(&self) -> u32 {
        match self {
            Attach::Exec => nightjar_common::EXEC_HOOKS_KEY,
            Attach::Tracepoint { key, .. }
            | Attach::Fentry { key, .. }
            | Attach::Kprobe { key, .. }
            | Attach::Lsm { key, .. } => *key,
        }
    }
}

include!(concat!(env!("OUT_DIR"), "/syscalls.rs"));

/// The x86_64 number of a syscall.
pub fn syscall_nr(name: &str) -> Option<u32> {
    SYSCALLS.iter().find(|(n, _)| *n == name).map(|(_, nr)| *nr)
}

/// How the engine finds the hooks of a tracepoint: syscall records lose their common
/// header to the kernel, so they are keyed by direction and syscall number.
pub fn attach_for(category: &str, name: &str, id: u32) -> Option<Attach> {
    let (program, key) = if category == "syscalls" {
        if let Some(sc) = name.strip_prefix("sys_enter_") {
            ("policy_sys_enter", nightjar_common::SYSCALL_ENTER | syscall_nr(sc)?)
        } else if let Some(sc) = name.strip_prefix("sys_exit_") {
            ("policy_sys_exit", nightjar_common::SYSCALL_EXIT | syscall_nr(sc)?)
        } else {
            return None;
        }
    } else {
        ("policy_tp", id)
    };
    Some(Attach::Tracepoint { category: category.to_owned(), name: name.to_owned(), program, key })
}

/// What kind of event a hook produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum HookKind {
    Kprobe,
    Tracepoint,
    Lsm,
}

/// One declared argument as reported in events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgMeta {
    pub index: u32,
    pub ty: String,
    pub label: Option<String>,
}

/// A hook ready to load, minus the ids the engine allocates.
#[derive(Debug, Clone)]
pub struct HookPlan {
    /// The kind of kernel hook that serves it (`tracepoint`, `fentry`, `kprobe`, `lsm`).
    pub backend: String,
    pub kind: HookKind,
    /// `function_name` of events (the policy's call/hook; `subsystem/event` for tracepoints).
    pub function: String,
    /// Human description of how the hook is served, for `status` and the log.
    pub served_by: String,
    pub attach: Vec<Attach>,
    pub args: Vec<ArgMeta>,
    pub conf: HookConfig,
    /// String conditions: (selector, matchArgs index or usize::MAX for matchBinaries, op, values).
    pub strings: Vec<StrCond>,
    pub message: Option<String>,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct StrCond {
    pub selector: usize,
    /// Index in the selector's `args`, or None for its matchBinaries.
    pub arg_cond: Option<usize>,
    /// Positive operator (EQUAL, PREFIX, POSTFIX); negation lives in the condition.
    pub op: u8,
    pub values: Vec<String>,
}

/// Where the kernel's tracepoints are, what host namespaces are (for `host_ns`), and which
/// hook kinds beyond tracepoints this kernel lets the sensor use.
pub struct Env {
    pub tracefs: PathBuf,
    pub host_ns: [u32; ns::COUNT],
    pub kernel: KernelHooks,
}

/// Hook kinds the sensor found usable at start (see `Sensor::load`).
#[derive(Debug, Clone, Default)]
pub struct KernelHooks {
    /// fentry programs load (BTF, CONFIG_FUNCTION_TRACER, no lockdown).
    pub fentry: bool,
    /// kprobes exist (CONFIG_KPROBES, CONFIG_KPROBE_EVENTS).
    pub kprobes: bool,
    /// BPF-LSM programs load and run (CONFIG_BPF_LSM and `bpf` in the active LSMs).
    pub lsm: bool,
    /// Why BPF-LSM cannot be used, for errors.
    pub lsm_unavailable: String,
    /// Kernel symbols of syscalls (`__x64_sys_*`) from /proc/kallsyms, when fentry or
    /// kprobes are usable.
    pub syscall_symbols: std::collections::HashSet<String>,
}

impl KernelHooks {
    /// Only tracepoints (what `policy validate` assumes without a running sensor).
    pub fn tracepoints_only(why: &str) -> Self {
        KernelHooks { lsm_unavailable: why.to_owned(), ..Default::default() }
    }

    /// Reads the syscall symbols when a kernel-function backend is usable.
    pub fn with_symbols(mut self) -> Self {
        if self.fentry || self.kprobes {
            if let Ok(text) = std::fs::read_to_string("/proc/kallsyms") {
                self.syscall_symbols = text
                    .lines()
                    .filter_map(|l| l.split_whitespace().nth(2))
                    .filter(|s| s.starts_with(SYSCALL_SYMBOL_PREFIX))
                    .map(str::to_owned)
                    .collect();
            }
        }
        self
    }

    /// The backend for a kernel function: fentry when it loads here, else kprobe.
    fn kfunc(&self) -> Option<&'static str> {
        if self.fentry {
            Some("fentry")
        } else if self.kprobes {
            Some("kprobe")
        } else {
            None
        }
    }
}

/// This architecture's syscall symbol prefix.
pub const SYSCALL_SYMBOL_PREFIX: &str = "__x64_sys_";

/// One field of a tracepoint record (from its tracefs format file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub decl: String,
    pub name: String,
    pub offset: u16,
    pub size: u8,
    pub signed: bool,
}

/// Fields of a tracepoint after the common ones.
pub fn tracepoint_fields(tracefs: &Path, category: &str, name: &str) -> Option<(u32, Vec<Field>)> {
    let dir = tracefs.join("events").join(category).join(name);
    let id = std::fs::read_to_string(dir.join("id")).ok()?.trim().parse().ok()?;
    let text = std::fs::read_to_string(dir.join("format")).ok()?;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("field:") else { continue };
        let mut parts = rest.split(';').map(str::trim);
        let decl = parts.next()?.to_owned();
        let mut offset = None;
        let mut size = None;
        let mut signed = false;
        for p in parts {
            if let Some(v) = p.strip_prefix("offset:") {
                offset = v.parse().ok();
            } else if let Some(v) = p.strip_prefix("size:") {
                size = v.parse().ok();
            } else if let Some(v) = p.strip_prefix("signed:") {
                signed = v == "1";
            }
        }
        let ident = decl.rsplit(|c: char| c.is_whitespace() || c == '*').next()?.split('[').next()?.to_owned();
        if ident.starts_with("common_") {
            continue;
        }
        out.push(Field { decl, name: ident, offset: offset?, size: size?, signed });
    }
    Some((id, out))
}

/// The syscall a kprobe call names (`__x64_sys_setns`, `sys_setns`, `ksys_unshare` → …).
fn syscall_name(call: &str) -> Option<&str> {
    for p in ["__x64_sys_", "__ia32_sys_", "__arm64_sys_", "__se_sys_", "__do_sys_", "ksys_", "sys_"] {
        if let Some(n) = call.strip_prefix(p) {
            return Some(n);
        }
    }
    None
}

const FILE_OPEN_TPS: [&str; 4] = ["sys_exit_openat", "sys_exit_open", "sys_exit_openat2", "sys_exit_creat"];
const CRED_SYSCALLS: [&str; 8] =
    ["setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setfsuid", "setfsgid"];

enum Backend {
    /// File opens, with the opened file's path (security_file_open, fd_install, LSM file_open).
    FileOpen,
    Exec,
    Creds,
    Syscall(String),
    Tracepoint(String, String),
    /// `security_file_open(struct file *)` itself, by fentry or kprobe.
    KFileOpen(&'static str),
    /// `security_bprm_check(struct linux_binprm *)` itself, by fentry or kprobe.
    KBprmCheck(&'static str),
    /// A syscall by its kernel symbol (`__x64_sys_<name>`), by fentry or kprobe.
    KSyscall(&'static str, String),
    /// BPF-LSM `file_open(struct file *)`.
    LsmFileOpen,
    /// BPF-LSM `bprm_check_security(struct linux_binprm *)`.
    LsmBprmCheck,
}

impl Backend {
    fn is_lsm(&self) -> bool {
        matches!(self, Backend::LsmFileOpen | Backend::LsmBprmCheck)
    }
}

/// Width and signedness of an integer argument type.
fn int_width(ty: &str) -> (u8, u8) {
    match ty {
        "int" | "int32" | "fd" => (4, 1),
        "uint32" => (4, 0),
        "int16" => (2, 1),
        "uint16" => (2, 0),
        "int8" => (1, 1),
        "uint8" => (1, 0),
        "int64" | "long" => (8, 1),
        _ => (8, 0),
    }
}

fn int_spec(f: &Field) -> ArgSpec {
    ArgSpec { src: argsrc::INT, size: f.size, signed: u8::from(f.signed), slot: 0, offset: f.offset, _pad2: 0 }
}

impl Env {
    fn tp(&self, l: &Loaded, at: &str, category: &str, name: &str) -> Result<(u32, Vec<Field>), ConfigError> {
        tracepoint_fields(&self.tracefs, category, name).ok_or_else(|| {
            l.error(
                at,
                format!(
                    "tracepoint {category}:{name} does not exist on this kernel (no {}/events/{category}/{name})",
                    self.tracefs.display()
                ),
            )
        })
    }
}

/// Plans one policy's hooks on this kernel. Errors name the hook and what is missing.
pub fn plan(l: &Loaded, env: &Env) -> Result<Vec<HookPlan>, ConfigError> {
    let spec = &l.policy.spec;
    let mut out = Vec::new();
    for (i, k) in spec.kprobes.iter().enumerate() {
        let at = format!("spec.kprobes[{i}].call");
        let call = k.call.as_str();
        let native = env.kernel.kfunc();
        let backend = match (call, native) {
            ("security_file_open", Some(how)) => Backend::KFileOpen(how),
            ("security_bprm_check", Some(how)) => Backend::KBprmCheck(how),
            _ => match call {
            "security_file_open" | "fd_install" | "do_sys_open" | "do_sys_openat2" | "vfs_open" | "do_filp_open" => {
                Backend::FileOpen
            }
            "security_bprm_check" | "security_bprm_creds_for_exec" | "bprm_check_security" | "security_bprm_creds_from_file" => Backend::Exec,
            "commit_creds" | "security_task_fix_setuid" | "__sys_setuid" | "__sys_setresuid" => Backend::Creds,
            _ => match syscall_name(call) {
                Some(n) if native.is_some() && env.kernel.syscall_symbols.contains(&format!("{SYSCALL_SYMBOL_PREFIX}{n}")) => {
                    Backend::KSyscall(native.unwrap_or("kprobe"), n.to_owned())
                }
                Some(n) if tracepoint_fields(&env.tracefs, "syscalls", &format!("sys_enter_{n}")).is_some() => {
                    Backend::Syscall(n.to_owned())
                }
                _ => {
                    return Err(l.error(
                        &at,
                        format!(
                            "kprobe {call:?} cannot be served on this kernel: it has no kprobes (CONFIG_KPROBES) and no tracepoint equivalent is known; \
                             served by tracepoints: security_file_open, fd_install, security_bprm_check, security_bprm_creds_for_exec, commit_creds, and any sys_* syscall"
                        ),
                    ))
                }
            },
            },
        };
        out.push(plan_hook(
            l,
            env,
            HookKind::Kprobe,
            call,
            &format!("spec.kprobes[{i}]"),
            backend,
            &k.args,
            &k.selectors,
            k.message.clone(),
            k.tags.clone(),
        )?);
    }
    for (i, t) in spec.tracepoints.iter().enumerate() {
        let base = format!("spec.tracepoints[{i}]");
        let backend = Backend::Tracepoint(t.subsystem.clone(), t.event.clone());
        let function = format!("{}/{}", t.subsystem, t.event);
        out.push(plan_hook(
            l,
            env,
            HookKind::Tracepoint,
            &function,
            &base,
            backend,
            &t.args,
            &t.selectors,
            t.message.clone(),
            t.tags.clone(),
        )?);
    }
    for (i, h) in spec.lsmhooks.iter().enumerate() {
        let base = format!("spec.lsmhooks[{i}]");
        let lsm = env.kernel.lsm;
        let backend = match h.hook.as_str() {
            "file_open" if lsm => Backend::LsmFileOpen,
            "bprm_check_security" if lsm => Backend::LsmBprmCheck,
            other if lsm => {
                return Err(l.error(
                    &format!("{base}.hook"),
                    format!("LSM hook {other:?} is not supported yet (BPF-LSM programs: file_open, bprm_check_security)"),
                ))
            }
            "file_open" => Backend::FileOpen,
            "bprm_check_security" | "bprm_creds_for_exec" | "bprm_creds_from_file" => Backend::Exec,
            other => {
                return Err(l.error(
                    &format!("{base}.hook"),
                    format!("LSM hook {other:?} cannot be served on this kernel: BPF-LSM is not usable ({}) and it has no tracepoint equivalent (served: file_open, bprm_check_security, bprm_creds_for_exec)", env.kernel.lsm_unavailable),
                ))
            }
        };
        out.push(plan_hook(
            l,
            env,
            HookKind::Lsm,
            &h.hook,
            &base,
            backend,
            &h.args,
            &h.selectors,
            h.message.clone(),
            h.tags.clone(),
        )?);
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn plan_hook(
    l: &Loaded,
    env: &Env,
    kind: HookKind,
    function: &str,
    base: &str,
    backend: Backend,
    args: &[ArgDecl],
    sels: &[SelectorSpec],
    message: Option<String>,
    tags: Vec<String>,
) -> Result<HookPlan, ConfigError> {
    let mut conf = HookConfig { nargs: args.len() as u8, active: 1, ..Default::default() };
    let mut attach = Vec::new();
    let desc;
    let mut slot = 0u8;
    let mut next_slot = |spec: &mut ArgSpec| {
        spec.slot = slot;
        slot += 1;
    };
    // Override stops the act before it happens: only a BPF-LSM program can return an error.
    for (s, sel) in sels.iter().enumerate() {
        for (a, act) in sel.match_actions.iter().enumerate() {
            if act.action != "Override" || backend.is_lsm() {
                continue;
            }
            let at = format!("{base}.selectors[{s}].matchActions[{a}].action");
            let why = if kind == HookKind::Lsm {
                format!(
                    "Override on LSM hook {function}: this kernel cannot run BPF-LSM programs ({}), and the tracepoint that would serve the hook fires after the act, so it cannot be prevented; use Sigkill, or a kernel with CONFIG_BPF_LSM=y and bpf in its lsm= list",
                    env.kernel.lsm_unavailable
                )
            } else {
                format!("Override on {function}: nightjar overrides only from BPF-LSM programs; use an lsmhooks: entry (file_open, bprm_check_security), or Sigkill")
            };
            return Err(l.error(&at, why));
        }
    }
    match &backend {
        Backend::KFileOpen(_) | Backend::KBprmCheck(_) | Backend::LsmFileOpen | Backend::LsmBprmCheck => {
            let how = match &backend {
                Backend::KFileOpen(h) | Backend::KBprmCheck(h) => *h,
                _ => "lsm",
            };
            let file_open = matches!(backend, Backend::KFileOpen(_) | Backend::LsmFileOpen);
            let (src, what, types): (u8, &str, &[&str]) = if file_open {
                (argsrc::FILE_PTR, "the file being opened", &["file", "path", "string"])
            } else {
                (argsrc::BPRM_FILE, "the binary about to run (linux_binprm)", &["linux_binprm", "file", "string"])
            };
            for (j, a) in args.iter().enumerate() {
                if a.index != 0 || !types.contains(&a.ty.as_str()) {
                    return Err(l.error(
                        &format!("{base}.args[{j}]"),
                        format!("only argument 0 ({what}: one of {}) is available for {function}", types.join(", ")),
                    ));
                }
                conf.args[j].src = src;
                conf.args[j].offset = 0;
                next_slot(&mut conf.args[j]);
            }
            let (a, d) = match (&backend, how) {
                (Backend::LsmFileOpen, _) => (
                    Attach::Lsm { hook: "file_open".into(), key: nightjar_common::LSM_FILE_OPEN_KEY },
                    "BPF-LSM file_open (the file's path)",
                ),
                (Backend::LsmBprmCheck, _) => (
                    Attach::Lsm { hook: "bprm_check_security".into(), key: nightjar_common::LSM_BPRM_CHECK_KEY },
                    "BPF-LSM bprm_check_security (the binary's path, before it runs)",
                ),
                (_, how) => {
                    let (f, key) = if file_open {
                        ("security_file_open", nightjar_common::KFUNC_FILE_OPEN_KEY)
                    } else {
                        ("security_bprm_check", nightjar_common::KFUNC_BPRM_CHECK_KEY)
                    };
                    let a = if how == "fentry" {
                        Attach::Fentry { function: f.into(), key }
                    } else {
                        Attach::Kprobe { function: f.into(), key }
                    };
                    (a, if file_open { "the file's path" } else { "the binary's path, before it runs" })
                }
            };
            desc = match &a {
                Attach::Lsm { .. } => d.to_owned(),
                _ => format!("{} {} ({d})", a.backend(), a.point()),
            };
            attach.push(a);
        }
        Backend::KSyscall(how, name) => {
            let symbol = format!("{SYSCALL_SYMBOL_PREFIX}{name}");
            let Some(nr) = syscall_nr(name) else {
                return Err(
                    l.error(base, format!("{symbol}: unknown syscall (not in this architecture's syscall table)"))
                );
            };
            // The argument types are checked against the syscall's tracepoint format when
            // the kernel has it, so a policy means the same on every backend.
            let fields: Option<Vec<Field>> = tracepoint_fields(&env.tracefs, "syscalls", &format!("sys_enter_{name}"))
                .map(|(_, f)| f.into_iter().filter(|f| f.name != "__syscall_nr").collect());
            for (j, a) in args.iter().enumerate() {
                if a.index >= 6 {
                    return Err(l.error(
                        &format!("{base}.args[{j}].index"),
                        format!("a syscall has at most 6 arguments; index {} does not exist", a.index),
                    ));
                }
                let field = fields.as_ref().and_then(|f| f.get(a.index as usize));
                if let (Some(f), None) = (&fields, field) {
                    return Err(l.error(
                        &format!("{base}.args[{j}].index"),
                        format!("{name} has {} arguments; index {} does not exist", f.len(), a.index),
                    ));
                }
                let spec = &mut conf.args[j];
                spec.offset = 8 * a.index as u16;
                if is_string_type(&a.ty) {
                    let decl = field.map(|f| f.decl.as_str()).unwrap_or("");
                    if a.ty == "file" || a.ty == "path" {
                        if decl.contains("char") {
                            return Err(
                                l.error(&format!("{base}.args[{j}].type"), format!("{decl} is not a file descriptor"))
                            );
                        }
                        spec.src = argsrc::FD_PATH;
                    } else if field.is_none() || (decl.contains('*') && decl.contains("char")) {
                        spec.src = argsrc::USER_STR;
                    } else {
                        return Err(l.error(&format!("{base}.args[{j}].type"), format!("{decl} is not a string")));
                    }
                    next_slot(spec);
                } else {
                    let (size, signed) = int_width(&a.ty);
                    spec.src = argsrc::INT;
                    spec.size = size;
                    spec.signed = signed;
                }
            }
            let key = nightjar_common::SYSCALL_KFUNC | nr;
            let a = if *how == "fentry" {
                Attach::Fentry { function: symbol, key }
            } else {
                Attach::Kprobe { function: symbol, key }
            };
            desc = format!("{} {}", a.backend(), a.point());
            attach.push(a);
        }
        Backend::FileOpen => {
            let mut ret_off = None;
            for tp in FILE_OPEN_TPS {
                if let Some((id, fields)) = tracepoint_fields(&env.tracefs, "syscalls", tp) {
                    ret_off = fields.iter().find(|f| f.name == "ret").map(|f| f.offset);
                    attach.extend(attach_for("syscalls", tp, id));
                }
            }
            let Some(ret) = ret_off else {
                return Err(
                    l.error(base, "no syscalls:sys_exit_open* tracepoints on this kernel (CONFIG_FTRACE_SYSCALLS)")
                );
            };
            desc = format!("tracepoints syscalls:{{{}}} (the opened file's path)", FILE_OPEN_TPS.join(","));
            for (j, a) in args.iter().enumerate() {
                let spec = &mut conf.args[j];
                spec.offset = ret;
                let file_index = if function == "fd_install" { 1 } else { 0 };
                if a.index == file_index && ["file", "path", "string", "filename"].contains(&a.ty.as_str()) {
                    spec.src = argsrc::RET_FD_PATH;
                    next_slot(spec);
                } else if function == "fd_install" && a.index == 0 && !is_string_type(&a.ty) {
                    spec.src = argsrc::INT;
                    spec.size = 8;
                    spec.signed = 1;
                } else {
                    return Err(l.error(&format!("{base}.args[{j}]"), format!("argument {} ({}) of {function} is not available from the open tracepoints (the file is argument {file_index})", a.index, a.ty)));
                }
            }
        }
        Backend::Exec => {
            attach.push(Attach::Exec);
            desc = "tracepoint sched:sched_process_exec (the new binary's path)".to_owned();
            for (j, a) in args.iter().enumerate() {
                if a.index != 0 || !is_string_type(&a.ty) {
                    return Err(l.error(&format!("{base}.args[{j}]"), format!("only argument 0 (the binary: linux_binprm, file or string) is available for {function} on exec")));
                }
                conf.args[j].src = argsrc::EXEC_PATH;
                next_slot(&mut conf.args[j]);
            }
        }
        Backend::Creds => {
            if !args.is_empty() {
                return Err(l.error(&format!("{base}.args"), format!("{function} is served by the setuid-family syscall tracepoints, which carry no cred argument: declare no args (use a sys_setuid kprobe to match on uids)")));
            }
            for sc in CRED_SYSCALLS {
                let tp = format!("sys_enter_{sc}");
                if let Some((id, _)) = tracepoint_fields(&env.tracefs, "syscalls", &tp) {
                    attach.extend(attach_for("syscalls", &tp, id));
                }
            }
            desc = format!("tracepoints syscalls:sys_enter_{{{}}}", CRED_SYSCALLS.join(","));
        }
        Backend::Syscall(name) | Backend::Tracepoint(_, name) => {
            let (category, tp) = match &backend {
                Backend::Syscall(n) => ("syscalls".to_owned(), format!("sys_enter_{n}")),
                Backend::Tracepoint(c, _) => (c.clone(), name.clone()),
                _ => unreachable!("matched above"),
            };
            let (id, fields) = env.tp(l, base, &category, &tp)?;
            // Syscall records start with __syscall_nr; a syscall's argument i is the field after it.
            let fields: Vec<Field> = fields.into_iter().filter(|f| f.name != "__syscall_nr").collect();
            for (j, a) in args.iter().enumerate() {
                let Some(f) = fields.get(a.index as usize) else {
                    return Err(l.error(
                        &format!("{base}.args[{j}].index"),
                        format!("{category}:{tp} has {} arguments; index {} does not exist", fields.len(), a.index),
                    ));
                };
                if f.offset as usize + 8 > plimits::RAW {
                    return Err(l.error(
                        &format!("{base}.args[{j}]"),
                        format!(
                            "field {} is at offset {}, beyond the {} bytes the engine reads",
                            f.name,
                            f.offset,
                            plimits::RAW
                        ),
                    ));
                }
                let spec = &mut conf.args[j];
                if is_string_type(&a.ty) {
                    let is_ptr = f.decl.contains('*') && f.size == 8;
                    if a.ty == "file" || a.ty == "path" {
                        if f.decl.contains("char") || !(f.size == 4 || f.size == 8) {
                            return Err(l.error(
                                &format!("{base}.args[{j}].type"),
                                format!("{} ({}) is not a file descriptor", f.name, f.decl),
                            ));
                        }
                        spec.src = argsrc::FD_PATH;
                    } else if is_ptr && f.decl.contains("char") {
                        spec.src = argsrc::USER_STR;
                    } else {
                        return Err(l.error(
                            &format!("{base}.args[{j}].type"),
                            format!("{} ({}) is not a string", f.name, f.decl),
                        ));
                    }
                    spec.offset = f.offset;
                    next_slot(spec);
                } else {
                    *spec = int_spec(f);
                    let (size, signed) = int_width(&a.ty);
                    spec.size = size.min(f.size);
                    spec.signed = signed;
                }
            }
            desc = format!("tracepoint {category}:{tp}");
            let Some(a) = attach_for(&category, &tp, id) else {
                return Err(l.error(
                    base,
                    format!("{category}:{tp}: unknown syscall (not in this architecture's syscall table)"),
                ));
            };
            attach.push(a);
        }
    }

    // Selectors.
    let mut strings = Vec::new();
    conf.nsel = sels.len() as u8;
    for (s, sel) in sels.iter().enumerate() {
        let at = format!("{base}.selectors[{s}]");
        let mut out = Selector { bin_bit: 0xff, action: action::POST, ..Default::default() };
        out.nargs = sel.match_args.len() as u8;
        for (c, m) in sel.match_args.iter().enumerate() {
            let Some(j) = args.iter().position(|a| a.index == m.index) else { continue };
            let mut cond = ArgCond { arg: j as u8, ..Default::default() };
            if is_string_type(&args[j].ty) {
                let (pos, neg) = match m.operator.as_str() {
                    "Equal" => (op::EQUAL, op::EQUAL),
                    "NotEqual" => (op::EQUAL, op::NOT_EQUAL),
                    "Prefix" => (op::PREFIX, op::PREFIX),
                    "NotPrefix" => (op::PREFIX, op::NOT_PREFIX),
                    "Postfix" => (op::POSTFIX, op::POSTFIX),
                    _ => (op::POSTFIX, op::NOT_POSTFIX),
                };
                cond.op = neg;
                strings.push(StrCond { selector: s, arg_cond: Some(c), op: pos, values: m.values.clone() });
            } else {
                cond.op = match m.operator.as_str() {
                    "Equal" | "In" => op::EQUAL,
                    "NotEqual" | "NotIn" => op::NOT_EQUAL,
                    "GT" => op::GT,
                    "LT" => op::LT,
                    _ => op::MASK,
                };
                cond.nvals = m.values.len() as u8;
                for (v, val) in m.values.iter().enumerate() {
                    cond.vals[v] = parse_int(val).unwrap_or_default();
                }
            }
            out.args[c] = cond;
        }
        if let Some(b) = sel.match_binaries.first() {
            let (pos, negate) = match b.operator.as_str() {
                "In" => (op::EQUAL, false),
                "NotIn" => (op::EQUAL, true),
                "Prefix" => (op::PREFIX, false),
                "NotPrefix" => (op::PREFIX, true),
                "Postfix" => (op::POSTFIX, false),
                _ => (op::POSTFIX, true),
            };
            out.bin_negate = u8::from(negate);
            strings.push(StrCond { selector: s, arg_cond: None, op: pos, values: b.values.clone() });
        }
        out.nns = sel.match_namespaces.len() as u8;
        for (k, n) in sel.match_namespaces.iter().enumerate() {
            let slot = match n.namespace.as_str() {
                "Uts" => ns::UTS,
                "Ipc" => ns::IPC,
                "Mnt" => ns::MNT,
                "Pid" => ns::PID,
                "PidForChildren" => ns::PID_FOR_CHILDREN,
                "Net" => ns::NET,
                "Time" => ns::TIME,
                "Cgroup" => ns::CGROUP,
                _ => ns::USER,
            };
            let mut c = NsCond {
                slot: slot as u8,
                op: if n.operator == "In" { op::IN } else { op::NOT_IN },
                nvals: n.values.len() as u8,
                ..Default::default()
            };
            for (v, val) in n.values.iter().enumerate() {
                c.vals[v] = if val == "host_ns" {
                    if env.host_ns[slot] == 0 {
                        return Err(l.error(
                            &format!("{at}.matchNamespaces[{k}].values[{v}]"),
                            format!("the host's {} namespace could not be read", n.namespace),
                        ));
                    }
                    env.host_ns[slot]
                } else {
                    val.parse().unwrap_or_default()
                };
            }
            out.ns[k] = c;
        }
        if let Some(p) = sel.match_pids.first() {
            out.pid_op = if p.operator == "In" { op::IN } else { op::NOT_IN };
            out.pid_ns = u8::from(p.is_namespace_pid);
            out.pid_nvals = p.values.len() as u8;
            for (v, val) in p.values.iter().enumerate() {
                out.pid_vals[v] = *val;
            }
        }
        if let Some(c) = sel.match_capabilities.first() {
            out.cap_op = if c.operator == "In" { op::IN } else { op::NOT_IN };
            out.cap_set = match c.ty.as_str() {
                "Permitted" => 1,
                "Inheritable" => 2,
                _ => 0,
            };
            for v in &c.values {
                if let Some(b) = crate::hooks::process::cap_bit(v) {
                    out.cap_mask |= 1u64 << b;
                }
            }
        }
        let mut post = true;
        let mut kill = None;
        for a in &sel.match_actions {
            match a.action.as_str() {
                "NoPost" => post = false,
                "Sigkill" => kill = Some((action::SIGKILL, 9u8)),
                "Signal" => kill = Some((action::SIGNAL, a.arg_sig.unwrap_or(9) as u8)),
                "Override" => {
                    kill = Some((action::OVERRIDE, 0));
                    out.error = a.arg_error.unwrap_or(-1);
                }
                _ => {}
            }
        }
        // A kill is always reported (the event says what was done).
        (out.action, out.signal) = match (kill, post) {
            (Some((a, sig)), _) => (a, sig),
            (None, true) => (action::POST, 0),
            (None, false) => (action::NO_POST, 0),
        };
        conf.sels[s] = out;
    }
    let backend = attach.first().map(Attach::backend).unwrap_or("tracepoint").to_owned();
    Ok(HookPlan {
        backend,
        kind,
        function: function.to_owned(),
        served_by: desc,
        attach,
        args: args.iter().map(|a| ArgMeta { index: a.index, ty: a.ty.clone(), label: a.label.clone() }).collect(),
        conf,
        strings,
        message,
        tags,
    })
}

/// LPM entries (key data, prefix length in bits) for `values` under condition `cond`.
pub fn string_entries(cond: u32, opr: u8, values: &[String]) -> Vec<(StrData, u32)> {
    values
        .iter()
        .map(|v| {
            let mut d = StrData { cond: cond.to_ne_bytes(), data: [0; plimits::STR] };
            let bytes: Vec<u8> = match opr {
                op::POSTFIX => v.bytes().rev().collect(),
                op::EQUAL => v.bytes().chain(std::iter::once(0)).collect(),
                _ => v.bytes().collect(),
            };
            let n = bytes.len().min(plimits::STR);
            d.data[..n].copy_from_slice(&bytes[..n]);
            (d, 32 + 8 * n as u32)
        })
        .collect()
}

/// A matchBinaries set for bit `bit`.
pub fn bin_set(cond: u32, opr: u8) -> BinSet {
    BinSet { op: opr, _pad: [0; 3], cond }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_numbers() {
        assert_eq!(syscall_nr("openat"), Some(257));
        assert_eq!(syscall_nr("setns"), Some(308));
        assert_eq!(syscall_nr("nope"), None);
    }

    #[test]
    fn syscall_names() {
        assert_eq!(syscall_name("__x64_sys_setns"), Some("setns"));
        assert_eq!(syscall_name("sys_ptrace"), Some("ptrace"));
        assert_eq!(syscall_name("security_file_open"), None);
    }

    #[test]
    fn string_entries_shapes() {
        let e = string_entries(7, op::EQUAL, &["/a".into()]);
        assert_eq!(e[0].1, 32 + 8 * 3);
        assert_eq!(&e[0].0.data[..3], b"/a\0");
        let e = string_entries(7, op::POSTFIX, &["xmrig".into()]);
        assert_eq!(&e[0].0.data[..5], b"girmx");
    }

    fn env(fentry: bool, kprobes: bool, lsm: bool) -> Env {
        Env {
            // No tracefs: only the kernel-function and LSM backends can serve.
            tracefs: "/nonexistent".into(),
            host_ns: [1; ns::COUNT],
            kernel: KernelHooks {
                fentry,
                kprobes,
                lsm,
                lsm_unavailable: "no BPF-LSM in this test".into(),
                syscall_symbols: ["__x64_sys_setns".to_owned()].into(),
            },
        }
    }

    fn seed(name: &str) -> Loaded {
        let p =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/policies").join(format!("{name}.yaml"));
        crate::policy::load(&p).unwrap()
    }

    const OVERRIDE_EXEC: &str = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: o\nspec:\n  lsmhooks:\n  - hook: bprm_check_security\n    args:\n    - index: 0\n      type: linux_binprm\n    selectors:\n    - matchArgs:\n      - index: 0\n        operator: Equal\n        values: [\"/tmp/x/xmrig\"]\n      matchActions:\n      - action: Override\n        argError: -1\n";

    #[test]
    fn kernel_functions_prefer_fentry_then_kprobes() {
        let l = seed("monitor-sensitive-files");
        let p = &plan(&l, &env(true, true, false)).unwrap()[0];
        assert_eq!(p.backend, "fentry");
        assert_eq!(
            p.attach,
            [Attach::Fentry { function: "security_file_open".into(), key: nightjar_common::KFUNC_FILE_OPEN_KEY }]
        );
        assert_eq!(p.conf.args[0].src, argsrc::FILE_PTR);
        let p = &plan(&l, &env(false, true, false)).unwrap()[0];
        assert_eq!(p.backend, "kprobe");
        assert_eq!(p.attach[0].point(), "security_file_open");

        let p = &plan(&seed("block-cryptominers"), &env(true, true, false)).unwrap()[0];
        assert_eq!((p.backend.as_str(), p.attach[0].point().as_str()), ("fentry", "security_bprm_check"));
        assert_eq!(p.conf.args[0].src, argsrc::BPRM_FILE);
        assert_eq!(p.conf.sels[0].action, action::SIGKILL);

        // Syscalls by their kernel symbol: arguments are the user registers, in order.
        let p = &plan(&seed("detect-container-escape"), &env(true, true, false)).unwrap()[0];
        assert_eq!(
            p.attach,
            [Attach::Fentry {
                function: "__x64_sys_setns".into(),
                key: nightjar_common::SYSCALL_KFUNC | syscall_nr("setns").unwrap()
            }]
        );
        assert_eq!((p.conf.args[0].src, p.conf.args[0].offset, p.conf.args[0].size), (argsrc::INT, 0, 4));
        assert_eq!((p.conf.args[1].src, p.conf.args[1].offset, p.conf.args[1].signed), (argsrc::INT, 8, 1));
    }

    #[test]
    fn override_needs_bpf_lsm_and_says_why() {
        let l = crate::policy::parse("o.yaml", OVERRIDE_EXEC).unwrap();
        let p = &plan(&l, &env(true, true, true)).unwrap()[0];
        assert_eq!(p.backend, "lsm");
        assert_eq!(
            p.attach,
            [Attach::Lsm { hook: "bprm_check_security".into(), key: nightjar_common::LSM_BPRM_CHECK_KEY }]
        );
        assert_eq!((p.conf.sels[0].action, p.conf.sels[0].error), (action::OVERRIDE, -1));

        let e = plan(&l, &env(true, true, false)).unwrap_err().to_string();
        assert!(e.contains("o.yaml:"), "{e}");
        assert!(e.contains("spec.lsmhooks[0].selectors[0].matchActions[0].action"), "{e}");
        assert!(e.contains("Override on LSM hook bprm_check_security"), "{e}");
        assert!(e.contains("no BPF-LSM in this test"), "{e}");

        let k = OVERRIDE_EXEC
            .replace("lsmhooks:\n  - hook: bprm_check_security", "kprobes:\n  - call: security_bprm_check");
        let l = crate::policy::parse("k.yaml", &k).unwrap();
        let e = plan(&l, &env(true, true, true)).unwrap_err().to_string();
        assert!(e.contains("Override on security_bprm_check") && e.contains("lsmhooks"), "{e}");
    }

    #[test]
    fn this_kernel_has_syscall_tracepoints() {
        let t = crate::probe::probe(true).unwrap().tracefs.unwrap();
        let (id, f) = tracepoint_fields(&t, "syscalls", "sys_enter_setns").unwrap();
        assert!(id > 0);
        let names: Vec<_> = f.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["__syscall_nr", "fd", "flags"]);
    }
}
