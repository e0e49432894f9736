//! Policy hooks, user side of `sensor-bpf/src/policy.rs`: a fired hook becomes a
//! `process_kprobe` / `process_tracepoint` / `process_lsm` event with the policy's name,
//! the function, the captured arguments and the action taken.
use nightjar_common::{action, argsrc};
use nightjar_event::{
    event::{
        ArgValue, Extra, FileArg, KprobeArgument, Process, ProcessKprobe, ProcessLsm, ProcessTracepoint, ProcessUprobe,
        ProcessUsdt,
    },
    Event, EventKind,
};
use serde_json::{json, Value};

use crate::{
    decode::Policy,
    hooks::process::ProcessHook,
    policy::{
        args,
        compile::{ArgMeta, HookKind},
        engine::HookMeta,
        lists::{syscall_symbol, NR_INDEX},
        spec::ActionKind,
        ArgType, Loaded,
    },
};

/// Tetragon's names for actions in events.
pub fn action_name(a: u8) -> &'static str {
    match a {
        action::SIGKILL => "KPROBE_ACTION_SIGKILL",
        action::SIGNAL => "KPROBE_ACTION_SIGNAL",
        action::NO_POST => "KPROBE_ACTION_NOPOST",
        action::OVERRIDE => "KPROBE_ACTION_OVERRIDE",
        action::FOLLOW_FD => "KPROBE_ACTION_FOLLOWFD",
        action::UNFOLLOW_FD => "KPROBE_ACTION_UNFOLLOWFD",
        action::COPY_FD => "KPROBE_ACTION_COPYFD",
        action::TRACK_SOCK => "KPROBE_ACTION_TRACKSOCK",
        action::UNTRACK_SOCK => "KPROBE_ACTION_UNTRACKSOCK",
        action::NOTIFY_ENFORCER => "KPROBE_ACTION_NOTIFYENFORCER",
        action::CLEANUP_ENFORCER => "KPROBE_ACTION_CLEANUPENFORCERNOTIFICATION",
        _ => "KPROBE_ACTION_POST",
    }
}

/// Tetragon's event name of a policy's `matchActions[].action` (`Sigkill` →
/// `KPROBE_ACTION_SIGKILL`); `None` for actions that post no event.
fn action_event_name(a: ActionKind) -> Option<&'static str> {
    Some(match a {
        ActionKind::Post => "KPROBE_ACTION_POST",
        ActionKind::Sigkill => "KPROBE_ACTION_SIGKILL",
        ActionKind::Signal => "KPROBE_ACTION_SIGNAL",
        ActionKind::Override => "KPROBE_ACTION_OVERRIDE",
        ActionKind::FollowFD => "KPROBE_ACTION_FOLLOWFD",
        ActionKind::UnfollowFD => "KPROBE_ACTION_UNFOLLOWFD",
        ActionKind::CopyFD => "KPROBE_ACTION_COPYFD",
        ActionKind::TrackSock => "KPROBE_ACTION_TRACKSOCK",
        ActionKind::UntrackSock => "KPROBE_ACTION_UNTRACKSOCK",
        ActionKind::NotifyEnforcer => "KPROBE_ACTION_NOTIFYENFORCER",
        ActionKind::CleanupEnforcerNotification => "KPROBE_ACTION_CLEANUPENFORCERNOTIFICATION",
        _ => return None,
    })
}

/// Puts the policy-event series of a loaded policy at 0, one per action its events can
/// carry, so an `increase()` alert sees its first event after a start.
pub fn init_policy_series(l: &Loaded) {
    let spec = &l.policy.spec;
    let selectors = spec
        .kprobe_entries()
        .flat_map(|(_, k)| &k.selectors)
        .chain(spec.tracepoints.iter().flat_map(|t| &t.selectors))
        .chain(spec.lsmhooks.iter().flat_map(|h| &h.selectors))
        .chain(spec.uprobes.iter().flat_map(|u| &u.selectors))
        .chain(spec.usdts.iter().flat_map(|u| &u.selectors));
    let mut actions = vec!["KPROBE_ACTION_POST"];
    for a in selectors.flat_map(|s| &s.match_actions).filter_map(|a| action_event_name(a.action)) {
        if !actions.contains(&a) {
            actions.push(a);
        }
    }
    nightjar_event::metrics::init_policy_series(&l.policy.metadata.name, &actions);
}

/// The action as metrics label it (`Post`, `Sigkill`, `Signal`).
pub fn action_label(a: u8) -> &'static str {
    match a {
        action::SIGKILL => "Sigkill",
        action::SIGNAL => "Signal",
        action::NO_POST => "NoPost",
        action::OVERRIDE => "Override",
        action::FOLLOW_FD => "FollowFD",
        action::UNFOLLOW_FD => "UnfollowFD",
        action::COPY_FD => "CopyFD",
        action::TRACK_SOCK => "TrackSock",
        action::UNTRACK_SOCK => "UntrackSock",
        _ => "Post",
    }
}

/// An integer argument as Tetragon exports its type: `int_arg` (number), `uint_arg`
/// (number), `size_arg` / `long_arg` (64-bit, a string in protobuf JSON), `capability_arg`,
/// `syscall_id`, `*_cap*_arg` (the capability set, hex).
fn int_value(ty: ArgType, v: u64) -> ArgValue {
    let info = args::info(ty);
    let other = |value: Value| ArgValue::Other { key: info.export.to_owned(), value };
    match info.export {
        "uint_arg" => ArgValue::Uint(v as u32),
        "size_arg" => ArgValue::Size(v),
        "long_arg" => ArgValue::Long(v as i64),
        "capability_arg" => {
            let name = crate::hooks::process::cap_names(1u64 << (v & 63)).pop().unwrap_or_default();
            other(json!({"value": v as i32, "name": name}))
        }
        "syscall_id" => other(json!({"id": v as u32, "abi": "x64"})),
        k if k.ends_with("_arg") && k.contains("cap") => other(Value::String(format!("{v:016x}"))),
        _ => match info.class {
            args::Class::Int { size: 8, .. } => ArgValue::Int(v as i64),
            _ => ArgValue::Int(v as i32 as i64),
        },
    }
}

/// The value of one captured argument, in the `*_arg` field Tetragon uses for its type.
fn arg_value(ty: ArgType, src: u8, data: &[u8]) -> ArgValue {
    if (argsrc::NET_FIRST..=argsrc::NET_LAST).contains(&src) {
        return crate::hooks::net::arg_value(src, data);
    }
    if src == argsrc::INT {
        let mut b = [0u8; 8];
        let n = data.len().min(8);
        b[..n].copy_from_slice(&data[..n]);
        return int_value(ty, u64::from_ne_bytes(b));
    }
    if argsrc::is_buf(src) {
        return crate::hooks::charbuf::decode(data);
    }
    if let Some((key, value)) = crate::hooks::kstruct::decode(src, data) {
        return ArgValue::Other { key: key.to_owned(), value };
    }
    let s = || String::from_utf8_lossy(data).into_owned();
    let file = || FileArg { path: Some(s()), ..Default::default() };
    match ty {
        ArgType::File | ArgType::Fd | ArgType::Kiocb => ArgValue::File(file()),
        ArgType::Path | ArgType::Dentry => ArgValue::Path(file()),
        ArgType::LinuxBinprm => ArgValue::LinuxBinprm(file()),
        ArgType::CharBuf => ArgValue::Bytes(data.to_vec()),
        _ => ArgValue::String(s()),
    }
}

/// The reported arguments of a policy record, its return value, the function a one-hook
/// syscall list names by the syscall number it captured, and its `data:` values.
struct EventArgs {
    args: Vec<KprobeArgument>,
    ret: Option<ArgValue>,
    function: Option<String>,
    data: Vec<KprobeArgument>,
}

fn event_args(meta: &HookMeta, p: &Policy) -> EventArgs {
    let mut ret = None;
    let mut function = None;
    let mut data = Vec::new();
    let to_arg = |m: &ArgMeta, a: &crate::decode::PolicyArg| {
        let mut k = KprobeArgument::new(arg_value(m.ty, a.src, &a.data));
        k.label = m.label.clone();
        k.truncated = a.truncated;
        k
    };
    let args: Vec<KprobeArgument> = meta
        .args
        .iter()
        .zip(&p.args)
        .filter(|(m, a)| {
            if m.ret {
                ret = Some(arg_value(m.ty, a.src, &a.data));
            }
            if m.index == NR_INDEX {
                // A list of syscalls served by one hook: the event is the syscall's.
                let mut b = [0u8; 8];
                b[..a.data.len().min(8)].copy_from_slice(&a.data[..a.data.len().min(8)]);
                function = syscall_symbol(u64::from_ne_bytes(b));
            }
            if m.data {
                data.push(to_arg(m, a));
            }
            !m.ret && !m.data && m.ty != ArgType::Nop && m.index != NR_INDEX
        })
        .map(|(m, a)| to_arg(m, a))
        .collect();
    EventArgs { args, ret, function, data }
}

/// A kprobe event's fields beyond the common ones: `return`, `data`, and the stacks.
fn kprobe_extra(ret: Option<ArgValue>, data: Vec<KprobeArgument>, stacks: crate::hooks::stack::Stacks) -> Extra {
    let mut extra = Extra::new();
    if let Some(r) = ret {
        extra.insert("return".into(), json!(KprobeArgument::new(r)));
    }
    if !data.is_empty() {
        extra.insert("data".into(), json!(data));
    }
    if let Some(frames) = stacks.kernel {
        extra.insert("kernel_stack_trace".into(), Value::Array(frames));
    }
    if let Some(frames) = stacks.user {
        extra.insert("user_stack_trace".into(), Value::Array(frames));
    }
    extra
}

/// The event of a policy record, with its stack traces (kernelStackTrace, userStackTrace).
pub fn to_event(p: &Policy, meta: &HookMeta, procs: &ProcessHook, stacks: crate::hooks::stack::Stacks) -> Event {
    let r = &p.fixed;
    let info = procs.cache.current(r.pid, None);
    let process = match &info {
        Some(i) => {
            // Shared with the execution's other events unless another thread of it fired.
            let mut pr = i.process.clone();
            if pr.tid != Some(r.tid) {
                pr.make_mut().tid = Some(r.tid);
            }
            pr
        }
        None => Process { pid: Some(r.pid), tid: Some(r.tid), ..Default::default() }.into(),
    };
    let parent = info.as_ref().and_then(|i| procs.cache.parent_of(i)).map(|p| p.process.clone());
    let EventArgs { args, ret, function, data } = event_args(meta, p);
    let act = action_name(r.action).to_owned();
    let time = procs.wall(r.hdr.ktime);
    let node = procs.cache.node().to_owned();
    let message = meta.message.clone();
    let tags = (!meta.tags.is_empty()).then(|| meta.tags.clone());
    let extra = kprobe_extra(ret, data, stacks);
    let kind = match meta.kind {
        HookKind::Kprobe => EventKind::ProcessKprobe(Box::new(ProcessKprobe {
            process: Some(process),
            parent,
            function_name: Some(function.unwrap_or_else(|| meta.function.clone())),
            args: (!args.is_empty()).then_some(args),
            action: Some(act),
            policy_name: Some(meta.policy.clone()),
            message,
            tags,
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
                args: (!args.is_empty()).then_some(args),
                action: Some(act),
                policy_name: Some(meta.policy.clone()),
                message,
                tags,
                ..Default::default()
            }))
        }
        HookKind::Lsm => EventKind::ProcessLsm(Box::new(ProcessLsm {
            process: Some(process),
            parent,
            function_name: Some(meta.function.clone()),
            args: (!args.is_empty()).then_some(args),
            action: Some(act),
            policy_name: Some(meta.policy.clone()),
            message,
            tags,
            ..Default::default()
        })),
        HookKind::Uprobe => EventKind::ProcessUprobe(Box::new(ProcessUprobe {
            process: Some(process),
            parent,
            path: Some(meta.target.clone().unwrap_or_default()),
            symbol: Some(meta.point_name(p.fixed.point).to_owned()),
            args: (!args.is_empty()).then_some(args),
            policy_name: Some(meta.policy.clone()),
            message,
            tags,
            ..Default::default()
        })),
        HookKind::Usdt => {
            let (provider, name) = meta.function.split_once(':').unwrap_or(("", &meta.function));
            EventKind::ProcessUsdt(Box::new(ProcessUsdt {
                process: Some(process),
                parent,
                path: Some(meta.target.clone().unwrap_or_default()),
                provider: Some(provider.to_owned()),
                name: Some(name.to_owned()),
                args: (!args.is_empty()).then_some(args),
                action: Some(act),
                policy_name: Some(meta.policy.clone()),
                message,
                tags,
                ..Default::default()
            }))
        }
    };
    Event::new(kind, node, time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nightjar_common::PolicyRecord;

    fn meta(kind: HookKind) -> HookMeta {
        HookMeta {
            policy: "p".into(),
            kind,
            function: if kind == HookKind::Tracepoint {
                "syscalls/sys_enter_setuid".into()
            } else {
                "file_open".into()
            },
            args: vec![],
            served_by: String::new(),
            message: Some("sensitive file opened".into()),
            tags: vec!["files".into()],
            target: matches!(kind, HookKind::Uprobe | HookKind::Usdt).then(|| "/bin/bash".into()),
            stacks: 0,
            points: Default::default(),
        }
    }

    #[test]
    fn message_and_tags_are_kept_when_the_parent_is_unknown() {
        // An empty process cache: neither the process nor its parent is known.
        let procs = ProcessHook::new("n", 16);
        let rec = Policy { fixed: PolicyRecord { pid: 4242, tid: 4242, ..Default::default() }, args: vec![] };
        for kind in [HookKind::Kprobe, HookKind::Tracepoint, HookKind::Lsm, HookKind::Uprobe, HookKind::Usdt] {
            let ev = to_event(&rec, &meta(kind), &procs, Default::default());
            let v: Value = serde_json::from_str(&ev.to_json()).unwrap();
            let payload = &v[ev.kind.key()];
            assert_eq!(payload["message"], "sensitive file opened", "{kind:?}: {v}");
            assert_eq!(payload["tags"], json!(["files"]), "{kind:?}: {v}");
            assert_eq!(payload["process"]["pid"], 4242, "{kind:?}: {v}");
        }
    }
}
