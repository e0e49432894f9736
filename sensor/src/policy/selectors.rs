//! The selector compiler, as Tetragon's `pkg/selectors/kernel.go` splits it: one small
//! function per selector kind turns that part of a validated `SelectorSpec` into the
//! kernel's `Selector` (and string conditions for the `STRINGS` LPM trie). A new kind
//! (the network operators, matchCapabilityChanges, ...) is one more function here and one
//! more evaluator in `sensor-bpf/src/policy.rs`.
use nightjar_common::{action, ns, op, rate_scope, ArgCond, NsCond, Selector};
use nightjar_event::config::ConfigError;

use super::{
    args::{self, Class},
    parse_int,
    spec::*,
    Loaded,
};

/// A string condition of a selector, for the engine to put in the `STRINGS` trie.
#[derive(Debug, Clone)]
pub struct StrCond {
    pub selector: usize,
    /// Index in the selector's `args`, or None for its matchBinaries.
    pub arg_cond: Option<usize>,
    /// Positive operator (EQUAL, PREFIX, POSTFIX); negation lives in the condition.
    pub op: u8,
    pub values: Vec<String>,
    /// matchBinaries followChildren (false for arguments).
    pub follow: bool,
    /// A matchParentBinaries set (with `arg_cond` None).
    pub parent: bool,
}

impl StrCond {
    /// The condition of matchArgs entry `k` of selector `selector`.
    fn arg(selector: usize, k: usize, op: u8, values: Vec<String>) -> StrCond {
        StrCond { selector, arg_cond: Some(k), op, values, follow: false, parent: false }
    }
}

/// What compiling one selector needs to know about its hook and this host.
pub struct Ctx<'a> {
    pub l: &'a Loaded,
    /// `spec.kprobes[0].selectors[1]`.
    pub at: String,
    pub index: usize,
    pub args: &'a [ArgDecl],
    /// The `data:` arguments (matchData), captured from position `data_base` on.
    pub data: &'a [ArgDecl],
    pub data_base: usize,
    /// The policy's `lists:`.
    pub lists: &'a [ListSpec],
    pub host_ns: &'a [u32; ns::COUNT],
    /// Whether the hook can act before the operation happens (Override): LSM or kprobe
    /// with error injection. None: Override is refused with this reason.
    pub override_refused: Option<String>,
    /// Override on a BPF-LSM hook: the error must be a negative errno.
    pub lsm: bool,
}

/// Compiles one selector.
pub fn compile(c: &Ctx<'_>, s: &SelectorSpec) -> Result<(Selector, Vec<StrCond>), ConfigError> {
    let mut out = Selector { bin_bit: 0xff, pbin_bit: 0xff, action: action::POST, ..Default::default() };
    let mut strings = Vec::new();
    match_args(c, c.args, 0, &s.match_args, &mut out, &mut strings)?;
    match_args(c, c.data, c.data_base, &s.match_data, &mut out, &mut strings)?;
    match_binaries(c, &s.match_binaries, false, &mut out, &mut strings);
    match_binaries(c, &s.match_parent_binaries, true, &mut out, &mut strings);
    match_namespaces(c, &s.match_namespaces, &mut out)?;
    match_namespace_changes(&s.match_namespace_changes, &mut out);
    match_pids(&s.match_pids, &mut out);
    match_capabilities(&s.match_capabilities, &mut out);
    match_capability_changes(&s.match_capability_changes, &mut out);
    match_actions(c, &s.match_actions, &mut out)?;
    Ok((out, strings))
}

/// Appends each selector's matchReturnArgs as conditions on the return value, argument
/// `ret` of the hook (it is captured like the others, from word 6 of the record).
pub fn return_conditions(conf: &mut nightjar_common::HookConfig, k: &KprobeSpec, ret: usize) {
    let Some(ra) = &k.return_arg else { return };
    for (s, sel) in k.selectors.iter().enumerate().take(nightjar_common::plimits::SELECTORS) {
        let out = &mut conf.sels[s];
        for m in &sel.match_return_args {
            let at = out.nargs as usize;
            if at >= nightjar_common::plimits::MATCH_ARGS {
                break;
            }
            let mut cond =
                ArgCond { arg: ret as u8, op: int_op(m.operator), nvals: m.values.len() as u8, ..Default::default() };
            if matches!(args::info(ra.ty).class, Class::Int { .. }) {
                for (v, val) in m.values.iter().enumerate().take(cond.vals.len()) {
                    cond.vals[v] = parse_int(val).unwrap_or_default();
                }
            }
            out.args[at] = cond;
            out.nargs += 1;
        }
    }
}

/// The positive form of a string operator and whether the condition negates it.
fn str_op(o: ArgOp) -> (u8, u8) {
    match o {
        ArgOp::Equal | ArgOp::In => (op::EQUAL, op::EQUAL),
        ArgOp::NotEqual | ArgOp::NotIn => (op::EQUAL, op::NOT_EQUAL),
        ArgOp::Prefix => (op::PREFIX, op::PREFIX),
        ArgOp::NotPrefix => (op::PREFIX, op::NOT_PREFIX),
        ArgOp::Postfix => (op::POSTFIX, op::POSTFIX),
        _ => (op::POSTFIX, op::NOT_POSTFIX),
    }
}

fn int_op(o: ArgOp) -> u8 {
    match o {
        ArgOp::Equal | ArgOp::In => op::EQUAL,
        ArgOp::NotEqual | ArgOp::NotIn => op::NOT_EQUAL,
        ArgOp::GT => op::GT,
        ArgOp::LT => op::LT,
        _ => op::MASK,
    }
}

/// The syscall number a `syscalls` list value names (`sys_dup`, `__x64_sys_dup`, `dup`).
pub fn list_syscall(v: &str) -> Option<u32> {
    let name = super::backends::syscall_name(v).unwrap_or(v);
    super::compile::syscall_nr(name)
}

/// The values of an InMap condition: its literal values and the lists it names, expanded.
fn in_map_values(c: &Ctx<'_>, m: &ArgSel) -> Vec<String> {
    let mut out = Vec::new();
    for v in &m.values {
        let Some(name) = v.strip_prefix("list:") else {
            out.push(v.clone());
            continue;
        };
        let Some(list) = c.lists.iter().find(|l| l.name == name) else { continue };
        match list.ty {
            Some(ListType::Syscalls) => {
                out.extend(list.values.iter().filter_map(|s| list_syscall(s)).map(|n| n.to_string()))
            }
            Some(ListType::GeneratedSyscalls) => out.extend(super::compile::syscall_numbers().map(|n| n.to_string())),
            _ => out.extend(list.values.iter().cloned()),
        }
    }
    out
}

/// An integer InMap condition: a 512-bit map in `vals` when every value is below 512, else
/// the values themselves (at most INT_VALUES).
fn int_in_map(c: &Ctx<'_>, at: &str, m: &ArgSel, values: &[String], cond: &mut ArgCond) -> Result<(), ConfigError> {
    let negate = m.operator == ArgOp::NotInMap;
    let nums: Vec<u64> = values.iter().filter_map(|v| parse_int(v)).collect();
    if nums.iter().all(|n| *n < 512) {
        cond.op = if negate { op::NOT_IN_MAP } else { op::IN_MAP };
        for n in nums {
            cond.vals[(n / 64) as usize] |= 1u64 << (n % 64);
        }
        return Ok(());
    }
    if nums.len() > cond.vals.len() {
        return Err(c.l.error(
            &format!("{at}.values"),
            format!("{} values, some above 511: at most {} such values", nums.len(), cond.vals.len()),
        ));
    }
    cond.op = if negate { op::NOT_EQUAL } else { op::EQUAL };
    cond.nvals = nums.len() as u8;
    for (v, n) in nums.iter().enumerate() {
        cond.vals[v] = *n;
    }
    Ok(())
}

/// matchArgs over `args` (captured from position `base`: 0, or the data arguments' for
/// matchData), appended to the selector's conditions.
fn match_args(
    c: &Ctx<'_>,
    args: &[ArgDecl],
    base: usize,
    ms: &[ArgSel],
    out: &mut Selector,
    strings: &mut Vec<StrCond>,
) -> Result<(), ConfigError> {
    for m in ms {
        let k = out.nargs as usize;
        if k >= nightjar_common::plimits::MATCH_ARGS {
            break;
        }
        out.nargs += 1;
        let Some(j) = args.iter().position(|a| a.index == m.index) else { continue };
        let mut cond = ArgCond { arg: (base + j) as u8, ..Default::default() };
        let in_map = matches!(m.operator, ArgOp::InMap | ArgOp::NotInMap);
        match args::info(args[j].ty).class {
            Class::Net => {
                let at = format!("{}.matchArgs[{k}]", c.at);
                if let Some(pos) = super::net::condition(c.l, &at, args[j].ty, m, &mut cond)? {
                    strings.push(StrCond::arg(c.index, k, pos, m.values.clone()));
                }
            }
            Class::Int { .. } if in_map => {
                let values = in_map_values(c, m);
                int_in_map(c, &format!("{}.matchArgs[{k}]", c.at), m, &values, &mut cond)?;
            }
            _ if in_map => {
                let (pos, neg) =
                    if m.operator == ArgOp::NotInMap { (op::EQUAL, op::NOT_EQUAL) } else { (op::EQUAL, op::EQUAL) };
                cond.op = neg;
                strings.push(StrCond::arg(c.index, k, pos, in_map_values(c, m)));
            }
            Class::Int { .. } => {
                cond.op = int_op(m.operator);
                cond.nvals = m.values.len() as u8;
                for (v, val) in m.values.iter().enumerate() {
                    cond.vals[v] = parse_int(val).unwrap_or_default();
                }
            }
            _ => {
                let (pos, neg) = str_op(m.operator);
                cond.op = neg;
                strings.push(StrCond::arg(c.index, k, pos, m.values.clone()));
            }
        }
        out.args[k] = cond;
    }
    Ok(())
}

/// matchBinaries (or, `parent`, matchParentBinaries): a binary set of the engine's, whose
/// bit it puts in the selector; here the negation.
fn match_binaries(c: &Ctx<'_>, bs: &[BinSel], parent: bool, out: &mut Selector, strings: &mut Vec<StrCond>) {
    let Some(b) = bs.first() else { return };
    let (pos, negate) = match b.operator {
        BinOp::In => (op::EQUAL, false),
        BinOp::NotIn => (op::EQUAL, true),
        BinOp::Prefix => (op::PREFIX, false),
        BinOp::NotPrefix => (op::PREFIX, true),
        BinOp::Postfix => (op::POSTFIX, false),
        BinOp::NotPostfix => (op::POSTFIX, true),
    };
    if parent {
        out.pbin_negate = u8::from(negate);
    } else {
        out.bin_negate = u8::from(negate);
    }
    strings.push(StrCond {
        selector: c.index,
        arg_cond: None,
        op: pos,
        values: b.values.clone(),
        follow: b.follow_children,
        parent,
    });
}

/// The slot of a namespace in the kernel's `ns` order.
pub fn ns_slot(n: Namespace) -> usize {
    match n {
        Namespace::Uts => ns::UTS,
        Namespace::Ipc => ns::IPC,
        Namespace::Mnt => ns::MNT,
        Namespace::Pid => ns::PID,
        Namespace::PidForChildren => ns::PID_FOR_CHILDREN,
        Namespace::Net => ns::NET,
        Namespace::Time => ns::TIME,
        Namespace::TimeForChildren => ns::TIME_FOR_CHILDREN,
        Namespace::Cgroup => ns::CGROUP,
        Namespace::User => ns::USER,
    }
}

fn set_op(o: SetOp) -> u8 {
    match o {
        SetOp::In => op::IN,
        SetOp::NotIn => op::NOT_IN,
    }
}

fn match_namespaces(c: &Ctx<'_>, ns_sels: &[NsSel], out: &mut Selector) -> Result<(), ConfigError> {
    out.nns = ns_sels.len() as u8;
    for (k, n) in ns_sels.iter().enumerate() {
        let slot = ns_slot(n.namespace);
        let mut cond =
            NsCond { slot: slot as u8, op: set_op(n.operator), nvals: n.values.len() as u8, ..Default::default() };
        for (v, val) in n.values.iter().enumerate() {
            cond.vals[v] = if val == "host_ns" {
                if c.host_ns[slot] == 0 {
                    return Err(c.l.error(
                        &format!("{}.matchNamespaces[{k}].values[{v}]", c.at),
                        format!("the host's {:?} namespace could not be read", n.namespace),
                    ));
                }
                c.host_ns[slot]
            } else {
                val.parse().unwrap_or_default()
            };
        }
        out.ns[k] = cond;
    }
    Ok(())
}

/// matchNamespaceChanges (one entry, as the validator allows): its operator and the
/// namespaces' slot bits.
fn match_namespace_changes(ns: &[NsChangeSel], out: &mut Selector) {
    let Some(n) = ns.first() else { return };
    out.nschg_op = set_op(n.operator);
    out.nschg_mask = n.values.iter().fold(0u16, |m, v| m | 1 << ns_slot(*v));
}

fn match_pids(ps: &[PidSel], out: &mut Selector) {
    out.npids = ps.len().min(out.pids.len()) as u8;
    for (c, p) in out.pids.iter_mut().zip(ps) {
        c.op = set_op(p.operator);
        c.ns = u8::from(p.is_namespace_pid);
        c.follow = u8::from(p.follow_forks);
        c.nvals = p.values.len() as u8;
        for (v, val) in p.values.iter().enumerate().take(c.vals.len()) {
            c.vals[v] = *val;
        }
    }
}

/// Tetragon's rateLimit: seconds (`30`, `30s`), minutes (`5m`) or hours (`1h`), as ns.
pub fn rate_limit_ns(s: &str) -> Option<u64> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last()? {
        (i, 's') => (&t[..i], 1),
        (i, 'm') => (&t[..i], 60),
        (i, 'h') => (&t[..i], 3600),
        _ => (t, 1),
    };
    let n: u64 = num.trim().parse().ok()?;
    n.checked_mul(mult)?.checked_mul(1_000_000_000).filter(|v| *v > 0)
}

fn match_capabilities(cs: &[CapSel], out: &mut Selector) {
    let Some(c) = cs.first() else { return };
    out.cap_op = set_op(c.operator);
    out.cap_userns = if c.is_namespace_capability { host_user_ns() } else { 0 };
    out.cap_set = match c.ty {
        CapSet::Effective => 0,
        CapSet::Permitted => 1,
        CapSet::Inheritable => 2,
    };
    for v in &c.values {
        if let Some(b) = crate::hooks::process::cap_bit(v) {
            out.cap_mask |= 1u64 << b;
        }
    }
}

/// matchCapabilityChanges: as matchCapabilities, against the capabilities at exec.
fn match_capability_changes(cs: &[CapSel], out: &mut Selector) {
    let mut m = Selector::default();
    match_capabilities(cs, &mut m);
    (out.capchg_op, out.capchg_set, out.capchg_mask, out.capchg_userns) =
        (m.cap_op, m.cap_set, m.cap_mask, m.cap_userns);
}

/// The host's user namespace, as Tetragon finds it: that of pid 1 (the initial one,
/// PROC_USER_INIT_INO, when /proc/1 cannot be read).
fn host_user_ns() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/1/ns/user").map_or(0xEFFF_FFFD, |m| m.ino() as u32)
}

fn match_actions(c: &Ctx<'_>, acts: &[ActionSel], out: &mut Selector) -> Result<(), ConfigError> {
    let mut post = true;
    let mut kill = None;
    for (i, a) in acts.iter().enumerate() {
        if a.kernel_stack_trace {
            out.stack |= nightjar_common::STACK_KERNEL;
        }
        if a.user_stack_trace {
            out.stack |= nightjar_common::STACK_USER;
        }
        if let Some(r) = &a.rate_limit {
            out.rate_ns = rate_limit_ns(r).unwrap_or_default();
            out.rate_scope = match a.rate_limit_scope.unwrap_or_default() {
                RateLimitScope::Thread => rate_scope::THREAD,
                RateLimitScope::Process => rate_scope::PROCESS,
                RateLimitScope::Global => rate_scope::GLOBAL,
            };
        }
        match a.action {
            ActionKind::NoPost => post = false,
            ActionKind::Sigkill => kill = Some((action::SIGKILL, 9u8)),
            ActionKind::Signal => kill = Some((action::SIGNAL, a.arg_sig.unwrap_or(9) as u8)),
            ActionKind::NotifyEnforcer => kill = Some((action::NOTIFY_ENFORCER, a.arg_sig.unwrap_or(9) as u8)),
            ActionKind::CleanupEnforcerNotification => kill = Some((action::CLEANUP_ENFORCER, 0)),
            ActionKind::Override => {
                let at = format!("{}.matchActions[{i}]", c.at);
                if let Some(why) = &c.override_refused {
                    return Err(c.l.error(&format!("{at}.action"), why.clone()));
                }
                let e = a.arg_error.unwrap_or(-1);
                if c.lsm && !(-4095..=0).contains(&e) {
                    return Err(c.l.error(
                        &format!("{at}.argError"),
                        format!("argError {e}: a BPF-LSM hook can only return 0 or a negative errno (-4095..-1)"),
                    ));
                }
                kill = Some((action::OVERRIDE, 0));
                out.error = e;
            }
            ActionKind::FollowFD | ActionKind::UnfollowFD | ActionKind::CopyFD => fd_action(a, out),
            ActionKind::TrackSock | ActionKind::UntrackSock => {
                out.fd_action =
                    if a.action == ActionKind::TrackSock { action::TRACK_SOCK } else { action::UNTRACK_SOCK };
                out.fd_arg = a.arg_sock.unwrap_or(0) as u8;
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
    Ok(())
}

/// FollowFD / UnfollowFD / CopyFD: the action and the positions of its arguments (argFd,
/// argName), which the validator checked against the hook's arguments.
fn fd_action(a: &ActionSel, out: &mut Selector) {
    out.fd_action = match a.action {
        ActionKind::FollowFD => action::FOLLOW_FD,
        ActionKind::UnfollowFD => action::UNFOLLOW_FD,
        _ => action::COPY_FD,
    };
    out.fd_arg = a.arg_fd.unwrap_or(0) as u8;
    out.fd_name = a.arg_name.unwrap_or(0) as u8;
}
