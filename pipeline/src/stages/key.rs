//! Event fields that stages key on (dedup, per-key rate limits), read from the typed event
//! without serialising it.
use std::fmt::Write as _;

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
    /// Kprobe function name, or `subsys/event` of a tracepoint.
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

/// The event's policy name (kprobe and tracepoint events).
pub fn policy_name(ev: &Event) -> Option<&str> {
    match &ev.kind {
        EventKind::ProcessKprobe(k) => k.policy_name.as_deref(),
        EventKind::ProcessTracepoint(t) => t.policy_name.as_deref(),
        EventKind::Other { value, .. } => value.get("policy_name").and_then(|v| v.as_str()),
        _ => None,
    }
}

/// The event's action (`KPROBE_ACTION_POST`, `SIGKILL`, ...).
pub fn action(ev: &Event) -> Option<&str> {
    match &ev.kind {
        EventKind::ProcessKprobe(k) => k.action.as_deref(),
        EventKind::ProcessTracepoint(t) => t.action.as_deref(),
        EventKind::Other { value, .. } => value.get("action").and_then(|v| v.as_str()),
        _ => None,
    }
}

fn hook_args(ev: &Event) -> Option<&[KprobeArgument]> {
    match &ev.kind {
        EventKind::ProcessKprobe(k) => k.args.as_deref(),
        EventKind::ProcessTracepoint(t) => t.args.as_deref(),
        _ => None,
    }
}

fn pod_field<'a>(p: Option<&'a Process>, f: impl Fn(&'a crate::event::Pod) -> Option<&'a str>) -> Option<&'a str> {
    p.and_then(|p| p.pod.as_ref()).and_then(f)
}

impl KeyField {
    /// Appends this field's value (empty when absent) to `out`.
    pub fn write(self, ev: &Event, out: &mut String) {
        let p = ev.process();
        let s = |o: Option<&str>, out: &mut String| out.push_str(o.unwrap_or_default());
        match self {
            KeyField::Type => out.push_str(ev.kind.key()),
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
            KeyField::FunctionName => match &ev.kind {
                EventKind::ProcessKprobe(k) => s(k.function_name.as_deref(), out),
                EventKind::ProcessTracepoint(t) => {
                    s(t.subsys.as_deref(), out);
                    out.push('/');
                    s(t.event.as_deref(), out);
                }
                _ => {}
            },
            KeyField::PolicyName => s(policy_name(ev), out),
            KeyField::Action => s(action(ev), out),
            KeyField::Namespace => s(pod_field(p, |pod| pod.namespace.as_deref()), out),
            KeyField::Pod => s(pod_field(p, |pod| pod.name.as_deref()), out),
            KeyField::ContainerId => s(pod_field(p, |pod| pod.container.as_ref().and_then(|c| c.id.as_deref())), out),
            KeyField::Args => {
                if let Some(a) = hook_args(ev) {
                    // Serialising owned values into a String cannot fail.
                    out.push_str(&serde_json::to_string(a).unwrap_or_default());
                }
            }
        }
    }
}

/// The key of `ev` over `fields` (values separated by U+001F, which no field holds).
pub fn key_of(fields: &[KeyField], ev: &Event) -> String {
    let mut k = String::with_capacity(64);
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            k.push('\u{1f}');
        }
        f.write(ev, &mut k);
    }
    k
}
