//! One event → one `_bulk` item: the target index, a deterministic `_id` and the document
//! (Tetragon's JSON or the ECS view).
use pipeline::{event::Process, Event, EventKind};
use serde_json::{json, Map, Value};

use super::config::DocSchema;

/// How documents are named and shaped.
#[derive(Debug, Clone)]
pub struct Encoder {
    pub index: String,
    pub data_stream: Option<String>,
    pub schema: DocSchema,
}

/// One encoded `_bulk` item: the action line and the document line, newline-terminated.
#[derive(Debug, Clone)]
pub struct Item {
    pub id: String,
    pub index: String,
    pub ndjson: Vec<u8>,
}

impl Item {
    /// The document part of the item (for the dead-letter file).
    pub fn document(&self) -> &[u8] {
        let nl = self.ndjson.iter().position(|&b| b == b'\n').map_or(0, |p| p + 1);
        self.ndjson[nl..].strip_suffix(b"\n").unwrap_or(&self.ndjson[nl..])
    }
}

/// `_id`: the process's exec_id, the event kind and a 128-bit xxh3 of the event's JSON —
/// stable across restarts and versions, so a retry after a lost response is a 409, never
/// a duplicate.
pub fn doc_id(ev: &Event, json: &str) -> String {
    let exec_id = ev.process().and_then(|p| p.exec_id.as_deref()).unwrap_or("-");
    let h = twox_hash::XxHash3_128::oneshot(json.as_bytes());
    format!("{exec_id}:{}:{h:032x}", ev.kind.key())
}

impl Encoder {
    /// The index an event goes to (the data stream, or `index` formatted with its time).
    pub fn index_for(&self, ev: &Event) -> String {
        if let Some(ds) = &self.data_stream {
            return ds.clone();
        }
        if !self.index.contains('%') {
            return self.index.clone();
        }
        let nanos = ev.time.map(|t| t.unix_nanos()).unwrap_or_else(|| pipeline::time::Timestamp::now().unix_nanos());
        let secs = nanos.div_euclid(1_000_000_000) as i64;
        match chrono::DateTime::from_timestamp(secs, 0) {
            Some(dt) => {
                let mut out = String::with_capacity(self.index.len() + 8);
                // A bad strftime field is refused when the sink is built (see `validate_index`).
                if std::fmt::Write::write_fmt(&mut out, format_args!("{}", dt.format(&self.index))).is_err() {
                    return self.index.clone();
                }
                out
            }
            None => self.index.clone(),
        }
    }

    pub fn encode(&self, ev: &Event) -> Item {
        let raw = ev.to_json();
        let id = doc_id(ev, &raw);
        let index = self.index_for(ev);
        let doc = match self.schema {
            DocSchema::Tetragon if self.data_stream.is_none() => raw,
            DocSchema::Tetragon => {
                let mut v: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
                if let (Value::Object(m), Some(t)) = (&mut v, ev.time) {
                    m.insert("@timestamp".into(), json!(t));
                }
                v.to_string()
            }
            DocSchema::Ecs => ecs(ev).to_string(),
        };
        // `create`, never `index`: a retried item whose first attempt landed is a 409.
        let action = json!({ "create": { "_index": index, "_id": id } });
        let mut ndjson = Vec::with_capacity(doc.len() + 128);
        // Writing JSON to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut ndjson, &action);
        ndjson.push(b'\n');
        ndjson.extend_from_slice(doc.as_bytes());
        ndjson.push(b'\n');
        Item { id, index, ndjson }
    }
}

/// Checks that `index` is a usable strftime pattern.
pub fn validate_index(index: &str) -> Result<(), String> {
    use chrono::format::{Item as F, StrftimeItems};
    if StrftimeItems::new(index).any(|i| matches!(i, F::Error)) {
        return Err(format!("index {index:?} has an invalid % field (use %Y, %m, %d, %H)"));
    }
    let sample = chrono::DateTime::from_timestamp(0, 0).map(|d| d.format(index).to_string()).unwrap_or_default();
    if sample.is_empty() || sample.chars().any(|c| c.is_ascii_uppercase() || " \"*\\<|,>/?#".contains(c)) {
        return Err(format!("index {index:?}: index names are lowercase, without spaces or \" * \\ < | , > / ? #"));
    }
    Ok(())
}

/// Splits an argument string the way a shell would for plain and double-quoted words.
fn split_args(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut any) = (false, false);
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

fn ecs_process(p: &Process) -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.into(), v);
        }
    };
    put("entity_id", p.exec_id.clone().map(Value::from));
    put("pid", p.pid.map(Value::from));
    put("executable", p.binary.clone().map(Value::from));
    put("name", p.binary.as_deref().map(|b| Value::from(b.rsplit('/').next().unwrap_or(b))));
    put("working_directory", p.cwd.clone().map(Value::from));
    if let Some(b) = &p.binary {
        let mut args = vec![b.clone()];
        args.extend(p.arguments.as_deref().map(split_args).unwrap_or_default());
        put("command_line", Some(Value::from(args.join(" "))));
        put("args_count", Some(Value::from(args.len())));
        put("args", Some(Value::from(args)));
    }
    put("start", p.start_time.map(|t| json!(t)));
    m
}

/// The ECS view of an event.
pub fn ecs(ev: &Event) -> Value {
    let kind = ev.kind.key();
    let (category, typ) = ev.kind.kind().map(|k| k.info().ecs).unwrap_or(("host", "info"));
    let mut doc = Map::new();
    if let Some(t) = ev.time {
        doc.insert("@timestamp".into(), json!(t));
    }
    let mut event = json!({ "kind": "event", "category": [category], "type": [typ], "module": "nightjar", "dataset": format!("nightjar.{kind}"), "action": kind });
    let mut rule = None;
    let mut extra = Map::new();
    if let Some(h) = ev.hook() {
        rule = h.policy_name.map(str::to_owned);
        if let Some(a) = h.action {
            extra.insert("action".into(), json!(a));
            // Tetragon's names (`KPROBE_ACTION_SIGKILL`) and bare ones (`SIGKILL`) alike.
            if a.ends_with("SIGKILL") || a.ends_with("OVERRIDE") {
                event["type"] = json!(["denied"]);
                event["outcome"] = json!("failure");
            }
        }
        if let Some(f) = &h.function {
            let key = if matches!(ev.kind, EventKind::ProcessTracepoint(_)) { "tracepoint" } else { "function_name" };
            extra.insert(key.into(), json!(f));
        }
    }
    if let EventKind::ProcessExit(x) = &ev.kind {
        if let Some(s) = x.status {
            extra.insert("exit_code".into(), json!(s));
        }
        if let Some(s) = &x.signal {
            extra.insert("signal".into(), json!(s));
        }
    }
    if super::network::add(ev, &mut doc) {
        event["category"] = json!(["network"]);
        if event.get("outcome").is_none() {
            let f = extra.get("function_name").and_then(Value::as_str).unwrap_or_default();
            event["type"] = match f {
                "tcp_connect" | "inet_csk_accept" => json!(["connection", "start"]),
                "tcp_close" => json!(["connection", "end"]),
                _ => json!(["connection"]),
            };
        }
    }
    doc.insert("event".into(), event);
    if let Some(p) = ev.process() {
        let mut proc_m = ecs_process(p);
        if let Some(c) = extra.get("exit_code") {
            proc_m.insert("exit_code".into(), c.clone());
        }
        if let Some(parent) = ev.parent() {
            proc_m.insert("parent".into(), Value::Object(ecs_process(parent)));
        } else if let Some(pe) = &p.parent_exec_id {
            proc_m.insert("parent".into(), json!({ "entity_id": pe }));
        }
        doc.insert("process".into(), Value::Object(proc_m));
        if let Some(uid) = p.uid {
            doc.insert("user".into(), json!({ "id": uid.to_string() }));
        }
        if let Some(pod) = &p.pod {
            if let Some(c) = &pod.container {
                let mut cm = Map::new();
                if let Some(id) = &c.id {
                    // Tetragon writes `containerd://ID`; ECS wants the bare id.
                    cm.insert("id".into(), json!(id.rsplit("://").next().unwrap_or(id)));
                }
                if let Some(n) = &c.name {
                    cm.insert("name".into(), json!(n));
                }
                if let Some(i) = c.image.as_ref().and_then(|i| i.name.as_ref()) {
                    cm.insert("image".into(), json!({ "name": i }));
                }
                doc.insert("container".into(), Value::Object(cm));
            }
            let mut om = Map::new();
            if let Some(ns) = &pod.namespace {
                om.insert("namespace".into(), json!(ns));
            }
            if let Some(n) = &pod.name {
                om.insert("resource".into(), json!({ "type": "pod", "name": n }));
            }
            om.insert("type".into(), json!("kubernetes"));
            doc.insert("orchestrator".into(), Value::Object(om));
        }
    }
    if let Some(n) = &ev.node_name {
        doc.insert("host".into(), json!({ "name": n, "hostname": n }));
    }
    if let Some(r) = rule {
        doc.insert("rule".into(), json!({ "name": r }));
    }
    if !extra.is_empty() {
        doc.insert("nightjar".into(), Value::Object(extra));
    }
    Value::Object(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::seq_event;

    #[test]
    fn ids_are_stable_and_distinct() {
        let enc = Encoder { index: "nightjar-%Y.%m.%d".into(), data_stream: None, schema: DocSchema::Tetragon };
        let a = enc.encode(&seq_event(1));
        assert_eq!(a.id, enc.encode(&seq_event(1)).id);
        assert_ne!(a.id, enc.encode(&seq_event(2)).id);
        assert_eq!(a.index, "nightjar-2026.01.01");
        assert!(a.id.starts_with("bm9kZToxMjM0NTY3OD1:process_exec:"), "{}", a.id);
        let doc: Value = serde_json::from_slice(a.document()).unwrap();
        assert_eq!(doc["process_exec"]["process"]["pid"], 1001);
    }

    #[test]
    fn ecs_view_has_the_usual_fields() {
        let v = ecs(&seq_event(3)); // a kprobe with action POST, in a pod
        assert_eq!(v["event"]["category"], json!(["process"]));
        assert_eq!(v["process"]["pid"], 1003);
        assert_eq!(v["process"]["executable"], "/usr/bin/b3");
        assert_eq!(v["process"]["args"], json!(["/usr/bin/b3", "--seq", "3", "quoted arg"]));
        assert_eq!(v["process"]["parent"]["executable"], "/usr/bin/bash");
        assert_eq!(v["user"]["id"], "0");
        assert_eq!(v["host"]["name"], "node-a");
        assert_eq!(v["container"]["id"], "c3");
        assert_eq!(v["orchestrator"]["namespace"], "ns0");
        assert_eq!(v["rule"]["name"], "block-nc");
        assert_eq!(v["@timestamp"], "2026-01-01T10:00:00.003Z");
    }

    #[test]
    fn ecs_view_of_a_connection_has_source_destination_and_network() {
        let line = r#"{"process_kprobe":{"process":{"pid":7,"binary":"/usr/bin/curl"},"function_name":"tcp_connect","args":[{"sock_arg":{"family":"AF_INET","type":"SOCK_STREAM","protocol":"IPPROTO_TCP","saddr":"10.0.0.1","daddr":"10.0.0.2","sport":40000,"dport":443,"cookie":"18446","state":"TCP_SYN_SENT"}}],"action":"KPROBE_ACTION_POST","policy_name":"p"},"time":"2026-01-01T00:00:01Z","node_name":"n"}"#;
        let v = ecs(&Event::from_json(line).unwrap());
        assert_eq!(v["event"]["category"], json!(["network"]));
        assert_eq!(v["event"]["type"], json!(["connection", "start"]));
        assert_eq!(v["source"], json!({"ip": "10.0.0.1", "port": 40000}));
        assert_eq!(v["destination"], json!({"ip": "10.0.0.2", "port": 443}));
        assert_eq!(
            v["network"],
            json!({"transport": "tcp", "iana_number": "6", "type": "ipv4", "direction": "egress"})
        );
        // An accepted connection's source is the peer.
        let accept = r#"{"process_kprobe":{"process":{"pid":7},"function_name":"inet_csk_accept","args":[{"sock_arg":{"family":"AF_INET6","protocol":"IPPROTO_TCP","saddr":"::1","sport":8080}}],"return":{"sock_arg":{"family":"AF_INET6","protocol":"IPPROTO_TCP","saddr":"::1","daddr":"::1","sport":8080,"dport":51000}},"action":"KPROBE_ACTION_POST"},"time":"2026-01-01T00:00:01Z"}"#;
        let v = ecs(&Event::from_json(accept).unwrap());
        assert_eq!(v["source"], json!({"ip": "::1", "port": 51000}));
        assert_eq!(v["destination"], json!({"ip": "::1", "port": 8080}));
        assert_eq!(v["network"]["direction"], "ingress");
        assert_eq!(v["network"]["type"], "ipv6");
        // Not a network event: no network fields.
        let v = ecs(&seq_event(3));
        assert!(v.get("network").is_none() && v.get("source").is_none(), "{v}");
    }

    #[test]
    fn index_patterns_are_checked() {
        assert!(validate_index("nightjar-%Y.%m.%d").is_ok());
        assert!(validate_index("Nightjar").is_err());
        assert!(validate_index("nightjar-%Q").is_err());
    }
}
