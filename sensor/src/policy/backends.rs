//! Which kernel hook serves a policy hook on this kernel, and where each of its arguments
//! comes from there: fentry/kprobe on the function itself, BPF-LSM, or a tracepoint that
//! stands in for it on a tracepoint-only kernel (file opens by the open syscalls' exits,
//! exec by sched_process_exec, syscalls by syscalls:sys_enter_*, `cap_capable` by
//! capability:cap_capable, ...). Each backend is one function returning a [`Served`].
use nightjar_common::{argsrc, plimits, ArgSpec, KFUNC_BPRM_CHECK_KEY, KFUNC_FILE_OPEN_KEY};
use nightjar_event::config::ConfigError;

use super::{
    args::{self, Class},
    compile::{attach_for, syscall_nr, tracepoint_fields, Attach, Env, Field, SYSCALL_SYMBOL_PREFIX},
    spec::{ArgDecl, ArgType, KprobeSpec},
    Loaded,
};

/// How one hook is served: its attach points, a description for `status`, where each
/// declared argument comes from, and whether Override can act there.
#[derive(Debug, Clone)]
pub struct Served {
    pub attach: Vec<Attach>,
    pub desc: String,
    pub args: Vec<ArgSpec>,
    /// Why Override cannot be used on this hook here (None: it can).
    pub override_refused: Option<String>,
    /// Served by a BPF-LSM program (Override returns the error from the hook).
    pub lsm: bool,
}

impl Served {
    pub(crate) fn new(attach: Vec<Attach>, desc: String, args: Vec<ArgSpec>) -> Self {
        Served { attach, desc, args, override_refused: None, lsm: false }
    }
}

/// A kernel function whose tracepoint equivalent takes its arguments from named fields.
struct StandIn {
    call: &'static str,
    category: &'static str,
    event: &'static str,
    /// (kprobe argument index, tracepoint field).
    fields: &'static [(u32, &'static str)],
}

const STAND_INS: [StandIn; 2] = [
    StandIn {
        call: "cap_capable",
        category: "capability",
        event: "cap_capable",
        fields: &[(0, "cred"), (1, "target_ns"), (2, "cap")],
    },
    StandIn {
        call: "security_mmap_file",
        category: "syscalls",
        event: "sys_enter_mmap",
        fields: &[(0, "fd"), (1, "prot"), (2, "flags")],
    },
];

const FILE_OPEN_TPS: [&str; 4] = ["sys_exit_openat", "sys_exit_open", "sys_exit_openat2", "sys_exit_creat"];
const CRED_SYSCALLS: [&str; 8] =
    ["setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setfsuid", "setfsgid"];

/// Numbers string/path/buffer arguments into the kernel's string slots, in order.
struct Slots(u8);

impl Slots {
    fn take(&mut self, spec: &mut ArgSpec) {
        spec.slot = self.0;
        self.0 += 1;
    }
}

fn int_spec(ty: ArgType, offset: u16) -> ArgSpec {
    let (size, signed) = match args::info(ty).class {
        Class::Int { size, signed } => (size, signed),
        _ => (8, false),
    };
    ArgSpec { src: argsrc::INT, size, signed: u8::from(signed), offset, ..Default::default() }
}

/// The syscall a kprobe call names (`__x64_sys_setns`, `sys_setns`, `ksys_unshare` → …).
pub fn syscall_name(call: &str) -> Option<&str> {
    for p in ["__x64_sys_", "__ia32_sys_", "__arm64_sys_", "__se_sys_", "__do_sys_", "ksys_", "sys_"] {
        if let Some(n) = call.strip_prefix(p) {
            return Some(n);
        }
    }
    None
}

/// A `kprobes:` entry.
pub fn kprobe(l: &Loaded, env: &Env, base: &str, k: &KprobeSpec) -> Result<Served, ConfigError> {
    let (call, args) = (k.call.as_str(), k.args.as_slice());
    let native = env.kernel.kfunc();
    if native.is_none() {
        if let Some(served) = super::net::stand_in(l, env, base, k) {
            return served;
        }
    }
    if k.return_ {
        // A return probe: only a kretprobe can see the return value.
        if !env.kernel.kprobes {
            return Err(l.error(
                &format!("{base}.return"),
                format!("return probe on {call:?} needs kprobes, which this kernel does not have (CONFIG_KPROBES)"),
            ));
        }
        return kfunc_generic(l, env, base, k);
    }
    let mut s = match (call, native) {
        ("security_file_open", Some(how)) => kfunc_one_arg(l, base, call, how, true, args)?,
        ("security_bprm_check", Some(how)) => kfunc_one_arg(l, base, call, how, false, args)?,
        ("security_file_open" | "fd_install" | "do_sys_open" | "do_sys_openat2" | "vfs_open" | "do_filp_open", _) => {
            file_open(l, env, base, call, args)?
        }
        (
            "security_bprm_check"
            | "security_bprm_creds_for_exec"
            | "bprm_check_security"
            | "security_bprm_creds_from_file",
            _,
        ) => exec(l, base, call, args)?,
        // On a kernel with kprobes, the function itself (its cred argument included).
        ("commit_creds" | "security_task_fix_setuid" | "__sys_setuid" | "__sys_setresuid", _)
            if !env.kernel.kprobes =>
        {
            creds(l, env, base, call, args)?
        }
        _ => match syscall_name(call) {
            Some(n)
                if native.is_some() && env.kernel.syscall_symbols.contains(&format!("{SYSCALL_SYMBOL_PREFIX}{n}")) =>
            {
                let symbol = format!("{SYSCALL_SYMBOL_PREFIX}{n}");
                let how = match native {
                    Some("fentry") if !env.kernel.fentry_syscalls.contains(&symbol) => "kprobe",
                    other => other.unwrap_or("kprobe"),
                };
                kfunc_syscall(l, env, base, how, n, args)?
            }
            Some(n) if tracepoint_fields(&env.tracefs, "syscalls", &format!("sys_enter_{n}")).is_some() => {
                syscall_tp(l, env, base, n, args)?
            }
            _ => match STAND_INS.iter().find(|s| s.call == call) {
                Some(si) if tracepoint_fields(&env.tracefs, si.category, si.event).is_some() => {
                    stand_in(l, env, base, si, args)?
                }
                _ if env.kernel.kprobes => kfunc_generic(l, env, base, k)?,
                _ => return Err(no_kprobes(l, env, base, call)),
            },
        },
    };
    if s.override_refused.is_none() {
        s.override_refused = Some(format!(
            "Override on {call}: nightjar overrides only from BPF-LSM programs; use an lsmhooks: entry (file_open, bprm_check_security), or Sigkill"
        ));
    }
    Ok(s)
}

/// The error for a kernel function this kernel cannot hook.
pub(crate) fn no_kprobes(l: &Loaded, env: &Env, base: &str, call: &str) -> ConfigError {
    let at = format!("{base}.call");
    if env.kernel.kfunc().is_none() {
        let stand_ins: Vec<&str> = STAND_INS.iter().map(|s| s.call).chain(super::net::stand_in_names()).collect();
        return l.error(
            &at,
            format!(
                "kprobe {call:?} needs kprobes, which this kernel does not have (CONFIG_KPROBES), and no tracepoint stands in for it here; \
                 served by tracepoints: security_file_open, fd_install, security_bprm_check, security_bprm_creds_for_exec, commit_creds, {}, and any sys_* syscall",
                stand_ins.join(", ")
            ),
        );
    }
    l.error(&at, format!("kprobe {call:?} cannot be served on this kernel"))
}

/// Any kernel function by kprobe (or kretprobe for `return: true`): its arguments are its
/// argument registers (a syscall's: the user registers of its `pt_regs`), read as the
/// policy types them; the return value is word 6.
fn kfunc_generic(l: &Loaded, env: &Env, base: &str, k: &KprobeSpec) -> Result<Served, ConfigError> {
    let syscall = k.syscall || syscall_name(&k.call).is_some_and(|_| k.call.starts_with("__x64_sys_"));
    let function = match (k.syscall, syscall_name(&k.call)) {
        (true, Some(n)) => format!("{SYSCALL_SYMBOL_PREFIX}{n}"),
        _ => k.call.clone(),
    };
    if env.kernel.ksym(&function).is_none() {
        return Err(l.error(
            &format!("{base}.call"),
            format!("kernel function {function:?} is not in this kernel's /proc/kallsyms (not built in, or inlined)"),
        ));
    }
    let mut slots = Slots(0);
    let mut out = Vec::new();
    for (j, a) in k.args.iter().enumerate() {
        out.push(kfunc_arg(l, &format!("{base}.args[{j}]"), a, 8 * a.index as u16, syscall, &mut slots)?);
    }
    buf_sizes(l, base, &k.args, &mut out, k.return_, &|i| (i < 6).then_some(8 * i as u16))?;
    if syscall && k.args.iter().any(|a| a.resolve.is_some()) {
        return Err(
            l.unsupported(&format!("{base}.args"), "resolve on a syscall's arguments (they point to user memory)")
        );
    }
    crate::hooks::resolve::args(l, base, &k.args, &mut out, |btf, d| btf.func_param(&function, d.index as usize))?;
    if let Some(ra) = &k.return_arg {
        out.push(kfunc_arg(l, &format!("{base}.returnArg"), ra, 48, false, &mut slots)?);
    }
    let attach = Attach::Kfunc { function: function.clone(), ret: k.return_, syscall, key: 0 };
    let desc = format!("{} {function}", attach.backend());
    let mut s = Served::new(vec![attach], desc, out);
    s.override_refused = Some(match env.kernel.error_injection {
        false => format!("Override on {function} needs bpf_override_return, which this kernel does not have (CONFIG_FUNCTION_ERROR_INJECTION, CONFIG_BPF_KPROBE_OVERRIDE); use Sigkill, or an lsmhooks: entry"),
        true => format!("not supported by nightjar: Override through bpf_override_return (on {function}); use Sigkill, or an lsmhooks: entry"),
    });
    Ok(s)
}

/// A `data:` argument's spec, read as type `a.ty` (its first string slot `slot`); where
/// its word comes from is its resolve path's.
pub(crate) fn data_arg(l: &Loaded, at: &str, a: &ArgDecl, slot: u8) -> Result<ArgSpec, ConfigError> {
    kfunc_arg(l, at, a, 0, false, &mut Slots(slot))
}

/// A kernel function's argument at word `offset`, read as type `a.ty`.
fn kfunc_arg(
    l: &Loaded,
    at: &str,
    a: &ArgDecl,
    offset: u16,
    user: bool,
    slots: &mut Slots,
) -> Result<ArgSpec, ConfigError> {
    let src = match a.ty {
        ArgType::String if user => argsrc::USER_STR,
        ArgType::String => argsrc::KERNEL_STR,
        ArgType::Filename => argsrc::FILENAME_PTR,
        ArgType::File => argsrc::FILE_PTR,
        ArgType::Path => argsrc::PATH_PTR,
        ArgType::Dentry => argsrc::DENTRY_PTR,
        ArgType::LinuxBinprm => argsrc::BPRM_FILE,
        ArgType::Kiocb => argsrc::KIOCB_FILE,
        ArgType::Fd => argsrc::FD_PATH,
        ArgType::Nop => argsrc::NONE,
        ArgType::CharBuf => argsrc::CHAR_BUF,
        ArgType::NetDevice => argsrc::NET_DEV,
        ArgType::IovIter => argsrc::IOV_ITER,
        ArgType::CharIovec => argsrc::CHAR_IOVEC,
        t if args::info(t).class == Class::Net => super::net::word_src(t, user).unwrap_or(argsrc::NONE),
        t if crate::hooks::kstruct::reads(t) => crate::hooks::kstruct::source(t).map_or(argsrc::NONE, |(s, _)| s),
        t => match args::info(t).class {
            Class::Int { .. } => return Ok(int_spec(t, offset)),
            _ => {
                return Err(
                    l.unsupported(&format!("{at}.type"), format!("argument type {} on kernel functions", t.name()))
                )
            }
        },
    };
    let mut spec = ArgSpec { src, offset, ..Default::default() };
    if src != argsrc::NONE {
        slots.take(&mut spec);
    }
    Ok(spec)
}

/// `security_file_open(struct file *)` / `security_bprm_check(struct linux_binprm *)` by
/// fentry or kprobe.
fn kfunc_one_arg(
    l: &Loaded,
    base: &str,
    call: &str,
    how: &str,
    file_open: bool,
    args: &[ArgDecl],
) -> Result<Served, ConfigError> {
    let (src, what, types): (u8, &str, &[ArgType]) = if file_open {
        (argsrc::FILE_PTR, "the file being opened", &[ArgType::File, ArgType::Path, ArgType::String])
    } else {
        (argsrc::BPRM_FILE, "the binary about to run", &[ArgType::LinuxBinprm, ArgType::File, ArgType::String])
    };
    let specs = one_arg(l, base, call, src, what, types, args)?;
    let key = if file_open { KFUNC_FILE_OPEN_KEY } else { KFUNC_BPRM_CHECK_KEY };
    let a = if how == "fentry" {
        Attach::Fentry { function: call.into(), key }
    } else {
        Attach::Kprobe { function: call.into(), key }
    };
    let d = if file_open { "the file's path" } else { "the binary's path, before it runs" };
    let desc = format!("{} {} ({d})", a.backend(), a.point());
    Ok(Served::new(vec![a], desc, specs))
}

/// The argument specs of a hook whose only argument is argument 0 of a few types.
fn one_arg(
    l: &Loaded,
    base: &str,
    function: &str,
    src: u8,
    what: &str,
    types: &[ArgType],
    args: &[ArgDecl],
) -> Result<Vec<ArgSpec>, ConfigError> {
    let mut slots = Slots(0);
    let mut out = Vec::new();
    for (j, a) in args.iter().enumerate() {
        if a.index != 0 || !types.contains(&a.ty) {
            let names: Vec<String> = types.iter().map(|t| t.name()).collect();
            return Err(l.error(
                &format!("{base}.args[{j}]"),
                format!("only argument 0 ({what}: one of {}) is available for {function}", names.join(", ")),
            ));
        }
        let mut spec = ArgSpec { src, ..Default::default() };
        slots.take(&mut spec);
        out.push(spec);
    }
    Ok(out)
}

/// An `lsmhooks:` entry.
pub fn lsm(l: &Loaded, env: &Env, base: &str, hook: &str, args: &[ArgDecl]) -> Result<Served, ConfigError> {
    let on_lsm = |file_open: bool| -> Result<Served, ConfigError> {
        let (src, what, types, key, d): (u8, &str, &[ArgType], u32, &str) = if file_open {
            (
                argsrc::FILE_PTR,
                "the file being opened",
                &[ArgType::File, ArgType::Path, ArgType::String],
                nightjar_common::LSM_FILE_OPEN_KEY,
                "BPF-LSM file_open (the file's path)",
            )
        } else {
            (
                argsrc::BPRM_FILE,
                "the binary about to run",
                &[ArgType::LinuxBinprm, ArgType::File, ArgType::String],
                nightjar_common::LSM_BPRM_CHECK_KEY,
                "BPF-LSM bprm_check_security (the binary's path, before it runs)",
            )
        };
        let specs = one_arg(l, base, hook, src, what, types, args)?;
        let mut s = Served::new(vec![Attach::Lsm { hook: hook.into(), key }], d.to_owned(), specs);
        s.lsm = true;
        Ok(s)
    };
    let mut s = match (hook, env.kernel.lsm) {
        ("file_open", true) => return on_lsm(true),
        ("bprm_check_security", true) => return on_lsm(false),
        (other, true) => {
            return Err(l.unsupported(
                &format!("{base}.hook"),
                format!("LSM hook {other:?} (BPF-LSM programs: file_open, bprm_check_security)"),
            ))
        }
        ("file_open", false) => file_open(l, env, base, hook, args)?,
        ("bprm_check_security" | "bprm_creds_for_exec" | "bprm_creds_from_file", false) => exec(l, base, hook, args)?,
        (other, false) => {
            return Err(l.error(
                &format!("{base}.hook"),
                format!("LSM hook {other:?} needs BPF-LSM, which this kernel does not offer ({}), and no tracepoint stands in for it (served: file_open, bprm_check_security, bprm_creds_for_exec)", env.kernel.lsm_unavailable),
            ))
        }
    };
    s.override_refused = Some(format!(
        "Override on LSM hook {hook}: this kernel cannot run BPF-LSM programs ({}), and the tracepoint that would serve the hook fires after the act, so it cannot be prevented; use Sigkill, or a kernel with CONFIG_BPF_LSM=y and bpf in its lsm= list",
        env.kernel.lsm_unavailable
    ));
    Ok(s)
}

/// A function of a user binary, by uprobe: its arguments are its registers.
pub fn uprobe(
    l: &Loaded,
    base: &str,
    path: &str,
    symbol: &str,
    offset: u64,
    args: &[ArgDecl],
) -> Result<Served, ConfigError> {
    if !std::path::Path::new(path).is_file() {
        return Err(l.error(&format!("{base}.path"), format!("{path}: no such file (a uprobe needs the binary)")));
    }
    let mut slots = Slots(0);
    let mut out = Vec::new();
    for (j, a) in args.iter().enumerate() {
        out.push(register_arg(l, &format!("{base}.args[{j}]"), a, 8 * a.index as u16, None, &mut slots)?);
    }
    buf_sizes(l, base, args, &mut out, false, &|i| (i < 6).then_some(8 * i as u16))?;
    let attach = Attach::Uprobe { path: path.to_owned(), symbol: symbol.to_owned(), offset, key: 0, usdt: None };
    let desc = format!("uprobe {}", attach.point());
    let mut s = Served::new(vec![attach], desc, out);
    s.override_refused =
        Some("Override on a uprobe: a user function's return cannot be overridden; use Sigkill".into());
    Ok(s)
}

/// A USDT probe: one uprobe per site the binary's notes list, each reading its arguments
/// where that site's note says (`hooks/usdt.rs`). Arg `index` N is the probe's Nth argument.
pub fn usdt(l: &Loaded, base: &str, u: &crate::policy::spec::UsdtSpec) -> Result<Vec<Served>, ConfigError> {
    let sites =
        crate::hooks::usdt::find(&u.path, &u.provider, &u.name).map_err(|e| l.error(&format!("{base}.path"), e))?;
    let mut out = Vec::new();
    for site in sites {
        if site.semaphore != 0 {
            return Err(l.unsupported(
                base,
                format_args!("USDT probes guarded by a semaphore ({}:{} of {})", u.provider, u.name, u.path),
            ));
        }
        let mut slots = Slots(0);
        let mut args = Vec::new();
        for (j, a) in u.args.iter().enumerate() {
            args.push(register_arg(l, &format!("{base}.args[{j}]"), a, 8 * a.index as u16, None, &mut slots)?);
        }
        let attach = Attach::Uprobe {
            path: u.path.clone(),
            symbol: String::new(),
            offset: site.offset,
            key: 0,
            usdt: Some(site.spec),
        };
        let desc = format!("USDT {}:{} at {}:{:#x} ({})", u.provider, u.name, u.path, site.offset, site.arg_text);
        let mut s = Served::new(vec![attach], desc, args);
        s.override_refused =
            Some("Override on a USDT probe: a user program's flow cannot be overridden; use Sigkill".into());
        out.push(s);
    }
    Ok(out)
}

/// A syscall by its kernel symbol (`__x64_sys_<name>`): arguments are the user registers.
fn kfunc_syscall(
    l: &Loaded,
    env: &Env,
    base: &str,
    how: &str,
    name: &str,
    args: &[ArgDecl],
) -> Result<Served, ConfigError> {
    let symbol = format!("{SYSCALL_SYMBOL_PREFIX}{name}");
    let Some(nr) = syscall_nr(name) else {
        return Err(l.error(base, format!("{symbol}: unknown syscall (not in this architecture's syscall table)")));
    };
    // The argument types are checked against the syscall's tracepoint format when the
    // kernel has it, so a policy means the same on every backend.
    let fields = syscall_args(env, name);
    let mut slots = Slots(0);
    let mut out = Vec::new();
    for (j, a) in args.iter().enumerate() {
        let at = format!("{base}.args[{j}]");
        if a.index >= 6 {
            return Err(l.error(
                &format!("{at}.index"),
                format!("a syscall has at most 6 arguments; index {} does not exist", a.index),
            ));
        }
        let field = fields.as_ref().and_then(|f| f.get(a.index as usize));
        if let (Some(f), None) = (&fields, field) {
            return Err(l.error(
                &format!("{at}.index"),
                format!("{name} has {} arguments; index {} does not exist", f.len(), a.index),
            ));
        }
        let decl = field.map(|f| f.decl.as_str());
        out.push(register_arg(l, &at, a, 8 * a.index as u16, decl, &mut slots)?);
    }
    buf_sizes(l, base, args, &mut out, false, &|i| (i < 6).then_some(8 * i as u16))?;
    let key = nightjar_common::SYSCALL_KFUNC | nr;
    let a = if how == "fentry" {
        Attach::Fentry { function: symbol, key }
    } else {
        Attach::Kprobe { function: symbol, key }
    };
    let desc = format!("{} {}", a.backend(), a.point());
    Ok(Served::new(vec![a], desc, out))
}

/// The arguments of syscall `name` (its sys_enter tracepoint's fields after __syscall_nr).
fn syscall_args(env: &Env, name: &str) -> Option<Vec<Field>> {
    tracepoint_fields(&env.tracefs, "syscalls", &format!("sys_enter_{name}"))
        .map(|(_, f)| f.into_iter().filter(|f| !f.name.starts_with("common_") && f.name != "__syscall_nr").collect())
}

/// A syscall argument held in a register (or a syscall tracepoint field) at `offset`,
/// declared as `a`; `decl` is its C declaration when known.
fn register_arg(
    l: &Loaded,
    at: &str,
    a: &ArgDecl,
    offset: u16,
    decl: Option<&str>,
    slots: &mut Slots,
) -> Result<ArgSpec, ConfigError> {
    let d = decl.unwrap_or("");
    let mut spec = ArgSpec { offset, ..Default::default() };
    match args::info(a.ty).class {
        Class::Path => {
            if d.contains("char") || a.ty == ArgType::Dentry {
                return Err(l.error(&format!("{at}.type"), format!("{d} is not a file descriptor")));
            }
            spec.src = argsrc::FD_PATH;
            slots.take(&mut spec);
        }
        Class::Str => {
            if decl.is_some() && !(d.contains('*') && d.contains("char")) {
                return Err(l.error(&format!("{at}.type"), format!("{d} is not a string")));
            }
            spec.src = argsrc::USER_STR;
            slots.take(&mut spec);
        }
        Class::Int { .. } => spec = int_spec(a.ty, offset),
        Class::Nothing => spec.src = argsrc::NONE,
        Class::Net => {
            spec = super::net::syscall_arg(l, at, a, offset, decl)?;
            slots.take(&mut spec);
        }
        Class::Bytes if a.ty == ArgType::CharBuf => {
            if decl.is_some() && !d.contains('*') {
                return Err(l.error(&format!("{at}.type"), format!("{d} is not a pointer to a buffer")));
            }
            spec.src = argsrc::CHAR_BUF;
            slots.take(&mut spec);
        }
        Class::Bytes if a.ty == ArgType::CharIovec => {
            if decl.is_some() && !(d.contains('*') && d.contains("iovec")) {
                return Err(l.error(&format!("{at}.type"), format!("{d} is not a pointer to an iovec array")));
            }
            spec.src = argsrc::CHAR_IOVEC;
            slots.take(&mut spec);
        }
        Class::Struct if decl.is_some() && crate::hooks::kstruct::reads(a.ty) => {
            spec.src = kstruct_field(l, at, a.ty, d)?;
            slots.take(&mut spec);
        }
        Class::Bytes | Class::Struct => {
            return Err(l.unsupported(&format!("{at}.type"), format!("argument type {} here", a.ty.name())))
        }
    }
    Ok(spec)
}

/// Where each char_buf argument's size (a char_iovec's count of segments) comes from: its
/// `sizeArgIndex` argument (counted from 1, as Tetragon counts it) at the raw offset
/// `offset_of` gives for an argument index, or, with `returnCopy` on a return probe (a
/// char_buf's only), the return value (the bytes the function filled in, read when it
/// returns).
fn buf_sizes(
    l: &Loaded,
    base: &str,
    decls: &[ArgDecl],
    specs: &mut [ArgSpec],
    ret: bool,
    offset_of: &dyn Fn(u32) -> Option<u16>,
) -> Result<(), ConfigError> {
    for (j, (a, spec)) in decls.iter().zip(specs.iter_mut()).enumerate() {
        let what = match spec.src {
            argsrc::CHAR_BUF => "size",
            argsrc::CHAR_IOVEC => "count of iovec segments",
            _ => continue,
        };
        let at = format!("{base}.args[{j}]");
        let off = match (a.return_copy, a.size_arg_index) {
            (true, _) if !ret => {
                return Err(l.error(&format!("{at}.returnCopy"), "returnCopy needs a return probe (return: true)"))
            }
            (true, _) => 48,
            (false, Some(n)) if n >= 1 && n != a.index + 1 => offset_of(n - 1).ok_or_else(|| {
                l.error(
                    &format!("{at}.sizeArgIndex"),
                    format!("sizeArgIndex {n} names argument {} , which this hook does not have", n - 1),
                )
            })?,
            (false, Some(n)) => {
                return Err(l.error(
                    &format!("{at}.sizeArgIndex"),
                    format!(
                        "sizeArgIndex {n}: the argument holding the {what}, counted from 1, and not the buffer itself"
                    ),
                ))
            }
            (false, None) => {
                let or = if spec.src == argsrc::CHAR_BUF { " or returnCopy" } else { "" };
                return Err(l.error(
                    &format!("{at}.type"),
                    format!("{} needs sizeArgIndex (the argument holding its {what}, counted from 1){or}", a.ty.name()),
                ));
            }
        };
        if off as usize + 8 > plimits::RAW {
            return Err(l.error(
                &format!("{at}.sizeArgIndex"),
                format!("the {what} is at offset {off}, beyond the {} bytes the engine reads", plimits::RAW),
            ));
        }
        spec.aux = argsrc::CHAR_BUF_SIZED | off;
    }
    Ok(())
}

/// The source of a struct argument (cred, user_namespace, ...) held in a tracepoint field
/// declared `decl`: the field must point to that struct.
fn kstruct_field(l: &Loaded, at: &str, ty: ArgType, decl: &str) -> Result<u8, ConfigError> {
    let Some((src, c_type)) = crate::hooks::kstruct::source(ty) else {
        return Err(l.unsupported(&format!("{at}.type"), format!("argument type {} here", ty.name())));
    };
    let words: Vec<&str> = decl.split(|c: char| c.is_whitespace() || c == '*').filter(|w| !w.is_empty()).collect();
    if !decl.contains('*') || !words.windows(2).any(|w| format!("{} {}", w[0], w[1]) == c_type) {
        return Err(l.error(&format!("{at}.type"), format!("{decl} is not a {c_type} * (type {})", ty.name())));
    }
    Ok(src)
}

/// A syscall kprobe served by its `syscalls:sys_enter_<name>` tracepoint.
fn syscall_tp(l: &Loaded, env: &Env, base: &str, name: &str, args: &[ArgDecl]) -> Result<Served, ConfigError> {
    let tp = format!("sys_enter_{name}");
    let (id, _) = env.tp(l, base, "syscalls", &tp)?;
    let fields = syscall_args(env, name).unwrap_or_default();
    let mut slots = Slots(0);
    let mut out = Vec::new();
    for (j, a) in args.iter().enumerate() {
        let at = format!("{base}.args[{j}]");
        let Some(f) = fields.get(a.index as usize) else {
            return Err(l.error(
                &format!("{at}.index"),
                format!("{name} has {} arguments; index {} does not exist", fields.len(), a.index),
            ));
        };
        out.push(field_arg(l, &at, a, f, &mut slots)?);
    }
    buf_sizes(l, base, args, &mut out, false, &|i| fields.get(i as usize).map(|f| f.offset))?;
    let Some(attach) = attach_for("syscalls", &tp, id) else {
        return Err(l.error(base, format!("syscalls:{tp}: unknown syscall (not in this architecture's syscall table)")));
    };
    Ok(Served::new(vec![attach], format!("tracepoint syscalls:{tp}"), out))
}

/// A long syscall list (`call: "list:NAME"`, see `lists`) served by one
/// `raw_syscalls:sys_enter` hook: argument N is `args[N]` of the record, and the hidden
/// last argument (`lists::NR_INDEX`) is the syscall number the selectors match the list on.
pub fn syscall_list(l: &Loaded, env: &Env, base: &str, k: &KprobeSpec) -> Result<Served, ConfigError> {
    const ID: u16 = 8;
    const ARGS: u16 = 16;
    if k.return_ {
        return Err(l.unsupported(&format!("{base}.return"), "return probes on a list of more than 8 syscalls"));
    }
    let (id, _) = env.tp(l, base, "raw_syscalls", "sys_enter")?;
    let mut slots = Slots(0);
    let mut out = Vec::new();
    for (j, a) in k.args.iter().enumerate() {
        let at = format!("{base}.args[{j}]");
        if a.index == super::lists::NR_INDEX {
            out.push(int_spec(ArgType::Syscall64, ID));
        } else if a.index >= 6 {
            return Err(l.error(
                &format!("{at}.index"),
                format!("a syscall has at most 6 arguments; index {} does not exist", a.index),
            ));
        } else {
            out.push(register_arg(l, &at, a, ARGS + 8 * a.index as u16, None, &mut slots)?);
        }
    }
    if out.len() > plimits::ARGS {
        return Err(
            l.error(&format!("{base}.args"), format!("at most {} arguments on a list of syscalls", plimits::ARGS - 1))
        );
    }
    buf_sizes(l, base, &k.args, &mut out, false, &|i| (i < 6).then(|| ARGS + 8 * i as u16))?;
    let Some(attach) = attach_for("raw_syscalls", "sys_enter", id) else {
        return Err(l.error(base, "raw_syscalls:sys_enter cannot be attached"));
    };
    let mut s =
        Served::new(vec![attach], format!("tracepoint raw_syscalls:sys_enter (the syscalls of {})", k.call), out);
    s.override_refused =
        Some(format!("Override on {}: a tracepoint reports a syscall, it cannot fail it; use Sigkill", k.call));
    Ok(s)
}

/// A tracepoint record field as argument `a`.
fn field_arg(l: &Loaded, at: &str, a: &ArgDecl, f: &Field, slots: &mut Slots) -> Result<ArgSpec, ConfigError> {
    if f.offset as usize + (f.size as usize).min(8) > plimits::RAW {
        return Err(l.error(
            at,
            format!("field {} is at offset {}, beyond the {} bytes the engine reads", f.name, f.offset, plimits::RAW),
        ));
    }
    let mut spec = register_arg(l, at, a, f.offset, Some(&f.decl), slots)?;
    if spec.src == argsrc::INT {
        let (size, _) = match args::info(a.ty).class {
            Class::Int { size, signed } => (size, signed),
            _ => (8, false),
        };
        spec.size = size.min(f.size);
    }
    if matches!(args::info(a.ty).class, Class::Path) && !(f.size == 4 || f.size == 8) {
        return Err(l.error(&format!("{at}.type"), format!("{} ({}) is not a file descriptor", f.name, f.decl)));
    }
    Ok(spec)
}

/// A `tracepoints:` entry: argument `index` counts the tracepoint's format fields as
/// Tetragon counts them, the `common_*` fields included.
pub fn tracepoint(
    l: &Loaded,
    env: &Env,
    base: &str,
    category: &str,
    event: &str,
    args: &[ArgDecl],
) -> Result<Served, ConfigError> {
    let (id, fields) = env.tp(l, base, category, event)?;
    let mut slots = Slots(0);
    let mut out = Vec::new();
    for (j, a) in args.iter().enumerate() {
        let at = format!("{base}.args[{j}]");
        let Some(f) = fields.get(a.index as usize) else {
            return Err(l.error(
                &format!("{at}.index"),
                format!(
                    "{category}:{event} has {} fields (common_* included); index {} does not exist",
                    fields.len(),
                    a.index
                ),
            ));
        };
        out.push(field_arg(l, &at, a, f, &mut slots)?);
    }
    buf_sizes(l, base, args, &mut out, false, &|i| fields.get(i as usize).map(|f| f.offset))?;
    let Some(attach) = attach_for(category, event, id) else {
        return Err(
            l.error(base, format!("{category}:{event}: unknown syscall (not in this architecture's syscall table)"))
        );
    };
    Ok(Served::new(vec![attach], format!("tracepoint {category}:{event}"), out))
}

/// A raw tracepoint (`raw: true`): arg `index` N is its Nth `TP_PROTO` argument, a word
/// read as the policy types it (kernel pointers as on kernel functions).
pub fn raw_tracepoint(
    l: &Loaded,
    env: &Env,
    base: &str,
    category: &str,
    event: &str,
    args: &[ArgDecl],
) -> Result<Served, ConfigError> {
    // It exists (its tracefs event does); the arguments are the raw ones, not its fields.
    env.tp(l, base, category, event)?;
    let mut slots = Slots(0);
    let mut out = Vec::new();
    for (j, a) in args.iter().enumerate() {
        out.push(kfunc_arg(l, &format!("{base}.args[{j}]"), a, 8 * a.index as u16, false, &mut slots)?);
    }
    crate::hooks::resolve::args(l, base, args, &mut out, |btf, d| btf.raw_tp_param(event, d.index as usize))?;
    let attach = Attach::RawTp { event: event.to_owned(), key: 0 };
    let mut s = Served::new(vec![attach], format!("raw tracepoint {category}:{event}"), out);
    s.override_refused = Some(format!(
        "Override on raw tracepoint {category}:{event}: a tracepoint reports an act, it cannot fail it; use Sigkill"
    ));
    Ok(s)
}

/// A kernel function served by a tracepoint that carries its arguments as named fields.
fn stand_in(l: &Loaded, env: &Env, base: &str, si: &StandIn, args: &[ArgDecl]) -> Result<Served, ConfigError> {
    let (id, fields) = env.tp(l, base, si.category, si.event)?;
    let mut slots = Slots(0);
    let mut out = Vec::new();
    for (j, a) in args.iter().enumerate() {
        let at = format!("{base}.args[{j}]");
        let field =
            si.fields.iter().find(|(i, _)| *i == a.index).and_then(|(_, name)| fields.iter().find(|f| f.name == *name));
        let Some(f) = field else {
            let have: Vec<String> = si.fields.iter().map(|(i, n)| format!("{i} ({n})")).collect();
            return Err(l.error(
                &format!("{at}.index"),
                format!(
                    "argument {} of {} is not in tracepoint {}:{}, which serves it on this kernel (available: {})",
                    a.index,
                    si.call,
                    si.category,
                    si.event,
                    have.join(", ")
                ),
            ));
        };
        out.push(field_arg(l, &at, a, f, &mut slots)?);
    }
    let Some(attach) = attach_for(si.category, si.event, id) else {
        return Err(l.error(base, format!("{}:{}: unknown syscall", si.category, si.event)));
    };
    Ok(Served::new(vec![attach], format!("tracepoint {}:{}", si.category, si.event), out))
}

/// File opens by the open syscalls' exits: the new fd's file.
fn file_open(l: &Loaded, env: &Env, base: &str, function: &str, args: &[ArgDecl]) -> Result<Served, ConfigError> {
    let mut attach = Vec::new();
    let mut ret_off = None;
    for tp in FILE_OPEN_TPS {
        if let Some((id, fields)) = tracepoint_fields(&env.tracefs, "syscalls", tp) {
            ret_off = fields.iter().find(|f| f.name == "ret").map(|f| f.offset);
            attach.extend(attach_for("syscalls", tp, id));
        }
    }
    let Some(ret) = ret_off else {
        return Err(l.error(base, "no syscalls:sys_exit_open* tracepoints on this kernel (CONFIG_FTRACE_SYSCALLS)"));
    };
    let desc = format!("tracepoints syscalls:{{{}}} (the opened file's path)", FILE_OPEN_TPS.join(","));
    let file_index = if function == "fd_install" { 1 } else { 0 };
    let mut slots = Slots(0);
    let mut out = Vec::new();
    for (j, a) in args.iter().enumerate() {
        let mut spec = ArgSpec { offset: ret, ..Default::default() };
        let stringy = matches!(a.ty, ArgType::File | ArgType::Path | ArgType::String | ArgType::Filename);
        if a.index == file_index && stringy {
            spec.src = argsrc::RET_FD_PATH;
            slots.take(&mut spec);
        } else if function == "fd_install" && a.index == 0 && matches!(args::info(a.ty).class, Class::Int { .. }) {
            spec = ArgSpec { src: argsrc::INT, size: 8, signed: 1, offset: ret, ..Default::default() };
        } else {
            return Err(l.error(
                &format!("{base}.args[{j}]"),
                format!(
                    "argument {} ({}) of {function} is not available from the open tracepoints (the file is argument {file_index})",
                    a.index,
                    a.ty.name()
                ),
            ));
        }
        out.push(spec);
    }
    Ok(Served::new(attach, desc, out))
}

/// Exec hooks by sched_process_exec: the new binary.
fn exec(l: &Loaded, base: &str, function: &str, args: &[ArgDecl]) -> Result<Served, ConfigError> {
    let mut slots = Slots(0);
    let mut out = Vec::new();
    for (j, a) in args.iter().enumerate() {
        if a.index != 0 || !args::is_stringy(a.ty) {
            return Err(l.error(
                &format!("{base}.args[{j}]"),
                format!(
                    "only argument 0 (the binary: linux_binprm, file or string) is available for {function} on exec"
                ),
            ));
        }
        let mut spec = ArgSpec { src: argsrc::EXEC_PATH, ..Default::default() };
        slots.take(&mut spec);
        out.push(spec);
    }
    Ok(Served::new(vec![Attach::Exec], "tracepoint sched:sched_process_exec (the new binary's path)".to_owned(), out))
}

/// commit_creds & co. by the setuid-family syscall tracepoints.
fn creds(l: &Loaded, env: &Env, base: &str, function: &str, args: &[ArgDecl]) -> Result<Served, ConfigError> {
    if !args.is_empty() {
        return Err(l.error(
            &format!("{base}.args"),
            format!("{function} with arguments needs kprobes, which this kernel does not have (CONFIG_KPROBES): here the setuid-family syscall tracepoints serve it, and they carry no cred argument; declare no args (or use a sys_setuid kprobe to match on uids)"),
        ));
    }
    let mut attach = Vec::new();
    for sc in CRED_SYSCALLS {
        let tp = format!("sys_enter_{sc}");
        if let Some((id, _)) = tracepoint_fields(&env.tracefs, "syscalls", &tp) {
            attach.extend(attach_for("syscalls", &tp, id));
        }
    }
    Ok(Served::new(attach, format!("tracepoints syscalls:sys_enter_{{{}}}", CRED_SYSCALLS.join(",")), Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_names() {
        assert_eq!(syscall_name("__x64_sys_setns"), Some("setns"));
        assert_eq!(syscall_name("sys_ptrace"), Some("ptrace"));
        assert_eq!(syscall_name("security_file_open"), None);
    }
}
