//! Tetragon `TracingPolicy` files: the model, parsing and validation with located errors.
//!
//! A policy is accepted whole or refused with `file:line:column: key.path: reason` — never
//! silently ignored or half-loaded. What the kernel then runs is decided by `compile`.
pub mod args;
pub mod backends;
pub mod compile;
pub mod engine;
pub mod lists;
pub mod net;
pub mod running;
pub mod scope;
pub mod selectors;
pub mod spec;
mod validate;
mod yamlpos;

use std::path::Path;

use nightjar_event::config::{self, ConfigError};
pub use spec::*;
use yamlpos::Positions;

pub const API_VERSION: &str = "cilium.io/v1alpha1";
pub const KINDS: [&str; 2] = ["TracingPolicy", "TracingPolicyNamespaced"];

/// A parsed policy plus the positions of its nodes, for located errors later (compile).
#[derive(Debug)]
pub struct Loaded {
    pub policy: TracingPolicy,
    pub source: String,
    positions: Positions,
}

impl Loaded {
    /// An error at `path` (dotted key path) in this policy's file.
    pub fn error(&self, path: &str, message: impl Into<String>) -> ConfigError {
        located(&self.source, &self.positions, path, message)
    }

    /// A valid Tetragon feature nightjar does not implement, at `path`:
    /// `not supported by nightjar: FEATURE (file:line:col)`.
    pub fn unsupported(&self, path: &str, feature: impl std::fmt::Display) -> ConfigError {
        let at = match self.positions.find(path) {
            Some((l, c)) => format!("{}:{l}:{c}", self.source),
            None => self.source.clone(),
        };
        self.error(path, format!("not supported by nightjar: {feature} ({at})"))
    }
}

fn located(source: &str, pos: &Positions, path: &str, message: impl Into<String>) -> ConfigError {
    let (line, column) = match pos.find(path) {
        Some((l, c)) => (Some(l), Some(c)),
        None => (None, None),
    };
    ConfigError { source_name: source.to_owned(), line, column, key_path: path.to_owned(), message: message.into() }
}

/// Parses and validates one policy file.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    parse(&path.display().to_string(), &config::read_file(path)?)
}

/// Parses and validates policy text named `source` in errors.
pub fn parse(source: &str, text: &str) -> Result<Loaded, ConfigError> {
    let mut policy: TracingPolicy = config::from_str(source, text)?;
    for u in &mut policy.spec.uprobes {
        if let Some(sym) = u.symbol.take() {
            u.symbols.insert(0, sym);
        }
    }
    let name = policy.metadata.name.clone();
    for k in policy.spec.kprobes.iter_mut().chain(policy.spec.fentries.iter_mut()) {
        if !k.return_ && (k.return_arg.is_some() || k.return_arg_action.is_some()) {
            // Tetragon loads such a hook and never reads them; so does nightjar, and says so.
            tracing::warn!(policy = %name, call = %k.call, "returnArg/returnArgAction without return: true are ignored");
            k.return_arg = None;
            k.return_arg_action = None;
        }
    }
    let loaded = Loaded { policy, source: source.to_owned(), positions: Positions::of(text) };
    validate::validate(&loaded)?;
    Ok(loaded)
}

/// An integer value of a policy: decimal (optionally negative) or 0x hex.
pub fn parse_int(s: &str) -> Option<u64> {
    let t = s.trim();
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(h, 16).ok();
    }
    if let Ok(v) = t.parse::<u64>() {
        return Some(v);
    }
    t.parse::<i64>().ok().map(|v| v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: x\nspec:\n  kprobes:\n  - call: sys_setns\n    syscall: true\n    args:\n    - index: 0\n      type: int\n    selectors:\n    - matchArgs:\n      - index: 0\n        operator: Equal\n        values: [\"3\"]\n";

    #[test]
    fn minimal_policy_parses() {
        let p = parse("p.yaml", OK).unwrap();
        assert_eq!(p.policy.metadata.name, "x");
    }

    #[test]
    fn wrong_kind_is_located() {
        let e = parse("p.yaml", &OK.replace("kind: TracingPolicy", "kind: Pod")).unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(e.to_string().contains("expected one of"), "{e}");
    }

    #[test]
    fn unknown_operator_is_located() {
        let e = parse("p.yaml", &OK.replace("operator: Equal", "operator: Equalish")).unwrap_err();
        assert_eq!(e.line, Some(15), "{e}");
        assert!(e.to_string().contains("unknown variant `Equalish`"), "{e}");
    }

    /// Every key Tetragon's CRD has is known: a policy using them fails, if at all, with
    /// "not supported by nightjar", never with "unknown field".
    #[test]
    fn tetragon_keys_are_known() {
        let all = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: all\n  labels: {a: b}\nspec:\n  loader: false\n  options:\n  - name: disable-kprobe-multi\n    value: \"1\"\n  kprobes:\n  - call: fd_install\n    syscall: false\n    return: false\n    message: m\n    tags: [t]\n    args:\n    - index: 0\n      type: int\n      label: fd\n      maxData: false\n      returnCopy: false\n    selectors:\n    - matchPIDs:\n      - operator: NotIn\n        followForks: false\n        isNamespacePID: false\n        values: [1]\n      matchArgs:\n      - index: 0\n        operator: GreaterThan\n        values: [\"2\"]\n      matchActions:\n      - action: Post\n        argError: 0\n        argSig: 9\n  tracepoints:\n  - subsystem: syscalls\n    event: sys_enter_dup\n    raw: false\n    message: m\n    tags: [t]\n  uprobes: []\n  usdts: []\n  lsmhooks: []\n  lists: []\n  enforcers: []\n";
        let p = parse("all.yaml", all).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.policy.spec.kprobes[0].selectors[0].match_args[0].operator, ArgOp::GT);
        let p = parse("u.yaml", &all.replace("  enforcers: []", "  enforcers:\n  - calls: [sys_dup]"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(lists::enforcer_nrs(&p), Ok(vec![32]));
    }

    /// This host's tracefs, with tracepoints as the only hook kind (what planning sees
    /// without a running sensor).
    fn tracepoints_env() -> compile::Env {
        compile::Env {
            tracefs: "/sys/kernel/tracing".into(),
            host_ns: Default::default(),
            kernel: compile::KernelHooks::tracepoints_only("test"),
        }
    }

    /// Spellings Tetragon's own examples use load as Tetragon loads them: actions in any
    /// case, the operators' short forms, `unsigned long`, a returnArg without index (0),
    /// returnArg without return (ignored), `fentries:`; valid keys nightjar lacks are
    /// refused by name, never "unknown variant/field".
    #[test]
    fn tetragon_spellings_load_as_tetragon_loads_them() {
        let base = OK.replace("type: int\n", "type: \"unsigned long\"\n");
        let l = parse(
            "t.yaml",
            &base
                .replace("operator: Equal", "operator: eq")
                .replace("values: [\"3\"]\n", "values: [\"3\"]\n      matchActions:\n      - action: SigKill\n"),
        )
        .unwrap();
        let sel = &l.policy.spec.kprobes[0].selectors[0];
        assert_eq!(sel.match_args[0].operator, ArgOp::Equal);
        assert_eq!(sel.match_actions[0].action, spec::ActionKind::Sigkill);
        assert_eq!(l.policy.spec.kprobes[0].args[0].ty, spec::ArgType::Uint64);
        for (op, want) in
            [("family", ArgOp::Family), ("gt", ArgOp::GT), ("NotDport", ArgOp::NotDPort), ("saddr", ArgOp::SAddr)]
        {
            assert_eq!(serde_norway::from_str::<ArgOp>(op).unwrap(), want, "{op}");
        }
        let l = parse("t.yaml", &OK.replace("operator: Equal", "operator: gt")).unwrap();
        assert_eq!(l.policy.spec.kprobes[0].selectors[0].match_args[0].operator, ArgOp::GT);
        let e = parse("t.yaml", &OK.replace("operator: Equal", "operator: SubString")).unwrap_err().to_string();
        assert!(e.contains("not supported by nightjar") && e.contains("substring"), "{e}");
        let e = parse(
            "t.yaml",
            &OK.replace("values: [\"3\"]\n", "values: [\"3\"]\n      matchActions:\n      - action: Explode\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown variant `Explode`, expected one of `Post`"), "{e}");
        // returnArg without an index is argument 0; without return: true it is ignored.
        let ret =
            OK.replace("    syscall: true\n", "    syscall: true\n    return: true\n    returnArg:\n      type: int\n");
        assert_eq!(parse("t.yaml", &ret).unwrap().policy.spec.kprobes[0].return_arg.as_ref().unwrap().index, 0);
        let l = parse("t.yaml", &ret.replace("    return: true\n", "")).expect("returnArg without return loads");
        assert!(l.policy.spec.kprobes[0].return_arg.is_none(), "and is ignored");
        // fentries: planned as kprobes are, errors located under spec.fentries.
        let f = OK.replace("  kprobes:\n", "  fentries:\n");
        let l = parse("t.yaml", &f).unwrap();
        let plans = compile::plan(&l, &tracepoints_env()).unwrap();
        assert_eq!(plans[0].function, "__x64_sys_setns");
        let e = parse("t.yaml", &f.replace("operator: Equal", "operator: Prefix")).unwrap_err().to_string();
        assert!(e.contains("spec.fentries[0].selectors[0].matchArgs[0]"), "{e}");
        // An older release's uprobe `symbol:`.
        let up = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: u\nspec:\n  uprobes:\n  - path: /bin/bash\n    symbol: readline\n";
        assert_eq!(parse("u.yaml", up).unwrap().policy.spec.uprobes[0].symbols, ["readline"]);
        // policy-mode: enforce or monitor, as Tetragon's.
        let opt = |v: &str| parse("t.yaml", &format!("{OK}  options:\n  - name: policy-mode\n    value: {v}\n"));
        assert!(opt("monitor").is_ok() && opt("enforce").is_ok());
        assert!(opt("audit").unwrap_err().to_string().contains("expects enforce or monitor"));
    }

    /// `resolve:` is checked where it is written: a path of member names, btfType only
    /// with it, not on returnArg, and only on hooks whose arguments BTF types.
    #[test]
    fn resolve_paths_are_checked_where_written() {
        let tp = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: r\nspec:\n  tracepoints:\n  - subsystem: syscalls\n    event: sys_enter_openat\n    args:\n    - index: 0\n      type: int\nEXTRA";
        for (extra, want) in [
            ("      resolve: \"a..b\"\n", "member names joined by dots"),
            ("      btfType: \"struct file\"\n", "btfType applies with resolve only"),
        ] {
            let e = parse("r.yaml", &tp.replace("EXTRA", extra)).unwrap_err().to_string();
            assert!(e.contains("r.yaml:12:") && e.contains(want), "{e}");
        }
        let l = parse("r.yaml", &tp.replace("EXTRA", "      resolve: \"pid\"\n")).unwrap();
        let env = tracepoints_env();
        let e = compile::plan(&l, &env).unwrap_err().to_string();
        assert!(e.contains("not supported by nightjar: resolve on tracepoint syscalls:sys_enter_openat"), "{e}");
    }

    /// `data:` arguments need `source: current_task` and a path; other sources are
    /// refused as not supported, `source` on an argument as misplaced.
    #[test]
    fn data_arguments_need_the_current_task_and_a_path() {
        let k = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: d\nspec:\n  kprobes:\n  - call: fd_install\n    syscall: false\n    data:\n    - index: 0\n      type: int\nEXTRA";
        for (extra, want) in [
            ("", "a data argument needs source: current_task"),
            ("      source: current_task\n", "a data argument needs resolve"),
            ("      source: pt_regs\n      resolve: ax\n", "not supported by nightjar: data source \"pt_regs\""),
        ] {
            let e = parse("d.yaml", &k.replace("EXTRA", extra)).unwrap_err().to_string();
            assert!(e.contains("d.yaml:10:") || e.contains("d.yaml:12:"), "{e}");
            assert!(e.contains(want), "{extra:?}: {e}");
        }
        parse("d.yaml", &k.replace("EXTRA", "      source: current_task\n      resolve: tgid\n"))
            .unwrap_or_else(|e| panic!("{e}"));
        let a = k.replace("    data:\n", "    args:\n").replace("EXTRA", "      source: current_task\n");
        let e = parse("d.yaml", &a).unwrap_err().to_string();
        assert!(e.contains("source applies to data arguments only"), "{e}");
    }

    /// matchData conditions compare the data arguments, captured after the arguments
    /// (and the return value), and need data: on the hook.
    #[test]
    fn match_data_compares_the_data_arguments() {
        let k = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: d\nspec:\n  kprobes:\n  - call: sys_dup\n    syscall: true\n    args:\n    - index: 0\n      type: int\n    data:\n    - index: 0\n      type: int\n      source: current_task\n      resolve: tgid\n    - index: 1\n      type: string\n      source: current_task\n      resolve: comm\n    selectors:\n    - matchArgs:\n      - index: 0\n        operator: Equal\n        values: [\"77\"]\n      matchData:\n      - index: 1\n        operator: Prefix\n        values: [\"x\"]\n      - index: 0\n        operator: GreaterThan\n        values: [\"5\"]\n";
        let l = parse("d.yaml", k).unwrap_or_else(|e| panic!("{e}"));
        let env = tracepoints_env();
        let plans = compile::plan(&l, &env).unwrap_or_else(|e| panic!("{e}"));
        let c = &plans[0].conf;
        assert_eq!((c.nargs, c.sels[0].nargs), (3, 3));
        let conds: Vec<(u8, u8)> = c.sels[0].args[..3].iter().map(|a| (a.arg, a.op)).collect();
        use nightjar_common::op;
        assert_eq!(conds, vec![(0, op::EQUAL), (2, op::PREFIX), (1, op::GT)], "{:?}", c.sels[0].args);
        assert!(plans[0].strings.iter().any(|s| s.arg_cond == Some(1)), "the Prefix condition's strings");
        let e = parse("d.yaml", &k.replace("    data:\n", "    xdata:\n")).unwrap_err().to_string();
        assert!(e.contains("unknown field") || e.contains("matchData needs data"), "{e}");
    }

    /// kernelStackTrace and userStackTrace: on a kprobe's Post only.
    #[test]
    fn stack_traces_are_checked_where_written() {
        let k = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: s\nspec:\n  HOOK\n    selectors:\n    - matchActions:\n      - action: ACT\n        FIELD: true\n";
        let kp = "kprobes:\n  - call: fd_install\n    syscall: false";
        let tp = "tracepoints:\n  - subsystem: syscalls\n    event: sys_enter_dup";
        let p = |hook: &str, act: &str, field: &str| {
            parse("s.yaml", &k.replace("HOOK", hook).replace("ACT", act).replace("FIELD", field))
        };
        let l = p(kp, "Post", "kernelStackTrace").unwrap_or_else(|e| panic!("{e}"));
        assert!(l.policy.spec.kprobes[0].selectors[0].match_actions[0].kernel_stack_trace);
        for (hook, act, field, want) in [
            (kp, "Sigkill", "userStackTrace", "userStackTrace applies to the Post action only"),
            (kp, "Sigkill", "kernelStackTrace", "kernelStackTrace applies to the Post action only"),
            (tp, "Post", "kernelStackTrace", "kernelStackTrace applies to kprobes only"),
        ] {
            let e = p(hook, act, field).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("s.yaml:12:"), "{field} on {act}: {e}");
        }
    }

    /// matchParentBinaries compiles to its own set (the engine's bit goes to pbin_bit),
    /// with its negation, and is checked like matchBinaries.
    #[test]
    fn match_parent_binaries_is_a_set_of_its_own() {
        let k = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: p\nspec:\n  kprobes:\n  - call: sys_dup\n    syscall: true\n    selectors:\n    - matchParentBinaries:\n      - operator: NotIn\n        values: VALUES\n";
        let l = parse("p.yaml", &k.replace("VALUES", "[/bin/sh]")).unwrap_or_else(|e| panic!("{e}"));
        let env = tracepoints_env();
        let plans = compile::plan(&l, &env).unwrap_or_else(|e| panic!("{e}"));
        let sel = &plans[0].conf.sels[0];
        assert_eq!((sel.bin_bit, sel.pbin_bit, sel.pbin_negate, sel.bin_negate), (0xff, 0xff, 1, 0));
        let sc = &plans[0].strings[0];
        assert!(sc.parent && sc.arg_cond.is_none() && sc.values == ["/bin/sh"], "{sc:?}");
        let e = parse("p.yaml", &k.replace("VALUES", "[]")).unwrap_err().to_string();
        assert!(e.contains("p.yaml:12:") && e.contains("matchParentBinaries needs 1-32 values"), "{e}");
    }

    /// matchNamespaceChanges: one entry, its namespaces as slot bits and its operator.
    #[test]
    fn match_namespace_changes_compiles_to_slot_bits() {
        use nightjar_common::{ns, op};
        let k = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: n\nspec:\n  kprobes:\n  - call: sys_dup\n    syscall: true\n    selectors:\n    - matchNamespaceChanges:\n      - operator: In\n        values: VALUES\n";
        let l = parse("n.yaml", &k.replace("VALUES", "[Mnt, Net]")).unwrap_or_else(|e| panic!("{e}"));
        let env = tracepoints_env();
        let sel = compile::plan(&l, &env).unwrap_or_else(|e| panic!("{e}"))[0].conf.sels[0];
        assert_eq!((sel.nschg_op, sel.nschg_mask), (op::IN, (1 << ns::MNT | 1 << ns::NET) as u16));
        let e = parse("n.yaml", &k.replace("VALUES", "[]")).unwrap_err().to_string();
        assert!(e.contains("n.yaml:12:") && e.contains("matchNamespaceChanges needs the namespaces"), "{e}");
    }

    /// A generated_ftrace list needs a pattern that is a regular expression, each error
    /// where it is written.
    #[test]
    fn generated_ftrace_lists_need_a_regular_expression() {
        let base = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: g\nspec:\n  lists:\n  - name: f\n    type: generated_ftrace\nPATTERN  kprobes:\n  - call: \"list:f\"\n    syscall: false\n";
        let e = parse("g.yaml", &base.replace("PATTERN", "")).unwrap_err().to_string();
        assert!(e.contains("g.yaml:8:") && e.contains("needs pattern, a regular expression"), "{e}");
        let e = parse("g.yaml", &base.replace("PATTERN", "    pattern: \"^vfs_(\"\n")).unwrap_err().to_string();
        assert!(e.contains("g.yaml:9:") && e.contains("is not a regular expression"), "{e}");
        parse("g.yaml", &base.replace("PATTERN", "    pattern: \"^vfs_fsync\"\n")).unwrap_or_else(|e| panic!("{e}"));
    }

    /// `enforcers[].calls`: syscalls by any of Tetragon's spellings or through a syscall
    /// list; anything else is refused where it is written.
    #[test]
    fn enforcer_calls_name_syscalls() {
        let base = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: e\nspec:\n  lists:\n  - name: dups\n    type: syscalls\n    values: [sys_dup, sys_dup2]\n  - name: fns\n    values: [fd_install]\n  enforcers:\n  - calls: [CALLS]\n  kprobes:\n  - call: fd_install\n    syscall: false\n    selectors:\n    - matchActions:\n      - action: NotifyEnforcer\n        argSig: 9\n";
        let nrs =
            |calls: &str| parse("e.yaml", &base.replace("CALLS", calls)).map(|p| lists::enforcer_nrs(&p).unwrap());
        assert_eq!(nrs("\"list:dups\", __x64_sys_dup3, ptrace").unwrap(), vec![32, 33, 101, 292]);
        for bad in ["\"list:fns\"", "\"list:nope\"", "not_a_syscall"] {
            let e = nrs(bad).unwrap_err().to_string();
            assert!(e.contains("e.yaml:13:") && e.contains("a syscall (e.g. sys_dup) or list:NAME"), "{bad}: {e}");
        }
        let e =
            parse("e.yaml", &base.replace("CALLS", "sys_dup").replace("argSig: 9", "argSig: 9\n        argError: -1"))
                .unwrap_err()
                .to_string();
        assert!(e.contains("not supported by nightjar: NotifyEnforcer argError"), "{e}");
        let e = parse("e.yaml", &base.replace("CALLS", "sys_dup").replace("\n        argSig: 9", ""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("NotifyEnforcer needs argSig"), "{e}");
    }

    #[test]
    fn time_for_children_is_its_own_namespace_slot() {
        use nightjar_common::ns;
        assert_eq!(selectors::ns_slot(Namespace::TimeForChildren), ns::TIME_FOR_CHILDREN);
        assert_eq!(selectors::ns_slot(Namespace::Time), ns::TIME);
        let p = OK.replace("    - matchArgs:", "    - matchNamespaces:\n      - namespace: TimeForChildren\n        operator: NotIn\n        values: [host_ns]\n      matchArgs:");
        assert_ne!(p, OK);
        parse("t.yaml", &p).unwrap_or_else(|e| panic!("{e}"));
    }

    /// `NotifyEnforcer` without `spec.enforcers` and `Set` off USDT are refused, each saying why.
    #[test]
    fn notify_enforcer_and_set_are_refused_with_the_reason() {
        let base = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: n\nspec:\n  kprobes:\n  - call: fd_install\n    syscall: false\n    selectors:\n    - matchActions:\n      - action: ACT\n";
        let e = parse("n.yaml", &base.replace("ACT", "NotifyEnforcer")).unwrap_err().to_string();
        assert!(e.contains("NotifyEnforcer needs a spec.enforcers section"), "{e}");
        assert!(e.contains("n.yaml:11:"), "{e}");
        let e = parse("s.yaml", &base.replace("ACT", "Set")).unwrap_err().to_string();
        assert!(
            e.contains(
                "not supported by nightjar: action Set on kprobes (Tetragon has Set for usdts only) (s.yaml:11:"
            ),
            "{e}"
        );
    }

    const TRACK: &str = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: t\nspec:\n  kprobes:\n  - call: tcp_connect\n    syscall: false\n    args:\n    - index: 0\n      type: sock\n    - index: 1\n      type: int\n    selectors:\n    - matchActions:\n      - action: TrackSock\n        argSock: 0\n  - call: inet_csk_accept\n    syscall: false\n    return: true\n    args:\n    - index: 0\n      type: sock\n    returnArg:\n      index: 0\n      type: sock\n    returnArgAction: UntrackSock\n";

    #[test]
    fn track_sock_needs_a_socket_argument() {
        parse("t.yaml", TRACK).unwrap_or_else(|e| panic!("{e}"));
        let e = parse("t.yaml", &TRACK.replace("argSock: 0", "argSock: 1")).unwrap_err();
        assert_eq!(e.line, Some(17), "{e}");
        assert!(e.to_string().contains("argSock names a int argument; a sock or socket is expected"), "{e}");
        let e = parse("t.yaml", &TRACK.replace("argSock: 0", "argSock: 2")).unwrap_err().to_string();
        assert!(e.contains("argSock 2: the hook declares 2 arguments"), "{e}");
        let e = parse("t.yaml", &TRACK.replace("        argSock: 0\n", "")).unwrap_err().to_string();
        assert!(e.contains("TrackSock needs argSock"), "{e}");
        let e = parse(
            "t.yaml",
            &TRACK.replace(
                "      - action: TrackSock",
                "      - action: FollowFD\n        argFd: 1\n        argName: 0\n      - action: TrackSock",
            ),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("conflicting actions"), "{e}");
        let e = parse(
            "t.yaml",
            &TRACK.replace(
                "      index: 0\n      type: sock\n    returnArgAction",
                "      index: 0\n      type: int\n    returnArgAction",
            ),
        )
        .unwrap_err();
        assert!(e.to_string().contains("returnArgAction UntrackSock needs a returnArg of type sock or socket"), "{e}");
        assert_eq!(e.line, Some(27), "{e}");
    }

    #[test]
    fn options_are_tetragons_with_their_values_checked() {
        let with = |opts: &str| parse("p.yaml", &OK.replace("spec:\n", &format!("spec:\n  options:\n{opts}")));
        assert!(with(
            "  - name: disable-kprobe-multi\n    value: \"true\"\n  - name: uprobe-heap-size\n    value: \"4096\"\n"
        )
        .is_ok());
        let e = with("  - name: disable-kprobe-multi\n    value: \"yes\"\n").unwrap_err();
        assert!(e.to_string().contains("expects a boolean"), "{e}");
        assert_eq!(e.line, Some(8), "{e}");
        let e = with("  - name: uprobe-heap-size\n    value: \"0\"\n").unwrap_err();
        assert!(e.to_string().contains("expects a positive integer"), "{e}");
        let e = with("  - name: turbo\n").unwrap_err();
        assert!(e.to_string().contains("unknown option \"turbo\"; Tetragon's are disable-kprobe-multi"), "{e}");
        assert_eq!(e.line, Some(7), "{e}");
    }

    #[test]
    fn namespaced_policies_need_their_namespace() {
        let e = parse("p.yaml", &OK.replace("kind: TracingPolicy", "kind: TracingPolicyNamespaced")).unwrap_err();
        assert!(e.to_string().contains("needs metadata.namespace"), "{e}");
        assert_eq!(e.line, Some(3), "{e}");
        let l = parse(
            "p.yaml",
            &OK.replace("kind: TracingPolicy", "kind: TracingPolicyNamespaced")
                .replace("  name: x\n", "  name: x\n  namespace: shop\n"),
        )
        .unwrap();
        let s = scope::Scope::of(&l).expect("a scope");
        assert_eq!(s.describe(), "namespace shop");
    }

    #[test]
    fn k8s_selectors_are_checked_as_kubernetes_and_tetragon_check_them() {
        let with = |extra: &str| parse("p.yaml", &format!("{OK}{extra}"));
        let l = with("  podSelector:\n    matchLabels:\n      app: web\n  containerSelector:\n    matchExpressions:\n    - key: name\n      operator: In\n      values: [main]\n  hostSelector: {}\n").unwrap();
        assert_eq!(scope::Scope::of(&l).unwrap().describe(), "pods app=web, containers name In [main], host");
        assert!(scope::Scope::of(&with("  hostSelector: ~\n").unwrap()).is_none());
        let e = with("  containerSelector:\n    matchLabels:\n      image: nginx\n").unwrap_err();
        assert!(e.to_string().contains("\"image\": only \"name\" is a field here"), "{e}");
        let e = with("  podSelector:\n    matchExpressions:\n    - key: app\n      operator: In\n").unwrap_err();
        assert!(e.to_string().contains("operator In needs values"), "{e}");
        assert_eq!(e.line, Some(19), "{e}");
        let e =
            with("  podSelector:\n    matchExpressions:\n    - key: app\n      operator: Exists\n      values: [x]\n")
                .unwrap_err();
        assert!(e.to_string().contains("operator Exists takes no values"), "{e}");
        let e = with("  hostSelector:\n    matchLabels:\n      a: b\n").unwrap_err();
        assert!(e.to_string().contains("hostSelector takes ~"), "{e}");
    }

    #[test]
    fn a_kprobe_list_must_exist() {
        let e = parse("p.yaml", &OK.replace("call: sys_setns", "call: list:nope")).unwrap_err();
        assert!(e.to_string().contains("no list named \"nope\" in spec.lists"), "{e}");
        assert_eq!(e.line, Some(7), "{e}");
    }

    #[test]
    fn bad_index_is_located() {
        let e =
            parse("p.yaml", &OK.replace("      - index: 0\n        operator", "      - index: 3\n        operator"))
                .unwrap_err();
        assert_eq!(e.line, Some(14), "{e}");
        assert!(e.to_string().contains("names no declared argument"), "{e}");
    }
}
