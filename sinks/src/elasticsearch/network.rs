//! The ECS view's network fields (`source.*`, `destination.*`, `network.*`) of a hook event
//! with a socket argument (Tetragon's `sock_arg`, or a `sockaddr_arg`): a connection's two
//! ends, its transport and IP version, and its direction where the function says it.
use pipeline::{event::ArgValue, Event, EventKind};
use serde_json::{json, Map, Value};

/// Which end of the socket is the connection's source: the local one, except for an
/// accepted connection, whose source is the peer.
fn peer_is_source(function: &str) -> bool {
    function == "inet_csk_accept"
}

/// ECS `network.direction` of a function, where it has one.
fn direction(function: &str) -> Option<&'static str> {
    match function {
        "tcp_connect" | "security_socket_connect" | "udp_sendmsg" | "tcp_sendmsg" | "ip_output" => Some("egress"),
        "inet_csk_accept" => Some("ingress"),
        _ => None,
    }
}

/// The socket the event is about: the accepted one (an accept's return value), else the
/// first `sock_arg`, else the first `sockaddr_arg` (as a destination only).
fn socket_of(ev: &Event) -> Option<(Value, bool)> {
    let h = ev.hook()?;
    if let EventKind::ProcessKprobe(k) = &ev.kind {
        if let Some(s) = k.extra.get("return").and_then(|r| r.get("sock_arg")) {
            return Some((s.clone(), false));
        }
    }
    let find = |key: &str| {
        h.args.iter().find_map(|a| match &a.value {
            ArgValue::Other { key: k, value } if k == key => Some(value.clone()),
            _ => None,
        })
    };
    find("sock_arg").map(|s| (s, false)).or_else(|| find("sockaddr_arg").map(|s| (s, true)))
}

fn end(ip: Option<&Value>, port: Option<&Value>) -> Option<Value> {
    let ip = ip.and_then(Value::as_str).filter(|s| !s.is_empty())?;
    let mut m = Map::new();
    m.insert("ip".into(), json!(ip));
    if let Some(p) = port.and_then(Value::as_u64).filter(|p| *p != 0) {
        m.insert("port".into(), json!(p));
    }
    Some(Value::Object(m))
}

/// Adds `source`, `destination` and `network` to the ECS document of `ev`; true when the
/// event is about a socket (its category is then `network`).
pub fn add(ev: &Event, doc: &mut Map<String, Value>) -> bool {
    let Some((s, addr_only)) = socket_of(ev) else { return false };
    let function = ev.hook().and_then(|h| h.function.map(|f| f.into_owned())).unwrap_or_default();
    let (local, remote) = if addr_only {
        (None, end(s.get("addr"), s.get("port")))
    } else {
        (end(s.get("saddr"), s.get("sport")), end(s.get("daddr"), s.get("dport")))
    };
    let (src, dst) = if peer_is_source(&function) { (remote, local) } else { (local, remote) };
    if let Some(v) = src {
        doc.insert("source".into(), v);
    }
    if let Some(v) = dst {
        doc.insert("destination".into(), v);
    }
    let mut net = Map::new();
    match s.get("protocol").and_then(Value::as_str) {
        Some("IPPROTO_TCP") => {
            net.insert("transport".into(), json!("tcp"));
            net.insert("iana_number".into(), json!("6"));
        }
        Some("IPPROTO_UDP") => {
            net.insert("transport".into(), json!("udp"));
            net.insert("iana_number".into(), json!("17"));
        }
        Some(p) => {
            net.insert("transport".into(), json!(p.trim_start_matches("IPPROTO_").to_lowercase()));
        }
        None => {}
    }
    match s.get("family").and_then(Value::as_str) {
        Some("AF_INET") => {
            net.insert("type".into(), json!("ipv4"));
        }
        Some("AF_INET6") => {
            net.insert("type".into(), json!("ipv6"));
        }
        _ => {}
    }
    if let Some(d) = direction(&function) {
        net.insert("direction".into(), json!(d));
    }
    if !net.is_empty() {
        doc.insert("network".into(), Value::Object(net));
    }
    true
}
