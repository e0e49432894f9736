//! From a validated TracingPolicy to what the kernel runs: for each hook, the backend that
//! serves it on this kernel (`backends`), its selectors compiled (`selectors`), put together
//! as a `HookPlan` the engine loads. Also the shared vocabulary: attach points, the syscall
//! table, tracepoint formats, the kernel's hook kinds, and the `STRINGS` trie entries.
use std::path::{Path, PathBuf};

use nightjar_common::{action, net_guard, ns, op, plimits, BinSet, HookConfig, StrData};
use nightjar_event::config::ConfigError;
use serde::Serialize;

pub use super::selectors::StrCond;
use super::{
    backends, lists,
    selectors::{self, Ctx},
    spec::{ActionKind, ArgType, HookCommon, KprobeSpec},
    Loaded,
};

/// How a hook point is served here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Attach {
    /// A tracepoint (category, name), the program that serves it and its `HOOK_LISTS` key.
    Tracepoint { category: String, name: String, program: &'static str, key: u32 },
    /// A raw tracepoint (by its event name), served by a program of the `raw_tp_N` pool; the
    /// key (`RAW_TP_KEY | N`) is given by the engine.
    RawTp { event: String, key: u32 },
    /// The exec path (sched:sched_process_exec, after the new image is in place).
    Exec,
    /// fentry on a kernel function, with its `HOOK_LISTS` key.
    Fentry { function: String, key: u32 },
    /// kprobe on a kernel function.
    Kprobe { function: String, key: u32 },
    /// BPF-LSM program on an LSM hook (`file_open`, `bprm_check_security`).
    Lsm { hook: String, key: u32 },
    /// kprobe (or kretprobe, `ret`) on any kernel function, found by its address; the key
    /// is given by the engine. `syscall`: a syscall wrapper (arguments in its `pt_regs`).
    Kfunc { function: String, ret: bool, syscall: bool, key: u32 },
    /// uprobe on a function of a binary: by symbol, or by offset when `symbol` is empty;
    /// the key (the attach cookie) is given by the engine.
    Uprobe {
        path: String,
        symbol: String,
        offset: u64,
        key: u32,
        #[serde(skip)]
        usdt: Option<nightjar_common::UsdtSpec>,
    },
}

impl Attach {
    /// The kind of kernel hook: `tracepoint`, `fentry`, `kprobe` or `lsm`.
    pub fn backend(&self) -> &'static str {
        match self {
            Attach::Tracepoint { .. } | Attach::Exec => "tracepoint",
            Attach::Fentry { .. } => "fentry",
            Attach::Kprobe { .. } => "kprobe",
            Attach::Kfunc { ret: false, .. } => "kprobe",
            Attach::Kfunc { ret: true, .. } => "kretprobe",
            Attach::Lsm { .. } => "lsm",
            Attach::Uprobe { .. } => "uprobe",
            Attach::RawTp { .. } => "raw_tracepoint",
        }
    }

    /// The hook point: `syscalls/sys_exit_openat`, `security_file_open`, `file_open`.
    pub fn point(&self) -> String {
        match self {
            Attach::Tracepoint { category, name, .. } => format!("{category}/{name}"),
            Attach::Exec => "sched/sched_process_exec".to_owned(),
            Attach::Fentry { function, .. } | Attach::Kprobe { function, .. } => function.clone(),
            Attach::Lsm { hook, .. } => hook.clone(),
            Attach::Kfunc { function, .. } => function.clone(),
            Attach::Uprobe { path, symbol, offset, .. } if symbol.is_empty() => format!("{path}:{offset:#x}"),
            Attach::Uprobe { path, symbol, .. } => format!("{path}:{symbol}"),
            Attach::RawTp { event, .. } => event.clone(),
        }
    }

    /// Its `HOOK_LISTS` key.
    pub fn key(&self) -> u32 {
        match self {
            Attach::Exec => nightjar_common::EXEC_HOOKS_KEY,
            Attach::Tracepoint { key, .. }
            | Attach::Fentry { key, .. }
            | Attach::Kprobe { key, .. }
            | Attach::Lsm { key, .. }
            | Attach::Kfunc { key, .. }
            | Attach::Uprobe { key, .. }
            | Attach::RawTp { key, .. } => *key,
        }
    }
}

include!(concat!(env!("OUT_DIR"), "/syscalls.rs"));

/// Every syscall number of this architecture.
pub fn syscall_numbers() -> impl Iterator<Item = u32> {
    SYSCALLS.iter().map(|(_, nr)| *nr)
}

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
    Uprobe,
    Usdt,
}

/// One declared argument as reported in events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgMeta {
    pub index: u32,
    pub ty: ArgType,
    pub label: Option<String>,
    /// The return value (`returnArg`), exported as `return`.
    pub ret: bool,
    /// A `data:` argument, exported in `data`.
    pub data: bool,
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
    /// The binary of a uprobe (`path` of `process_uprobe` events).
    pub target: Option<String>,
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
    /// Those of `syscall_symbols` the kernel's BTF has as functions (fentry can hook them).
    pub fentry_syscalls: std::collections::HashSet<String>,
    /// bpf_override_return is possible (CONFIG_FUNCTION_ERROR_INJECTION: the kernel lists
    /// /sys/kernel/debug/error_injection/list).
    pub error_injection: bool,
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

    /// The address of kernel function `name` (/proc/kallsyms), when kprobes are usable.
    pub fn ksym(&self, name: &str) -> Option<u64> {
        if !self.kprobes {
            return None;
        }
        let text = std::fs::read_to_string("/proc/kallsyms").ok()?;
        text.lines().find_map(|l| {
            let mut f = l.split_whitespace();
            let (addr, kind, sym) = (f.next()?, f.next()?, f.next()?);
            (sym == name && matches!(kind, "T" | "t")).then(|| u64::from_str_radix(addr, 16).ok()).flatten()
        })
    }

    /// Kernel function (or syscall) `name` exists on this kernel: a syscall of this
    /// architecture's table, or a text symbol of /proc/kallsyms.
    pub fn function_exists(&self, name: &str) -> bool {
        if super::backends::syscall_name(name).and_then(syscall_nr).is_some() {
            return true;
        }
        let Ok(text) = std::fs::read_to_string("/proc/kallsyms") else { return false };
        text.lines().any(|l| {
            let mut f = l.split_whitespace().skip(1);
            matches!(f.next(), Some("T" | "t")) && f.next() == Some(name)
        })
    }

    /// The backend for a kernel function: fentry when it loads here, else kprobe.
    pub fn kfunc(&self) -> Option<&'static str> {
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

/// Fields of a tracepoint, in format order (the `common_*` ones first, as Tetragon counts
/// argument indexes).
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
        out.push(Field { decl, name: ident, offset: offset?, size: size?, signed });
    }
    Some((id, out))
}

impl Env {
    /// A tracepoint's id and fields, or an error naming what this kernel lacks.
    pub fn tp(&self, l: &Loaded, at: &str, category: &str, name: &str) -> Result<(u32, Vec<Field>), ConfigError> {
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

/// A kprobe on a generated_ftrace list: this kernel has kprobes, and the list's pattern
/// matches some of its traceable functions.
fn generated_ftrace(l: &Loaded, env: &Env, base: &str, k: &KprobeSpec) -> Result<(), ConfigError> {
    let Some(list) = lists::named(l, &k.call).filter(|x| x.ty == Some(super::spec::ListType::GeneratedFtrace)) else {
        return Ok(());
    };
    if env.kernel.kfunc().is_none() {
        return Err(backends::no_kprobes(l, env, base, &k.call));
    }
    let pattern = list.pattern.as_deref().unwrap_or_default();
    match lists::ftrace_matches(pattern) {
        Ok((f, _)) if !f.is_empty() => Ok(()),
        Ok((_, n)) => Err(l.error(
            &format!("{base}.call"),
            format!("list {:?}: pattern {pattern:?} matches none of this kernel's {n} traceable functions (available_filter_functions)", list.name),
        )),
        Err(why) => Err(l.error(
            &format!("{base}.call"),
            format!("list {:?} (generated_ftrace) cannot be generated: {why}", list.name),
        )),
    }
}

/// Plans one policy's hooks on this kernel. Errors name the hook and what is missing.
pub fn plan(l: &Loaded, env: &Env) -> Result<Vec<HookPlan>, ConfigError> {
    let spec = &l.policy.spec;
    let mut out = Vec::new();
    for (base, entry) in spec.kprobe_entries() {
        generated_ftrace(l, env, &base, entry)?;
        for planned in lists::expand(l, entry) {
            let k = match planned {
                lists::Planned::Syscalls(k) => {
                    let served = backends::syscall_list(l, env, &base, &k)?;
                    let mut p = assemble(l, env, HookKind::Kprobe, &k.call, &base, served, k.with_data())?;
                    if !k.data.is_empty() {
                        crate::hooks::resolve::data_args(l, &base, &k.data, &mut p)?;
                    }
                    out.push(p);
                    continue;
                }
                lists::Planned::One(k) => k,
            };
            if k.ignore.as_ref().is_some_and(|i| i.call_not_found) && !env.kernel.function_exists(&k.call) {
                tracing::warn!(policy = %l.policy.metadata.name, call = %k.call, "{base}: no such kernel function here; skipped (ignore: callNotFound)");
                continue;
            }
            out.push(kprobe_hook(l, env, &base, &k)?);
        }
    }
    for (i, t) in spec.tracepoints.iter().enumerate() {
        let base = format!("spec.tracepoints[{i}]");
        let served = match t.raw {
            true => backends::raw_tracepoint(l, env, &base, &t.subsystem, &t.event, &t.args)?,
            false => backends::tracepoint(l, env, &base, &t.subsystem, &t.event, &t.args)?,
        };
        let function = format!("{}/{}", t.subsystem, t.event);
        out.push(assemble(l, env, HookKind::Tracepoint, &function, &base, served, t.common())?);
    }
    for (i, h) in spec.lsmhooks.iter().enumerate() {
        let base = format!("spec.lsmhooks[{i}]");
        let served = backends::lsm(l, env, &base, &h.hook, &h.args)?;
        out.push(assemble(l, env, HookKind::Lsm, &h.hook, &base, served, h.common())?);
    }
    for (i, u) in spec.uprobes.iter().enumerate() {
        let base = format!("spec.uprobes[{i}]");
        // One hook for the entry, attached at each of its symbols and offsets (they share
        // args and selectors; the event names the point that fired).
        let mut points = u.symbols.iter().map(|s| (s.clone(), 0)).chain(u.offsets.iter().map(|o| (String::new(), *o)));
        let Some((symbol, offset)) = points.next() else { continue };
        let mut served = backends::uprobe(l, &base, &u.path, &symbol, offset, &u.args)?;
        for (symbol, offset) in points {
            served.attach.push(Attach::Uprobe { path: u.path.clone(), symbol, offset, key: 0, usdt: None });
        }
        if served.attach.len() > 1 {
            served.desc = format!("{} and {} more points of {}", served.desc, served.attach.len() - 1, u.path);
        }
        let function = if symbol.is_empty() { format!("{offset:#x}") } else { symbol };
        let mut p = assemble(l, env, HookKind::Uprobe, &function, &base, served, u.common())?;
        p.target = Some(u.path.clone());
        out.push(p);
    }
    for (i, u) in spec.usdts.iter().enumerate() {
        let base = format!("spec.usdts[{i}]");
        for served in backends::usdt(l, &base, u)? {
            let function = format!("{}:{}", u.provider, u.name);
            let mut p = assemble(l, env, HookKind::Usdt, &function, &base, served, u.common())?;
            p.target = Some(u.path.clone());
            out.push(p);
        }
    }
    if monitor_mode(l) {
        for p in &mut out {
            elide_enforcement(p);
        }
    }
    Ok(out)
}

/// `options: policy-mode: monitor` (Tetragon's monitoring mode).
pub fn monitor_mode(l: &Loaded) -> bool {
    l.policy.spec.options.iter().any(|o| o.name == "policy-mode" && o.value == "monitor")
}

/// Monitoring mode: the selectors' enforcing actions (Sigkill, Signal, Override,
/// NotifyEnforcer) become Post: the event is reported and nothing is done to the process.
fn elide_enforcement(p: &mut HookPlan) {
    let mut elided = false;
    for s in &mut p.conf.sels {
        if matches!(s.action, action::SIGKILL | action::SIGNAL | action::OVERRIDE | action::NOTIFY_ENFORCER) {
            s.action = action::POST;
            elided = true;
        }
    }
    if elided {
        p.served_by.push_str(" (policy-mode monitor: enforcement elided)");
    }
}

/// One kprobe (with its return argument), reported under Tetragon's name for it.
fn kprobe_hook(l: &Loaded, env: &Env, base: &str, k: &KprobeSpec) -> Result<HookPlan, ConfigError> {
    let served = backends::kprobe(l, env, base, k)?;
    let mut p = assemble(l, env, HookKind::Kprobe, &lists::reported(k), base, served, k.with_data())?;
    if let Some(ra) = &k.return_arg {
        p.args.push(ArgMeta { index: ra.index, ty: ra.ty, label: ra.label.clone(), ret: true, data: false });
        p.conf.nargs = p.args.len() as u8;
        selectors::return_conditions(&mut p.conf, k, p.args.len() - 1);
        // returnArgAction TrackSock / UntrackSock: done by the kernel as it reads the
        // returned socket (the validator allows them on sock/socket returns only).
        let ret = &mut p.conf.args[(p.args.len() - 1).min(plimits::ARGS - 1)];
        match k.return_arg_action {
            Some(ActionKind::TrackSock) => ret.aux |= net_guard::TRACK,
            Some(ActionKind::UntrackSock) => ret.aux |= net_guard::UNTRACK,
            _ => {}
        }
    }
    if !k.data.is_empty() {
        crate::hooks::resolve::data_args(l, base, &k.data, &mut p)?;
    }
    Ok(p)
}

/// A served hook plus its compiled selectors.
fn assemble(
    l: &Loaded,
    env: &Env,
    kind: HookKind,
    function: &str,
    base: &str,
    served: backends::Served,
    h: HookCommon<'_>,
) -> Result<HookPlan, ConfigError> {
    if let Some(j) = h
        .args
        .iter()
        .enumerate()
        .position(|(j, a)| a.resolve.is_some() && served.args.get(j).is_none_or(|s| s.res.set == 0))
    {
        let why = match env.kernel.kfunc() {
            None if kind == HookKind::Kprobe => format!(
                "resolve on {function} needs kprobes, which this kernel does not have ({} has no struct to resolve through)",
                served.desc
            ),
            _ => format!(
                "not supported by nightjar: resolve on {} (kernel functions and raw tracepoints only, whose arguments the kernel's BTF types)",
                served.desc
            ),
        };
        return Err(l.error(&format!("{base}.args[{j}].resolve"), why));
    }
    let mut conf = HookConfig { nargs: served.args.len() as u8, active: 1, ..Default::default() };
    for (j, a) in served.args.iter().enumerate().take(plimits::ARGS) {
        conf.args[j] = *a;
    }
    let mut strings = Vec::new();
    conf.nsel = h.selectors.len() as u8;
    for (s, sel) in h.selectors.iter().enumerate().take(plimits::SELECTORS) {
        let ctx = Ctx {
            l,
            at: format!("{base}.selectors[{s}]"),
            index: s,
            args: h.args,
            data: h.data,
            data_base: served.args.len(),
            lists: &l.policy.spec.lists,
            host_ns: &env.host_ns,
            override_refused: served.override_refused.clone(),
            lsm: served.lsm,
        };
        let (compiled, strs) = selectors::compile(&ctx, sel)?;
        conf.sels[s] = compiled;
        strings.extend(strs);
    }
    let backend = served.attach.first().map(Attach::backend).unwrap_or("tracepoint").to_owned();
    Ok(HookPlan {
        backend,
        kind,
        function: function.to_owned(),
        served_by: served.desc,
        attach: served.attach,
        args: h
            .args
            .iter()
            .map(|a| ArgMeta { index: a.index, ty: a.ty, label: a.label.clone(), ret: false, data: false })
            .collect(),
        conf,
        strings,
        message: h.message.map(str::to_owned),
        tags: h.tags.to_vec(),
        target: None,
    })
}

/// LPM entries (key data, prefix length in bits) for `values` under condition `cond`.
pub fn string_entries(cond: u32, opr: u8, values: &[String]) -> Vec<(StrData, u32)> {
    if (op::NET_FIRST..=op::NET_LAST).contains(&opr) {
        return super::net::cidr_entries(cond, values);
    }
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
pub fn bin_set(cond: u32, opr: u8, follow: bool) -> BinSet {
    BinSet { op: opr, follow: u8::from(follow), _pad: [0; 2], cond }
}

#[cfg(test)]
mod tests {
    use nightjar_common::argsrc;

    use super::*;

    #[test]
    fn syscall_numbers() {
        assert_eq!(syscall_nr("openat"), Some(257));
        assert_eq!(syscall_nr("setns"), Some(308));
        assert_eq!(syscall_nr("nope"), None);
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
                syscall_symbols: ["__x64_sys_setns".to_owned(), "__x64_sys_writev".to_owned()].into(),
                error_injection: false,
                fentry_syscalls: ["__x64_sys_setns".to_owned()].into(),
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

    /// TrackSock's argSock is the selector's fd_arg; returnArgAction a flag of the returned
    /// socket's spec (kernel functions: kprobe and kretprobe here).
    #[test]
    fn track_sock_is_compiled_into_the_selector_and_the_return_spec() {
        let text = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: t\nspec:\n  kprobes:\n  - call: tcp_connect\n    syscall: false\n    args:\n    - index: 0\n      type: sock\n    selectors:\n    - matchActions:\n      - action: UntrackSock\n        argSock: 0\n  - call: inet_csk_accept\n    syscall: false\n    return: true\n    returnArg:\n      index: 0\n      type: sock\n    returnArgAction: TrackSock\n";
        let l = crate::policy::parse("t.yaml", text).unwrap();
        let Ok(p) = plan(&l, &env(false, true, false)) else {
            eprintln!("tcp_connect / inet_csk_accept not in /proc/kallsyms here; not checked");
            return;
        };
        assert_eq!((p[0].conf.sels[0].fd_action, p[0].conf.sels[0].fd_arg), (action::UNTRACK_SOCK, 0));
        assert_eq!(p[0].conf.sels[0].action, action::POST);
        assert_eq!(p[0].conf.args[0].aux & (net_guard::TRACK | net_guard::UNTRACK), 0);
        let ret = &p[1].conf.args[p[1].conf.nargs as usize - 1];
        assert_eq!((ret.src, ret.aux & net_guard::TRACK), (argsrc::SOCK_PTR, net_guard::TRACK));
    }

    const WRITEV: &str = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: w\nspec:\n  kprobes:\n  - call: __x64_sys_writev\n    syscall: true\n    args:\n    - index: 0\n      type: int\n    - index: 1\n      type: char_iovec\n      sizeArgIndex: 3\n";

    /// A char_iovec reads the iovec array of its argument, as many segments as the
    /// argument sizeArgIndex names holds (a syscall's registers: argument 2 at word 16).
    #[test]
    fn char_iovec_is_read_with_its_count_of_segments() {
        let l = crate::policy::parse("w.yaml", WRITEV).unwrap();
        let p = &plan(&l, &env(true, true, false)).unwrap()[0];
        let a = &p.conf.args[1];
        assert_eq!((a.src, a.offset, a.aux), (argsrc::CHAR_IOVEC, 8, argsrc::CHAR_BUF_SIZED | 16));
    }

    #[test]
    fn char_iovec_without_its_count_is_refused_where_it_is_declared() {
        let l = crate::policy::parse("w.yaml", &WRITEV.replace("      sizeArgIndex: 3\n", "")).unwrap();
        let e = plan(&l, &env(true, true, false)).unwrap_err().to_string();
        assert!(e.contains("w.yaml:13:7: spec.kprobes[0].args[1].type"), "{e}");
        assert!(
            e.contains(
                "char_iovec needs sizeArgIndex (the argument holding its count of iovec segments, counted from 1)"
            ),
            "{e}"
        );
        assert!(!e.contains("returnCopy"), "{e}");
        let l = crate::policy::parse("w.yaml", &WRITEV.replace("sizeArgIndex: 3", "sizeArgIndex: 2")).unwrap();
        let e = plan(&l, &env(true, true, false)).unwrap_err().to_string();
        assert!(e.contains("w.yaml:14:7: spec.kprobes[0].args[1].sizeArgIndex"), "{e}");
        assert!(e.contains("the argument holding the count of iovec segments, counted from 1, and not"), "{e}");
        let e = crate::policy::parse("w.yaml", &WRITEV.replace("sizeArgIndex: 3", "returnCopy: true"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("w.yaml:14:7: spec.kprobes[0].args[1].returnCopy"), "{e}");
        assert!(e.contains("not supported by nightjar: returnCopy on char_iovec"), "{e}");
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
        assert_eq!(
            names,
            ["common_type", "common_flags", "common_preempt_count", "common_pid", "__syscall_nr", "fd", "flags"]
        );
    }
}

#[cfg(test)]
mod host_tests {
    //! Planning against this host's tracefs (tracepoints only as far as the planner knows).
    use nightjar_common::argsrc;

    use super::*;

    fn host() -> Env {
        let tracefs = crate::probe::probe(true).unwrap().tracefs.unwrap();
        Env { tracefs, host_ns: [1; ns::COUNT], kernel: KernelHooks::tracepoints_only("test") }
    }

    fn policy(hooks: &str) -> Loaded {
        let text = format!("apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: t\nspec:\n{hooks}");
        crate::policy::parse("t.yaml", &text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn tracepoint_indexes_count_the_common_fields() {
        let l = policy("  tracepoints:\n  - subsystem: syscalls\n    event: sys_enter_dup\n    args:\n    - index: 5\n      type: int\n");
        let p = &plan(&l, &host()).unwrap()[0];
        // common_type, common_flags, common_preempt_count, common_pid, __syscall_nr, fildes
        assert_eq!((p.conf.args[0].src, p.conf.args[0].offset), (argsrc::INT, 16));
        let l = policy("  tracepoints:\n  - subsystem: raw_syscalls\n    event: sys_enter\n    args:\n    - index: 4\n      type: syscall64\n");
        let p = &plan(&l, &host()).unwrap()[0];
        assert_eq!((p.conf.args[0].offset, p.conf.args[0].size), (8, 8));
        let l = policy("  tracepoints:\n  - subsystem: syscalls\n    event: sys_enter_dup\n    args:\n    - index: 6\n      type: int\n");
        let e = plan(&l, &host()).unwrap_err().to_string();
        assert!(e.contains("has 6 fields (common_* included); index 6 does not exist"), "{e}");
    }

    /// Where syscall kprobes are served by their sys_enter tracepoints, a char_iovec is
    /// the `vec` field, its count the `vlen` field (and the field must be an iovec array).
    #[test]
    fn char_iovec_on_the_syscall_tracepoint() {
        let hook = "  kprobes:\n  - call: __x64_sys_writev\n    syscall: true\n    args:\n    - index: 1\n      type: char_iovec\n      sizeArgIndex: 3\n";
        let p = &plan(&policy(hook), &host()).unwrap()[0];
        assert_eq!(p.attach[0].point(), "syscalls/sys_enter_writev");
        let a = &p.conf.args[0];
        assert_eq!((a.src, a.offset, a.aux), (argsrc::CHAR_IOVEC, 24, argsrc::CHAR_BUF_SIZED | 32));
        let e = plan(&policy(&hook.replace("index: 1", "index: 0")), &host()).unwrap_err().to_string();
        assert!(
            e.contains(
                "t.yaml:11:7: spec.kprobes[0].args[0].type: unsigned long fd is not a pointer to an iovec array"
            ),
            "{e}"
        );
    }

    #[test]
    fn generic_functions_need_kprobes_or_a_stand_in() {
        let l = policy("  kprobes:\n  - call: do_unlinkat\n    args:\n    - index: 0\n      type: int\n");
        let e = plan(&l, &host()).unwrap_err().to_string();
        assert!(e.contains("needs kprobes, which this kernel does not have"), "{e}");
        assert!(e.contains("t.yaml:7:5: spec.kprobes[0].call"), "{e}");
        let tracefs = crate::probe::probe(true).unwrap().tracefs.unwrap();
        if tracepoint_fields(&tracefs, "capability", "cap_capable").is_some() {
            let l = policy("  kprobes:\n  - call: cap_capable\n    args:\n    - index: 2\n      type: int\n");
            let p = &plan(&l, &host()).unwrap()[0];
            assert_eq!(p.attach[0].point(), "capability/cap_capable");
            assert_eq!((p.conf.args[0].offset, p.conf.args[0].size), (32, 4));
        }
    }
}
