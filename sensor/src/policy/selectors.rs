//! The selector compiler, as Tetragon's `pkg/selectors/kernel.go` splits it: one small
//! function per selector kind turns that part of a validated `SelectorSpec` into the
//! kernel's `Selector` (and string conditions for the `STRINGS` LPM trie). A new kind
//! (the network operators, matchCapabilityChanges, ...) is one more function here and one
//! more evaluator in `sensor-bpf/src/policy.rs`.
use nightjar_common::{action, ns, op, ArgCond, NsCond, Selector};
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
}

/// What compiling one selector needs to know about its hook and this host.
pub struct Ctx<'a> {
    pub l: &'a Loaded,
    /// `spec.kprobes[0].selectors[1]`.
    pub at: String,
    pub index: usize,
    pub args: &'a [ArgDecl],
    pub host_ns: &'a [u32; ns::COUNT],
    /// Whether the hook can act before the operation happens (Override): LSM or kprobe
    /// with error injection. None: Override is refused with this reason.
    pub override_refused: Option<String>,
    /// Override on a BPF-LSM hook: the error must be a negative errno.
    pub lsm: bool,
}

/// Compiles one selector.
pub fn compile(c: &Ctx<'_>, s: &SelectorSpec) -> Result<(Selector, Vec<StrCond>), ConfigError> {
    let mut out = Selector { bin_bit: 0xff, action: action::POST, ..Default::default() };
    let mut strings = Vec::new();
    match_args(c, &s.match_args, &mut out, &mut strings);
    match_binaries(c, &s.match_binaries, &mut out, &mut strings);
    match_namespaces(c, &s.match_namespaces, &mut out)?;
    match_pids(&s.match_pids, &mut out);
    match_capabilities(&s.match_capabilities, &mut out);
    match_actions(c, &s.match_actions, &mut out)?;
    Ok((out, strings))
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

fn match_args(c: &Ctx<'_>, ms: &[ArgSel], out: &mut Selector, strings: &mut Vec<StrCond>) {
    out.nargs = ms.len() as u8;
    for (k, m) in ms.iter().enumerate() {
        let Some(j) = c.args.iter().position(|a| a.index == m.index) else { continue };
        let mut cond = ArgCond { arg: j as u8, ..Default::default() };
        match args::info(c.args[j].ty).class {
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
                strings.push(StrCond { selector: c.index, arg_cond: Some(k), op: pos, values: m.values.clone() });
            }
        }
        out.args[k] = cond;
    }
}

fn match_binaries(c: &Ctx<'_>, bs: &[BinSel], out: &mut Selector, strings: &mut Vec<StrCond>) {
    let Some(b) = bs.first() else { return };
    let (pos, negate) = match b.operator {
        BinOp::In => (op::EQUAL, false),
        BinOp::NotIn => (op::EQUAL, true),
        BinOp::Prefix => (op::PREFIX, false),
        BinOp::NotPrefix => (op::PREFIX, true),
        BinOp::Postfix => (op::POSTFIX, false),
        BinOp::NotPostfix => (op::POSTFIX, true),
    };
    out.bin_negate = u8::from(negate);
    strings.push(StrCond { selector: c.index, arg_cond: None, op: pos, values: b.values.clone() });
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
        Namespace::Time | Namespace::TimeForChildren => ns::TIME,
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

fn match_pids(ps: &[PidSel], out: &mut Selector) {
    let Some(p) = ps.first() else { return };
    out.pid_op = set_op(p.operator);
    out.pid_ns = u8::from(p.is_namespace_pid);
    out.pid_nvals = p.values.len() as u8;
    for (v, val) in p.values.iter().enumerate() {
        out.pid_vals[v] = *val;
    }
}

fn match_capabilities(cs: &[CapSel], out: &mut Selector) {
    let Some(c) = cs.first() else { return };
    out.cap_op = set_op(c.operator);
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

fn match_actions(c: &Ctx<'_>, acts: &[ActionSel], out: &mut Selector) -> Result<(), ConfigError> {
    let mut post = true;
    let mut kill = None;
    for (i, a) in acts.iter().enumerate() {
        match a.action {
            ActionKind::NoPost => post = false,
            ActionKind::Sigkill => kill = Some((action::SIGKILL, 9u8)),
            ActionKind::Signal => kill = Some((action::SIGNAL, a.arg_sig.unwrap_or(9) as u8)),
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
