//! Event fields that stages key on (dedup, per-key rate limits), read from the typed event
//! without serialising it. A key is bytes written into a buffer the stage reuses, so
//! looking an event up costs no allocation (only a new key is copied, when it is stored).
use std::io::Write as _;

use serde::{Deserialize, Serialize};

use crate::event::{Event, EventKind, KprobeArgument, Process};

/// A field of an event usable as (part of) a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyField {
    /// The event type (`process_exec`, `process_kprobe`, ...).
    Type,
    NodeName,
    ExecId,
    ParentExecId,
    Pid,
    Uid,
    Binary,
    Arguments,
    Cwd,
    ParentBinary,
    /// The hook: kprobe/LSM function name, `subsys/event` of a tracepoint, `path symbol` of a uprobe.
    FunctionName,
    PolicyName,
    Action,
    /// Kubernetes namespace of the process' pod.
    Namespace,
    /// Kubernetes pod name.
    Pod,
    ContainerId,
    /// The hook arguments (kprobe/tracepoint `args`), as JSON.
    Args,
}

/// The event's policy name (every policy kind: kprobe, tracepoint, LSM, uprobe, USDT).
pub fn policy_name(ev: &Event) -> Option<&str> {
    match &ev.kind {
        EventKind::Other { value, .. } => value.get("policy_name").and_then(|v| v.as_str()),
        _ => ev.hook().and_then(|h| h.policy_name),
    }
}

/// The event's action (`KPROBE_ACTION_POST`, `KPROBE_ACTION_SIGKILL`, ...).
pub fn action(ev: &Event) -> Option<&str> {
    match &ev.kind {
        EventKind::Other { value, .. } => value.get("action").and_then(|v| v.as_str()),
        _ => ev.hook().and_then(|h| h.action),
    }
}

fn hook_args(ev: &Event) -> Option<&[KprobeArgument]> {
    ev.hook().map(|h| h.args)
}

fn pod_field<'a>(p: Option<&'a Process>, f: impl Fn(&'a crate::event::Pod) -> Option<&'a str>) -> Option<&'a str> {
    p.and_then(|p| p.pod.as_ref()).and_then(f)
}

impl KeyField {
    /// Appends this field's value (empty when absent) to `out`.
    pub fn write(self, ev: &Event, out: &mut Vec<u8>) {
        let p = ev.process();
        let s = |o: Option<&str>, out: &mut Vec<u8>| out.extend_from_slice(o.unwrap_or_default().as_bytes());
        match self {
            KeyField::Type => s(Some(ev.kind.key()), out),
            KeyField::NodeName => s(ev.node_name.as_deref(), out),
            KeyField::ExecId => s(p.and_then(|p| p.exec_id.as_deref()), out),
            KeyField::ParentExecId => s(p.and_then(|p| p.parent_exec_id.as_deref()), out),
            KeyField::Pid => {
                if let Some(pid) = p.and_then(|p| p.pid) {
                    let _ = write!(out, "{pid}");
                }
            }
            KeyField::Uid => {
                if let Some(uid) = p.and_then(|p| p.uid) {
                    let _ = write!(out, "{uid}");
                }
            }
            KeyField::Binary => s(p.and_then(|p| p.binary.as_deref()), out),
            KeyField::Arguments => s(p.and_then(|p| p.arguments.as_deref()), out),
            KeyField::Cwd => s(p.and_then(|p| p.cwd.as_deref()), out),
            KeyField::ParentBinary => s(ev.parent().and_then(|p| p.binary.as_deref()), out),
            KeyField::FunctionName => {
                if let Some(f) = ev.hook().and_then(|h| h.function) {
                    out.extend_from_slice(f.as_bytes());
                }
            }
            KeyField::PolicyName => s(policy_name(ev), out),
            KeyField::Action => s(action(ev), out),
            KeyField::Namespace => s(pod_field(p, |pod| pod.namespace.as_deref()), out),
            KeyField::Pod => s(pod_field(p, |pod| pod.name.as_deref()), out),
            KeyField::ContainerId => s(pod_field(p, |pod| pod.container.as_ref().and_then(|c| c.id.as_deref())), out),
            KeyField::Args => {
                if let Some(a) = hook_args(ev) {
                    // Serialising owned values cannot fail; never leave half of them.
                    let at = out.len();
                    if serde_json::to_writer(&mut *out, a).is_err() {
                        out.truncate(at);
                    }
                }
            }
        }
    }
}

/// Writes the key of `ev` over `fields` into `k`, replacing what it held (values
/// separated by U+001F, which no field holds).
pub fn key_into(fields: &[KeyField], ev: &Event, k: &mut Vec<u8>) {
    k.clear();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            k.push(0x1f);
        }
        f.write(ev, k);
    }
}
