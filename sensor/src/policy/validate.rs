//! Checks a parsed policy before it is planned on a kernel: limits, consistency, and the
//! Tetragon features nightjar does not implement (refused as "not supported by nightjar:
//! FEATURE (file:line:col)", never ignored). One small function per part of the spec.
use nightjar_common::plimits;
use nightjar_event::config::ConfigError;

use super::{
    args::{self, Class},
    parse_int,
    spec::*,
    Loaded,
};

type R = Result<(), ConfigError>;

/// Tetragon's `spec.options`: (name, expected value). None of them changes what nightjar
/// does (it attaches one program per hook point, never kprobe_multi/uprobe_multi, and
/// reads uprobe arguments without a heap), but their values are checked as Tetragon's.
const OPTIONS: [(&str, OptionValue); 4] = [
    ("disable-kprobe-multi", OptionValue::Bool),
    ("disable-uprobe-multi", OptionValue::Bool),
    ("uprobe-heap-size", OptionValue::PositiveInt),
    // enforce (the default) or monitor: the policy's enforcing actions are elided.
    ("policy-mode", OptionValue::Mode),
];

#[derive(Clone, Copy)]
enum OptionValue {
    Bool,
    PositiveInt,
    Mode,
}

pub fn validate(l: &Loaded) -> R {
    let p = &l.policy;
    if p.api_version != super::API_VERSION {
        return Err(l.error("apiVersion", format!("expected {:?}, got {:?}", super::API_VERSION, p.api_version)));
    }
    if p.kind == "TracingPolicyNamespaced" && p.metadata.namespace.as_deref().is_none_or(|n| n.trim().is_empty()) {
        return Err(l.error(
            "metadata",
            "a TracingPolicyNamespaced needs metadata.namespace (the namespace whose pods it applies to)",
        ));
    }
    if !super::KINDS.contains(&p.kind.as_str()) {
        return Err(l.error("kind", format!("expected one of {}, got {:?}", super::KINDS.join(", "), p.kind)));
    }
    let name = p.metadata.name.trim();
    if name.is_empty() || name.len() > 253 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) {
        return Err(
            l.error("metadata.name", format!("{name:?} is not a valid name (1-253 of a-z, 0-9, '-', '.', '_')"))
        );
    }
    spec_level(l, &p.spec)?;
    for (base, k) in p.spec.kprobe_entries() {
        kprobe(l, &base, k)?;
    }
    for (i, t) in p.spec.tracepoints.iter().enumerate() {
        tracepoint(l, &format!("spec.tracepoints[{i}]"), t)?;
    }
    for (i, h) in p.spec.lsmhooks.iter().enumerate() {
        let base = format!("spec.lsmhooks[{i}]");
        if h.hook.trim().is_empty() {
            return Err(l.error(&format!("{base}.hook"), "hook must name an LSM hook"));
        }
        common(l, &base, h.common(), false)?;
    }
    for (i, u) in p.spec.uprobes.iter().enumerate() {
        uprobe(l, &format!("spec.uprobes[{i}]"), u)?;
    }
    for (i, u) in p.spec.usdts.iter().enumerate() {
        let base = format!("spec.usdts[{i}]");
        if !u.path.starts_with('/') {
            return Err(
                l.error(&format!("{base}.path"), format!("{:?}: the binary's absolute path is expected", u.path))
            );
        }
        if u.provider.is_empty() || u.name.is_empty() {
            return Err(l.error(&base, "a USDT probe needs its provider and name"));
        }
        common(l, &base, u.common(), false)?;
    }
    Ok(())
}

/// A Kubernetes label selector: In/NotIn need values, Exists/DoesNotExist take none;
/// `only_key` restricts the keys (containerSelector's fields).
fn label_selector(l: &Loaded, at: &str, s: &LabelSelector, only_key: Option<&str>) -> R {
    let key_ok = |k: &str| only_key.is_none_or(|o| o == k);
    for k in s.match_labels.keys() {
        if !key_ok(k) {
            return Err(l.error(
                &format!("{at}.matchLabels"),
                format!("{k:?}: only {:?} is a field here", only_key.unwrap_or_default()),
            ));
        }
    }
    for (i, e) in s.match_expressions.iter().enumerate() {
        let at = format!("{at}.matchExpressions[{i}]");
        if !key_ok(&e.key) {
            return Err(l.error(
                &format!("{at}.key"),
                format!("{:?}: only {:?} is a field here", e.key, only_key.unwrap_or_default()),
            ));
        }
        let needs_values = matches!(e.operator, LabelOp::In | LabelOp::NotIn);
        if needs_values == e.values.is_empty() {
            let why = if needs_values { "needs values" } else { "takes no values" };
            return Err(l.error(&at, format!("operator {:?} {why}", e.operator)));
        }
    }
    Ok(())
}

fn spec_level(l: &Loaded, s: &Spec) -> R {
    // A uprobes entry is one hook, however many symbols and offsets it attaches at.
    let uprobe_points: usize = s.uprobes.len();
    let kprobes: usize = s.kprobe_entries().map(|(_, k)| super::lists::hook_count(l, k)).sum();
    let n_hooks = kprobes + s.tracepoints.len() + s.lsmhooks.len() + uprobe_points + s.usdts.len();
    if n_hooks == 0 {
        return Err(l.error("spec", "a policy needs at least one of kprobes, tracepoints, lsmhooks, uprobes or usdts"));
    }
    if n_hooks > 16 {
        return Err(l.error("spec", format!("{n_hooks} hooks in one policy; at most 16")));
    }
    if s.loader {
        return Err(l.unsupported("spec.loader", "loader events"));
    }
    if let Some(sel) = &s.pod_selector {
        label_selector(l, "spec.podSelector", sel, None)?;
    }
    if let Some(sel) = &s.container_selector {
        // Tetragon's container fields: only the name so far.
        label_selector(l, "spec.containerSelector", sel, Some("name"))?;
    }
    if let Some(h) = &s.host_selector {
        if !h.match_labels.is_empty() || !h.match_expressions.is_empty() {
            return Err(l.error(
                "spec.hostSelector",
                "hostSelector takes ~ (no host processes) or {} (all of them), as Tetragon's",
            ));
        }
    }
    for (i, list) in s.lists.iter().enumerate() {
        let at = format!("spec.lists[{i}]");
        if s.lists[..i].iter().any(|o| o.name == list.name) {
            return Err(l.error(&format!("{at}.name"), format!("list {:?} is declared twice", list.name)));
        }
        match list.ty {
            Some(ListType::GeneratedFtrace) => {
                let Some(p) = &list.pattern else {
                    return Err(l.error(
                        &format!("{at}.type"),
                        "a generated_ftrace list needs pattern, a regular expression over the kernel's traceable functions",
                    ));
                };
                if let Err(e) = regex::Regex::new(p) {
                    return Err(l.error(&format!("{at}.pattern"), format!("{p:?} is not a regular expression: {e}")));
                }
            }
            Some(ListType::Syscalls) => {
                for (v, val) in list.values.iter().enumerate() {
                    if super::selectors::list_syscall(val).is_none() {
                        return Err(l.error(
                            &format!("{at}.values[{v}]"),
                            format!("{val:?} is not a syscall of this architecture"),
                        ));
                    }
                }
            }
            Some(ListType::GeneratedSyscalls) | None => {}
        }
    }
    for (base, k) in s.kprobe_entries() {
        list_call(l, &format!("{base}.call"), k)?;
    }
    if let Err((at, call)) = super::lists::enforcer_nrs(l) {
        return Err(
            l.error(&at, format!("{call:?}: a syscall (e.g. sys_dup) or list:NAME of a syscalls list is expected"))
        );
    }
    for (i, o) in s.options.iter().enumerate() {
        option(l, &format!("spec.options[{i}]"), o)?;
    }
    Ok(())
}

/// `call: "list:NAME"`: the list exists and holds functions.
fn list_call(l: &Loaded, at: &str, k: &KprobeSpec) -> R {
    let Some(name) = k.call.strip_prefix("list:") else { return Ok(()) };
    let Some(list) = super::lists::named(l, &k.call) else {
        return Err(l.error(at, format!("no list named {name:?} in spec.lists")));
    };
    // A generated_ftrace list is generated on the kernel that plans it (`compile::plan`).
    if list.ty != Some(ListType::GeneratedFtrace) && super::lists::functions(list).is_empty() {
        return Err(l.error(at, format!("list {name:?} has no values")));
    }
    Ok(())
}

fn option(l: &Loaded, at: &str, o: &OptionSpec) -> R {
    let Some((_, want)) = OPTIONS.iter().find(|(n, _)| *n == o.name) else {
        let names: Vec<&str> = OPTIONS.iter().map(|(n, _)| *n).collect();
        return Err(l.error(
            &format!("{at}.name"),
            format!("unknown option {:?}; Tetragon's are {}", o.name, names.join(", ")),
        ));
    };
    let ok = match want {
        // Go's strconv.ParseBool, as Tetragon parses them.
        OptionValue::Bool => {
            matches!(
                o.value.as_str(),
                "1" | "t" | "T" | "TRUE" | "true" | "True" | "0" | "f" | "F" | "FALSE" | "false" | "False"
            )
        }
        OptionValue::PositiveInt => o.value.parse::<u64>().is_ok_and(|n| n > 0),
        OptionValue::Mode => matches!(o.value.as_str(), "enforce" | "monitor"),
    };
    if !ok {
        let what = match want {
            OptionValue::Bool => "a boolean (true, false, 1, 0, t, f)",
            OptionValue::PositiveInt => "a positive integer",
            OptionValue::Mode => "enforce or monitor",
        };
        return Err(l.error(&format!("{at}.value"), format!("{:?}: {} expects {what}", o.value, o.name)));
    }
    Ok(())
}

fn kprobe(l: &Loaded, base: &str, k: &KprobeSpec) -> R {
    if k.call.trim().is_empty() {
        return Err(l.error(&format!("{base}.call"), "call must name a kernel function"));
    }
    if let Some(a) = &k.return_arg {
        arg(l, &format!("{base}.returnArg"), a)?;
        if !matches!(args::info(a.ty).class, Class::Int { .. } | Class::Net) {
            return Err(l.unsupported(&format!("{base}.returnArg.type"), format!("returnArg of type {}", a.ty.name())));
        }
    }
    match k.return_arg_action {
        None | Some(ActionKind::Post) => {}
        Some(ActionKind::TrackSock | ActionKind::UntrackSock)
            if k.return_arg.as_ref().is_some_and(|a| matches!(a.ty, ArgType::Sock | ArgType::Socket)) => {}
        Some(a @ (ActionKind::TrackSock | ActionKind::UntrackSock)) => {
            return Err(l.error(
                &format!("{base}.returnArgAction"),
                format!("returnArgAction {} needs a returnArg of type sock or socket", a.name()),
            ))
        }
        Some(other) => {
            return Err(l.unsupported(&format!("{base}.returnArgAction"), format!("returnArgAction {}", other.name())))
        }
    }
    for (s, sel) in k.selectors.iter().enumerate() {
        if !sel.match_return_args.is_empty() && !k.return_ {
            return Err(
                l.error(&format!("{base}.selectors[{s}].matchReturnArgs"), "matchReturnArgs needs return: true")
            );
        }
        if let Some(ra) = &k.return_arg {
            match_args(
                l,
                &format!("{base}.selectors[{s}]"),
                "matchReturnArgs",
                std::slice::from_ref(ra),
                &retargs_as_index(ra, &sel.match_return_args),
            )?;
        }
    }
    for (j, d) in k.data.iter().enumerate() {
        data_arg(l, &format!("{base}.data[{j}]"), d)?;
    }
    common(l, base, k.with_data(), false)
}

/// matchReturnArgs conditions as conditions on the return argument (any index names it).
fn retargs_as_index(ra: &ArgDecl, ms: &[ArgSel]) -> Vec<ArgSel> {
    ms.iter().map(|m| ArgSel { index: ra.index, ..m.clone() }).collect()
}

fn tracepoint(l: &Loaded, base: &str, t: &TracepointSpec) -> R {
    if t.subsystem.is_empty() || t.event.is_empty() {
        return Err(l.error(base, "subsystem and event are required"));
    }
    // A raw tracepoint's args are its TP_PROTO arguments (at most 5 are read), not the
    // format fields a tracepoint's index counts.
    common(l, base, t.common(), !t.raw)
}

fn uprobe(l: &Loaded, base: &str, u: &UprobeSpec) -> R {
    if u.resolve_path_in_container {
        return Err(l.unsupported(
            &format!("{base}.resolvePathInContainer"),
            "resolvePathInContainer (uprobes on a path inside each selected pod's container)",
        ));
    }
    if !u.path.starts_with('/') {
        return Err(l.error(&format!("{base}.path"), format!("{:?}: the binary's absolute path is expected", u.path)));
    }
    if u.symbols.is_empty() && u.offsets.is_empty() {
        return Err(l.error(&format!("{base}.symbols"), "a uprobe needs symbols or offsets"));
    }
    if !u.ref_ctr_offsets.is_empty() {
        return Err(l.unsupported(&format!("{base}.refCtrOffsets"), "uprobe refCtrOffsets"));
    }
    if u.btf_path.is_some() {
        return Err(l.unsupported(&format!("{base}.btfPath"), "uprobe btfPath"));
    }
    if !u.data.is_empty() {
        return Err(l.unsupported(&format!("{base}.data"), "data arguments"));
    }
    common(l, base, u.common(), false)
}

/// Args and selectors, the same for every kind of hook. Tracepoint arg indexes count the
/// tracepoint's format fields (so they go beyond 5).
fn common(l: &Loaded, base: &str, h: HookCommon<'_>, tracepoint: bool) -> R {
    if h.args.len() > plimits::MAX_ARGS {
        return Err(l.error(&format!("{base}.args"), format!("{} args; at most {}", h.args.len(), plimits::MAX_ARGS)));
    }
    if let Some(m) = h.message {
        if m.len() > 256 {
            return Err(l.error(&format!("{base}.message"), format!("{} bytes; at most 256", m.len())));
        }
    }
    if h.tags.len() > 16 {
        return Err(l.error(&format!("{base}.tags"), format!("{} tags; at most 16", h.tags.len())));
    }
    let mut strings = 0;
    for (j, a) in h.args.iter().enumerate() {
        let at = format!("{base}.args[{j}]");
        let max = if tracepoint { 63 } else { 5 };
        if a.index > max {
            return Err(l.error(&format!("{at}.index"), format!("index {} is out of range (0-{max})", a.index)));
        }
        if h.args[..j].iter().any(|b| b.index == a.index) {
            return Err(l.error(&format!("{at}.index"), format!("index {} is declared twice", a.index)));
        }
        arg(l, &at, a)?;
        if args::is_stringy(a.ty) || crate::hooks::kstruct::reads(a.ty) {
            strings += 1;
        }
    }
    if strings > plimits::STR_SLOTS {
        return Err(l.error(
            &format!("{base}.args"),
            format!("{strings} string, path or buffer args; at most {}", plimits::STR_SLOTS),
        ));
    }
    if h.selectors.len() > plimits::MAX_SELECTORS {
        return Err(l.error(
            &format!("{base}.selectors"),
            format!("{} selectors; at most {}", h.selectors.len(), plimits::MAX_SELECTORS),
        ));
    }
    for (s, sel) in h.selectors.iter().enumerate() {
        selector(l, &format!("{base}.selectors[{s}]"), &h, sel)?;
    }
    Ok(())
}

/// A `data:` argument: an argument's checks, and a source and a path to read it by.
fn data_arg(l: &Loaded, at: &str, d: &ArgDecl) -> R {
    arg(l, at, d)?;
    match (d.source.as_deref(), &d.resolve) {
        (Some("current_task"), Some(_)) => Ok(()),
        (Some("current_task"), None) => {
            Err(l.error(&format!("{at}.resolve"), "a data argument needs resolve, a path from the task_struct"))
        }
        (Some(other), _) => {
            Err(l.unsupported(&format!("{at}.source"), format!("data source {other:?} (current_task is)")))
        }
        (None, _) => Err(l.error(&format!("{at}.source"), "a data argument needs source: current_task")),
    }
}

fn arg(l: &Loaded, at: &str, a: &ArgDecl) -> R {
    let info = args::info(a.ty);
    if let Some(why) = info.unsupported {
        return Err(l.unsupported(&format!("{at}.type"), format!("argument type {} ({why})", a.ty.name())));
    }
    if a.size_arg_index.is_some() && !matches!(a.ty, ArgType::CharBuf | ArgType::CharIovec) {
        return Err(l.error(&format!("{at}.sizeArgIndex"), "sizeArgIndex applies to char_buf and char_iovec only"));
    }
    if a.return_copy && a.ty == ArgType::CharIovec {
        return Err(l.unsupported(&format!("{at}.returnCopy"), "returnCopy on char_iovec"));
    }
    if a.return_copy && a.ty != ArgType::CharBuf {
        return Err(l.error(&format!("{at}.returnCopy"), "returnCopy applies to char_buf and char_iovec only"));
    }
    match (&a.resolve, &a.btf_type) {
        (Some(r), _) if r.is_empty() || r.split('.').any(str::is_empty) => {
            return Err(l.error(&format!("{at}.resolve"), format!("{r:?}: member names joined by dots are expected")))
        }
        (None, Some(_)) => return Err(l.error(&format!("{at}.btfType"), "btfType applies with resolve only")),
        (Some(_), _) if at.ends_with("returnArg") => {
            return Err(l.unsupported(&format!("{at}.resolve"), "resolve on returnArg"))
        }
        _ => {}
    }
    if a.source.is_some() && !at.contains(".data[") {
        return Err(l.error(&format!("{at}.source"), "source applies to data arguments only"));
    }
    if a.ty == ArgType::ConstBuf {
        return Err(l.unsupported(&format!("{at}.type"), format!("argument type {} (buffers)", a.ty.name())));
    }
    if info.class == Class::Struct && !crate::hooks::kstruct::reads(a.ty) {
        return Err(l.unsupported(&format!("{at}.type"), format!("argument type {}", a.ty.name())));
    }
    Ok(())
}

fn selector(l: &Loaded, at: &str, h: &HookCommon<'_>, s: &SelectorSpec) -> R {
    let args = h.args;
    for (field, n) in [("matchReturnActions", s.match_return_actions.len())] {
        if n > 0 {
            return Err(l.unsupported(&format!("{at}.{field}"), field));
        }
    }
    match_args(l, at, "matchArgs", args, &s.match_args)?;
    if !s.match_data.is_empty() && h.data.is_empty() {
        return Err(l.error(&format!("{at}.matchData"), "matchData needs data: arguments on the hook"));
    }
    match_args(l, at, "matchData", h.data, &s.match_data)?;
    if s.match_args.len() + s.match_data.len() > plimits::MATCH_ARGS {
        return Err(l.error(
            &format!("{at}.matchData"),
            format!(
                "matchArgs and matchData: {} conditions; at most {} in all",
                s.match_args.len() + s.match_data.len(),
                plimits::MATCH_ARGS
            ),
        ));
    }
    match_binaries(l, at, "matchBinaries", &s.match_binaries)?;
    match_binaries(l, at, "matchParentBinaries", &s.match_parent_binaries)?;
    match_namespaces(l, at, &s.match_namespaces)?;
    match_namespace_changes(l, at, &s.match_namespace_changes)?;
    match_pids(l, at, &s.match_pids)?;
    match_capabilities(l, at, "matchCapabilities", &s.match_capabilities)?;
    match_capabilities(l, at, "matchCapabilityChanges", &s.match_capability_changes)?;
    match_actions(l, at, &s.match_actions)?;
    for (i, a) in s.match_actions.iter().enumerate() {
        fd_action(l, &format!("{at}.matchActions[{i}]"), args, a)?;
        sock_action(l, &format!("{at}.matchActions[{i}]"), args, a)?;
    }
    Ok(())
}

/// TrackSock / UntrackSock: argSock names (by position, as Tetragon counts) a sock or
/// socket argument.
fn sock_action(l: &Loaded, at: &str, args: &[ArgDecl], a: &ActionSel) -> R {
    if !matches!(a.action, ActionKind::TrackSock | ActionKind::UntrackSock) {
        return Ok(());
    }
    let Some(p) = a.arg_sock else {
        return Err(l.error(&format!("{at}.argSock"), format!("{} needs argSock", a.action.name())));
    };
    match args.get(p as usize) {
        Some(d) if matches!(d.ty, ArgType::Sock | ArgType::Socket) => Ok(()),
        Some(d) => Err(l.error(
            &format!("{at}.argSock"),
            format!("argSock names a {} argument; a sock or socket is expected", d.ty.name()),
        )),
        None => Err(l.error(
            &format!("{at}.argSock"),
            format!("argSock {p}: the hook declares {} arguments (counted from 0 in declaration order)", args.len()),
        )),
    }
}

/// FollowFD / UnfollowFD / CopyFD: argFd names (by position, as Tetragon counts) an
/// integer or fd argument; FollowFD's argName a file, path or string argument, CopyFD's
/// argName the new fd (an integer argument).
fn fd_action(l: &Loaded, at: &str, args: &[ArgDecl], a: &ActionSel) -> R {
    let name_class = match a.action {
        ActionKind::FollowFD => "a file, path or string argument (the name to follow)",
        ActionKind::CopyFD => "an integer argument (the new fd)",
        ActionKind::UnfollowFD => "",
        _ => return Ok(()),
    };
    let pos = |field: &str, v: Option<u32>| -> Result<&ArgDecl, ConfigError> {
        let Some(p) = v else {
            return Err(l.error(&format!("{at}.{field}"), format!("{} needs {field}", a.action.name())));
        };
        args.get(p as usize).ok_or_else(|| {
            l.error(
                &format!("{at}.{field}"),
                format!(
                    "{field} {p}: the hook declares {} arguments (counted from 0 in declaration order)",
                    args.len()
                ),
            )
        })
    };
    let is_int = |d: &ArgDecl| matches!(args::info(d.ty).class, Class::Int { .. }) || d.ty == ArgType::Fd;
    let fd = pos("argFd", a.arg_fd)?;
    if !is_int(fd) {
        return Err(l.error(
            &format!("{at}.argFd"),
            format!("argFd names a {} argument; an fd (int or fd) is expected", fd.ty.name()),
        ));
    }
    if name_class.is_empty() {
        return Ok(());
    }
    let name = pos("argName", a.arg_name)?;
    let ok = if a.action == ActionKind::FollowFD {
        args::is_stringy(name.ty) && args::info(name.ty).class != Class::Bytes
    } else {
        is_int(name)
    };
    if !ok {
        return Err(l.error(
            &format!("{at}.argName"),
            format!("argName names a {} argument; {name_class} is expected", name.ty.name()),
        ));
    }
    Ok(())
}

/// matchArgs (or matchData, over the `data:` arguments): each names a declared argument
/// and suits its type.
fn match_args(l: &Loaded, at: &str, field: &str, args: &[ArgDecl], ms: &[ArgSel]) -> R {
    if ms.len() > plimits::MATCH_ARGS {
        // (matchArgs, matchData and matchReturnArgs share the selector's MATCH_ARGS conditions.)
        return Err(l.error(&format!("{at}.{field}"), format!("{} {field}; at most {}", ms.len(), plimits::MATCH_ARGS)));
    }
    for (i, m) in ms.iter().enumerate() {
        let mat = format!("{at}.{field}[{i}]");
        let Some(decl) = args.iter().find(|a| a.index == m.index) else {
            return Err(l.error(
                &format!("{mat}.index"),
                format!(
                    "index {} names no declared argument (declared: {:?})",
                    m.index,
                    args.iter().map(|a| a.index).collect::<Vec<_>>()
                ),
            ));
        };
        if let Some(why) = args::op_unsupported(m.operator) {
            return Err(l.unsupported(&format!("{mat}.operator"), format!("operator {} ({why})", m.operator.name())));
        }
        if matches!(m.operator, ArgOp::InMap | ArgOp::NotInMap) {
            for (v, val) in m.values.iter().enumerate() {
                if let Some(name) = val.strip_prefix("list:") {
                    if !l.policy.spec.lists.iter().any(|x| x.name == name) {
                        return Err(
                            l.error(&format!("{mat}.values[{v}]"), format!("no list named {name:?} in spec.lists"))
                        );
                    }
                }
            }
            continue;
        }
        let class = args::info(decl.ty).class;
        let ops = args::ops_for(class);
        if !ops.contains(&m.operator) {
            return Err(l.error(
                &format!("{mat}.operator"),
                format!(
                    "operator {} does not apply to type {} (expected one of {})",
                    m.operator.name(),
                    decl.ty.name(),
                    ops.iter().map(|o| o.name()).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        if m.values.is_empty() && !super::net::takes_no_values(m.operator) {
            return Err(l.error(&format!("{mat}.values"), "values must not be empty"));
        }
        if matches!(class, Class::Int { .. }) {
            int_values(l, &mat, &m.values)?;
        } else {
            str_values(l, &mat, &m.values)?;
        }
    }
    Ok(())
}

fn int_values(l: &Loaded, at: &str, values: &[String]) -> R {
    if values.len() > plimits::INT_VALUES {
        return Err(
            l.error(&format!("{at}.values"), format!("{} values; at most {}", values.len(), plimits::INT_VALUES))
        );
    }
    for (v, val) in values.iter().enumerate() {
        if parse_int(val).is_none() {
            return Err(l.error(&format!("{at}.values[{v}]"), format!("{val:?} is not an integer (decimal or 0x hex)")));
        }
    }
    Ok(())
}

fn str_values(l: &Loaded, at: &str, values: &[String]) -> R {
    if values.len() > 32 {
        return Err(l.error(&format!("{at}.values"), format!("{} values; at most 32", values.len())));
    }
    for (v, val) in values.iter().enumerate() {
        if val.is_empty() || val.len() >= plimits::STR - 1 {
            return Err(l.error(
                &format!("{at}.values[{v}]"),
                format!("string values must be 1-{} bytes long", plimits::STR - 2),
            ));
        }
    }
    Ok(())
}

fn match_binaries(l: &Loaded, at: &str, field: &str, bs: &[BinSel]) -> R {
    if bs.len() > 1 {
        return Err(l.error(&format!("{at}.{field}"), format!("at most one {field} entry per selector")));
    }
    for (i, b) in bs.iter().enumerate() {
        let bat = format!("{at}.{field}[{i}]");
        if b.values.is_empty() {
            return Err(l.error(&format!("{bat}.values"), format!("{field} needs 1-32 values")));
        }
        str_values(l, &bat, &b.values)?;
    }
    Ok(())
}

fn match_namespace_changes(l: &Loaded, at: &str, ns: &[NsChangeSel]) -> R {
    if ns.len() > 1 {
        return Err(
            l.error(&format!("{at}.matchNamespaceChanges"), "at most one matchNamespaceChanges entry per selector")
        );
    }
    match ns.first() {
        Some(n) if n.values.is_empty() => Err(l.error(
            &format!("{at}.matchNamespaceChanges[0].values"),
            "matchNamespaceChanges needs the namespaces to watch (Uts, Ipc, Mnt, Pid, Net, Time, Cgroup, User, ...)",
        )),
        _ => Ok(()),
    }
}

fn match_namespaces(l: &Loaded, at: &str, ns: &[NsSel]) -> R {
    if ns.len() > plimits::NS_CONDS {
        return Err(l.error(
            &format!("{at}.matchNamespaces"),
            format!("{} matchNamespaces entries; at most {}", ns.len(), plimits::NS_CONDS),
        ));
    }
    for (i, n) in ns.iter().enumerate() {
        let nat = format!("{at}.matchNamespaces[{i}]");
        if n.values.is_empty() || n.values.len() > plimits::NS_VALUES {
            return Err(
                l.error(&format!("{nat}.values"), format!("matchNamespaces needs 1-{} values", plimits::NS_VALUES))
            );
        }
        for (v, val) in n.values.iter().enumerate() {
            if val != "host_ns" && val.parse::<u32>().is_err() {
                return Err(l.error(
                    &format!("{nat}.values[{v}]"),
                    format!("{val:?} is neither a namespace inode number nor host_ns"),
                ));
            }
        }
    }
    Ok(())
}

fn match_pids(l: &Loaded, at: &str, ps: &[PidSel]) -> R {
    if ps.len() > plimits::PID_CONDS {
        return Err(l.error(
            &format!("{at}.matchPIDs"),
            format!("{} matchPIDs entries; at most {}", ps.len(), plimits::PID_CONDS),
        ));
    }
    for (i, m) in ps.iter().enumerate() {
        let pat = format!("{at}.matchPIDs[{i}]");
        if m.values.is_empty() || m.values.len() > plimits::PID_VALUES {
            return Err(l.error(&format!("{pat}.values"), format!("matchPIDs needs 1-{} values", plimits::PID_VALUES)));
        }
    }
    Ok(())
}

fn match_capabilities(l: &Loaded, at: &str, key: &str, cs: &[CapSel]) -> R {
    if cs.len() > 1 {
        return Err(l.error(&format!("{at}.{key}"), format!("at most one {key} entry per selector")));
    }
    for (i, c) in cs.iter().enumerate() {
        let cat = format!("{at}.{key}[{i}]");
        capability_values(l, &cat, &c.values)?;
    }
    Ok(())
}

fn capability_values(l: &Loaded, at: &str, values: &[String]) -> R {
    if values.is_empty() {
        return Err(l.error(&format!("{at}.values"), "values must not be empty"));
    }
    for (v, val) in values.iter().enumerate() {
        if crate::hooks::process::cap_bit(val).is_none() {
            return Err(l.error(&format!("{at}.values[{v}]"), format!("unknown capability {val:?}")));
        }
    }
    Ok(())
}

fn match_actions(l: &Loaded, at: &str, acts: &[ActionSel]) -> R {
    let mut kill = 0;
    let mut post = 0;
    let mut fd = 0;
    for (i, a) in acts.iter().enumerate() {
        let aat = format!("{at}.matchActions[{i}]");
        action(l, &aat, a)?;
        match a.action {
            ActionKind::Sigkill
            | ActionKind::Signal
            | ActionKind::Override
            | ActionKind::NotifyEnforcer
            | ActionKind::CleanupEnforcerNotification => kill += 1,
            ActionKind::FollowFD
            | ActionKind::UnfollowFD
            | ActionKind::CopyFD
            | ActionKind::TrackSock
            | ActionKind::UntrackSock => fd += 1,
            _ => post += 1,
        }
    }
    if kill > 1 || post > 1 || fd > 1 {
        return Err(l.error(
            &format!("{at}.matchActions"),
            "conflicting actions: at most one of Sigkill/Signal/Override/NotifyEnforcer/CleanupEnforcerNotification, one of Post/NoPost and one of FollowFD/UnfollowFD/CopyFD/TrackSock/UntrackSock",
        ));
    }
    Ok(())
}

/// NotifyEnforcer: a signal (argSig) nightjar's enforcer sends at the enforced syscall's
/// exit; failing that syscall (argError) would need error injection on it, which it does
/// not do.
fn notify_enforcer(l: &Loaded, at: &str, a: &ActionSel) -> R {
    if a.arg_error.is_some_and(|e| e != 0) {
        return Err(l.unsupported(
            &format!("{at}.argError"),
            "NotifyEnforcer argError (failing the enforced syscall needs error injection on it: bpf_override_return or fmod_ret, CONFIG_FUNCTION_ERROR_INJECTION, which Debian's kernels leave out; nightjar's enforcer serves argSig, at that syscall's exit)",
        ));
    }
    match a.arg_sig {
        Some(1..=64) => Ok(()),
        _ => Err(l.error(&format!("{at}.argSig"), "NotifyEnforcer needs argSig, a signal number 1-64")),
    }
}

/// What a `Set` action at `at` asks for: Tetragon serves it on USDT probes only.
fn set_feature(at: &str) -> String {
    let hook = at.strip_prefix("spec.").and_then(|r| r.split('[').next()).unwrap_or("this hook");
    match hook {
        "usdts" => "action Set on usdts (writing the probe's argument in user memory)".to_owned(),
        other => format!("action Set on {other} (Tetragon has Set for usdts only)"),
    }
}

fn action(l: &Loaded, at: &str, a: &ActionSel) -> R {
    use ActionKind as A;
    match a.action {
        A::Post
        | A::NoPost
        | A::Sigkill
        | A::Override
        | A::FollowFD
        | A::UnfollowFD
        | A::CopyFD
        | A::TrackSock
        | A::UntrackSock => {}
        A::Signal => match a.arg_sig {
            Some(1..=64) => {}
            _ => return Err(l.error(&format!("{at}.argSig"), "Signal needs argSig, a signal number 1-64")),
        },
        A::GetUrl | A::DnsLookup => {
            return Err(l.unsupported(
                &format!("{at}.action"),
                format!("action {} (nightjar makes no network requests from the kernel path)", a.action.name()),
            ))
        }
        A::NotifyEnforcer | A::CleanupEnforcerNotification if l.policy.spec.enforcers.is_empty() => {
            return Err(l.error(
                &format!("{at}.action"),
                format!(
                    "{} needs a spec.enforcers section listing the syscalls whose exit enforces it",
                    a.action.name()
                ),
            ))
        }
        A::NotifyEnforcer => notify_enforcer(l, at, a)?,
        A::CleanupEnforcerNotification => {}
        A::Set => return Err(l.unsupported(&format!("{at}.action"), set_feature(at))),
        other => return Err(l.unsupported(&format!("{at}.action"), format!("action {}", other.name()))),
    }
    match (&a.rate_limit, a.rate_limit_scope) {
        (None, Some(_)) => return Err(l.error(&format!("{at}.rateLimitScope"), "rateLimitScope needs rateLimit")),
        (Some(r), _) if super::selectors::rate_limit_ns(r).is_none() => {
            return Err(l.error(
                &format!("{at}.rateLimit"),
                format!("{r:?}: a period is expected: seconds (30 or 30s), minutes (5m) or hours (1h)"),
            ))
        }
        (Some(_), _) if a.action != ActionKind::Post => {
            return Err(l.error(&format!("{at}.rateLimit"), "rateLimit applies to the Post action only"))
        }
        _ => {}
    }
    for (on, field) in [(a.kernel_stack_trace, "kernelStackTrace"), (a.user_stack_trace, "userStackTrace")] {
        if on && a.action != ActionKind::Post {
            return Err(l.error(&format!("{at}.{field}"), format!("{field} applies to the Post action only")));
        }
        if on && !at.starts_with("spec.kprobes[") && !at.starts_with("spec.fentries[") {
            return Err(l.error(
                &format!("{at}.{field}"),
                format!("{field} applies to kprobes only (Tetragon's other events carry no stack trace)"),
            ));
        }
    }
    if a.ima_hash {
        return Err(l.unsupported(&format!("{at}.imaHash"), "imaHash"));
    }
    Ok(())
}
