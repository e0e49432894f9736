//! The TracingPolicy model, as Tetragon's CRD spells it: every key Tetragon accepts is a
//! field here (a valid Tetragon policy never fails with "unknown field"), and every closed
//! set of values — argument types, operators, actions, namespaces, capability sets — is a
//! serde enum, parsed once. What nightjar cannot do with a parsed value is refused later,
//! by `validate`, as "not supported by nightjar: FEATURE".
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

type Value = serde_norway::Value;

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
    pub extra: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Spec {
    #[serde(default)]
    pub kprobes: Vec<KprobeSpec>,
    /// `fentries:` have a kprobe's shape; nightjar serves them as it serves kprobes (by
    /// fentry where the kernel allows it).
    #[serde(default)]
    pub fentries: Vec<KprobeSpec>,
    #[serde(default)]
    pub tracepoints: Vec<TracepointSpec>,
    #[serde(default)]
    pub lsmhooks: Vec<LsmHookSpec>,
    #[serde(default)]
    pub uprobes: Vec<UprobeSpec>,
    #[serde(default)]
    pub usdts: Vec<UsdtSpec>,
    /// Loader events (Tetragon's `process_loader`).
    #[serde(default)]
    pub loader: bool,
    #[serde(default)]
    pub lists: Vec<ListSpec>,
    #[serde(default)]
    pub enforcers: Vec<EnforcerSpec>,
    #[serde(default)]
    pub options: Vec<OptionSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_selector: Option<LabelSelector>,
    /// `~` (none) or `{}` (the processes in no container), as Tetragon allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_selector: Option<LabelSelector>,
}

impl Spec {
    /// `kprobes:` then `fentries:` entries, each with its path in the policy.
    pub fn kprobe_entries(&self) -> impl Iterator<Item = (String, &KprobeSpec)> {
        let k = self.kprobes.iter().enumerate().map(|(i, k)| (format!("spec.kprobes[{i}]"), k));
        k.chain(self.fentries.iter().enumerate().map(|(i, k)| (format!("spec.fentries[{i}]"), k)))
    }
}

/// Kubernetes `metav1.LabelSelector`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<LabelExpr>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelExpr {
    pub key: String,
    pub operator: LabelOp,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LabelOp {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// Declares a hook spec: its own fields plus the ones every hook shares (args, selectors,
/// message, tags), which `common()` hands to the compiler as one [`HookCommon`].
macro_rules! hook_spec {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $f:ident : $t:ty,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
        #[serde(deny_unknown_fields, rename_all = "camelCase")]
        pub struct $name {
            $($(#[$fm])* pub $f: $t,)*
            #[serde(default)]
            pub args: Vec<ArgDecl>,
            #[serde(default)]
            pub selectors: Vec<SelectorSpec>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub message: Option<String>,
            #[serde(default)]
            pub tags: Vec<String>,
        }

        impl $name {
            pub fn common(&self) -> HookCommon<'_> {
                HookCommon {
                    args: &self.args,
                    data: &[],
                    selectors: &self.selectors,
                    message: self.message.as_deref(),
                    tags: &self.tags,
                }
            }
        }
    };
}

/// What every kind of hook (kprobe, tracepoint, LSM, uprobe, USDT) has.
#[derive(Debug, Clone, Copy)]
pub struct HookCommon<'a> {
    pub args: &'a [ArgDecl],
    /// `data:` arguments (kprobes; see `KprobeSpec::with_data`), what matchData names.
    pub data: &'a [ArgDecl],
    pub selectors: &'a [SelectorSpec],
    pub message: Option<&'a str>,
    pub tags: &'a [String],
}

hook_spec!(
    /// `kprobes:` — a kernel function (or a syscall, `syscall: true`).
    KprobeSpec {
        call: String,
        #[serde(default)]
        syscall: bool,
        #[serde(default, rename = "return")]
        return_: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        return_arg: Option<ArgDecl>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        return_arg_action: Option<ActionKind>,
        /// Extra data read from the task (Tetragon's `data:`), as args.
        #[serde(default)]
        data: Vec<ArgDecl>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ignore: Option<IgnoreSpec>,
    }
);

hook_spec!(
    /// `tracepoints:` — `subsystem:event`, or a raw tracepoint (`raw: true`).
    TracepointSpec {
        subsystem: String,
        event: String,
        #[serde(default)]
        raw: bool,
    }
);

hook_spec!(
    /// `lsmhooks:` — a BPF-LSM hook.
    LsmHookSpec {
        hook: String,
    }
);

hook_spec!(
    /// `uprobes:` — functions (by symbol or offset) of a binary or library.
    UprobeSpec {
        path: String,
        #[serde(default)]
        symbols: Vec<String>,
        /// Older Tetragon releases' single `symbol:` (taken as `symbols: [symbol]`).
        #[serde(default, skip_serializing)]
        symbol: Option<String>,
        #[serde(default)]
        offsets: Vec<u64>,
        #[serde(default)]
        ref_ctr_offsets: Vec<u64>,
        #[serde(default)]
        btf_path: Option<String>,
        #[serde(default)]
        data: Vec<ArgDecl>,
        /// Resolve `path` inside the container of each selected pod.
        #[serde(default)]
        resolve_path_in_container: bool,
    }
);

hook_spec!(
    /// `usdts:` — a statically defined probe (provider:name) of a binary.
    UsdtSpec {
        path: String,
        provider: String,
        name: String,
    }
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IgnoreSpec {
    /// Skip the hook (instead of failing the policy) when the function does not exist.
    #[serde(default)]
    pub call_not_found: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListSpec {
    pub name: String,
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub ty: Option<ListType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    #[serde(default)]
    pub validated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListType {
    Syscalls,
    GeneratedSyscalls,
    GeneratedFtrace,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EnforcerSpec {
    pub calls: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OptionSpec {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ArgDecl {
    /// Tetragon's default is 0 (its examples omit it on `returnArg`).
    #[serde(default)]
    pub index: u32,
    #[serde(rename = "type", default)]
    pub ty: ArgType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_arg_index: Option<u32>,
    #[serde(default)]
    pub return_copy: bool,
    #[serde(default)]
    pub max_data: bool,
    /// A path through struct fields from the argument (`f_path.dentry`, `mm.owner.pid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve: Option<String>,
    /// The BTF type to read the argument as (with `resolve`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub btf_type: Option<String>,
    /// `const_buf`: the buffer size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u32>,
    /// `data:` args: where the value comes from (`current_task`, `pt_regs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Tetragon's argument types (`KProbeArg.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ArgType {
    #[default]
    Auto,
    #[serde(alias = "sint8")]
    Int8,
    Uint8,
    #[serde(alias = "sint16")]
    Int16,
    Uint16,
    #[serde(alias = "sint32")]
    Int,
    Int32,
    Uint32,
    #[serde(alias = "sint64")]
    Long,
    Int64,
    #[serde(alias = "ulong", alias = "unsigned long")]
    Uint64,
    SizeT,
    String,
    CharBuf,
    CharIovec,
    ConstBuf,
    Skb,
    Sock,
    Sockaddr,
    Socket,
    NetDevice,
    Fd,
    File,
    Filename,
    Path,
    Dentry,
    Nop,
    BpfAttr,
    BpfProg,
    PerfEvent,
    BpfMap,
    UserNamespace,
    Capability,
    Kiocb,
    IovIter,
    Cred,
    LoadInfo,
    Module,
    Syscall64,
    KernelCapT,
    CapInheritable,
    CapPermitted,
    CapEffective,
    LinuxBinprm,
    DataLoc,
}

impl ArgType {
    /// The name as a policy writes it.
    pub fn name(self) -> String {
        serde_norway::to_value(self).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SelectorSpec {
    #[serde(default, rename = "matchPIDs")]
    pub match_pids: Vec<PidSel>,
    #[serde(default)]
    pub match_args: Vec<ArgSel>,
    #[serde(default)]
    pub match_data: Vec<ArgSel>,
    #[serde(default)]
    pub match_return_args: Vec<ArgSel>,
    #[serde(default)]
    pub match_binaries: Vec<BinSel>,
    #[serde(default)]
    pub match_parent_binaries: Vec<BinSel>,
    #[serde(default)]
    pub match_namespaces: Vec<NsSel>,
    #[serde(default)]
    pub match_namespace_changes: Vec<NsChangeSel>,
    #[serde(default)]
    pub match_capabilities: Vec<CapSel>,
    #[serde(default)]
    pub match_capability_changes: Vec<CapSel>,
    #[serde(default)]
    pub match_actions: Vec<ActionSel>,
    #[serde(default)]
    pub match_return_actions: Vec<ActionSel>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ArgSel {
    pub index: u32,
    pub operator: ArgOp,
    #[serde(default)]
    pub values: Vec<String>,
    /// Tetragon's `args` (indexes the operator applies to, for multi-arg operators).
    #[serde(default)]
    pub args: Vec<u32>,
}

/// matchArgs / matchReturnArgs / matchData operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ArgOp {
    #[serde(alias = "eq")]
    Equal,
    #[serde(alias = "neq")]
    NotEqual,
    #[serde(alias = "prefix")]
    Prefix,
    #[serde(alias = "notprefix")]
    NotPrefix,
    #[serde(alias = "postfix")]
    Postfix,
    #[serde(alias = "notpostfix")]
    NotPostfix,
    #[serde(alias = "GreaterThan", alias = "gt")]
    GT,
    #[serde(alias = "LessThan", alias = "lt")]
    LT,
    #[serde(alias = "mask")]
    Mask,
    In,
    NotIn,
    #[serde(alias = "sport", alias = "Sport")]
    SPort,
    #[serde(alias = "notsport", alias = "NotSport")]
    NotSPort,
    #[serde(alias = "sportpriv", alias = "SportPriv")]
    SPortPriv,
    #[serde(alias = "NotSportPriv", alias = "notsportpriv")]
    NotSPortPriv,
    #[serde(alias = "dport", alias = "Dport")]
    DPort,
    #[serde(alias = "notdport", alias = "NotDport")]
    NotDPort,
    #[serde(alias = "dportpriv", alias = "DportPriv")]
    DPortPriv,
    #[serde(alias = "NotDportPriv", alias = "notdportpriv")]
    NotDPortPriv,
    #[serde(alias = "saddr", alias = "Saddr")]
    SAddr,
    #[serde(alias = "notsaddr", alias = "NotSaddr")]
    NotSAddr,
    #[serde(alias = "daddr", alias = "Daddr")]
    DAddr,
    #[serde(alias = "notdaddr", alias = "NotDaddr")]
    NotDAddr,
    #[serde(alias = "protocol")]
    Protocol,
    #[serde(alias = "family")]
    Family,
    #[serde(alias = "state")]
    State,
    InMap,
    NotInMap,
    CapabilitiesGained,
    FileType,
    NotFileType,
    InRange,
    NotInRange,
    SubString,
    SubStringIgnCase,
    SameFile,
    NotSameFile,
}

impl ArgOp {
    pub fn name(self) -> String {
        serde_norway::to_value(self).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
    }
}

impl<'de> Deserialize<'de> for ActionKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ActionKind::ALL
            .into_iter()
            .zip(ActionKind::NAMES)
            .find(|(_, n)| n.eq_ignore_ascii_case(&s))
            .map(|(a, _)| a)
            .ok_or_else(|| serde::de::Error::unknown_variant(&s, ActionKind::NAMES))
    }
}

/// `In` / `NotIn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetOp {
    In,
    NotIn,
}

/// matchBinaries operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BinOp {
    In,
    NotIn,
    Prefix,
    NotPrefix,
    Postfix,
    NotPostfix,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BinSel {
    pub operator: BinOp,
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default)]
    pub follow_children: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NsSel {
    pub namespace: Namespace,
    pub operator: SetOp,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NsChangeSel {
    pub operator: SetOp,
    #[serde(default)]
    pub values: Vec<Namespace>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Namespace {
    Uts,
    Ipc,
    Mnt,
    Pid,
    PidForChildren,
    Net,
    Time,
    TimeForChildren,
    Cgroup,
    User,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PidSel {
    pub operator: SetOp,
    #[serde(default)]
    pub follow_forks: bool,
    #[serde(default, rename = "isNamespacePID")]
    pub is_namespace_pid: bool,
    #[serde(default)]
    pub values: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CapSel {
    #[serde(rename = "type", default)]
    pub ty: CapSet,
    pub operator: SetOp,
    #[serde(default)]
    pub is_namespace_capability: bool,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum CapSet {
    #[default]
    Effective,
    Inheritable,
    Permitted,
}

/// An action. Tetragon compares action names case-insensitively (`SigKill`, `sigkill`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ActionKind {
    Post,
    NoPost,
    Sigkill,
    Signal,
    Override,
    FollowFD,
    UnfollowFD,
    CopyFD,
    GetUrl,
    DnsLookup,
    TrackSock,
    UntrackSock,
    NotifyEnforcer,
    CleanupEnforcerNotification,
    Set,
    NoOp,
}

impl ActionKind {
    const NAMES: &'static [&'static str] = &[
        "Post",
        "NoPost",
        "Sigkill",
        "Signal",
        "Override",
        "FollowFD",
        "UnfollowFD",
        "CopyFD",
        "GetUrl",
        "DnsLookup",
        "TrackSock",
        "UntrackSock",
        "NotifyEnforcer",
        "CleanupEnforcerNotification",
        "Set",
        "NoOp",
    ];
    const ALL: [ActionKind; 16] = [
        ActionKind::Post,
        ActionKind::NoPost,
        ActionKind::Sigkill,
        ActionKind::Signal,
        ActionKind::Override,
        ActionKind::FollowFD,
        ActionKind::UnfollowFD,
        ActionKind::CopyFD,
        ActionKind::GetUrl,
        ActionKind::DnsLookup,
        ActionKind::TrackSock,
        ActionKind::UntrackSock,
        ActionKind::NotifyEnforcer,
        ActionKind::CleanupEnforcerNotification,
        ActionKind::Set,
        ActionKind::NoOp,
    ];

    pub fn name(self) -> String {
        serde_norway::to_value(self).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitScope {
    #[default]
    Thread,
    Process,
    Global,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ActionSel {
    pub action: ActionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg_fd: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg_name: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg_fqdn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg_error: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg_sig: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg_sock: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_scope: Option<RateLimitScope>,
    #[serde(default)]
    pub kernel_stack_trace: bool,
    #[serde(default)]
    pub user_stack_trace: bool,
    #[serde(default)]
    pub ima_hash: bool,
    /// `Set`: the argument to write and its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg_index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arg_value: Option<i64>,
}

impl KprobeSpec {
    /// [`KprobeSpec::common`] with the `data:` arguments, which matchData names.
    pub fn with_data(&self) -> HookCommon<'_> {
        HookCommon { data: &self.data, ..self.common() }
    }
}
