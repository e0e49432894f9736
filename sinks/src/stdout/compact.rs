//! The compact view, line for line what `tetra getevents -o compact` prints for the kinds
//! tetra knows (checked against tetra itself: tests/integration/getevents.rs): an icon and a
//! verb, the node (or pod), the binary, then what the event is about; the `🛑 CAP_SYS_ADMIN`
//! trailer at column 120. Kinds tetra cannot print (`rate_limit_info`, kinds newer than the
//! table) get a line in the same style instead of an error.
use std::{borrow::Cow, fmt::Write as _};

use pipeline::{
    event::{ArgValue, FileArg, KprobeArgument, Process, ProcessKprobe},
    time::Timestamp,
    Event, EventKind,
};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colour {
    Plain,
    Ansi,
}

/// tetra's colours (ANSI SGR codes).
const BLUE: u8 = 34;
const GREEN: u8 = 32;
const MAGENTA: u8 = 35;
const CYAN: u8 = 36;
const RED: u8 = 31;
const YELLOW: u8 = 33;

/// Column the capabilities trailer is right-aligned to (in bytes, as tetra counts).
const CAPS_COLUMN: usize = 120;

struct Painter(Colour);

impl Painter {
    fn paint(&self, code: u8, s: &str) -> String {
        match self.0 {
            // tetra wraps even an empty text in the colour's codes.
            Colour::Ansi => format!("\x1b[{code}m{s}\x1b[0m"),
            Colour::Plain => s.to_owned(),
        }
    }
    /// The event's icon and verb, the verb padded to 7 columns.
    fn label(&self, code: u8, icon: &str, verb: &str) -> String {
        self.paint(code, &format!("{icon} {verb:<7}"))
    }
}

/// One compact line for `e` (no trailing newline).
pub fn compact_line(e: &Event, colour: Colour) -> String {
    let c = Painter(colour);
    let node = e.node_name.as_deref().unwrap_or_default();
    let line = |label: String, p: &Process, rest: &[String]| {
        let (who, caps) = process_info(&c, node, p);
        let mut s = format!("{label} {who}");
        for r in rest {
            s.push(' ');
            s.push_str(r);
        }
        caps_trailer(s, &caps)
    };
    let missing = |key: &str| format!("❔ {key} (no process)");
    match &e.kind {
        EventKind::ProcessExec(x) => match &x.process {
            Some(p) => line(c.label(BLUE, "🚀", "process"), p, &[c.paint(CYAN, &args(p))]),
            None => missing("process_exec"),
        },
        EventKind::ProcessExit(x) => match &x.process {
            Some(p) => {
                let status = match x.signal.as_deref().filter(|s| !s.is_empty()) {
                    Some(sig) => sig.to_owned(),
                    None => x.status.unwrap_or(0).to_string(),
                };
                line(c.label(BLUE, "💥", "exit"), p, &[c.paint(CYAN, &args(p)), c.paint(RED, &status)])
            }
            None => missing("process_exit"),
        },
        EventKind::ProcessKprobe(k) => match &k.process {
            Some(p) => {
                let (label, rest) = kprobe_parts(&c, k);
                line(label, p, &rest)
            }
            None => missing("process_kprobe"),
        },
        EventKind::ProcessTracepoint(t) => match &t.process {
            Some(p) => {
                let (subsys, event) = (t.subsys.as_deref().unwrap_or_default(), t.event.as_deref().unwrap_or_default());
                if (subsys, event) == ("raw_syscalls", "sys_enter") {
                    let id = t.args.as_deref().and_then(|a| a.first()).and_then(int_of).unwrap_or(-1);
                    line(c.paint(BLUE, "☎  syscall"), p, &[raw_syscall(id)])
                } else {
                    line(c.label(BLUE, "⁉️", "tracepoint"), p, &[subsys.to_owned(), event.to_owned()])
                }
            }
            None => missing("process_tracepoint"),
        },
        EventKind::ProcessUprobe(u) => match &u.process {
            Some(p) => {
                let rest = [u.path.clone().unwrap_or_default(), u.symbol.clone().unwrap_or_default()];
                line(c.label(BLUE, "🕵️", "uprobe"), p, &rest)
            }
            None => missing("process_uprobe"),
        },
        EventKind::ProcessUsdt(u) => match &u.process {
            Some(p) => {
                let rest = [
                    u.path.clone().unwrap_or_default(),
                    u.provider.clone().unwrap_or_default(),
                    u.name.clone().unwrap_or_default(),
                ];
                line(c.label(BLUE, "🕵️", "usdt"), p, &rest)
            }
            None => missing("process_usdt"),
        },
        EventKind::ProcessLsm(l) => match &l.process {
            Some(p) => line(c.label(BLUE, "🔒", "LSM"), p, &[l.function_name.clone().unwrap_or_default()]),
            None => missing("process_lsm"),
        },
        EventKind::ProcessLoader(l) => match &l.process {
            Some(p) => {
                let mut build = l.extra.get("buildid").and_then(Value::as_str).map(hex_of_base64).unwrap_or_default();
                if !build.is_empty() {
                    build.push(' ');
                }
                let path = c.paint(YELLOW, l.path.as_deref().unwrap_or_default());
                let (who, caps) = process_info(&c, node, p);
                caps_trailer(format!("{} {who} {build}{path}", c.label(BLUE, "🧬", "loader")), &caps)
            }
            None => missing("process_loader"),
        },
        EventKind::ProcessThrottle(t) => {
            let typ = match t.kind.as_deref() {
                Some("THROTTLE_START") => c.paint(RED, "START"),
                Some("THROTTLE_STOP") => c.paint(GREEN, "STOP "),
                _ => String::new(),
            };
            format!("{} {typ} {}", c.label(RED, "🧬", "throttle"), t.cgroup.as_deref().unwrap_or_default())
        }
        EventKind::RateLimitInfo(r) => format!(
            "{} {} dropped {} events",
            c.label(RED, "🚫", "rate-limit"),
            c.paint(GREEN, node),
            r.number_of_dropped_process_events.unwrap_or(0)
        ),
        EventKind::Other { key, .. } if key == "test" => "TEST EVENT".to_owned(),
        EventKind::Other { key, value } => {
            let binary = value.pointer("/process/binary").and_then(Value::as_str).unwrap_or_default();
            format!("{} {} {}", c.label(BLUE, "❔", key), c.paint(GREEN, node), c.paint(MAGENTA, &quote(binary)))
        }
    }
}

/// The time as `tetra getevents --timestamps` prints it: UTC, nine fractional digits.
pub fn tetra_timestamp(t: &Timestamp) -> String {
    let n = t.unix_nanos();
    let secs = n.div_euclid(1_000_000_000);
    let nanos = n.rem_euclid(1_000_000_000);
    let whole = Timestamp::from_unix_nanos(secs * 1_000_000_000).to_string();
    match whole.strip_suffix('Z') {
        Some(w) => format!("{w}.{nanos:09}Z"),
        None => whole,
    }
}

/// `node /binary` (or `namespace/pod /binary`) and the capabilities trailer.
fn process_info(c: &Painter, node: &str, p: &Process) -> (String, String) {
    let source = match &p.pod {
        Some(pod) => {
            format!("{}/{}", pod.namespace.as_deref().unwrap_or_default(), pod.name.as_deref().unwrap_or_default())
        }
        None => node.to_owned(),
    };
    let binary = quote(p.binary.as_deref().unwrap_or_default());
    // tetra prints CAP_SYS_ADMIN when the effective set has more than 21 entries: it tests
    // the list's index 21, not its values. Matched as is, since users compare the two.
    let effective = p.cap.as_ref().and_then(|c| c.effective.as_ref()).map(|s| s.names().len()).unwrap_or(0);
    let caps = if effective > 21 { "🛑 CAP_SYS_ADMIN" } else { "" };
    (format!("{} {}", c.paint(GREEN, &source), c.paint(MAGENTA, &binary)), c.paint(MAGENTA, caps))
}

fn caps_trailer(s: String, caps: &str) -> String {
    if caps.is_empty() {
        return s;
    }
    let width = CAPS_COLUMN.saturating_sub(s.len());
    format!("{s} {caps:>width$}")
}

fn args(p: &Process) -> String {
    quote(p.arguments.as_deref().unwrap_or_default()).into_owned()
}

/// A text as tetra shows it: as is, or Go-quoted when it holds a space or a character that
/// does not print.
fn quote(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|ch| ch.is_whitespace() || !printable(ch)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            ' ' => out.push(' '),
            ch if printable(ch) => out.push(ch),
            ch if (ch as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", ch as u32);
            }
            ch if (ch as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", ch as u32);
            }
            ch => {
                let _ = write!(out, "\\U{:08x}", ch as u32);
            }
        }
    }
    out.push('"');
    Cow::Owned(out)
}

/// Go's `strconv.IsPrint` for the characters that occur in practice: not a control, not a
/// separator other than the ASCII space, not a format character, not private use.
fn printable(ch: char) -> bool {
    let u = ch as u32;
    !(ch.is_control()
        || (ch.is_whitespace() && ch != ' ')
        || matches!(u, 0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E
            | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB | 0xE000..=0xF8FF | 0xFFFE | 0xFFFF
            | 0xF0000..=0x10FFFF))
}

fn arg(args: &[KprobeArgument], i: usize) -> Option<&ArgValue> {
    args.get(i).map(|a| &a.value)
}

fn file_path(a: Option<&ArgValue>) -> String {
    match a {
        Some(ArgValue::File(FileArg { path, .. })) => quote(path.as_deref().unwrap_or_default()).into_owned(),
        _ => String::new(),
    }
}

fn path_path(a: Option<&ArgValue>) -> String {
    match a {
        Some(ArgValue::Path(FileArg { path, .. })) => quote(path.as_deref().unwrap_or_default()).into_owned(),
        _ => String::new(),
    }
}

fn string_of(a: Option<&ArgValue>) -> String {
    match a {
        Some(ArgValue::String(s)) => quote(s).into_owned(),
        _ => String::new(),
    }
}

/// `int_arg` as tetra reads it (0 when the argument is of another type).
fn int_arg(a: Option<&ArgValue>) -> i64 {
    match a {
        Some(ArgValue::Int(i)) => *i,
        _ => 0,
    }
}

fn int_of(a: &KprobeArgument) -> Option<i64> {
    match &a.value {
        ArgValue::Int(i) | ArgValue::Long(i) => Some(*i),
        ArgValue::Uint(u) => Some(*u as i64),
        ArgValue::Size(u) => i64::try_from(*u).ok(),
        _ => None,
    }
}

fn other<'a>(a: Option<&'a ArgValue>, key: &str) -> Option<&'a Value> {
    match a {
        Some(ArgValue::Other { key: k, value }) if k == key => Some(value),
        _ => None,
    }
}

fn field_str(v: Option<&Value>, f: &str) -> String {
    v.and_then(|v| v.get(f)).and_then(Value::as_str).unwrap_or_default().to_owned()
}

fn field_u64(v: Option<&Value>, f: &str) -> u64 {
    v.and_then(|v| v.get(f)).and_then(|x| x.as_u64().or_else(|| x.as_str().and_then(|s| s.parse().ok()))).unwrap_or(0)
}

/// `tcp 10.0.0.1:80 -> 10.0.0.2:4242` of a `sock_arg`.
fn sock(a: Option<&ArgValue>) -> String {
    let s = other(a, "sock_arg");
    format!(
        "tcp {}:{} -> {}:{}",
        field_str(s, "saddr"),
        field_u64(s, "sport"),
        field_str(s, "daddr"),
        field_u64(s, "dport")
    )
}

/// Label and the parts after `node binary` of a kprobe line, by function (without the
/// architecture prefix of syscalls).
fn kprobe_parts(c: &Painter, k: &ProcessKprobe) -> (String, Vec<String>) {
    let f = k.function_name.as_deref().unwrap_or_default();
    let sc = f.strip_prefix("__x64_").or_else(|| f.strip_prefix("__arm64_")).unwrap_or(f);
    let a = k.args.as_deref().unwrap_or_default();
    let cy = |s: String| c.paint(CYAN, &s);
    let sock_or_nothing = || if a.is_empty() { String::new() } else { cy(sock(arg(a, 0))) };
    let size = || match a.get(2) {
        Some(x) => cy(format!("{} bytes", if let ArgValue::Size(n) = x.value { n } else { 0 })),
        None => String::new(),
    };
    match sc {
        "sys_write" => (c.label(BLUE, "📝", "write"), vec![cy(file_path(arg(a, 0))), size()]),
        "sys_read" => (c.label(BLUE, "📚", "read"), vec![cy(file_path(arg(a, 0))), size()]),
        "fd_install" => (c.label(BLUE, "📬", "open"), vec![cy(file_path(arg(a, 1)))]),
        "sys_openat" => (c.label(BLUE, "📬️", "openat"), vec![cy(string_of(arg(a, 1)))]),
        "sys_open" => (c.label(BLUE, "📬️", "open"), vec![cy(string_of(arg(a, 1)))]),
        "sys_close" => (c.label(BLUE, "📪", "close"), vec![cy(file_path(arg(a, 0)))]),
        "sys_mount" => (c.label(BLUE, "💾", "mount"), vec![cy(string_of(arg(a, 0))), cy(string_of(arg(a, 1)))]),
        "sys_setuid" => (c.label(BLUE, "🔑", "setuid"), vec![cy(int_arg(arg(a, 0)).to_string())]),
        "sys_clock_settime" => (c.label(BLUE, "⏰", "clock_settime"), vec![]),
        "sys_pivot_root" => {
            (c.label(BLUE, "💾", "pivot_root"), vec![cy(string_of(arg(a, 0))), cy(string_of(arg(a, 1)))])
        }
        "proc_exec_connector" => (c.label(BLUE, "🔧", "proc_exec_connector"), vec![]),
        "sys_setns" => {
            let ns = if a.len() > 1 { namespace_name(int_arg(arg(a, 1))) } else { "" };
            (c.label(BLUE, "🔧", "setns"), vec![ns.to_owned()])
        }
        // tetra prints the 4-tuple only when the event has an argument (then uncoloured
        // nothing); other network functions (accept, listen, udp_sendmsg, ...) have no line
        // of their own there and take the `❓ syscall` one below.
        "tcp_connect" => (c.label(BLUE, "🔌", "connect"), vec![sock_or_nothing()]),
        "tcp_close" => (c.label(BLUE, "🧹", "close"), vec![sock_or_nothing()]),
        "tcp_sendmsg" => {
            let bytes = int_arg(arg(a, 1));
            (c.label(BLUE, "📤", "sendmsg"), vec![sock_or_nothing(), format!("bytes {bytes}")])
        }
        "bpf_check" => {
            let b = other(arg(a, 0), "bpf_attr_arg");
            let attr = format!(
                "{} {} instruction count {}",
                field_str(b, "ProgType"),
                field_str(b, "ProgName"),
                field_u64(b, "InsnCnt")
            );
            (c.label(BLUE, "🐝", "bpf_load"), vec![cy(attr)])
        }
        "security_perf_event_alloc" => {
            let p = other(arg(a, 0), "perf_event_arg");
            let attr = format!("{} {}", field_str(p, "Type"), field_str(p, "KprobeFunc"));
            (c.label(BLUE, "🐝", "perf_event_alloc"), vec![cy(attr)])
        }
        "security_bpf_map_alloc" => {
            let m = other(arg(a, 0), "bpf_map_arg");
            let attr = format!(
                "{} {} key size {} value size {} max entries {}",
                field_str(m, "MapType"),
                field_str(m, "MapName"),
                field_u64(m, "KeySize"),
                field_u64(m, "ValueSize"),
                field_u64(m, "MaxEntries")
            );
            (c.label(BLUE, "🗺", "bpf_map_create"), vec![cy(attr)])
        }
        "security_file_permission" if a.len() > 1 => {
            let label = match int_arg(arg(a, 1)) {
                0x02 => c.label(BLUE, "📝", "write"),
                0x04 => c.label(BLUE, "📚", "read"),
                _ => c.label(BLUE, "❓", "security_file_permission"),
            };
            (label, vec![cy(file_path(arg(a, 0)))])
        }
        "security_mmap_file" if a.len() > 1 => {
            let prot = match arg(a, 1) {
                Some(ArgValue::Uint(u)) => *u,
                _ => 0,
            };
            let mut tag = String::from("mmap-");
            for (bit, ch) in [(1, 'r'), (2, 'w'), (4, 'x')] {
                if prot & bit != 0 {
                    tag.push(ch);
                }
            }
            (c.label(BLUE, "📝", &tag), vec![cy(file_path(arg(a, 0)))])
        }
        "security_path_truncate" if !a.is_empty() => (c.label(BLUE, "📝", "truncate"), vec![cy(path_path(arg(a, 0)))]),
        "security_file_permission" | "security_mmap_file" | "security_path_truncate" => {
            (c.label(BLUE, "❓", sc), vec![String::new()])
        }
        _ => (c.label(BLUE, "❓", "syscall"), vec![f.to_owned()]),
    }
}

/// The namespace a `setns` flag names (`CLONE_NEW*`), as tetra prints it.
fn namespace_name(flag: i64) -> &'static str {
    match flag {
        0 => "any",
        0x2000000 => "cgroup",
        0x8000000 => "ipc",
        0x40000000 => "net",
        0x20000 => "mnt",
        0x20000000 => "pid",
        0x80 => "time",
        0x10000000 => "user",
        0x4000000 => "uts",
        _ => "",
    }
}

/// A raw syscall id (x86-64) as its name; the number when it has none here.
fn raw_syscall(id: i64) -> String {
    const NAMES: [&str; 60] = [
        "read",
        "write",
        "open",
        "close",
        "stat",
        "fstat",
        "lstat",
        "poll",
        "lseek",
        "mmap",
        "mprotect",
        "munmap",
        "brk",
        "rt_sigaction",
        "rt_sigprocmask",
        "rt_sigreturn",
        "ioctl",
        "pread64",
        "pwrite64",
        "readv",
        "writev",
        "access",
        "pipe",
        "select",
        "sched_yield",
        "mremap",
        "msync",
        "mincore",
        "madvise",
        "shmget",
        "shmat",
        "shmctl",
        "dup",
        "dup2",
        "pause",
        "nanosleep",
        "getitimer",
        "alarm",
        "setitimer",
        "getpid",
        "sendfile",
        "socket",
        "connect",
        "accept",
        "sendto",
        "recvfrom",
        "sendmsg",
        "recvmsg",
        "shutdown",
        "bind",
        "listen",
        "getsockname",
        "getpeername",
        "socketpair",
        "setsockopt",
        "getsockopt",
        "clone",
        "fork",
        "vfork",
        "execve",
    ];
    usize::try_from(id).ok().and_then(|i| NAMES.get(i)).map(|n| format!("sys_{n}")).unwrap_or_else(|| id.to_string())
}

/// Hex of a base64 text (a loader's build id).
fn hex_of_base64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map(|b| {
            b.iter().fold(String::new(), |mut h, x| {
                let _ = write!(h, "{x:02x}");
                h
            })
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(json: &str) -> String {
        compact_line(&Event::from_json(json).unwrap(), Colour::Plain)
    }

    #[test]
    fn exec_exit_and_kprobe_lines() {
        assert_eq!(
            line(
                r#"{"process_exec":{"process":{"binary":"/usr/bin/curl","arguments":"-s x","pod":{"namespace":"default","name":"xwing"}}},"time":"2024-01-01T00:00:00Z"}"#
            ),
            r#"🚀 process default/xwing /usr/bin/curl "-s x""#
        );
        // A host process shows its node; status 0 is printed.
        assert_eq!(
            line(r#"{"process_exit":{"process":{"binary":"/bin/true"},"status":0},"node_name":"n1"}"#),
            "💥 exit    n1 /bin/true  0"
        );
        assert_eq!(
            line(
                r#"{"process_kprobe":{"process":{"binary":"/usr/bin/vi"},"function_name":"__x64_sys_write","args":[{"file_arg":{"path":"/etc/passwd"}},{"bytes_arg":"aGk="},{"size_arg":"627"}]},"node_name":"n1"}"#
            ),
            "📝 write   n1 /usr/bin/vi /etc/passwd 627 bytes"
        );
        assert_eq!(
            line(r#"{"process_lsm":{"process":{"binary":"/bin/cat"},"function_name":"file_open"},"node_name":"n1"}"#),
            "🔒 LSM     n1 /bin/cat file_open"
        );
    }

    /// Events shaped as nightjar's network hooks give them (sensor/tests/net.rs), and what
    /// tetra 4fbfe2d prints for each (`tetra getevents -o compact --color never`).
    #[test]
    fn network_lines_are_tetras() {
        let kprobe = |f: &str, args: &str| {
            line(&format!(
                r#"{{"process_kprobe":{{"process":{{"binary":"/usr/bin/curl"}},"function_name":"{f}"{args}}},"node_name":"n1"}}"#
            ))
        };
        let v6 = r#"{"sock_arg":{"family":"AF_INET6","type":"SOCK_STREAM","protocol":"IPPROTO_TCP","saddr":"::1","daddr":"::1","sport":41234,"dport":8080,"cookie":"18446616576123456","state":"TCP_SYN_SENT"}}"#;
        let listen = r#"{"sock_arg":{"family":"AF_INET","type":"SOCK_STREAM","protocol":"IPPROTO_TCP","saddr":"127.0.0.1","sport":8080,"state":"TCP_CLOSE"}}"#;
        assert_eq!(
            kprobe("tcp_connect", &format!(r#","args":[{v6}]"#)),
            "🔌 connect n1 /usr/bin/curl tcp ::1:41234 -> ::1:8080"
        );
        assert_eq!(
            kprobe("tcp_close", &format!(r#","args":[{listen}]"#)),
            "🧹 close   n1 /usr/bin/curl tcp 127.0.0.1:8080 -> :0"
        );
        assert_eq!(
            kprobe("tcp_sendmsg", &format!(r#","args":[{v6},{{"int_arg":1400}}]"#)),
            "📤 sendmsg n1 /usr/bin/curl tcp ::1:41234 -> ::1:8080 bytes 1400"
        );
        // No arguments: nothing where the 4-tuple goes.
        assert_eq!(kprobe("tcp_connect", ""), "🔌 connect n1 /usr/bin/curl ");
        assert_eq!(kprobe("tcp_close", r#","args":[]"#), "🧹 close   n1 /usr/bin/curl ");
        assert_eq!(kprobe("tcp_sendmsg", ""), "📤 sendmsg n1 /usr/bin/curl  bytes 0");
        for f in ["inet_csk_accept", "inet_csk_listen_start", "udp_sendmsg", "security_socket_connect"] {
            assert_eq!(kprobe(f, &format!(r#","args":[{listen}]"#)), format!("❓ syscall n1 /usr/bin/curl {f}"));
        }
        // In colour the missing 4-tuple stays uncoloured, as tetra leaves it.
        let e = Event::from_json(
            r#"{"process_kprobe":{"process":{"binary":"/bin/nc"},"function_name":"tcp_connect"},"node_name":"n"}"#,
        )
        .unwrap();
        let l = compact_line(&e, Colour::Ansi);
        assert!(l.starts_with("\x1b[34m🔌 connect\x1b[0m \x1b[32mn\x1b[0m \x1b[35m/bin/nc\x1b[0m  "), "{l:?}");
        assert!(!l.contains("\x1b[36m"), "{l:?}");
    }

    #[test]
    fn quoting_and_the_caps_trailer() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote(r#"x"y"#), r#"x"y"#);
        assert_eq!(quote("a \"b\""), r#""a \"b\"""#);
        assert_eq!(quote("tab\there\u{1}\u{a0}"), r#""tab\there\x01\u00a0""#);
        let caps: Vec<String> = pipeline::event::CAP_NAMES[..22].iter().map(|s| s.to_string()).collect();
        let json = serde_json::json!({"process_exec":{"process":{"binary":"/bin/sh","cap":{"effective":caps}}},"node_name":"n"});
        let l = line(&json.to_string());
        // Go pads to the column in bytes, then the trailer to its width in characters.
        let t = "🛑 CAP_SYS_ADMIN";
        assert!(l.ends_with(t) && l.len() == CAPS_COLUMN + 1 + t.len() - t.chars().count(), "{l}");
    }

    #[test]
    fn colours_are_tetras() {
        let l = compact_line(
            &Event::from_json(r#"{"process_exec":{"process":{"binary":"/bin/sh"}},"node_name":"n"}"#).unwrap(),
            Colour::Ansi,
        );
        assert!(l.starts_with("\x1b[34m🚀 process\x1b[0m \x1b[32mn\x1b[0m \x1b[35m/bin/sh\x1b[0m"), "{l:?}");
    }

    #[test]
    fn timestamps_have_nine_digits() {
        let t = Timestamp::parse("2024-01-01T00:00:00.5Z").unwrap();
        assert_eq!(tetra_timestamp(&t), "2024-01-01T00:00:00.500000000Z");
    }
}
