//! Tetragon's export schema as Rust types.
//!
//! One [`Event`] is one JSON line: `{"process_exec": {...}, "node_name": "...", "time": "..."}`.
//! The fields nightjar produces or filters on are typed; everything else a line carries is
//! kept verbatim in `extra` maps, so a Tetragon line read by nightjar is written back
//! unchanged (as a JSON value), and a consumer written for Tetragon parses nightjar's lines.
use std::collections::BTreeMap;

use serde::{
    de::{self, MapAccess, Visitor},
    ser::SerializeMap,
    Deserialize, Deserializer, Serialize, Serializer,
};
use serde_json::{Map, Value};

use crate::time::Timestamp;

/// Unknown fields of an object, kept in their original order.
pub type Extra = Map<String, Value>;

/// One exported event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub node_name: Option<String>,
    pub time: Option<Timestamp>,
    /// Other top-level fields (`cluster_name`, `aggregation_info`, ...).
    pub extra: Extra,
    /// The source's acknowledgement token (never serialized): see [`crate::ack`].
    pub ack: crate::ack::AckSlot,
}

/// The event's payload, named by its top-level key.
#[derive(Clone, Debug, PartialEq)]
pub enum EventKind {
    ProcessExec(Box<ProcessExec>),
    ProcessExit(Box<ProcessExit>),
    ProcessKprobe(Box<ProcessKprobe>),
    ProcessTracepoint(Box<ProcessTracepoint>),
    RateLimitInfo(RateLimitInfo),
    /// A payload nightjar does not model (`process_lsm`, `process_uprobe`, ...), kept as is.
    Other {
        key: String,
        value: Value,
    },
}

impl EventKind {
    /// The top-level key, which is also the event type in filters and metrics.
    pub fn key(&self) -> &str {
        match self {
            EventKind::ProcessExec(_) => "process_exec",
            EventKind::ProcessExit(_) => "process_exit",
            EventKind::ProcessKprobe(_) => "process_kprobe",
            EventKind::ProcessTracepoint(_) => "process_tracepoint",
            EventKind::RateLimitInfo(_) => "rate_limit_info",
            EventKind::Other { key, .. } => key,
        }
    }
}

impl Event {
    pub fn new(kind: EventKind, node_name: impl Into<String>, time: Timestamp) -> Self {
        Event {
            kind,
            node_name: Some(node_name.into()),
            time: Some(time),
            extra: Extra::new(),
            ack: Default::default(),
        }
    }

    /// The process the event is about, when it has one.
    pub fn process(&self) -> Option<&Process> {
        match &self.kind {
            EventKind::ProcessExec(e) => e.process.as_ref(),
            EventKind::ProcessExit(e) => e.process.as_ref(),
            EventKind::ProcessKprobe(e) => e.process.as_ref(),
            EventKind::ProcessTracepoint(e) => e.process.as_ref(),
            _ => None,
        }
    }

    /// The parent of the event's process, when known.
    pub fn parent(&self) -> Option<&Process> {
        match &self.kind {
            EventKind::ProcessExec(e) => e.parent.as_ref(),
            EventKind::ProcessExit(e) => e.parent.as_ref(),
            EventKind::ProcessKprobe(e) => e.parent.as_ref(),
            EventKind::ProcessTracepoint(e) => e.parent.as_ref(),
            _ => None,
        }
    }

    /// Parses one JSON line.
    pub fn from_json(line: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(line)
    }

    /// One JSON line, without the trailing newline.
    pub fn to_json(&self) -> String {
        // Serializing owned maps and strings cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Appends the JSON line (without newline) to `out`: sinks serialize a batch into one
    /// reused buffer instead of a string per event.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let at = out.len();
        if serde_json::to_writer(&mut *out, self).is_err() {
            // Cannot happen (owned maps and strings); never leave half a line.
            out.truncate(at);
        }
    }
}

const KNOWN_KINDS: [&str; 5] =
    ["process_exec", "process_exit", "process_kprobe", "process_tracepoint", "rate_limit_info"];

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        match &self.kind {
            EventKind::ProcessExec(e) => m.serialize_entry("process_exec", e)?,
            EventKind::ProcessExit(e) => m.serialize_entry("process_exit", e)?,
            EventKind::ProcessKprobe(e) => m.serialize_entry("process_kprobe", e)?,
            EventKind::ProcessTracepoint(e) => m.serialize_entry("process_tracepoint", e)?,
            EventKind::RateLimitInfo(e) => m.serialize_entry("rate_limit_info", e)?,
            EventKind::Other { key, value } => m.serialize_entry(key, value)?,
        }
        if let Some(n) = &self.node_name {
            m.serialize_entry("node_name", n)?;
        }
        if let Some(t) = &self.time {
            m.serialize_entry("time", t)?;
        }
        for (k, v) in &self.extra {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// Top-level keys that are not event payloads (everything else that holds an object is one).
const TOP_LEVEL_FIELDS: [&str; 4] = ["node_name", "time", "cluster_name", "aggregation_info"];

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Event;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a Tetragon export object such as {\"process_exec\": {...}, \"time\": \"...\"}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Event, A::Error> {
                let mut kind: Option<EventKind> = None;
                let mut node_name = None;
                let mut time = None;
                let mut extra = Extra::new();
                while let Some(key) = a.next_key::<String>()? {
                    let k = match key.as_str() {
                        "node_name" => {
                            node_name = a.next_value()?;
                            continue;
                        }
                        "time" => {
                            time = a.next_value()?;
                            continue;
                        }
                        "process_exec" => EventKind::ProcessExec(a.next_value()?),
                        "process_exit" => EventKind::ProcessExit(a.next_value()?),
                        "process_kprobe" => EventKind::ProcessKprobe(a.next_value()?),
                        "process_tracepoint" => EventKind::ProcessTracepoint(a.next_value()?),
                        "rate_limit_info" => EventKind::RateLimitInfo(a.next_value()?),
                        _ => {
                            let value: Value = a.next_value()?;
                            if kind.is_none() && value.is_object() && !TOP_LEVEL_FIELDS.contains(&key.as_str()) {
                                EventKind::Other { key, value }
                            } else {
                                extra.insert(key, value);
                                continue;
                            }
                        }
                    };
                    if let Some(prev) = &kind {
                        if KNOWN_KINDS.contains(&prev.key()) || KNOWN_KINDS.contains(&k.key()) {
                            return Err(de::Error::custom(format!(
                                "two event payloads in one line: {:?} and {:?}",
                                prev.key(),
                                k.key()
                            )));
                        }
                    }
                    kind = Some(k);
                }
                let kind = kind.ok_or_else(|| {
                    de::Error::custom(format!("no event payload (expected one of {})", KNOWN_KINDS.join(", ")))
                })?;
                Ok(Event { kind, node_name, time, extra, ack: Default::default() })
            }
        }
        d.deserialize_map(V)
    }
}

/// A process as Tetragon describes it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Process {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Pod>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_exec_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refcnt: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<Capabilities>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns: Option<Namespaces>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_init_tree: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_credentials: Option<Credentials>,
    /// The cgroup the process ran in at exec (nightjar's; `id` is the cgroup v2 inode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<Cgroup>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<String>,
    /// Names of the uid and gid, from the enrichment stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Named>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Named>,
    /// `binary_properties` and other fields, kept verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `process_credentials`: the ids nightjar reads; the others (`suid`, `fsuid`, `caps`,
/// `user_ns`, ...) kept verbatim.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Credentials {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub euid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egid: Option<u32>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A cgroup: id (as a string, like Tetragon's ids) and path.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cgroup {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `{"name": ...}` (a user or group).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Named {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Pod {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_kind: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Container {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Image {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A capability name. Names nightjar produces are static (cloning an event copies
/// pointers, not ~80 strings); names read from a file are owned.
/// Linux capability names by bit number.
pub const CAP_NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// One capability set. The sensor gives it as the kernel's bit mask; a set read from JSON
/// keeps its names. Both serialize as Tetragon's array of names. A root process's two full
/// sets are about half the bytes of its JSON, so each distinct mask is rendered once and
/// the rendered array is reused (a bounded table: a host has a handful of distinct sets).
#[derive(Clone, Debug)]
pub enum CapSet {
    Mask(u64),
    Names(Vec<String>),
}

impl CapSet {
    /// The names, in bit order for a mask (unknown bits as `CAP_<n>`).
    pub fn names(&self) -> Vec<String> {
        match self {
            CapSet::Names(v) => v.clone(),
            CapSet::Mask(m) => (0..64)
                .filter(|b| m & (1u64 << b) != 0)
                .map(|b| CAP_NAMES.get(b).map(|s| (*s).to_owned()).unwrap_or_else(|| format!("CAP_{b}")))
                .collect(),
        }
    }
}

impl PartialEq for CapSet {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (CapSet::Mask(a), CapSet::Mask(b)) => a == b,
            _ => self.names() == other.names(),
        }
    }
}

/// Distinct masks rendered to JSON at most; past it, masks are rendered per event.
const RENDERED_CAP_SETS: usize = 4096;

fn rendered_caps() -> &'static std::sync::RwLock<std::collections::HashMap<u64, Box<serde_json::value::RawValue>>> {
    static R: std::sync::OnceLock<std::sync::RwLock<std::collections::HashMap<u64, Box<serde_json::value::RawValue>>>> =
        std::sync::OnceLock::new();
    R.get_or_init(Default::default)
}

impl Serialize for CapSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let m = match self {
            CapSet::Names(v) => return v.serialize(s),
            CapSet::Mask(m) => *m,
        };
        let table = rendered_caps();
        if let Some(raw) = table.read().ok().as_ref().and_then(|t| t.get(&m)) {
            return raw.serialize(s);
        }
        let names = self.names();
        let raw = serde_json::value::to_raw_value(&names).map_err(serde::ser::Error::custom)?;
        let out = raw.serialize(s);
        if let Ok(mut t) = table.write() {
            if t.len() < RENDERED_CAP_SETS {
                t.insert(m, raw);
            }
        }
        out
    }
}

impl<'de> Deserialize<'de> for CapSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<String>::deserialize(d).map(CapSet::Names)
    }
}

/// Capability sets, as names (`CAP_SYS_ADMIN`, ...).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permitted: Option<CapSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective: Option<CapSet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inheritable: Option<CapSet>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Namespace {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inum: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_host: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Namespaces {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uts: Option<Namespace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc: Option<Namespace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mnt: Option<Namespace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<Namespace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_for_children: Option<Namespace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<Namespace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Namespace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_for_children: Option<Namespace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<Namespace>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Namespace>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessExec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Process>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ancestors: Option<Vec<Process>>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessExit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Process>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ancestors: Option<Vec<Process>>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessKprobe {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Process>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<KprobeArgument>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ancestors: Option<Vec<Process>>,
    /// `return`, `return_action`, `stack_trace`, `tags`, `message`, ... kept verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessTracepoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Process>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subsys: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<KprobeArgument>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ancestors: Option<Vec<Process>>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RateLimitInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number_of_dropped_process_events: Option<u64>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A file, path or binary argument (`file_arg`, `path_arg`, `linux_binprm_arg`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FileArg {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The value of one hook argument, named by its JSON key.
#[derive(Clone, Debug, PartialEq)]
pub enum ArgValue {
    String(String),
    Int(i64),
    File(FileArg),
    Path(FileArg),
    LinuxBinprm(FileArg),
    /// Any other `*_arg` (`size_arg`, `sock_arg`, `bytes_arg`, `cred_arg`, ...), verbatim.
    Other {
        key: String,
        value: Value,
    },
    /// An argument object without a value key (only a label, say).
    None,
}

/// One element of `args`: a value plus an optional `label`.
#[derive(Clone, Debug, PartialEq)]
pub struct KprobeArgument {
    pub value: ArgValue,
    pub label: Option<String>,
    pub extra: Extra,
}

impl KprobeArgument {
    pub fn new(value: ArgValue) -> Self {
        KprobeArgument { value, label: None, extra: Extra::new() }
    }
}

impl Serialize for KprobeArgument {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        match &self.value {
            ArgValue::String(v) => m.serialize_entry("string_arg", v)?,
            ArgValue::Int(v) => m.serialize_entry("int_arg", v)?,
            ArgValue::File(v) => m.serialize_entry("file_arg", v)?,
            ArgValue::Path(v) => m.serialize_entry("path_arg", v)?,
            ArgValue::LinuxBinprm(v) => m.serialize_entry("linux_binprm_arg", v)?,
            ArgValue::Other { key, value } => m.serialize_entry(key, value)?,
            ArgValue::None => {}
        }
        if let Some(l) = &self.label {
            m.serialize_entry("label", l)?;
        }
        for (k, v) in &self.extra {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for KprobeArgument {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut map = Map::<String, Value>::deserialize(d)?;
        let label = match map.remove("label") {
            None => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => return Err(de::Error::custom(format!("`label` must be a string, got {other}"))),
        };
        let value_key = map.keys().find(|k| k.ends_with("_arg")).cloned();
        let value = match value_key {
            None => ArgValue::None,
            Some(key) => {
                let v = map.remove(&key).unwrap_or(Value::Null);
                let typed = |v: Value| serde_json::from_value::<FileArg>(v).map_err(de::Error::custom);
                match key.as_str() {
                    "string_arg" if v.is_string() => ArgValue::String(v.as_str().unwrap_or_default().to_owned()),
                    "int_arg" if v.is_i64() => ArgValue::Int(v.as_i64().unwrap_or_default()),
                    "file_arg" if v.is_object() => ArgValue::File(typed(v)?),
                    "path_arg" if v.is_object() => ArgValue::Path(typed(v)?),
                    "linux_binprm_arg" if v.is_object() => ArgValue::LinuxBinprm(typed(v)?),
                    _ => ArgValue::Other { key, value: v },
                }
            }
        };
        Ok(KprobeArgument { value, label, extra: map })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_payload_and_fields_are_kept() {
        let line = r#"{"process_lsm":{"x":1},"node_name":"n","time":"2024-01-01T00:00:00Z","cluster_name":"c"}"#;
        let e = Event::from_json(line).unwrap();
        assert_eq!(e.kind.key(), "process_lsm");
        let back: Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(line).unwrap());
    }

    #[test]
    fn two_payloads_are_rejected() {
        let line = r#"{"process_exec":{},"process_exit":{}}"#;
        let err = Event::from_json(line).unwrap_err().to_string();
        assert!(err.contains("two event payloads"), "{err}");
    }

    #[test]
    fn no_payload_is_rejected() {
        let err = Event::from_json(r#"{"node_name":"n"}"#).unwrap_err().to_string();
        assert!(err.contains("no event payload"), "{err}");
    }

    #[test]
    fn kprobe_args_round_trip() {
        let line = r#"{"process_kprobe":{"function_name":"security_file_open","args":[{"file_arg":{"path":"/etc/shadow","permission":"-rw-r-----","mount":"x"}},{"int_arg":-2,"label":"ret"},{"size_arg":"4096"}],"policy_name":"p","action":"KPROBE_ACTION_POST"},"time":"2024-01-01T00:00:00.5Z"}"#;
        let e = Event::from_json(line).unwrap();
        let EventKind::ProcessKprobe(k) = &e.kind else { panic!("kind {}", e.kind.key()) };
        let args = k.args.as_ref().unwrap();
        assert!(matches!(&args[0].value, ArgValue::File(f) if f.path.as_deref() == Some("/etc/shadow")));
        assert_eq!(args[1].value, ArgValue::Int(-2));
        assert_eq!(args[1].label.as_deref(), Some("ret"));
        let back: Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(line).unwrap());
    }
}

#[cfg(test)]
mod capset_tests {
    use super::*;

    #[test]
    fn a_mask_serializes_as_names_the_same_every_time_and_through_value() {
        let m = CapSet::Mask(1 << 21 | 1 | 1 << 50);
        let want = r#"["CAP_CHOWN","CAP_SYS_ADMIN","CAP_50"]"#;
        assert_eq!(serde_json::to_string(&m).unwrap(), want);
        assert_eq!(serde_json::to_string(&m).unwrap(), want, "rendered from the table");
        assert_eq!(serde_json::to_value(&m).unwrap(), serde_json::from_str::<Value>(want).unwrap());
        let back: CapSet = serde_json::from_str(want).unwrap();
        assert_eq!(back, m);
        assert_ne!(back, CapSet::Mask(1));
    }
}
