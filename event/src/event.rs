//! Tetragon's export schema as Rust types.
//!
//! One [`Event`] is one JSON line: `{"process_exec": {...}, "node_name": "...", "time": "..."}`.
//! The fields nightjar produces or filters on are typed; everything else a line carries is
//! kept verbatim in `extra` maps, so a Tetragon line read by nightjar is written back
//! unchanged (as a JSON value), and a consumer written for Tetragon parses nightjar's lines.
//!
//! What is written is protobuf JSON of `tetragon.GetEventsResponse` (api/proto): enum names
//! as the proto spells them, uint64 as strings, and no field Tetragon's messages lack unless
//! the user opted into nightjar's [`Extensions`].
use std::{borrow::Cow, cell::Cell, collections::BTreeMap, sync::atomic::AtomicU8};

use serde::{
    de::{self, MapAccess, Visitor},
    ser::SerializeMap,
    Deserialize, Deserializer, Serialize, Serializer,
};
use serde_json::{Map, Value};

pub use crate::shared::SharedProcess;
use crate::{
    kinds::{Kind, KINDS},
    time::Timestamp,
};

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
    /// Where the event came from (not exported).
    pub origin: Origin,
}

/// Where an event came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Origin {
    /// Observed here (the sensor) or made by the pipeline.
    #[default]
    Local,
    /// Read from another exporter's output (the `tetragon_file` source): exported as
    /// received, so no stage adds this host's facts to it unless the user asks.
    Received,
}

/// The event's payload, named by its top-level key (see [`crate::kinds::KINDS`]).
#[derive(Clone, Debug, PartialEq)]
pub enum EventKind {
    ProcessExec(Box<ProcessExec>),
    ProcessExit(Box<ProcessExit>),
    ProcessKprobe(Box<ProcessKprobe>),
    ProcessTracepoint(Box<ProcessTracepoint>),
    ProcessLoader(Box<ProcessLoader>),
    ProcessUprobe(Box<ProcessUprobe>),
    ProcessThrottle(Box<ProcessThrottle>),
    ProcessLsm(Box<ProcessLsm>),
    ProcessUsdt(Box<ProcessUsdt>),
    RateLimitInfo(RateLimitInfo),
    /// A payload nightjar does not model (`test`, or a kind newer than this table), kept as is.
    Other {
        key: String,
        value: Value,
    },
}

impl EventKind {
    /// The kind from the table; `None` for a key the table does not know.
    pub fn kind(&self) -> Option<Kind> {
        Some(match self {
            EventKind::ProcessExec(_) => Kind::ProcessExec,
            EventKind::ProcessExit(_) => Kind::ProcessExit,
            EventKind::ProcessKprobe(_) => Kind::ProcessKprobe,
            EventKind::ProcessTracepoint(_) => Kind::ProcessTracepoint,
            EventKind::ProcessLoader(_) => Kind::ProcessLoader,
            EventKind::ProcessUprobe(_) => Kind::ProcessUprobe,
            EventKind::ProcessThrottle(_) => Kind::ProcessThrottle,
            EventKind::ProcessLsm(_) => Kind::ProcessLsm,
            EventKind::ProcessUsdt(_) => Kind::ProcessUsdt,
            EventKind::RateLimitInfo(_) => Kind::RateLimitInfo,
            EventKind::Other { key, .. } => return Kind::from_key(key),
        })
    }

    /// The top-level key, which is also the event type in filters and metrics.
    pub fn key(&self) -> &str {
        match self {
            EventKind::Other { key, .. } => key,
            typed => typed.kind().map(Kind::key).unwrap_or_default(),
        }
    }

    /// The typed payload, for what every kind may carry (process, hook, ...).
    pub fn payload(&self) -> Option<&dyn Payload> {
        Some(match self {
            EventKind::ProcessExec(e) => &**e,
            EventKind::ProcessExit(e) => &**e,
            EventKind::ProcessKprobe(e) => &**e,
            EventKind::ProcessTracepoint(e) => &**e,
            EventKind::ProcessLoader(e) => &**e,
            EventKind::ProcessUprobe(e) => &**e,
            EventKind::ProcessThrottle(e) => &**e,
            EventKind::ProcessLsm(e) => &**e,
            EventKind::ProcessUsdt(e) => &**e,
            EventKind::RateLimitInfo(e) => e,
            EventKind::Other { .. } => return None,
        })
    }

    pub fn payload_mut(&mut self) -> Option<&mut dyn Payload> {
        Some(match self {
            EventKind::ProcessExec(e) => &mut **e,
            EventKind::ProcessExit(e) => &mut **e,
            EventKind::ProcessKprobe(e) => &mut **e,
            EventKind::ProcessTracepoint(e) => &mut **e,
            EventKind::ProcessLoader(e) => &mut **e,
            EventKind::ProcessUprobe(e) => &mut **e,
            EventKind::ProcessThrottle(e) => &mut **e,
            EventKind::ProcessLsm(e) => &mut **e,
            EventKind::ProcessUsdt(e) => &mut **e,
            EventKind::RateLimitInfo(e) => e,
            EventKind::Other { .. } => return None,
        })
    }
}

/// The hook a policy event reports (kprobe, tracepoint, LSM, uprobe, USDT).
#[derive(Debug, Clone, Default)]
pub struct Hook<'a> {
    pub policy_name: Option<&'a str>,
    /// `KPROBE_ACTION_POST`, `KPROBE_ACTION_SIGKILL`, ...
    pub action: Option<&'a str>,
    /// The function (`security_file_open`), `subsys/event` of a tracepoint, or
    /// `path symbol` of a uprobe.
    pub function: Option<Cow<'a, str>>,
    pub args: &'a [KprobeArgument],
    pub message: Option<&'a str>,
    pub tags: &'a [String],
}

/// What every payload may carry, read the same way whatever its kind.
pub trait Payload {
    fn process(&self) -> Option<&Process> {
        None
    }
    fn parent(&self) -> Option<&Process> {
        None
    }
    fn ancestors(&self) -> &[SharedProcess] {
        &[]
    }
    /// Calls `f` on the process, the parent and each ancestor (enrichment, redaction): a
    /// stage that changes one calls [`SharedProcess::make_mut`].
    fn for_each_process_mut(&mut self, _f: &mut dyn FnMut(&mut SharedProcess)) {}
    fn hook(&self) -> Option<Hook<'_>> {
        None
    }
}

/// Payloads with `process`, `parent` and `ancestors`.
macro_rules! process_payload {
    ($t:ty, $hook:ident) => {
        impl Payload for $t {
            fn process(&self) -> Option<&Process> {
                self.process.as_deref()
            }
            fn parent(&self) -> Option<&Process> {
                self.parent.as_deref()
            }
            fn ancestors(&self) -> &[SharedProcess] {
                self.ancestors.as_deref().unwrap_or_default()
            }
            fn for_each_process_mut(&mut self, f: &mut dyn FnMut(&mut SharedProcess)) {
                let ancestors = self.ancestors.iter_mut().flatten();
                self.process.iter_mut().chain(self.parent.iter_mut()).chain(ancestors).for_each(f);
            }
            fn hook(&self) -> Option<Hook<'_>> {
                $hook(self)
            }
        }
    };
}

fn no_hook<T>(_: &T) -> Option<Hook<'_>> {
    None
}

/// The [`Hook`] view of a policy payload: the fields every hook kind shares, and how it
/// names its function.
macro_rules! hook_view {
    ($p:ident, $function:expr) => {
        Some(Hook {
            policy_name: $p.policy_name.as_deref(),
            action: $p.action.as_deref(),
            function: $function,
            args: $p.args.as_deref().unwrap_or_default(),
            message: $p.message.as_deref(),
            tags: $p.tags.as_deref().unwrap_or_default(),
        })
    };
}

process_payload!(ProcessExec, no_hook);
process_payload!(ProcessExit, no_hook);
process_payload!(ProcessLoader, no_hook);
fn hook_process_kprobe(k: &ProcessKprobe) -> Option<Hook<'_>> {
    hook_view!(k, k.function_name.as_deref().map(Cow::Borrowed))
}
process_payload!(ProcessKprobe, hook_process_kprobe);
fn hook_process_tracepoint(t: &ProcessTracepoint) -> Option<Hook<'_>> {
    hook_view!(
        t,
        match (&t.subsys, &t.event) {
            (Some(s), Some(e)) => Some(Cow::Owned(format!("{s}/{e}"))),
            (s, e) => s.as_deref().or(e.as_deref()).map(Cow::Borrowed),
        }
    )
}
process_payload!(ProcessTracepoint, hook_process_tracepoint);
fn hook_process_lsm(l: &ProcessLsm) -> Option<Hook<'_>> {
    hook_view!(l, l.function_name.as_deref().map(Cow::Borrowed))
}
process_payload!(ProcessLsm, hook_process_lsm);
fn hook_process_uprobe(u: &ProcessUprobe) -> Option<Hook<'_>> {
    hook_view!(
        u,
        match (&u.path, &u.symbol) {
            (Some(p), Some(s)) => Some(Cow::Owned(format!("{p} {s}"))),
            (p, s) => p.as_deref().or(s.as_deref()).map(Cow::Borrowed),
        }
    )
}
process_payload!(ProcessUprobe, hook_process_uprobe);
fn hook_process_usdt(u: &ProcessUsdt) -> Option<Hook<'_>> {
    hook_view!(
        u,
        match (&u.provider, &u.name) {
            (Some(p), Some(n)) => Some(Cow::Owned(format!("{p}:{n}"))),
            (p, n) => p.as_deref().or(n.as_deref()).map(Cow::Borrowed),
        }
    )
}
process_payload!(ProcessUsdt, hook_process_usdt);
impl Payload for ProcessThrottle {}
impl Payload for RateLimitInfo {}

impl Event {
    pub fn new(kind: EventKind, node_name: impl Into<String>, time: Timestamp) -> Self {
        Event {
            kind,
            node_name: Some(node_name.into()),
            time: Some(time),
            extra: Extra::new(),
            ack: Default::default(),
            origin: Origin::Local,
        }
    }

    /// The process the event is about, when it has one.
    pub fn process(&self) -> Option<&Process> {
        self.kind.payload().and_then(|p| p.process())
    }

    /// The parent of the event's process, when known.
    pub fn parent(&self) -> Option<&Process> {
        self.kind.payload().and_then(|p| p.parent())
    }

    pub fn ancestors(&self) -> &[SharedProcess] {
        self.kind.payload().map(|p| p.ancestors()).unwrap_or_default()
    }

    /// The hook of a policy event (policy, action, function, arguments).
    pub fn hook(&self) -> Option<Hook<'_>> {
        self.kind.payload().and_then(|p| p.hook())
    }

    /// Calls `f` on every process the event holds (process, parent, ancestors); `f` calls
    /// [`SharedProcess::make_mut`] on one it changes.
    pub fn for_each_process_mut(&mut self, mut f: impl FnMut(&mut SharedProcess)) {
        if let Some(p) = self.kind.payload_mut() {
            p.for_each_process_mut(&mut f);
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

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        match &self.kind {
            EventKind::ProcessExec(e) => m.serialize_entry("process_exec", e)?,
            EventKind::ProcessExit(e) => m.serialize_entry("process_exit", e)?,
            EventKind::ProcessKprobe(e) => m.serialize_entry("process_kprobe", e)?,
            EventKind::ProcessTracepoint(e) => m.serialize_entry("process_tracepoint", e)?,
            EventKind::ProcessLoader(e) => m.serialize_entry("process_loader", e)?,
            EventKind::ProcessUprobe(e) => m.serialize_entry("process_uprobe", e)?,
            EventKind::ProcessThrottle(e) => m.serialize_entry("process_throttle", e)?,
            EventKind::ProcessLsm(e) => m.serialize_entry("process_lsm", e)?,
            EventKind::ProcessUsdt(e) => m.serialize_entry("process_usdt", e)?,
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
const TOP_LEVEL_FIELDS: [&str; 5] = ["node_name", "time", "cluster_name", "aggregation_info", "node_labels"];

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
                        "process_loader" => EventKind::ProcessLoader(a.next_value()?),
                        "process_uprobe" => EventKind::ProcessUprobe(a.next_value()?),
                        "process_throttle" => EventKind::ProcessThrottle(a.next_value()?),
                        "process_lsm" => EventKind::ProcessLsm(a.next_value()?),
                        "process_usdt" => EventKind::ProcessUsdt(a.next_value()?),
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
                        if prev.kind().is_some() || k.kind().is_some() {
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
                    let keys: Vec<&str> = KINDS.iter().map(|k| k.key).collect();
                    de::Error::custom(format!("no event payload (expected one of {})", keys.join(", ")))
                })?;
                Ok(Event { kind, node_name, time, extra, ack: Default::default(), origin: Origin::Local })
            }
        }
        d.deserialize_map(V)
    }
}

/// nightjar's fields that Tetragon's messages lack (`export.extensions` in the config).
/// All off by default, so every exported line parses strictly as `tetragon.GetEventsResponse`;
/// each one turned on adds its field where it belongs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Extensions {
    /// `process.cgroup`: `{id, path}` of the cgroup the process ran in at exec.
    pub process_cgroup: bool,
    /// `process.group`: `{name}` of the gid (with `pipeline.enrich.user_names`).
    pub process_group: bool,
    /// `process.tty`: the controlling terminal.
    pub process_tty: bool,
    /// `args[].truncated`: the captured value was cut at the capture limit.
    pub args_truncated: bool,
}

impl Extensions {
    fn bits(self) -> u8 {
        u8::from(self.process_cgroup)
            | u8::from(self.process_group) << 1
            | u8::from(self.process_tty) << 2
            | u8::from(self.args_truncated) << 3
    }
}

const EXT_CGROUP: u8 = 1;
const EXT_GROUP: u8 = 1 << 1;
const EXT_TTY: u8 = 1 << 2;
const EXT_TRUNCATED: u8 = 1 << 3;

static EXTENSIONS: AtomicU8 = AtomicU8::new(0);
thread_local! {
    static EXTENSIONS_HERE: Cell<Option<u8>> = const { Cell::new(None) };
}

/// Sets the extensions every event is written with (the agent does this once at start).
pub fn set_extensions(e: Extensions) {
    EXTENSIONS.store(e.bits(), std::sync::atomic::Ordering::Relaxed);
}

/// Runs `f` with `e` as the extensions of this thread (tests; a tool writing another format).
pub fn with_extensions<T>(e: Extensions, f: impl FnOnce() -> T) -> T {
    let prev = EXTENSIONS_HERE.with(|c| c.replace(Some(e.bits())));
    let out = f();
    EXTENSIONS_HERE.with(|c| c.set(prev));
    out
}

/// The extensions in force on this thread, as bits.
pub(crate) fn extension_bits() -> u8 {
    EXTENSIONS_HERE.with(Cell::get).unwrap_or_else(|| EXTENSIONS.load(std::sync::atomic::Ordering::Relaxed))
}

fn extension_on(bit: u8) -> bool {
    extension_bits() & bit != 0
}

fn skip_cgroup(v: &Option<Cgroup>) -> bool {
    v.is_none() || !extension_on(EXT_CGROUP)
}
fn skip_group(v: &Option<Named>) -> bool {
    v.is_none() || !extension_on(EXT_GROUP)
}
fn skip_tty(v: &Option<String>) -> bool {
    v.is_none() || !extension_on(EXT_TTY)
}

/// uint64 fields are strings in protobuf JSON; numbers are accepted when reading.
mod u64_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(n) => s.collect_str(n),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Option::<Raw>::deserialize(d)? {
            None => Ok(None),
            Some(Raw::N(n)) => Ok(Some(n)),
            Some(Raw::S(s)) => s.parse().map(Some).map_err(serde::de::Error::custom),
        }
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
    /// Written only with the `process_cgroup` extension.
    #[serde(default, skip_serializing_if = "skip_cgroup")]
    pub cgroup: Option<Cgroup>,
    /// Written only with the `process_tty` extension.
    #[serde(default, skip_serializing_if = "skip_tty")]
    pub tty: Option<String>,
    /// Name of the uid, from the enrichment stage (Tetragon's `UserRecord`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Named>,
    /// Name of the gid, from the enrichment stage; written only with the `process_group` extension.
    #[serde(default, skip_serializing_if = "skip_group")]
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

/// Linux capability names by bit number (as policies write them: `CAP_DAC_OVERRIDE`).
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

/// The `tetragon.CapabilitiesType` name of a capability bit: Linux's, except bit 1, which
/// the proto spells `DAC_OVERRIDE`.
pub fn cap_proto_name(bit: usize) -> Option<&'static str> {
    match bit {
        1 => Some("DAC_OVERRIDE"),
        b => CAP_NAMES.get(b).copied(),
    }
}

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
        // The proto's `DAC_OVERRIDE` and Linux's `CAP_DAC_OVERRIDE` are one capability.
        let linux = |v: Vec<String>| -> Vec<String> {
            v.into_iter().map(|n| if n == "DAC_OVERRIDE" { "CAP_DAC_OVERRIDE".into() } else { n }).collect()
        };
        match (self, other) {
            (CapSet::Mask(a), CapSet::Mask(b)) => a == b,
            _ => linux(self.names()) == linux(other.names()),
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
        // Proto enum names; a bit the proto has no name for is written as its number, which
        // protobuf JSON accepts for an enum.
        let items: Vec<Value> = (0..64)
            .filter(|b| m & (1u64 << b) != 0)
            .map(|b| cap_proto_name(b).map(Value::from).unwrap_or_else(|| Value::from(b)))
            .collect();
        let raw = serde_json::value::to_raw_value(&items).map_err(serde::ser::Error::custom)?;
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
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Cap {
            Name(String),
            Bit(usize),
        }
        let caps = Vec::<Cap>::deserialize(d)?;
        Ok(CapSet::Names(
            caps.into_iter()
                .map(|c| match c {
                    Cap::Name(n) => n,
                    Cap::Bit(b) => cap_proto_name(b).map(str::to_owned).unwrap_or_else(|| format!("CAP_{b}")),
                })
                .collect(),
        ))
    }
}

/// Capability sets, as `tetragon.CapabilitiesType` names (`CAP_SYS_ADMIN`, `DAC_OVERRIDE`, ...).
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
    pub process: Option<SharedProcess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<SharedProcess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ancestors: Option<Vec<SharedProcess>>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessExit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<SharedProcess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<SharedProcess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ancestors: Option<Vec<SharedProcess>>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessKprobe {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<SharedProcess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<SharedProcess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<KprobeArgument>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ancestors: Option<Vec<SharedProcess>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// `return`, `return_action`, `kernel_stack_trace`, `data`, ... kept verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessTracepoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<SharedProcess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<SharedProcess>,
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
    pub ancestors: Option<Vec<SharedProcess>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// An LSM hook of a policy (`lsmhooks:`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessLsm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<SharedProcess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<SharedProcess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<KprobeArgument>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ancestors: Option<Vec<SharedProcess>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ima_hash: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A uprobe of a policy (`uprobes:`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessUprobe {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<SharedProcess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<SharedProcess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<KprobeArgument>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ancestors: Option<Vec<SharedProcess>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// `offset`, `ref_ctr_offset`, `data`, ... kept verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A USDT probe of a policy (`usdts:`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessUsdt {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<SharedProcess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<SharedProcess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<KprobeArgument>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ancestors: Option<Vec<SharedProcess>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A shared library loaded by a process.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessLoader {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<SharedProcess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<SharedProcess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ancestors: Option<Vec<SharedProcess>>,
    /// `buildid` (bytes, base64), kept verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A cgroup's events were throttled (`type` START) or resumed (STOP).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessThrottle {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RateLimitInfo {
    #[serde(default, with = "u64_string", skip_serializing_if = "Option::is_none")]
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
    /// `int_arg` (int32); a value outside int32 is written as `long_arg`.
    Int(i64),
    /// `long_arg` (int64, a string in JSON).
    Long(i64),
    /// `uint_arg` (uint32).
    Uint(u32),
    /// `size_arg` (uint64, a string in JSON).
    Size(u64),
    /// `bytes_arg` (base64 in JSON): `char_buf` arguments.
    Bytes(Vec<u8>),
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
    /// The value was cut at the capture limit (written only with the `args_truncated` extension).
    pub truncated: bool,
    pub extra: Extra,
}

impl KprobeArgument {
    pub fn new(value: ArgValue) -> Self {
        KprobeArgument { value, label: None, truncated: false, extra: Extra::new() }
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl Serialize for KprobeArgument {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        match &self.value {
            ArgValue::String(v) => m.serialize_entry("string_arg", v)?,
            ArgValue::Int(v) => match i32::try_from(*v) {
                Ok(i) => m.serialize_entry("int_arg", &i)?,
                Err(_) => m.serialize_entry("long_arg", &v.to_string())?,
            },
            ArgValue::Long(v) => m.serialize_entry("long_arg", &v.to_string())?,
            ArgValue::Uint(v) => m.serialize_entry("uint_arg", v)?,
            ArgValue::Size(v) => m.serialize_entry("size_arg", &v.to_string())?,
            ArgValue::Bytes(v) => m.serialize_entry("bytes_arg", &base64::Engine::encode(&b64(), v))?,
            ArgValue::File(v) => m.serialize_entry("file_arg", v)?,
            ArgValue::Path(v) => m.serialize_entry("path_arg", v)?,
            ArgValue::LinuxBinprm(v) => m.serialize_entry("linux_binprm_arg", v)?,
            ArgValue::Other { key, value } => m.serialize_entry(key, value)?,
            ArgValue::None => {}
        }
        if let Some(l) = &self.label {
            m.serialize_entry("label", l)?;
        }
        if self.truncated && extension_on(EXT_TRUNCATED) {
            m.serialize_entry("truncated", &true)?;
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
        let truncated = match map.remove("truncated") {
            Some(Value::Bool(b)) => b,
            Some(other) => {
                map.insert("truncated".into(), other);
                false
            }
            None => false,
        };
        let value_key = map.keys().find(|k| k.ends_with("_arg")).cloned();
        let value = match value_key {
            None => ArgValue::None,
            Some(key) => {
                let v = map.remove(&key).unwrap_or(Value::Null);
                let typed = |v: Value| serde_json::from_value::<FileArg>(v).map_err(de::Error::custom);
                // 64-bit integers are strings in protobuf JSON; numbers are accepted too.
                let int64 = |v: &Value| v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok()));
                let uint64 = |v: &Value| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()));
                let bytes = |v: &Value| v.as_str().and_then(|s| base64::Engine::decode(&b64(), s).ok());
                match key.as_str() {
                    "string_arg" if v.is_string() => ArgValue::String(v.as_str().unwrap_or_default().to_owned()),
                    "int_arg" if v.is_i64() => ArgValue::Int(v.as_i64().unwrap_or_default()),
                    "long_arg" if int64(&v).is_some() => ArgValue::Long(int64(&v).unwrap_or_default()),
                    "uint_arg" if v.as_u64().is_some_and(|n| n <= u32::MAX as u64) => {
                        ArgValue::Uint(v.as_u64().unwrap_or_default() as u32)
                    }
                    "size_arg" if uint64(&v).is_some() => ArgValue::Size(uint64(&v).unwrap_or_default()),
                    "bytes_arg" if bytes(&v).is_some() => ArgValue::Bytes(bytes(&v).unwrap_or_default()),
                    "file_arg" if v.is_object() => ArgValue::File(typed(v)?),
                    "path_arg" if v.is_object() => ArgValue::Path(typed(v)?),
                    "linux_binprm_arg" if v.is_object() => ArgValue::LinuxBinprm(typed(v)?),
                    _ => ArgValue::Other { key, value: v },
                }
            }
        };
        Ok(KprobeArgument { value, label, truncated, extra: map })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_payload_and_fields_are_kept() {
        let line = r#"{"process_future":{"x":1},"node_name":"n","time":"2024-01-01T00:00:00Z","cluster_name":"c"}"#;
        let e = Event::from_json(line).unwrap();
        assert_eq!(e.kind.key(), "process_future");
        assert_eq!(e.kind.kind(), None);
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

    fn process_with_extras() -> Process {
        Process {
            binary: Some("/bin/sh".into()),
            cgroup: Some(Cgroup { id: Some("42".into()), path: Some("/a".into()), ..Default::default() }),
            user: Some(Named { name: Some("root".into()), ..Default::default() }),
            group: Some(Named { name: Some("wheel".into()), ..Default::default() }),
            tty: Some("pts/0".into()),
            ..Default::default()
        }
    }

    #[test]
    fn nightjar_extras_are_written_only_with_their_extension() {
        let ev = Event::new(
            EventKind::ProcessExec(Box::new(ProcessExec {
                process: Some(process_with_extras().into()),
                ..Default::default()
            })),
            "n",
            Timestamp::from_unix_nanos(0),
        );
        let strict: Value = with_extensions(Extensions::default(), || serde_json::from_str(&ev.to_json()).unwrap());
        let p = &strict["process_exec"]["process"];
        assert_eq!(p["user"]["name"], "root", "user is Tetragon's UserRecord");
        for k in ["cgroup", "group", "tty"] {
            assert!(p.get(k).is_none(), "{k} without its extension: {p}");
        }
        let all = Extensions { process_cgroup: true, process_group: true, process_tty: true, args_truncated: true };
        let ext: Value = with_extensions(all, || serde_json::from_str(&ev.to_json()).unwrap());
        let p = &ext["process_exec"]["process"];
        assert_eq!(
            (&p["cgroup"]["id"], &p["group"]["name"], &p["tty"]),
            (&"42".into(), &"wheel".into(), &"pts/0".into())
        );
    }

    #[test]
    fn protobuf_json_types() {
        let rl = Event::new(
            EventKind::RateLimitInfo(RateLimitInfo { number_of_dropped_process_events: Some(7), ..Default::default() }),
            "n",
            Timestamp::from_unix_nanos(0),
        );
        assert!(rl.to_json().contains(r#"{"number_of_dropped_process_events":"7"}"#), "{}", rl.to_json());
        let back = Event::from_json(&rl.to_json()).unwrap();
        assert_eq!(back, rl);
        let mut t = KprobeArgument::new(ArgValue::Bytes(b"hi".to_vec()));
        t.truncated = true;
        let args = vec![
            KprobeArgument::new(ArgValue::Int(-2)),
            KprobeArgument::new(ArgValue::Int(1 << 40)),
            KprobeArgument::new(ArgValue::Size(u64::MAX)),
            KprobeArgument::new(ArgValue::Uint(7)),
            t,
        ];
        let text = with_extensions(Extensions::default(), || serde_json::to_string(&args).unwrap());
        assert_eq!(
            text,
            r#"[{"int_arg":-2},{"long_arg":"1099511627776"},{"size_arg":"18446744073709551615"},{"uint_arg":7},{"bytes_arg":"aGk="}]"#
        );
        let back: Vec<KprobeArgument> = serde_json::from_str(&text).unwrap();
        assert_eq!(back[2].value, ArgValue::Size(u64::MAX));
        assert_eq!(back[4].value, ArgValue::Bytes(b"hi".to_vec()));
    }

    #[test]
    fn lsm_events_are_typed_and_read_like_kprobes() {
        let line = r#"{"process_lsm":{"process":{"binary":"/usr/bin/cat","arguments":"x"},"function_name":"file_open","policy_name":"p","message":"m","tags":["t"],"args":[{"file_arg":{"path":"/etc/shadow"}}],"action":"KPROBE_ACTION_POST"},"time":"2024-01-01T00:00:00Z"}"#;
        let e = Event::from_json(line).unwrap();
        assert!(matches!(e.kind, EventKind::ProcessLsm(_)));
        assert_eq!(e.kind.kind(), Some(Kind::ProcessLsm));
        assert_eq!(e.process().and_then(|p| p.binary.as_deref()), Some("/usr/bin/cat"));
        let h = e.hook().unwrap();
        assert_eq!((h.policy_name, h.message, h.tags), (Some("p"), Some("m"), &["t".to_owned()][..]));
        assert_eq!(h.function.as_deref(), Some("file_open"));
        let back: Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(line).unwrap());
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
    fn bit_one_is_written_as_the_proto_spells_it() {
        let m = CapSet::Mask(0b11);
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"["CAP_CHOWN","DAC_OVERRIDE"]"#);
        let read: CapSet = serde_json::from_str(r#"["CAP_CHOWN","DAC_OVERRIDE"]"#).unwrap();
        assert_eq!(read, m);
        let old: CapSet = serde_json::from_str(r#"["CAP_CHOWN","CAP_DAC_OVERRIDE"]"#).unwrap();
        assert_eq!(old, m, "nightjar's old spelling still reads as the same set");
    }

    #[test]
    fn a_mask_serializes_as_names_the_same_every_time_and_through_value() {
        let m = CapSet::Mask(1 << 21 | 1 | 1 << 50);
        // A bit the proto does not name is its number (valid protobuf JSON for an enum).
        let want = r#"["CAP_CHOWN","CAP_SYS_ADMIN",50]"#;
        assert_eq!(serde_json::to_string(&m).unwrap(), want);
        assert_eq!(serde_json::to_string(&m).unwrap(), want, "rendered from the table");
        assert_eq!(serde_json::to_value(&m).unwrap(), serde_json::from_str::<Value>(want).unwrap());
        let back: CapSet = serde_json::from_str(want).unwrap();
        assert_eq!(back, m);
        assert_ne!(back, CapSet::Mask(1));
    }
}
