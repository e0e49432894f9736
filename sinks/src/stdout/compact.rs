//! The compact view: an icon and a verb per event type, then pod, binary, arguments and
//! the policy/action — one line per event.
use pipeline::{
    event::{ArgValue, KprobeArgument, Process},
    Event, EventKind,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colour {
    Plain,
    Ansi,
}

const FILE_FUNCTIONS: [&str; 6] =
    ["security_file_open", "fd_install", "security_file_permission", "security_mmap_file", "sys_openat", "sys_open"];

/// One compact line for `e` (no trailing newline).
pub fn compact_line(e: &Event, colour: Colour) -> String {
    let paint = |code: &str, s: &str| match colour {
        Colour::Ansi => format!("\x1b[{code}m{s}\x1b[0m"),
        Colour::Plain => s.to_owned(),
    };
    let proc_part = |p: Option<&Process>| {
        let Some(p) = p else { return String::from("?") };
        let mut s = String::new();
        if let Some(pod) = &p.pod {
            if let (Some(ns), Some(name)) = (&pod.namespace, &pod.name) {
                s.push_str(&format!("{ns}/{name} "));
            }
        }
        s.push_str(p.binary.as_deref().unwrap_or("?"));
        if let Some(a) = p.arguments.as_deref().filter(|a| !a.is_empty()) {
            s.push(' ');
            s.push_str(a);
        }
        s
    };
    match &e.kind {
        EventKind::ProcessExec(x) => format!("🚀 {} {}", paint("32", "process"), proc_part(x.process.as_ref())),
        EventKind::ProcessExit(x) => {
            let how = match (&x.signal, x.status) {
                (Some(sig), _) if !sig.is_empty() => sig.clone(),
                (_, Some(st)) => st.to_string(),
                _ => String::new(),
            };
            format!("💥 {}    {} {how}", paint("31", "exit"), proc_part(x.process.as_ref()))
        }
        EventKind::ProcessKprobe(x) => {
            let f = x.function_name.as_deref().unwrap_or("?");
            let args = args_text(x.args.as_deref().unwrap_or_default());
            let policy = policy_suffix(x.policy_name.as_deref(), x.action.as_deref());
            let killed = x.action.as_deref().is_some_and(|a| a.to_ascii_uppercase().ends_with("SIGKILL"));
            let (icon, verb) = if killed {
                ("💀", paint("31", "kill   "))
            } else if FILE_FUNCTIONS.contains(&f) {
                ("📂", paint("36", "open   "))
            } else {
                ("⁉️ ", paint("33", "syscall"))
            };
            let detail = if FILE_FUNCTIONS.contains(&f) && !killed { args } else { format!("{f} {args}") };
            format!("{icon} {verb} {} {}{policy}", proc_part(x.process.as_ref()), detail.trim_end())
        }
        EventKind::ProcessTracepoint(x) => {
            let tp = format!("{}/{}", x.subsys.as_deref().unwrap_or("?"), x.event.as_deref().unwrap_or("?"));
            let args = args_text(x.args.as_deref().unwrap_or_default());
            let policy = policy_suffix(x.policy_name.as_deref(), x.action.as_deref());
            format!(
                "🔍 {} {} {tp} {}{policy}",
                paint("33", "tracepoint"),
                proc_part(x.process.as_ref()),
                args.trim_end()
            )
        }
        EventKind::RateLimitInfo(r) => format!(
            "🚫 {} dropped {} events",
            paint("35", "rate-limit"),
            r.number_of_dropped_process_events.unwrap_or(0)
        ),
        EventKind::Other { key, .. } => format!("❔ {key}"),
    }
}

fn policy_suffix(policy: Option<&str>, action: Option<&str>) -> String {
    let action = action.map(|a| a.trim_start_matches("KPROBE_ACTION_"));
    match (policy, action) {
        (Some(p), Some(a)) => format!(" [{p} {a}]"),
        (Some(p), None) => format!(" [{p}]"),
        (None, Some(a)) => format!(" [{a}]"),
        (None, None) => String::new(),
    }
}

fn args_text(args: &[KprobeArgument]) -> String {
    let mut out = Vec::new();
    for a in args {
        match &a.value {
            ArgValue::String(s) => out.push(s.clone()),
            ArgValue::Int(i) => out.push(i.to_string()),
            ArgValue::File(f) | ArgValue::Path(f) | ArgValue::LinuxBinprm(f) => {
                out.push(f.path.clone().unwrap_or_default())
            }
            ArgValue::Other { value, .. } => out.push(match value {
                serde_json::Value::String(s) => s.clone(),
                v => v.to_string(),
            }),
            ArgValue::None => {}
        }
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_and_kprobe_lines() {
        let exec = Event::from_json(
            r#"{"process_exec":{"process":{"binary":"/usr/bin/curl","arguments":"-s x","pod":{"namespace":"default","name":"xwing"}}},"time":"2024-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(compact_line(&exec, Colour::Plain), "🚀 process default/xwing /usr/bin/curl -s x");
        let kp = Event::from_json(
            r#"{"process_kprobe":{"process":{"binary":"/bin/cat","arguments":"/etc/shadow"},"function_name":"security_file_open","args":[{"file_arg":{"path":"/etc/shadow"}}],"policy_name":"monitor-sensitive-files","action":"KPROBE_ACTION_POST"},"time":"2024-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        assert_eq!(
            compact_line(&kp, Colour::Plain),
            "📂 open    /bin/cat /etc/shadow /etc/shadow [monitor-sensitive-files POST]"
        );
        let coloured = compact_line(&exec, Colour::Ansi);
        assert!(coloured.contains("\x1b[32mprocess\x1b[0m"), "{coloured}");
    }
}
