//! Network arguments, user side of `sensor-bpf/src/net.rs`: the offsets its readers need
//! (from BTF, into `Offsets.net`) and the captured [`SockArg`] / [`SockaddrArg`] as
//! Tetragon exports them (`sock_arg`: family, type, protocol, mark, priority, saddr, daddr,
//! sport, dport, cookie, state; `sockaddr_arg`: family, addr, port), zero values left out
//! as protobuf JSON leaves them out.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use nightjar_common::{argsrc, NetOffsets, Offsets, SkbArg, SockArg, SockaddrArg};
use nightjar_event::event::ArgValue;
use serde_json::{Map, Value};

use crate::btf::{Btf, BtfError};

/// Resolves the socket offsets; what a kernel lacks goes to `missing` (the readers skip it).
pub fn offsets(btf: &Btf, missing: &mut Vec<String>) -> NetOffsets {
    let mut opt = |name: &str, r: Result<u32, BtfError>| -> u32 {
        r.unwrap_or_else(|e| {
            missing.push(format!("{name}: {e}"));
            Offsets::MISSING
        })
    };
    let skc = |f: &str| btf.offset("sock", &["__sk_common", f]);
    NetOffsets {
        skc_family: opt("sock.__sk_common.skc_family", skc("skc_family")),
        skc_state: opt("sock.__sk_common.skc_state", skc("skc_state")),
        skc_daddr: opt("sock.__sk_common.skc_daddr", skc("skc_daddr")),
        skc_rcv_saddr: opt("sock.__sk_common.skc_rcv_saddr", skc("skc_rcv_saddr")),
        skc_dport: opt("sock.__sk_common.skc_dport", skc("skc_dport")),
        skc_num: opt("sock.__sk_common.skc_num", skc("skc_num")),
        skc_v6_daddr: opt("sock.__sk_common.skc_v6_daddr", skc("skc_v6_daddr")),
        skc_v6_rcv_saddr: opt("sock.__sk_common.skc_v6_rcv_saddr", skc("skc_v6_rcv_saddr")),
        sk_type: opt("sock.sk_type", btf.offset("sock", &["sk_type"])),
        sk_protocol: opt("sock.sk_protocol", btf.offset("sock", &["sk_protocol"])),
        sk_mark: opt("sock.sk_mark", btf.offset("sock", &["sk_mark"])),
        sk_priority: opt("sock.sk_priority", btf.offset("sock", &["sk_priority"])),
        socket_sk: opt("socket.sk", btf.offset("socket", &["sk"])),
        file_private_data: opt("file.private_data", btf.offset("file", &["private_data"])),
        file_f_inode: opt("file.f_inode", btf.offset("file", &["f_inode"])),
        inode_i_mode: opt("inode.i_mode", btf.offset("inode", &["i_mode"])),
        net_device_name: opt("net_device.name", btf.offset("net_device", &["name"])),
        skb_head: opt("sk_buff.head", btf.offset("sk_buff", &["head"])),
        skb_network_header: opt("sk_buff.network_header", btf.offset("sk_buff", &["network_header"])),
        skb_transport_header: opt("sk_buff.transport_header", btf.offset("sk_buff", &["transport_header"])),
        skb_len: opt("sk_buff.len", btf.offset("sk_buff", &["len"])),
        skb_hash: opt("sk_buff.hash", btf.offset("sk_buff", &["hash"])),
        skb_mark: opt("sk_buff.mark", btf.offset("sk_buff", &["mark"])),
        skb_priority: opt("sk_buff.priority", btf.offset("sk_buff", &["priority"])),
    }
}

/// The exported value of a network argument captured by source `src`.
pub fn arg_value(src: u8, data: &[u8]) -> ArgValue {
    let value = match src {
        argsrc::NET_DEV => {
            let name = String::from_utf8_lossy(data.split(|b| *b == 0).next().unwrap_or_default());
            return ArgValue::Other { key: "net_dev_arg".into(), value: serde_json::json!({ "name": name }) };
        }
        argsrc::SOCKADDR_KPTR | argsrc::SOCKADDR_UPTR => {
            return ArgValue::Other { key: "sockaddr_arg".into(), value: sockaddr_json(&read_pod(data)) }
        }
        argsrc::SKB_PTR => return ArgValue::Other { key: "skb_arg".into(), value: skb_json(&read_pod(data)) },
        _ => sock_json(&read_pod(data)),
    };
    ArgValue::Other { key: "sock_arg".into(), value }
}

/// A record of `T` from the start of `data` (zero-filled when short).
fn read_pod<T: Copy + Default>(data: &[u8]) -> T {
    let mut v = T::default();
    let n = data.len().min(std::mem::size_of::<T>());
    // SAFETY: T is a repr(C) plain-old-data record (SockArg, SockaddrArg) valid for any
    // bytes; at most size_of::<T>() bytes are copied into it.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), &mut v as *mut T as *mut u8, n) };
    v
}

/// An address of `family` from its 16 captured bytes, as Go's net.IP prints it (an
/// IPv4-mapped IPv6 address in dotted form).
pub fn ip(family: u16, b: &[u8; 16]) -> Option<IpAddr> {
    match family {
        2 => Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
        10 => {
            let v6 = Ipv6Addr::from(*b);
            Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
        }
        _ => None,
    }
}

fn put_str(m: &mut Map<String, Value>, k: &str, v: String) {
    if !v.is_empty() {
        m.insert(k.into(), Value::String(v));
    }
}

fn put_num(m: &mut Map<String, Value>, k: &str, v: u32) {
    if v != 0 {
        m.insert(k.into(), Value::from(v));
    }
}

/// `saddr`, `daddr` (when the family has addresses), `sport`, `dport`: the 4-tuple as
/// Tetragon's sock_arg and skb_arg write it.
fn put_tuple(m: &mut Map<String, Value>, family: u16, src: (&[u8; 16], u16), dst: (&[u8; 16], u16)) {
    if let Some(a) = ip(family, src.0) {
        m.insert("saddr".into(), Value::String(a.to_string()));
    }
    if let Some(a) = ip(family, dst.0) {
        m.insert("daddr".into(), Value::String(a.to_string()));
    }
    put_num(m, "sport", src.1.into());
    put_num(m, "dport", dst.1.into());
}

pub fn sock_json(s: &SockArg) -> Value {
    let mut m = Map::new();
    put_str(&mut m, "family", family_name(s.family));
    put_str(&mut m, "type", type_name(s.sock_type));
    put_str(&mut m, "protocol", protocol_name(s.protocol));
    put_num(&mut m, "mark", s.mark);
    put_num(&mut m, "priority", s.priority);
    put_tuple(&mut m, s.family, (&s.saddr, s.sport), (&s.daddr, s.dport));
    if s.cookie != 0 {
        m.insert("cookie".into(), Value::String(s.cookie.to_string()));
    }
    put_str(&mut m, "state", state_name(s.state));
    Value::Object(m)
}

/// Tetragon's `skb_arg` (KprobeSkb): family, hash, len, priority, mark, saddr, daddr, sport,
/// dport, proto (the number) and protocol (its name); sec_path_len/olen are not read (0).
pub fn skb_json(s: &SkbArg) -> Value {
    let mut m = Map::new();
    put_num(&mut m, "hash", s.hash);
    put_num(&mut m, "len", s.len);
    put_num(&mut m, "priority", s.priority);
    put_num(&mut m, "mark", s.mark);
    put_tuple(&mut m, s.family, (&s.saddr, s.sport), (&s.daddr, s.dport));
    put_num(&mut m, "proto", s.protocol.into());
    put_str(&mut m, "protocol", protocol_name(s.protocol));
    put_str(&mut m, "family", family_name(s.family));
    Value::Object(m)
}

pub fn sockaddr_json(a: &SockaddrArg) -> Value {
    let mut m = Map::new();
    put_str(&mut m, "family", family_name(a.family));
    if let Some(ip) = ip(a.family, &a.addr) {
        m.insert("addr".into(), Value::String(ip.to_string()));
    }
    put_num(&mut m, "port", a.port.into());
    Value::Object(m)
}

/// Tetragon's names of address families (`AF_INET`), socket types, protocols and TCP states.
pub fn family_name(f: u16) -> String {
    match f {
        0 => String::new(),
        1 => "AF_UNIX".into(),
        2 => "AF_INET".into(),
        10 => "AF_INET6".into(),
        16 => "AF_NETLINK".into(),
        17 => "AF_PACKET".into(),
        n => n.to_string(),
    }
}

pub fn type_name(t: u16) -> String {
    match t {
        0 => String::new(),
        1 => "SOCK_STREAM".into(),
        2 => "SOCK_DGRAM".into(),
        3 => "SOCK_RAW".into(),
        4 => "SOCK_RDM".into(),
        5 => "SOCK_SEQPACKET".into(),
        6 => "SOCK_DCCP".into(),
        10 => "SOCK_PACKET".into(),
        n => n.to_string(),
    }
}

pub fn protocol_name(p: u16) -> String {
    match p {
        0 => String::new(),
        1 => "IPPROTO_ICMP".into(),
        6 => "IPPROTO_TCP".into(),
        17 => "IPPROTO_UDP".into(),
        58 => "IPPROTO_ICMPV6".into(),
        132 => "IPPROTO_SCTP".into(),
        255 => "IPPROTO_RAW".into(),
        n => n.to_string(),
    }
}

pub const TCP_STATES: [&str; 13] = [
    "",
    "TCP_ESTABLISHED",
    "TCP_SYN_SENT",
    "TCP_SYN_RECV",
    "TCP_FIN_WAIT1",
    "TCP_FIN_WAIT2",
    "TCP_TIME_WAIT",
    "TCP_CLOSE",
    "TCP_CLOSE_WAIT",
    "TCP_LAST_ACK",
    "TCP_LISTEN",
    "TCP_CLOSING",
    "TCP_NEW_SYN_RECV",
];

pub fn state_name(s: u16) -> String {
    TCP_STATES.get(s as usize).map_or_else(|| s.to_string(), |n| (*n).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sock_is_exported_as_tetragon_does() {
        let mut s =
            SockArg { family: 2, sock_type: 1, protocol: 6, state: 2, sport: 40000, dport: 443, ..Default::default() };
        s.saddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        s.daddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        s.cookie = 18446;
        let v = sock_json(&s);
        let want: Value = serde_json::from_str(r#"{"family":"AF_INET","type":"SOCK_STREAM","protocol":"IPPROTO_TCP","saddr":"10.0.0.1","daddr":"10.0.0.2","sport":40000,"dport":443,"cookie":"18446","state":"TCP_SYN_SENT"}"#).unwrap();
        assert_eq!(v, want);
    }

    #[test]
    fn ipv6_and_mapped_addresses_print_as_go_does() {
        let mut a = SockaddrArg { family: 10, port: 53, ..Default::default() };
        a.addr[15] = 1;
        assert_eq!(sockaddr_json(&a), serde_json::json!({"family": "AF_INET6", "addr": "::1", "port": 53}));
        a.addr = Ipv4Addr::new(1, 2, 3, 4).to_ipv6_mapped().octets();
        assert_eq!(sockaddr_json(&a)["addr"], "1.2.3.4");
    }

    #[test]
    fn an_skb_is_exported_as_tetragon_does() {
        let mut s = SkbArg { family: 2, protocol: 17, sport: 40000, dport: 53, len: 41, hash: 7, ..Default::default() };
        s.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        s.daddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        let want = serde_json::json!({"hash": 7, "len": 41, "saddr": "127.0.0.1", "daddr": "127.0.0.1", "sport": 40000,
            "dport": 53, "proto": 17, "protocol": "IPPROTO_UDP", "family": "AF_INET"});
        assert_eq!(skb_json(&s), want);
    }

    #[test]
    fn a_net_device_is_its_name() {
        let v = arg_value(argsrc::NET_DEV, b"lo");
        assert_eq!(v, ArgValue::Other { key: "net_dev_arg".into(), value: serde_json::json!({"name": "lo"}) });
        let v = arg_value(argsrc::NET_DEV, b"eth0\0junk");
        assert_eq!(v, ArgValue::Other { key: "net_dev_arg".into(), value: serde_json::json!({"name": "eth0"}) });
    }

    #[test]
    fn short_records_do_not_panic() {
        assert!(matches!(arg_value(argsrc::SOCK_PTR, &[2, 0]), ArgValue::Other { .. }));
        assert!(matches!(arg_value(argsrc::SOCKADDR_UPTR, &[]), ArgValue::Other { .. }));
    }
}
