//! The network side of the policy compiler: where `sock`, `socket` and `sockaddr`
//! arguments come from on each backend (kernel pointers on kprobes/fentry, a syscall's file
//! descriptors and user pointers on syscall hooks), and the tracepoint stand-ins for the
//! network kernel functions on a kernel without kprobes: each names the syscall
//! tracepoint that serves it, where each of its arguments is found there and which guard
//! (`nightjar_common::net_guard`) keeps it to the sockets the function itself sees.
use nightjar_common::{argsrc, net_guard, ArgSpec};
use nightjar_event::config::ConfigError;

use super::{
    backends::Served,
    compile::{attach_for, tracepoint_fields, Env},
    spec::{ArgDecl, ArgOp, ArgType, KprobeSpec},
    Loaded,
};

/// matchArgs operators of network arguments (evaluated in the kernel).
pub fn ops() -> &'static [ArgOp] {
    &[]
}

/// Why the network operators are refused (None once they are evaluated).
pub fn op_unsupported() -> Option<&'static str> {
    Some("network matchArgs operators are not evaluated in the kernel yet")
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
}
