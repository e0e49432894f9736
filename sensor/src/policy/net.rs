//! The network side of the policy compiler: where `sock`, `socket` and `sockaddr`
//! arguments come from on each backend (kernel pointers on kprobes/fentry, a syscall's file
//! descriptors and user pointers on syscall hooks), and the tracepoint stand-ins for the
//! network kernel functions on a kernel without kprobes: each names the syscall
//! tracepoint that serves it, where each of its arguments is found there and which guard
//! (`nightjar_common::net_guard`) keeps it to the sockets the function itself sees.
use nightjar_common::{argsrc, net_guard, op, plimits, ArgCond, ArgSpec, StrData};
use nightjar_event::config::ConfigError;

use super::{
    backends::Served,
    compile::{attach_for, tracepoint_fields, Env},
    spec::{ArgDecl, ArgOp, ArgSel, ArgType, KprobeSpec},
    Loaded,
};

/// matchArgs operators of network arguments (evaluated in the kernel, `sensor-bpf/src/net.rs`).
pub fn ops() -> &'static [ArgOp] {
    use ArgOp as O;
    &[
        O::SAddr,
        O::NotSAddr,
        O::DAddr,
        O::NotDAddr,
        O::SPort,
        O::NotSPort,
        O::DPort,
        O::NotDPort,
        O::SPortPriv,
        O::NotSPortPriv,
        O::DPortPriv,
        O::NotDPortPriv,
        O::Protocol,
        O::Family,
        O::State,
    ]
}

/// Why the network operators are refused (None: they are evaluated).
pub fn op_unsupported() -> Option<&'static str> {
    None
}

/// Operators that take no values (the port's class is the condition).
pub fn takes_no_values(o: ArgOp) -> bool {
    matches!(o, ArgOp::SPortPriv | ArgOp::NotSPortPriv | ArgOp::DPortPriv | ArgOp::NotDPortPriv)
}

/// Compiles matchArgs entry `m` (at `at`) on an argument of network type `ty` into `cond`;
/// address conditions also need their CIDRs in the `STRINGS` trie (the returned values,
/// for a StrCond with the positive operator).
pub fn condition(l: &Loaded, at: &str, ty: ArgType, m: &ArgSel, cond: &mut ArgCond) -> Result<Option<u8>, ConfigError> {
    use ArgOp as O;
    if ty == ArgType::Sockaddr
        && matches!(
            m.operator,
            O::DAddr | O::NotDAddr | O::DPort | O::NotDPort | O::DPortPriv | O::NotDPortPriv | O::Protocol | O::State
        )
    {
        return Err(l.error(
            &format!("{at}.operator"),
            format!("operator {} does not apply to type sockaddr (its address and port are matched with SAddr and SPort; Family applies)", m.operator.name()),
        ));
    }
    let (code, trie) = match m.operator {
        O::SAddr => (op::SADDR, Some(op::SADDR)),
        O::NotSAddr => (op::NOT_SADDR, Some(op::SADDR)),
        O::DAddr => (op::DADDR, Some(op::SADDR)),
        O::NotDAddr => (op::NOT_DADDR, Some(op::SADDR)),
        O::SPort => (op::SPORT, None),
        O::NotSPort => (op::NOT_SPORT, None),
        O::DPort => (op::DPORT, None),
        O::NotDPort => (op::NOT_DPORT, None),
        O::SPortPriv => (op::SPORT_PRIV, None),
        O::NotSPortPriv => (op::NOT_SPORT_PRIV, None),
        O::DPortPriv => (op::DPORT_PRIV, None),
        O::NotDPortPriv => (op::NOT_DPORT_PRIV, None),
        O::Protocol => (op::PROTOCOL, None),
        O::Family => (op::FAMILY, None),
        O::State => (op::STATE, None),
        other => {
            return Err(l.error(
                &format!("{at}.operator"),
                format!("operator {} does not apply to type {}", other.name(), ty.name()),
            ))
        }
    };
    cond.op = code;
    if trie.is_some() {
        for (v, val) in m.values.iter().enumerate() {
            if cidr(val).is_none() {
                return Err(l.error(
                    &format!("{at}.values[{v}]"),
                    format!("{val:?} is not an IPv4 or IPv6 address or CIDR (10.0.0.0/8, fd00::/8)"),
                ));
            }
        }
        return Ok(trie);
    }
    if takes_no_values(m.operator) {
        return Ok(None);
    }
    if m.values.len() > plimits::INT_VALUES {
        return Err(
            l.error(&format!("{at}.values"), format!("{} values; at most {}", m.values.len(), plimits::INT_VALUES))
        );
    }
    for (v, val) in m.values.iter().enumerate() {
        let parsed = match m.operator {
            O::SPort | O::NotSPort | O::DPort | O::NotDPort => port_range(val),
            O::Protocol => named(val, "IPPROTO_", &crate::hooks::net::protocol_name),
            O::Family => named(val, "AF_", &crate::hooks::net::family_name),
            _ => named(val, "TCP_", &crate::hooks::net::state_name),
        };
        let Some(n) = parsed else {
            let what = match m.operator {
                O::Protocol => "a protocol (IPPROTO_TCP, IPPROTO_UDP, or its number)",
                O::Family => "an address family (AF_INET, AF_INET6, or its number)",
                O::State => "a TCP state (TCP_SYN_SENT, TCP_ESTABLISHED, ..., or its number)",
                _ => "a port (0-65535) or a range (1024:2048)",
            };
            return Err(l.error(&format!("{at}.values[{v}]"), format!("{val:?} is not {what}")));
        };
        cond.vals[v] = n;
    }
    cond.nvals = m.values.len() as u8;
    Ok(None)
}

/// A port or a `lo:hi` range, as the kernel holds it (`lo | hi << 16`).
fn port_range(v: &str) -> Option<u64> {
    let (lo, hi) = match v.trim().split_once(':') {
        Some((a, b)) => (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?),
        None => {
            let p = v.trim().parse::<u16>().ok()?;
            (p, p)
        }
    };
    (lo <= hi).then_some(lo as u64 | (hi as u64) << 16)
}

/// A number, or a name as `name_of` prints one (`IPPROTO_TCP`; the prefix may be left out).
fn named(v: &str, prefix: &str, name_of: &dyn Fn(u16) -> String) -> Option<u64> {
    let t = v.trim();
    if let Ok(n) = t.parse::<u16>() {
        return Some(n as u64);
    }
    let full = if t.starts_with(prefix) { t.to_owned() } else { format!("{prefix}{t}") };
    (0..=u16::MAX).find(|n| name_of(*n) == full).map(u64::from)
}

/// An address or CIDR: (4 or 6, its 16 bytes, prefix bits).
pub fn cidr(v: &str) -> Option<(u8, [u8; 16], u32)> {
    let (a, bits) = match v.trim().split_once('/') {
        Some((a, b)) => (a.trim(), Some(b.trim().parse::<u32>().ok()?)),
        None => (v.trim(), None),
    };
    let mut out = [0u8; 16];
    match a.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(ip) => {
            out[..4].copy_from_slice(&ip.octets());
            let b = bits.unwrap_or(32);
            (b <= 32).then_some((4, out, b))
        }
        std::net::IpAddr::V6(ip) => {
            out.copy_from_slice(&ip.octets());
            let b = bits.unwrap_or(128);
            (b <= 128).then_some((6, out, b))
        }
    }
}

/// `STRINGS` entries of condition `cond`'s CIDRs: (cond, 4|6, address), prefix 32 + 8 + bits.
pub fn cidr_entries(cond: u32, values: &[String]) -> Vec<(StrData, u32)> {
    values
        .iter()
        .filter_map(|v| cidr(v))
        .map(|(tag, addr, bits)| {
            let mut d = StrData { cond: cond.to_ne_bytes(), data: [0; plimits::STR] };
            d.data[0] = tag;
            d.data[1..17].copy_from_slice(&addr);
            (d, 32 + 8 + bits)
        })
        .collect()
}

/// The source of a network-typed argument held in an argument word: a kernel function's
/// pointer, or (`user`: a syscall's argument) a file descriptor or a user pointer.
pub fn word_src(ty: ArgType, user: bool) -> Option<u8> {
    Some(match (ty, user) {
        (ArgType::Sock | ArgType::Socket, true) => argsrc::FD_SOCK,
        (ArgType::Sock, false) => argsrc::SOCK_PTR,
        (ArgType::Socket, false) => argsrc::SOCKET_PTR,
        (ArgType::Sockaddr, true) => argsrc::SOCKADDR_UPTR,
        (ArgType::Sockaddr, false) => argsrc::SOCKADDR_KPTR,
        (ArgType::Skb, false) => argsrc::SKB_PTR,
        _ => return None,
    })
}

/// A syscall argument (declared `decl` in its tracepoint format, when known) of a
/// network type: `sockaddr` on a `struct sockaddr *`, `sock`/`socket` on an fd.
pub fn syscall_arg(l: &Loaded, at: &str, a: &ArgDecl, offset: u16, decl: Option<&str>) -> Result<ArgSpec, ConfigError> {
    let d = decl.unwrap_or("");
    let ok = match a.ty {
        ArgType::Sockaddr => decl.is_none() || (d.contains("sockaddr") && d.contains('*')),
        _ => decl.is_none() || !d.contains('*'),
    };
    let Some(src) = word_src(a.ty, true).filter(|_| ok) else {
        let want = if a.ty == ArgType::Sockaddr { "a struct sockaddr pointer" } else { "a file descriptor" };
        return Err(l.error(&format!("{at}.type"), format!("{d} is not {want} (type {})", a.ty.name())));
    };
    Ok(ArgSpec { src, offset, ..Default::default() })
}

/// Where one argument of a stand-in is found: its index in the function, the types it
/// may be declared as, its source and guard, and the tracepoint field it is read from
/// (None: from the user registers, `aux` says which).
struct NetArg {
    index: u32,
    types: &'static [ArgType],
    src: u8,
    aux: u16,
    field: Option<&'static str>,
}

/// A network kernel function served by syscall tracepoints.
struct NetStandIn {
    call: &'static str,
    events: &'static [&'static str],
    what: &'static str,
    args: &'static [NetArg],
    /// Its return value (`return: true` with `returnArg`), when the stand-in has it.
    ret: Option<NetArg>,
}

const SOCK: &[ArgType] = &[ArgType::Sock];
const SOCKETS: &[ArgType] = &[ArgType::Socket, ArgType::Sock];
const TCP_AFTER: u16 = net_guard::TCP | net_guard::RET_OK;

const NET_STAND_INS: [NetStandIn; 6] = [
    NetStandIn {
        call: "tcp_connect",
        events: &["sys_exit_connect"],
        what: "the connecting TCP socket, after connect(2) succeeded or went in progress",
        args: &[NetArg {
            index: 0,
            types: SOCK,
            src: argsrc::REGS_FD_SOCK,
            aux: TCP_AFTER | net_guard::SYN_SENT,
            field: None,
        }],
        ret: None,
    },
    NetStandIn {
        call: "tcp_close",
        events: &["sys_enter_close"],
        what: "the TCP socket an fd being closed refers to",
        args: &[NetArg { index: 0, types: SOCK, src: argsrc::FD_SOCK, aux: net_guard::TCP, field: Some("fd") }],
        ret: None,
    },
    NetStandIn {
        call: "inet_csk_listen_start",
        events: &["sys_exit_listen"],
        what: "the TCP socket after listen(2) succeeded",
        args: &[NetArg { index: 0, types: SOCK, src: argsrc::REGS_FD_SOCK, aux: TCP_AFTER, field: None }],
        ret: None,
    },
    NetStandIn {
        call: "inet_csk_accept",
        events: &["sys_exit_accept4", "sys_exit_accept"],
        what: "the listening TCP socket; the return value is the accepted one",
        args: &[NetArg { index: 0, types: SOCK, src: argsrc::REGS_FD_SOCK, aux: net_guard::TCP, field: None }],
        ret: Some(NetArg { index: 0, types: SOCK, src: argsrc::FD_SOCK, aux: net_guard::TCP, field: Some("ret") }),
    },
    NetStandIn {
        call: "udp_sendmsg",
        events: &["sys_enter_sendto", "sys_enter_sendmsg"],
        what: "the UDP socket sent on (its destination when connected)",
        args: &[NetArg { index: 0, types: SOCK, src: argsrc::FD_SOCK, aux: net_guard::UDP, field: Some("fd") }],
        ret: None,
    },
    NetStandIn {
        call: "security_socket_connect",
        events: &["sys_enter_connect"],
        what: "the socket and the address connect(2) is given",
        args: &[
            NetArg { index: 0, types: SOCKETS, src: argsrc::FD_SOCK, aux: net_guard::SOCKET, field: Some("fd") },
            NetArg {
                index: 1,
                types: &[ArgType::Sockaddr],
                src: argsrc::SOCKADDR_UPTR,
                aux: 0,
                field: Some("uservaddr"),
            },
            NetArg {
                index: 2,
                types: &[ArgType::Int, ArgType::Uint32, ArgType::Int32],
                src: argsrc::INT,
                aux: 0,
                field: Some("addrlen"),
            },
        ],
        ret: None,
    },
];

/// The network functions served by tracepoints (for errors that list them).
pub fn stand_in_names() -> Vec<&'static str> {
    NET_STAND_INS.iter().map(|s| s.call).collect()
}

/// A network kernel function on a kernel without kprobes, served by its stand-in; None
/// when `k` is not one of them.
pub fn stand_in(l: &Loaded, env: &Env, base: &str, k: &KprobeSpec) -> Option<Result<Served, ConfigError>> {
    let si = NET_STAND_INS.iter().find(|s| s.call == k.call)?;
    Some(serve(l, env, base, si, k))
}

fn serve(l: &Loaded, env: &Env, base: &str, si: &NetStandIn, k: &KprobeSpec) -> Result<Served, ConfigError> {
    let mut attach = Vec::new();
    let mut fields = Vec::new();
    for ev in si.events {
        if let Some((id, f)) = tracepoint_fields(&env.tracefs, "syscalls", ev) {
            attach.extend(attach_for("syscalls", ev, id));
            fields = f;
        }
    }
    if attach.is_empty() {
        return Err(l.error(
            base,
            format!(
                "{} needs kprobes, which this kernel does not have, and its stand-in tracepoints syscalls:{} are missing too",
                si.call,
                si.events.join(",")
            ),
        ));
    }
    let mut slot = 0u8;
    let mut out = Vec::new();
    for (j, a) in k.args.iter().enumerate() {
        let na = si.args.iter().find(|n| n.index == a.index && n.types.contains(&a.ty));
        out.push(spec_of(l, &format!("{base}.args[{j}]"), si, na, a, &fields, &mut slot)?);
    }
    if k.return_ {
        let Some(ra) = &k.return_arg else {
            return Err(l.error(&format!("{base}.returnArg"), format!("return: true on {} needs a returnArg", si.call)));
        };
        let na = si.ret.as_ref().filter(|n| n.types.contains(&ra.ty));
        out.push(spec_of(l, &format!("{base}.returnArg"), si, na, ra, &fields, &mut slot)?);
    }
    let evs = si.events.iter().map(|e| format!("syscalls:{e}")).collect::<Vec<_>>().join(", ");
    let desc = format!("tracepoint {evs} (stands in for {}: {})", si.call, si.what);
    let mut s = Served::new(attach, desc, out);
    s.override_refused = Some(format!(
        "Override on {}: this kernel has no kprobes, and the tracepoint that stands in for it cannot change the function's result; use Sigkill",
        si.call
    ));
    Ok(s)
}

/// The spec of declared argument `a`, found at `na` in the stand-in (None: not there).
fn spec_of(
    l: &Loaded,
    at: &str,
    si: &NetStandIn,
    na: Option<&NetArg>,
    a: &ArgDecl,
    fields: &[super::compile::Field],
    slot: &mut u8,
) -> Result<ArgSpec, ConfigError> {
    let Some(na) = na else {
        let have: Vec<String> = si
            .args
            .iter()
            .map(|n| format!("{} ({})", n.index, n.types.iter().map(|t| t.name()).collect::<Vec<_>>().join("/")))
            .collect();
        return Err(l.error(
            at,
            format!(
                "argument {} of type {} of {} is not available from syscalls:{}, which serve it on this kernel (available: {})",
                a.index,
                a.ty.name(),
                si.call,
                si.events.join(","),
                have.join(", ")
            ),
        ));
    };
    let offset = match na.field {
        None => 0,
        Some(name) => match fields.iter().find(|f| f.name == name) {
            Some(f) => f.offset,
            None => return Err(l.error(at, format!("syscalls:{} has no field {name} on this kernel", si.events[0]))),
        },
    };
    let mut spec = ArgSpec { src: na.src, offset, aux: na.aux, ..Default::default() };
    if na.src == argsrc::INT {
        spec.size = 4;
        spec.signed = 1;
    } else {
        spec.slot = *slot;
        *slot += 1;
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stand_in_is_a_distinct_function_with_argument_0() {
        let names = stand_in_names();
        for (i, n) in names.iter().enumerate() {
            assert!(!names[i + 1..].contains(n), "{n} twice");
        }
        assert!(NET_STAND_INS.iter().all(|s| s.args.iter().any(|a| a.index == 0)));
        assert_eq!(word_src(ArgType::Sockaddr, true), Some(argsrc::SOCKADDR_UPTR));
        assert_eq!(word_src(ArgType::Int, true), None);
    }

    #[test]
    fn cidrs_ports_and_names_parse() {
        assert_eq!(cidr("127.0.0.0/8"), Some((4, [127, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8)));
        assert_eq!(cidr("::1").map(|c| (c.0, c.2)), Some((6, 128)));
        assert_eq!(cidr("10.0.0.0/33"), None);
        assert_eq!(cidr("example.com"), None);
        let e = cidr_entries(7, &["10.0.0.0/8".into(), "fd00::/8".into()]);
        assert_eq!((e[0].1, e[0].0.data[0], e[0].0.data[1]), (32 + 8 + 8, 4, 10));
        assert_eq!((e[1].1, e[1].0.data[0], e[1].0.data[1]), (32 + 8 + 8, 6, 0xfd));
        assert_eq!(port_range("53"), Some(53 | 53 << 16));
        assert_eq!(port_range("1024:2048"), Some(1024 | 2048 << 16));
        assert_eq!(port_range("70000"), None);
        assert_eq!(named("IPPROTO_UDP", "IPPROTO_", &crate::hooks::net::protocol_name), Some(17));
        assert_eq!(named("TCP_SYN_SENT", "TCP_", &crate::hooks::net::state_name), Some(2));
        assert_eq!(named("AF_INET6", "AF_", &crate::hooks::net::family_name), Some(10));
        assert_eq!(named("AF_NOPE", "AF_", &crate::hooks::net::family_name), None);
    }
}
