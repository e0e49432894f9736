//! Policy hooks, user side of `sensor-bpf/src/policy.rs`: a fired hook becomes a
//! `process_kprobe` / `process_tracepoint` / `process_lsm` event with the policy's name,
//! the function, the captured arguments and the action taken.
use nightjar_common::{action, argsrc};
use nightjar_event::{
    event::{ArgValue, FileArg, KprobeArgument, Process, ProcessKprobe, ProcessTracepoint},
    Event, EventKind,
};
use serde_json::{json, Value};

use crate::{
    decode::Policy,
    hooks::process::ProcessHook,
    policy::{compile::HookKind, engine::HookMeta},
};

/// Tetragon's names for actions in events.
pub fn action_name(a: u8) -> &'static str {
    match a {
        action::SIGKILL => "KPROBE_ACTION_SIGKILL",
        action::SIGNAL => "KPROBE_ACTION_SIGNAL",
        action::NO_POST => "KPROBE_ACTION_NOPOST",
        action::OVERRIDE => "KPROBE_ACTION_OVERRIDE",
        _ => "KPROBE_ACTION_POST",
    }
}

/// The action as metrics label it (`Post`, `Sigkill`, `Signal`).
pub fn action_label(a: u8) -> &'static str {
    match a {
        action::SIGKILL => "Sigkill",
        action::SIGNAL => "Signal",
        action::NO_POST => "NoPost",
        action::OVERRIDE => "Override",
        _ => "Post",
    }
}

fn arg_value(ty: &str, src: u8, data: &[u8]) -> ArgValue {
    if src == argsrc::INT {
        let mut b = [0u8; 8];
        let n = data.len().min(8);
        b[..n].copy_from_slice(&data[..n]);
        return ArgValue::Int(i64::from_ne_bytes(b));
    }
    let s = String::from_utf8_lossy(data).into_owned();
    let file = || FileArg { path: Some(s.clone()), ..Default::default() };
    match ty {
        "file" => ArgValue::File(file()),
        "path" => ArgValue::Path(file()),
        "linux_binprm" => ArgValue::LinuxBinprm(file()),
        _ => ArgValue::String(s),
    }
}

pub fn to_event(p: &Policy, meta: &HookMeta, procs: &ProcessHook) -> Event {
    let r = &p.fixed;
    let info = procs.cache.current(r.pid, None);
    let process = match &info {
        Some(i) => {
            let mut pr = i.process.clone();
            pr.tid = Some(r.tid);
            pr
        }
        None => Process { pid: Some(r.pid), tid: Some(r.tid), ..Default::default() },
    };
    let parent = info.as_ref().and_then(|i| procs.cache.parent_of(i)).map(|p| p.process.clone());
    let args: Vec<KprobeArgument> = meta
        .args
        .iter()
        .zip(&p.args)
        .map(|(m, a)| {
            let mut k = KprobeArgument::new(arg_value(&m.ty, a.src, &a.data));
            k.label = m.label.clone();
            if a.truncated {
                k.extra.insert("truncated".into(), Value::Bool(true));
            }
            k
        })
        .collect();
    let act = action_name(r.action).to_owned();
    let time = procs.wall(r.hdr.ktime);
    let node = procs.cache.node().to_owned();
    let mut extra = serde_json::Map::new();
    if let Some(m) = &meta.message {
        extra.insert("message".into(), Value::String(m.clone()));
    }
    if !meta.tags.is_empty() {
        extra.insert("tags".into(), json!(meta.tags));
    }
    let kind = match meta.kind {
        HookKind::Kprobe => EventKind::ProcessKprobe(Box::new(ProcessKprobe {
            process: Some(process),
            parent,
            function_name: Some(meta.function.clone()),
            args: Some(args),
            action: Some(act),
            policy_name: Some(meta.policy.clone()),
            extra,
            ..Default::default()
        })),
        HookKind::Tracepoint => {
            let (subsys, event) = meta.function.split_once('/').unwrap_or(("", &meta.function));
            EventKind::ProcessTracepoint(Box::new(ProcessTracepoint {
                process: Some(process),
                parent,
                subsys: Some(subsys.to_owned()),
                event: Some(event.to_owned()),
                args: Some(args),
                action: Some(act),
                policy_name: Some(meta.policy.clone()),
                extra,
                ..Default::default()
            }))
        }
        HookKind::Lsm => {
            let mut v = json!({
                "process": process,
                "function_name": meta.function,
                "args": args,
                "action": act,
                "policy_name": meta.policy,
            });
            if let (Some(parent), Some(o)) = (parent, v.as_object_mut()) {
                o.insert("parent".into(), json!(parent));
                o.extend(extra);
            }
            EventKind::Other { key: "process_lsm".into(), value: v }
        }
    };
    Event::new(kind, node, time)
}
