//! Tetragon `TracingPolicy` files: the model, parsing and validation with located errors.
//!
//! A policy is accepted whole or refused with `file:line:column: key.path: reason` — never
//! silently ignored or half-loaded. What the kernel then runs is decided by `compile`.
pub mod compile;
pub mod engine;
mod yamlpos;

use std::{collections::BTreeMap, path::Path};

use nightjar_common::plimits;
use nightjar_event::config::{self, ConfigError};
use serde::{Deserialize, Serialize};
use yamlpos::Positions;

pub const API_VERSION: &str = "cilium.io/v1alpha1";
pub const KINDS: [&str; 2] = ["TracingPolicy", "TracingPolicyNamespaced"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TracingPolicy {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: Spec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// labels, annotations, uid, ... (Kubernetes object metadata) are accepted and kept.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_norway::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Spec {
    #[serde(default)]
    pub kprobes: Vec<KprobeSpec>,
    #[serde(default)]
    pub tracepoints: Vec<TracepointSpec>,
    #[serde(default)]
    pub lsmhooks: Vec<LsmHookSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<serde_norway::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_selector: Option<serde_norway::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<serde_norway::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KprobeSpec {
    pub call: String,
    #[serde(default)]
    pub syscall: bool,
    #[serde(default, rename = "return")]
    pub return_: bool,
    #[serde(default)]
    pub args: Vec<ArgDecl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_arg: Option<ArgDecl>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_arg_action: Option<String>,
    #[serde(default)]
    pub selectors: Vec<SelectorSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TracepointSpec {
    pub subsystem: String,
    pub event: String,
    #[serde(default)]
    pub raw: bool,
    #[serde(default)]
    pub args: Vec<ArgDecl>,
    #[serde(default)]
    pub selectors: Vec<SelectorSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LsmHookSpec {
    pub hook: String,
    #[serde(default)]
    pub args: Vec<ArgDecl>,
    #[serde(default)]
    pub selectors: Vec<SelectorSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ArgDecl {
    pub index: u32,
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_arg_index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_copy: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_data: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SelectorSpec {
    #[serde(default, rename = "matchPIDs")]
    pub match_pids: Vec<PidSel>,
    #[serde(default)]
    pub match_args: Vec<ArgSel>,
    #[serde(default)]
    pub match_return_args: Vec<ArgSel>,
    #[serde(default)]
    pub match_binaries: Vec<BinSel>,
    #[serde(default)]
    pub match_namespaces: Vec<NsSel>,
    #[serde(default)]
    pub match_namespace_changes: Vec<serde_norway::Value>,
    #[serde(default)]
    pub match_capabilities: Vec<CapSel>,
    #[serde(default)]
    pub match_capability_changes: Vec<serde_norway::Value>,
    #[serde(default)]
    pub match_actions: Vec<ActionSel>,
    #[serde(default)]
    pub match_return_actions: Vec<serde_norway::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ArgSel {
    pub index: u32,
    pub operator: String,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BinSel {
    pub operator: String,
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default)]
    pub follow_children: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NsSel {
    pub namespace: String,
    pub operator: String,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PidSel {
    pub operator: String,
    #[serde(default)]
    pub follow_forks: bool,
    #[serde(default, rename = "isNamespacePID")]
    pub is_namespace_pid: bool,
    #[serde(default)]
    pub values: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CapSel {
    #[serde(rename = "type")]
    pub ty: String,
    pub operator: String,
    #[serde(default)]
    pub is_namespace_capability: bool,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ActionSel {
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg_sig: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg_error: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<String>,
}

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
    let policy: TracingPolicy = config::from_str(source, text)?;
    let loaded = Loaded { policy, source: source.to_owned(), positions: Positions::of(text) };
    validate(&loaded)?;
    Ok(loaded)
}

pub const ARG_TYPES_INT: [&str; 12] =
    ["int", "uint32", "int32", "uint64", "int64", "size_t", "long", "uint16", "int16", "uint8", "int8", "fd"];
pub const ARG_TYPES_STR: [&str; 6] = ["string", "char_buf", "file", "path", "linux_binprm", "filename"];
const ARG_TYPES_OTHER: [&str; 8] = ["sock", "skb", "cred", "char_iovec", "const_buf", "nop", "bpf_attr", "capability"];

pub const STRING_OPS: [&str; 6] = ["Equal", "NotEqual", "Prefix", "NotPrefix", "Postfix", "NotPostfix"];
pub const INT_OPS: [&str; 7] = ["Equal", "NotEqual", "In", "NotIn", "GT", "LT", "Mask"];
pub const BIN_OPS: [&str; 6] = ["In", "NotIn", "Prefix", "NotPrefix", "Postfix", "NotPostfix"];
pub const NAMESPACES: [&str; 10] =
    ["Uts", "Ipc", "Mnt", "Pid", "PidForChildren", "Net", "Time", "TimeForChildren", "Cgroup", "User"];
pub const ACTIONS: [&str; 5] = ["Post", "NoPost", "Sigkill", "Signal", "Override"];
/// Actions Tetragon knows that nightjar refuses with a reason instead of ignoring.
const ACTIONS_UNSUPPORTED: [&str; 11] = [
    "FollowFD",
    "UnfollowFD",
    "CopyFD",
    "GetUrl",
    "DnsLookup",
    "NotifyEnforcer",
    "TrackSock",
    "UntrackSock",
    "Set",
    "CleanupEnforcerNotification",
    "NoOp",
];

pub fn is_string_type(t: &str) -> bool {
    ARG_TYPES_STR.contains(&t)
}

fn validate(l: &Loaded) -> Result<(), ConfigError> {
    let p = &l.policy;
    if p.api_version != API_VERSION {
        return Err(l.error("apiVersion", format!("expected {API_VERSION:?}, got {:?}", p.api_version)));
    }
    if !KINDS.contains(&p.kind.as_str()) {
        return Err(l.error("kind", format!("expected one of {}, got {:?}", KINDS.join(", "), p.kind)));
    }
    let name = p.metadata.name.trim();
    if name.is_empty() || name.len() > 253 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) {
        return Err(
            l.error("metadata.name", format!("{name:?} is not a valid name (1-253 of a-z, 0-9, '-', '.', '_')"))
        );
    }
    if p.spec.pod_selector.is_some() {
        return Err(
            l.error("spec.podSelector", "podSelector is not supported yet: remove it or use one policy per node")
        );
    }
    if p.spec.container_selector.is_some() {
        return Err(l.error("spec.containerSelector", "containerSelector is not supported yet"));
    }
    if p.spec.kprobes.is_empty() && p.spec.tracepoints.is_empty() && p.spec.lsmhooks.is_empty() {
        return Err(l.error("spec", "a policy needs at least one of kprobes, tracepoints or lsmhooks"));
    }
    let n_hooks = p.spec.kprobes.len() + p.spec.tracepoints.len() + p.spec.lsmhooks.len();
    if n_hooks > 16 {
        return Err(l.error("spec", format!("{n_hooks} hooks in one policy; at most 16")));
    }
    for (i, k) in p.spec.kprobes.iter().enumerate() {
        let base = format!("spec.kprobes[{i}]");
        if k.call.trim().is_empty() {
            return Err(l.error(&format!("{base}.call"), "call must name a kernel function"));
        }
        if k.return_ || k.return_arg.is_some() || k.return_arg_action.is_some() {
            return Err(l.error(
                &format!("{base}.return"),
                "return probes (return, returnArg, returnArgAction) are not supported yet",
            ));
        }
        validate_hook(l, &base, &k.args, &k.selectors)?;
    }
    for (i, t) in p.spec.tracepoints.iter().enumerate() {
        let base = format!("spec.tracepoints[{i}]");
        if t.subsystem.is_empty() || t.event.is_empty() {
            return Err(l.error(&base, "subsystem and event are required"));
        }
        if t.raw {
            return Err(l.error(&format!("{base}.raw"), "raw tracepoints in policies are not supported yet"));
        }
        validate_hook(l, &base, &t.args, &t.selectors)?;
    }
    for (i, h) in p.spec.lsmhooks.iter().enumerate() {
        let base = format!("spec.lsmhooks[{i}]");
        if h.hook.trim().is_empty() {
            return Err(l.error(&format!("{base}.hook"), "hook must name an LSM hook"));
        }
        validate_hook(l, &base, &h.args, &h.selectors)?;
    }
    Ok(())
}

fn validate_hook(l: &Loaded, base: &str, args: &[ArgDecl], sels: &[SelectorSpec]) -> Result<(), ConfigError> {
    if args.len() > plimits::ARGS {
        return Err(l.error(&format!("{base}.args"), format!("{} args; at most {}", args.len(), plimits::ARGS)));
    }
    let mut strings = 0;
    for (j, a) in args.iter().enumerate() {
        let at = format!("{base}.args[{j}]");
        if a.index > 5 {
            return Err(l.error(&format!("{at}.index"), format!("index {} is out of range (0-5)", a.index)));
        }
        if args[..j].iter().any(|b| b.index == a.index) {
            return Err(l.error(&format!("{at}.index"), format!("index {} is declared twice", a.index)));
        }
        let t = a.ty.as_str();
        if is_string_type(t) {
            strings += 1;
        } else if ARG_TYPES_OTHER.contains(&t) {
            return Err(l.error(&format!("{at}.type"), format!("argument type {t:?} is not supported yet")));
        } else if !ARG_TYPES_INT.contains(&t) {
            return Err(l.error(
                &format!("{at}.type"),
                format!(
                    "unknown argument type {t:?} (expected one of {}, {})",
                    ARG_TYPES_INT.join(", "),
                    ARG_TYPES_STR.join(", ")
                ),
            ));
        }
        if a.size_arg_index.is_some() || a.return_copy.is_some() || a.max_data.is_some() {
            return Err(l.error(&at, "sizeArgIndex, returnCopy and maxData are not supported yet"));
        }
    }
    if strings > plimits::STR_SLOTS {
        return Err(
            l.error(&format!("{base}.args"), format!("{strings} string/path args; at most {}", plimits::STR_SLOTS))
        );
    }
    if sels.len() > plimits::SELECTORS {
        return Err(
            l.error(&format!("{base}.selectors"), format!("{} selectors; at most {}", sels.len(), plimits::SELECTORS))
        );
    }
    for (s, sel) in sels.iter().enumerate() {
        validate_selector(l, &format!("{base}.selectors[{s}]"), args, sel)?;
    }
    Ok(())
}

fn check_op(l: &Loaded, at: &str, op: &str, allowed: &[&str]) -> Result<(), ConfigError> {
    if allowed.contains(&op) {
        Ok(())
    } else {
        Err(l.error(
            &format!("{at}.operator"),
            format!("operator {op:?} is not valid here (expected one of {})", allowed.join(", ")),
        ))
    }
}

fn validate_selector(l: &Loaded, at: &str, args: &[ArgDecl], s: &SelectorSpec) -> Result<(), ConfigError> {
    for (field, n) in [
        ("matchReturnArgs", s.match_return_args.len()),
        ("matchNamespaceChanges", s.match_namespace_changes.len()),
        ("matchCapabilityChanges", s.match_capability_changes.len()),
        ("matchReturnActions", s.match_return_actions.len()),
    ] {
        if n > 0 {
            return Err(l.error(&format!("{at}.{field}"), format!("{field} is not supported yet")));
        }
    }
    if s.match_args.len() > plimits::MATCH_ARGS {
        return Err(l.error(
            &format!("{at}.matchArgs"),
            format!("{} matchArgs; at most {}", s.match_args.len(), plimits::MATCH_ARGS),
        ));
    }
    for (i, m) in s.match_args.iter().enumerate() {
        let mat = format!("{at}.matchArgs[{i}]");
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
        if m.values.is_empty() {
            return Err(l.error(&format!("{mat}.values"), "values must not be empty"));
        }
        if is_string_type(&decl.ty) {
            check_op(l, &mat, &m.operator, &STRING_OPS)?;
            if m.values.len() > 32 {
                return Err(l.error(&format!("{mat}.values"), format!("{} values; at most 32", m.values.len())));
            }
            for (v, val) in m.values.iter().enumerate() {
                if val.is_empty() || val.len() >= plimits::STR - 1 {
                    return Err(l.error(
                        &format!("{mat}.values[{v}]"),
                        format!("string values must be 1-{} bytes long", plimits::STR - 2),
                    ));
                }
            }
        } else {
            check_op(l, &mat, &m.operator, &INT_OPS)?;
            if m.values.len() > plimits::INT_VALUES {
                return Err(l.error(
                    &format!("{mat}.values"),
                    format!("{} values; at most {}", m.values.len(), plimits::INT_VALUES),
                ));
            }
            for (v, val) in m.values.iter().enumerate() {
                if parse_int(val).is_none() {
                    return Err(l.error(
                        &format!("{mat}.values[{v}]"),
                        format!("{val:?} is not an integer (decimal or 0x hex)"),
                    ));
                }
            }
        }
    }
    if s.match_binaries.len() > 1 {
        return Err(l.error(&format!("{at}.matchBinaries"), "at most one matchBinaries entry per selector"));
    }
    for (i, b) in s.match_binaries.iter().enumerate() {
        let bat = format!("{at}.matchBinaries[{i}]");
        check_op(l, &bat, &b.operator, &BIN_OPS)?;
        if b.values.is_empty() || b.values.len() > 32 {
            return Err(l.error(&format!("{bat}.values"), "matchBinaries needs 1-32 values"));
        }
        if b.follow_children {
            return Err(l.error(&format!("{bat}.followChildren"), "followChildren is not supported yet"));
        }
        for (v, val) in b.values.iter().enumerate() {
            if val.is_empty() || val.len() >= plimits::STR - 1 {
                return Err(l.error(
                    &format!("{bat}.values[{v}]"),
                    format!("values must be 1-{} bytes long", plimits::STR - 2),
                ));
            }
        }
    }
    if s.match_namespaces.len() > plimits::NS_CONDS {
        return Err(l.error(
            &format!("{at}.matchNamespaces"),
            format!("at most {} matchNamespaces entries", plimits::NS_CONDS),
        ));
    }
    for (i, n) in s.match_namespaces.iter().enumerate() {
        let nat = format!("{at}.matchNamespaces[{i}]");
        if !NAMESPACES.contains(&n.namespace.as_str()) {
            return Err(l.error(
                &format!("{nat}.namespace"),
                format!("unknown namespace {:?} (expected one of {})", n.namespace, NAMESPACES.join(", ")),
            ));
        }
        if n.namespace == "TimeForChildren" {
            return Err(l.error(&format!("{nat}.namespace"), "TimeForChildren is not supported yet"));
        }
        check_op(l, &nat, &n.operator, &["In", "NotIn"])?;
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
    if s.match_pids.len() > 1 {
        return Err(l.error(&format!("{at}.matchPIDs"), "at most one matchPIDs entry per selector"));
    }
    for (i, m) in s.match_pids.iter().enumerate() {
        let pat = format!("{at}.matchPIDs[{i}]");
        check_op(l, &pat, &m.operator, &["In", "NotIn"])?;
        if m.follow_forks {
            return Err(l.error(&format!("{pat}.followForks"), "followForks is not supported yet"));
        }
        if m.values.is_empty() || m.values.len() > plimits::PID_VALUES {
            return Err(l.error(&format!("{pat}.values"), format!("matchPIDs needs 1-{} values", plimits::PID_VALUES)));
        }
    }
    if s.match_capabilities.len() > 1 {
        return Err(l.error(&format!("{at}.matchCapabilities"), "at most one matchCapabilities entry per selector"));
    }
    for (i, c) in s.match_capabilities.iter().enumerate() {
        let cat = format!("{at}.matchCapabilities[{i}]");
        check_op(l, &cat, &c.operator, &["In", "NotIn"])?;
        if !["Effective", "Permitted", "Inheritable"].contains(&c.ty.as_str()) {
            return Err(l.error(
                &format!("{cat}.type"),
                format!("type {:?}: expected Effective, Permitted or Inheritable", c.ty),
            ));
        }
        if c.is_namespace_capability {
            return Err(l.error(&format!("{cat}.isNamespaceCapability"), "isNamespaceCapability is not supported yet"));
        }
        if c.values.is_empty() {
            return Err(l.error(&format!("{cat}.values"), "values must not be empty"));
        }
        for (v, val) in c.values.iter().enumerate() {
            if crate::hooks::process::cap_bit(val).is_none() {
                return Err(l.error(&format!("{cat}.values[{v}]"), format!("unknown capability {val:?}")));
            }
        }
    }
    if s.match_actions.len() > 2 {
        return Err(l.error(
            &format!("{at}.matchActions"),
            "at most two actions per selector (a Post/NoPost and a Sigkill/Signal)",
        ));
    }
    let mut kill = 0;
    let mut post = 0;
    for (i, a) in s.match_actions.iter().enumerate() {
        let aat = format!("{at}.matchActions[{i}]");
        let act = a.action.as_str();
        if ACTIONS_UNSUPPORTED.contains(&act) {
            return Err(l.error(&format!("{aat}.action"), format!("action {act:?}: this action is not supported yet")));
        }
        if !ACTIONS.contains(&act) {
            return Err(l.error(
                &format!("{aat}.action"),
                format!("unknown action {act:?} (expected one of {})", ACTIONS.join(", ")),
            ));
        }
        if a.rate_limit.is_some() {
            return Err(l.error(&format!("{aat}.rateLimit"), "rateLimit is not supported yet"));
        }
        match (act, a.arg_error) {
            ("Override", Some(e)) if !(-4095..=-1).contains(&e) => {
                return Err(l.error(
                    &format!("{aat}.argError"),
                    format!("argError {e}: a negative errno (-4095..-1, e.g. -1 for EPERM) is expected"),
                ))
            }
            ("Override", _) | (_, None) => {}
            _ => return Err(l.error(&format!("{aat}.argError"), "argError applies to Override only")),
        }
        match act {
            "Signal" => {
                kill += 1;
                match a.arg_sig {
                    Some(1..=64) => {}
                    _ => return Err(l.error(&format!("{aat}.argSig"), "Signal needs argSig, a signal number 1-64")),
                }
            }
            "Sigkill" | "Override" => kill += 1,
            _ => post += 1,
        }
    }
    if kill > 1 || post > 1 {
        return Err(l.error(
            &format!("{at}.matchActions"),
            "conflicting actions: at most one of Sigkill/Signal/Override and one of Post/NoPost",
        ));
    }
    Ok(())
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
        assert!(e.to_string().contains("operator \"Equalish\""), "{e}");
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
