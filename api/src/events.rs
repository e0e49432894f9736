//! GetEvents: the agent's event stream, filtered as the request asks (allow and deny lists,
//! field filters, aggregation), each event turned into a `GetEventsResponse`.
use std::time::{Duration, Instant};

use nightjar_event::Event;
use pipeline::stages::{
    dedup::{Dedup, DedupConfig},
    filter::{FieldFilterSpec, Filter, FilterConfig, FilterSpec, Lines},
    Out, Stage,
};

use crate::proto;

/// A request's filters, compiled once per stream.
pub struct RequestFilter {
    export: Filter,
    aggregate: Option<Dedup>,
}

/// A request nightjar cannot honour (a filter field it does not implement, a bad regex).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

/// A `Filter` message as the pipeline's filter object (the same JSON as Tetragon's
/// `--export-allowlist`); fields nightjar does not evaluate are refused, not ignored.
fn filter_spec(f: &proto::Filter) -> Result<FilterSpec, BadRequest> {
    let v = serde_json::to_value(f).map_err(|e| BadRequest(e.to_string()))?;
    serde_json::from_value(v).map_err(|e| BadRequest(format!("filter not supported by nightjar: {e}")))
}

fn field_spec(f: &proto::FieldFilter) -> Result<FieldFilterSpec, BadRequest> {
    let event_set = f.event_set().map(|t| t.as_str_name().to_owned()).collect::<Vec<_>>();
    let fields = f.fields.as_ref().map(|m| m.paths.join(",")).unwrap_or_default();
    let action = if f.action() == proto::FieldFilterAction::Exclude { "EXCLUDE" } else { "INCLUDE" };
    let spec = serde_json::json!({
        "event_set": event_set,
        "fields": fields,
        "action": action,
        "invert_event_set": f.invert_event_set.as_ref().is_some_and(|b| b.value),
    });
    serde_json::from_value(spec).map_err(|e| BadRequest(format!("field filter: {e}")))
}

impl RequestFilter {
    pub fn new(req: &proto::GetEventsRequest) -> Result<Self, BadRequest> {
        let allow = req.allow_list.iter().map(filter_spec).collect::<Result<Vec<_>, _>>()?;
        let deny = req.deny_list.iter().map(filter_spec).collect::<Result<Vec<_>, _>>()?;
        let fields = req.field_filters.iter().map(field_spec).collect::<Result<Vec<_>, _>>()?;
        let export = Filter::new(&FilterConfig {
            allowlist: Lines::List(allow),
            denylist: Lines::List(deny),
            field_filters: Lines::List(fields),
            ..Default::default()
        })
        .map_err(|e| BadRequest(e.to_string()))?;
        let aggregate = match &req.aggregation_options {
            None => None,
            Some(o) => {
                let window = o.window_size.as_ref().map(|d| d.seconds as u64 * 1000 + d.nanos as u64 / 1_000_000);
                let cfg = DedupConfig { window_ms: window.filter(|w| *w > 0).unwrap_or(15_000), ..Default::default() };
                Some(Dedup::new(&cfg).map_err(|e| BadRequest(e.to_string()))?)
            }
        };
        Ok(RequestFilter { export, aggregate })
    }

    /// The events to send for `ev` (none when filtered out; aggregation may add a summary).
    pub fn apply(&mut self, ev: Event, now: Instant, out: &mut Out) {
        let mut first = Out::new("getevents");
        self.export.process(ev, now, &mut first);
        for e in first.take() {
            match &mut self.aggregate {
                Some(d) => d.process(e, now, out),
                None => out.pass(e),
            }
        }
    }

    /// Aggregation summaries whose window closed.
    pub fn tick(&mut self, now: Instant, out: &mut Out) {
        if let Some(d) = &mut self.aggregate {
            d.tick(now, out);
        }
    }

    pub fn tick_interval(&self) -> Option<Duration> {
        self.aggregate.as_ref().map(|_| Duration::from_millis(500))
    }
}

/// One event as a `GetEventsResponse`, through its protobuf JSON (the fields
/// `export.extensions` adds, which Tetragon's proto lacks, are left out).
pub fn to_response(ev: &Event) -> Result<proto::GetEventsResponse, serde_json::Error> {
    serde_json::from_str(&ev.to_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(rel: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus").join(rel);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// Proto3 does not tell a default value (`""`, 0, false, empty) from an absent one
    /// (`"0"`: a 64-bit zero, which protobuf JSON writes as a string).
    fn without_defaults(v: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match v {
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .map(|(k, v)| (k, without_defaults(v)))
                    .filter(|(_, v)| match v {
                        Value::Null | Value::Bool(false) => false,
                        Value::String(s) => !s.is_empty() && s != "0",
                        Value::Number(n) => n.as_f64() != Some(0.0),
                        Value::Array(a) => !a.is_empty(),
                        Value::Object(o) => !o.is_empty(),
                        Value::Bool(true) => true,
                    })
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.into_iter().map(without_defaults).collect()),
            v => v,
        }
    }

    /// Every kind the compact corpus holds, and Tetragon's own samples, become a
    /// `GetEventsResponse` that says what the export line says: nothing lost on the way to
    /// a gRPC client.
    #[test]
    fn events_become_messages_without_losing_a_field() {
        let text = [
            corpus("compact/cases.jsonl"),
            corpus("tetragon/process_exec.jsonl"),
            corpus("tetragon/process_kprobe.jsonl"),
        ]
        .concat();
        let mut n = 0;
        for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
            let ev = Event::from_json(line).unwrap_or_else(|e| panic!("line {}: {e}", i + 1));
            if line.contains(r#""action":""#) && !line.contains(r#""action":"KPROBE_ACTION_"#) {
                // The published samples' actions (`POST`, `SIGKILL`) are names the proto lacks: refused (the
                // caller counts it), never turned into another action.
                assert!(to_response(&ev).is_err(), "line {}", i + 1);
                continue;
            }
            let msg = to_response(&ev).unwrap_or_else(|e| panic!("line {}: {e}\n{line}", i + 1));
            let ours: serde_json::Value = serde_json::from_str(&ev.to_json()).unwrap();
            // pbjson writes timestamps with `+00:00` where protobuf JSON has `Z` (the same instant).
            let back = serde_json::to_string(&msg).unwrap().replace("+00:00\"", "Z\"");
            let back: serde_json::Value = serde_json::from_str(&back).unwrap();
            assert_eq!(without_defaults(back), without_defaults(ours), "line {}", i + 1);
            n += 1;
        }
        assert!(n > 50, "{n} events");
    }
}
