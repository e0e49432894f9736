//! Export filters in Tetragon's syntax, field filters and argument redaction.
//!
//! - `allowlist` / `denylist`: as Tetragon's `--export-allowlist` / `--export-denylist`:
//!   JSON filter objects, one per line (or a YAML list). An event is exported when it
//!   matches ANY allowlist filter (or the allowlist is empty) and NO denylist filter; within
//!   one filter object every field must match (AND), within one field any value (OR).
//! - `field_filters`: as `--field-filters`: `{"event_set": [...], "fields": "process.binary,parent", "action": "INCLUDE"|"EXCLUDE"}`.
//! - `redaction_filters`: as `--redaction-filters`: `{"match": {filter}, "redact": ["regex"], "binary_regex": ["regex"]}`:
//!   each capture group of a `redact` regex in a process' `arguments` becomes `*****`
//!   (the whole match when the regex has no group).
use std::{collections::BTreeMap, time::Instant};

use regex::{Regex, RegexSet};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value;

use nightjar_event::{Kind, KINDS};

use super::{key, Out, Stage};
use crate::{Event, EventKind};

/// JSON objects one per line (Tetragon's flag syntax), or a YAML list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Lines<T> {
    Text(String),
    List(Vec<T>),
}

impl<T> Default for Lines<T> {
    fn default() -> Self {
        Lines::Text(String::new())
    }
}

impl<T: DeserializeOwned + Clone> Lines<T> {
    fn parse(&self, what: &'static str) -> Result<Vec<T>, FilterError> {
        match self {
            Lines::List(v) => Ok(v.clone()),
            Lines::Text(t) => {
                let mut out = Vec::new();
                let t = t.trim();
                // A JSON list is accepted too.
                if t.starts_with('[') {
                    return serde_json::from_str(t).map_err(|e| FilterError::Json {
                        what,
                        line: 1,
                        error: e.to_string(),
                    });
                }
                for (i, line) in t.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() {
                        continue;
                    }
                    out.push(serde_json::from_str(line).map_err(|e| FilterError::Json {
                        what,
                        line: i + 1,
                        error: e.to_string(),
                    })?);
                }
                Ok(out)
            }
        }
    }
}

/// One filter object (Tetragon's `Filter`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterSpec {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub event_set: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub binary_regex: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parent_binary_regex: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ancestor_binary_regex: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub arguments_regex: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parent_arguments_regex: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespace: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pod_regex: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub container_name_regex: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policy_names: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pid: Vec<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pid_set: Vec<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_init_tree: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FieldAction {
    Include,
    Exclude,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldFilterSpec {
    #[serde(default)]
    pub event_set: Vec<String>,
    /// Comma-separated paths inside the event payload (`process.binary,parent`).
    pub fields: String,
    pub action: FieldAction,
    #[serde(default)]
    pub invert_event_set: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactionSpec {
    /// Events to redact (any of the filters); all events when absent.
    #[serde(default, rename = "match")]
    pub matches: Option<OneOrMany<FilterSpec>>,
    pub redact: Vec<String>,
    /// Only processes whose binary matches one of these.
    #[serde(default)]
    pub binary_regex: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    pub allowlist: Lines<FilterSpec>,
    pub denylist: Lines<FilterSpec>,
    pub field_filters: Lines<FieldFilterSpec>,
    pub redaction_filters: Lines<RedactionSpec>,
}

#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("{what}: line {line}: not a filter object: {error}")]
    Json { what: &'static str, line: usize, error: String },
    #[error("{what}: bad regex {regex:?}: {error}")]
    Regex { what: &'static str, regex: String, error: String },
    #[error("{what}: unknown event type {name:?} (expected one of {})", Kind::event_type_names())]
    EventType { what: &'static str, name: String },
    #[error("{what}: bad label selector {selector:?}")]
    Label { what: &'static str, selector: String },
    #[error("field_filters: empty field path in {0:?}")]
    FieldPath(String),
}

/// Event types by their `EventType` name (`PROCESS_EXEC`), as the kinds table lists them;
/// kept as the payload key (`process_exec`) the events are matched on.
fn event_set(what: &'static str, names: &[String]) -> Result<Vec<String>, FilterError> {
    names
        .iter()
        .map(|n| match Kind::from_event_type(n) {
            Some(k) if KINDS[k as usize].event_type == n => Ok(k.key().to_owned()),
            _ => Err(FilterError::EventType { what, name: n.clone() }),
        })
        .collect()
}

fn regex_set(what: &'static str, v: &[String]) -> Result<Option<RegexSet>, FilterError> {
    if v.is_empty() {
        return Ok(None);
    }
    RegexSet::new(v).map(Some).map_err(|e| FilterError::Regex { what, regex: v.join(" | "), error: e.to_string() })
}

#[derive(Debug, Clone)]
enum LabelReq {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    Absent(String),
}

fn parse_selector(what: &'static str, s: &str) -> Result<Vec<LabelReq>, FilterError> {
    let bad = || FilterError::Label { what, selector: s.to_owned() };
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            if let Some((k, v)) = t.split_once("!=") {
                Ok(LabelReq::Ne(k.trim().into(), v.trim().into()))
            } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
                Ok(LabelReq::Eq(k.trim().into(), v.trim().into()))
            } else if let Some(k) = t.strip_prefix('!') {
                Ok(LabelReq::Absent(k.trim().into()))
            } else if t.contains(' ') {
                Err(bad())
            } else {
                Ok(LabelReq::Exists(t.into()))
            }
        })
        .collect()
}

/// A compiled filter object.
#[derive(Debug, Clone)]
pub struct Matcher {
    event_set: Vec<String>,
    binary: Option<RegexSet>,
    parent_binary: Option<RegexSet>,
    ancestor_binary: Option<RegexSet>,
    arguments: Option<RegexSet>,
    parent_arguments: Option<RegexSet>,
    namespace: Vec<String>,
    pod: Option<RegexSet>,
    container_name: Option<RegexSet>,
    labels: Vec<Vec<LabelReq>>,
    policy_names: Vec<String>,
    pid: Vec<u32>,
    pid_set: Vec<u32>,
    health_check: Option<bool>,
    in_init_tree: Option<bool>,
}

impl Matcher {
    pub fn new(what: &'static str, f: &FilterSpec) -> Result<Self, FilterError> {
        Ok(Matcher {
            event_set: event_set(what, &f.event_set)?,
            binary: regex_set(what, &f.binary_regex)?,
            parent_binary: regex_set(what, &f.parent_binary_regex)?,
            ancestor_binary: regex_set(what, &f.ancestor_binary_regex)?,
            arguments: regex_set(what, &f.arguments_regex)?,
            parent_arguments: regex_set(what, &f.parent_arguments_regex)?,
            namespace: f.namespace.clone(),
            pod: regex_set(what, &f.pod_regex)?,
            container_name: regex_set(what, &f.container_name_regex)?,
            labels: f.labels.iter().map(|s| parse_selector(what, s)).collect::<Result<_, _>>()?,
            policy_names: f.policy_names.clone(),
            pid: f.pid.clone(),
            pid_set: f.pid_set.clone(),
            health_check: f.health_check,
            in_init_tree: f.in_init_tree,
        })
    }

    /// Every set field matches (AND); an empty filter matches everything.
    pub fn matches(&self, ev: &Event) -> bool {
        let p = ev.process();
        let parent = ev.parent();
        let re =
            |set: &Option<RegexSet>, v: Option<&str>| set.as_ref().is_none_or(|s| v.is_some_and(|v| s.is_match(v)));
        let pod = p.and_then(|p| p.pod.as_ref());
        (self.event_set.is_empty() || self.event_set.iter().any(|t| t == ev.kind.key()))
            && re(&self.binary, p.and_then(|p| p.binary.as_deref()))
            && re(&self.parent_binary, parent.and_then(|p| p.binary.as_deref()))
            && self
                .ancestor_binary
                .as_ref()
                .is_none_or(|s| ev.ancestors().iter().any(|a| a.binary.as_deref().is_some_and(|b| s.is_match(b))))
            && re(&self.arguments, p.and_then(|p| p.arguments.as_deref()))
            && re(&self.parent_arguments, parent.and_then(|p| p.arguments.as_deref()))
            && (self.namespace.is_empty() || {
                let ns = pod.and_then(|p| p.namespace.as_deref()).unwrap_or_default();
                self.namespace.iter().any(|n| n == ns)
            })
            && re(&self.pod, pod.and_then(|p| p.name.as_deref()))
            && re(&self.container_name, pod.and_then(|p| p.container.as_ref()).and_then(|c| c.name.as_deref()))
            && (self.labels.is_empty() || {
                let empty = BTreeMap::new();
                let labels = pod.and_then(|p| p.pod_labels.as_ref()).unwrap_or(&empty);
                self.labels.iter().any(|sel| {
                    sel.iter().all(|r| match r {
                        LabelReq::Eq(k, v) => labels.get(k) == Some(v),
                        LabelReq::Ne(k, v) => labels.get(k) != Some(v),
                        LabelReq::Exists(k) => labels.contains_key(k),
                        LabelReq::Absent(k) => !labels.contains_key(k),
                    })
                })
            })
            && (self.policy_names.is_empty()
                || key::policy_name(ev).is_some_and(|n| self.policy_names.iter().any(|x| x == n)))
            && (self.pid.is_empty() || p.and_then(|p| p.pid).is_some_and(|pid| self.pid.contains(&pid)))
            && (self.pid_set.is_empty() || {
                let ancestors = ev.ancestors().iter().map(|a| &**a);
                let mut pids = p.into_iter().chain(parent).chain(ancestors).filter_map(|x| x.pid);
                pids.any(|pid| self.pid_set.contains(&pid))
            })
            && self.health_check.is_none_or(|want| {
                let probe = pod
                    .and_then(|p| p.container.as_ref())
                    .and_then(|c| c.extra.get("maybe_exec_probe"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                probe == want
            })
            && self.in_init_tree.is_none_or(|want| p.and_then(|p| p.in_init_tree).unwrap_or(false) == want)
    }
}

struct FieldFilter {
    event_set: Vec<String>,
    invert: bool,
    paths: Vec<Vec<String>>,
    action: FieldAction,
}

struct Redaction {
    matches: Vec<Matcher>,
    binary: Option<RegexSet>,
    redact: Vec<Regex>,
}

pub struct Filter {
    allow: Vec<Matcher>,
    deny: Vec<Matcher>,
    fields: Vec<FieldFilter>,
    redactions: Vec<Redaction>,
}

impl Filter {
    pub fn new(cfg: &FilterConfig) -> Result<Self, FilterError> {
        let allow =
            cfg.allowlist.parse("allowlist")?.iter().map(|f| Matcher::new("allowlist", f)).collect::<Result<_, _>>()?;
        let deny =
            cfg.denylist.parse("denylist")?.iter().map(|f| Matcher::new("denylist", f)).collect::<Result<_, _>>()?;
        let mut fields = Vec::new();
        for f in cfg.field_filters.parse("field_filters")? {
            let mut paths = Vec::new();
            for p in f.fields.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let segs: Vec<String> = p.split('.').map(str::to_owned).collect();
                if segs.iter().any(String::is_empty) {
                    return Err(FilterError::FieldPath(p.to_owned()));
                }
                paths.push(segs);
            }
            fields.push(FieldFilter {
                event_set: event_set("field_filters", &f.event_set)?,
                invert: f.invert_event_set,
                paths,
                action: f.action,
            });
        }
        let mut redactions = Vec::new();
        for r in cfg.redaction_filters.parse("redaction_filters")? {
            let specs = match r.matches {
                None => vec![],
                Some(OneOrMany::One(f)) => vec![f],
                Some(OneOrMany::Many(v)) => v,
            };
            let redact = r
                .redact
                .iter()
                .map(|x| {
                    Regex::new(x).map_err(|e| FilterError::Regex {
                        what: "redaction_filters",
                        regex: x.clone(),
                        error: e.to_string(),
                    })
                })
                .collect::<Result<_, _>>()?;
            redactions.push(Redaction {
                matches: specs.iter().map(|f| Matcher::new("redaction_filters", f)).collect::<Result<_, _>>()?,
                binary: regex_set("redaction_filters", &r.binary_regex)?,
                redact,
            });
        }
        Ok(Filter { allow, deny, fields, redactions })
    }

    /// True when the stage would pass every event unchanged (it is then not spawned).
    pub fn is_noop(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty() && self.fields.is_empty() && self.redactions.is_empty()
    }

    /// Whether the export filters let `ev` through (`Err(reason)` when not).
    pub fn admit(&self, ev: &Event) -> Result<(), &'static str> {
        if !self.allow.is_empty() && !self.allow.iter().any(|m| m.matches(ev)) {
            return Err("not_in_allowlist");
        }
        if self.deny.iter().any(|m| m.matches(ev)) {
            return Err("denylist");
        }
        Ok(())
    }

    fn redact(&self, ev: &mut Event) {
        for r in &self.redactions {
            if !r.matches.is_empty() && !r.matches.iter().any(|m| m.matches(ev)) {
                continue;
            }
            // The arguments with every pattern applied, `None` when nothing matched (the
            // process is then left as is, shared with the execution's other events).
            let redacted = |binary: Option<&str>, args: Option<&str>| -> Option<String> {
                if r.binary.as_ref().is_some_and(|b| !binary.is_some_and(|x| b.is_match(x))) {
                    return None;
                }
                let args = args?;
                let mut cur: Option<String> = None;
                for re in &r.redact {
                    if let Some(new) = redact_str(re, cur.as_deref().unwrap_or(args)) {
                        cur = Some(new);
                    }
                }
                cur
            };
            match &mut ev.kind {
                // A kind newer than nightjar's table: its processes are found by their keys,
                // so nothing it carries escapes redaction.
                EventKind::Other { value, .. } => {
                    let mut procs: Vec<&mut Value> = Vec::new();
                    if let Value::Object(o) = value {
                        for (k, v) in o.iter_mut() {
                            match (k.as_str(), v) {
                                ("process" | "parent", v) => procs.push(v),
                                ("ancestors", Value::Array(a)) => procs.extend(a.iter_mut()),
                                _ => {}
                            }
                        }
                    }
                    for p in procs {
                        let new = redacted(
                            p.get("binary").and_then(Value::as_str),
                            p.get("arguments").and_then(Value::as_str),
                        );
                        if let (Some(a), Value::Object(o)) = (new, p) {
                            o.insert("arguments".into(), Value::String(a));
                        }
                    }
                }
                _ => ev.for_each_process_mut(|p| {
                    if let Some(new) = redacted(p.binary.as_deref(), p.arguments.as_deref()) {
                        p.make_mut().arguments = Some(new);
                    }
                }),
            }
        }
    }

    fn apply_fields(&self, ev: Event) -> Event {
        let ty = ev.kind.key().to_owned();
        let applicable: Vec<&FieldFilter> =
            self.fields.iter().filter(|f| f.event_set.is_empty() || (f.event_set.contains(&ty) != f.invert)).collect();
        if applicable.is_empty() {
            return ev;
        }
        let Ok(mut v) = serde_json::to_value(&ev) else { return ev };
        if let Some(Value::Object(payload)) = v.get_mut(&ty) {
            for f in applicable {
                match f.action {
                    FieldAction::Exclude => {
                        for p in &f.paths {
                            remove_path(payload, p);
                        }
                    }
                    FieldAction::Include => {
                        let mut kept = serde_json::Map::new();
                        for p in &f.paths {
                            copy_path(payload, &mut kept, p);
                        }
                        *payload = kept;
                    }
                }
            }
        }
        // A payload with fewer fields still parses: every typed field is optional.
        serde_json::from_value(v).unwrap_or(ev)
    }
}

/// Replaces each capture group (or the whole match without groups) with `*****`; `None`
/// when nothing matched. Matches come in order and a match's groups lie within it, so
/// sorting each match's groups by start is sorting them all; the output is made at the
/// first range, and a match of one group (the usual `--password=(\S+)`) needs no list.
fn redact_str(re: &Regex, s: &str) -> Option<String> {
    let mut out: Option<String> = None;
    let mut at = 0;
    let mut emit = |r: std::ops::Range<usize>| {
        // Overlapping ranges (nested groups) are masked once.
        if r.start >= at {
            let o = out.get_or_insert_with(|| String::with_capacity(s.len()));
            o.push_str(&s[at..r.start]);
            o.push_str("*****");
            at = r.end;
        }
    };
    let mut several = Vec::new();
    for caps in re.captures_iter(s) {
        match caps.len() {
            1 => caps.get(0).into_iter().for_each(|m| emit(m.range())),
            2 => caps.get(1).into_iter().for_each(|m| emit(m.range())),
            _ => {
                several.extend(caps.iter().skip(1).flatten().map(|m| m.range()));
                several.sort_by_key(|r| r.start);
                several.drain(..).for_each(&mut emit);
            }
        }
    }
    let mut o = out?;
    o.push_str(&s[at..]);
    Some(o)
}

fn remove_path(m: &mut serde_json::Map<String, Value>, path: &[String]) {
    match path {
        [] => {}
        [last] => {
            m.remove(last);
        }
        [first, rest @ ..] => {
            if let Some(Value::Object(sub)) = m.get_mut(first) {
                remove_path(sub, rest);
            }
        }
    }
}

fn copy_path(from: &serde_json::Map<String, Value>, to: &mut serde_json::Map<String, Value>, path: &[String]) {
    match path {
        [] => {}
        [last] => {
            if let Some(v) = from.get(last) {
                to.insert(last.clone(), v.clone());
            }
        }
        [first, rest @ ..] => {
            if let Some(Value::Object(sub)) = from.get(first) {
                let entry = to.entry(first.clone()).or_insert_with(|| Value::Object(Default::default()));
                if let Value::Object(dst) = entry {
                    copy_path(sub, dst, rest);
                }
            }
        }
    }
}

impl Stage for Filter {
    fn name(&self) -> &'static str {
        "filter"
    }

    fn process(&mut self, mut ev: Event, _now: Instant, out: &mut Out) {
        if let Err(reason) = self.admit(&ev) {
            out.drop(reason, 1);
            return;
        }
        if !self.redactions.is_empty() {
            self.redact(&mut ev);
        }
        if !self.fields.is_empty() {
            ev = self.apply_fields(ev);
        }
        out.pass(ev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<Event> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus/tetragon");
        let mut v = Vec::new();
        for f in ["process_exec.jsonl", "process_kprobe.jsonl"] {
            let text = std::fs::read_to_string(dir.join(f)).unwrap();
            v.extend(text.lines().filter(|l| !l.trim().is_empty()).map(|l| Event::from_json(l).unwrap()));
        }
        v
    }

    fn filter(allow: &str, deny: &str) -> Filter {
        Filter::new(&FilterConfig {
            allowlist: Lines::Text(allow.into()),
            denylist: Lines::Text(deny.into()),
            ..Default::default()
        })
        .unwrap()
    }

    fn admitted(f: &Filter) -> Vec<String> {
        corpus()
            .iter()
            .filter(|e| f.admit(e).is_ok())
            .map(|e| format!("{}:{}", e.kind.key(), e.process().and_then(|p| p.binary.clone()).unwrap_or_default()))
            .collect()
    }

    /// A process_lsm event of mysql with a password in its arguments.
    fn lsm_event() -> Event {
        Event::from_json(
            r#"{"process_lsm":{"process":{"exec_id":"e1","binary":"/usr/bin/mysql","arguments":"-u root --password=hunter2"},"parent":{"binary":"/bin/bash","arguments":"-c x --password=hunter2"},"function_name":"file_open","policy_name":"p","action":"KPROBE_ACTION_POST"},"time":"2024-01-01T00:00:00Z"}"#,
        )
        .unwrap()
    }

    #[test]
    fn redaction_masks_the_arguments_of_lsm_events() {
        let f = Filter::new(&FilterConfig {
            redaction_filters: Lines::Text(r#"{"redact":["--password=(\\S+)"]}"#.into()),
            ..Default::default()
        })
        .unwrap();
        let mut out = Out::new("filter");
        let mut stage = f;
        stage.process(lsm_event(), Instant::now(), &mut out);
        let got = out.take();
        let v: Value = serde_json::from_str(&got[0].to_json()).unwrap();
        assert_eq!(v["process_lsm"]["process"]["arguments"], "-u root --password=*****", "{v}");
        assert_eq!(v["process_lsm"]["parent"]["arguments"], "-c x --password=*****", "{v}");
    }

    #[test]
    fn binary_regex_and_policy_filters_match_lsm_events() {
        let f = filter("", r#"{"binary_regex":["^/usr/bin/mysql$"]}"#);
        assert_eq!(f.admit(&lsm_event()), Err("denylist"));
        let f = filter(r#"{"policy_names":["p"],"event_set":["PROCESS_LSM"]}"#, "");
        assert_eq!(f.admit(&lsm_event()), Ok(()));
    }

    #[test]
    fn allowlist_is_or_across_lines_and_and_within_an_object() {
        let all = admitted(&filter("", ""));
        assert_eq!(all.len(), 3, "{all:?}");
        let f = filter(r#"{"event_set":["PROCESS_EXEC"]}"#, "");
        assert_eq!(admitted(&f), vec!["process_exec:/usr/bin/curl"]);
        // OR across lines.
        let f = filter("{\"event_set\":[\"PROCESS_EXEC\"]}\n{\"binary_regex\":[\"^/bin/nc$\"]}", "");
        assert_eq!(admitted(&f), vec!["process_exec:/usr/bin/curl", "process_kprobe:/bin/nc"]);
        // AND within one object: kprobe events whose binary is curl: none.
        let f = filter(r#"{"event_set":["PROCESS_KPROBE"],"binary_regex":["curl"]}"#, "");
        assert!(admitted(&f).is_empty());
        // OR within one field.
        let f = filter(r#"{"binary_regex":["^/bin/sh$","^/bin/nc$"]}"#, "");
        assert_eq!(admitted(&f).len(), 2);
    }

    #[test]
    fn denylist_and_the_other_fields() {
        let f = filter("", r#"{"namespace":["default"]}"#);
        assert_eq!(admitted(&f), vec!["process_kprobe:/bin/sh", "process_kprobe:/bin/nc"]);
        let f = filter(r#"{"pod_regex":["^xwing"]}"#, "");
        assert_eq!(admitted(&f), vec!["process_exec:/usr/bin/curl"]);
        let f = filter(r#"{"parent_binary_regex":["bash"]}"#, "");
        assert_eq!(admitted(&f), vec!["process_exec:/usr/bin/curl"]);
        let f = filter(r#"{"arguments_regex":["^-h$"]}"#, "");
        assert_eq!(admitted(&f), vec!["process_kprobe:/bin/nc"]);
        let f = filter(r#"{"labels":["app=tetragon-test"]}"#, "");
        assert_eq!(admitted(&f), vec!["process_kprobe:/bin/nc"]);
        let f = filter(r#"{"namespace":[""]}"#, "");
        assert!(admitted(&f).is_empty(), "every corpus event is in a pod");
        let f = filter(r#"{"health_check":false}"#, "");
        assert_eq!(admitted(&f).len(), 3);
        let f = filter(r#"{"pid":[52699]}"#, "");
        assert_eq!(admitted(&f), vec!["process_exec:/usr/bin/curl"]);
        let f = filter("", r#"[{"event_set":["PROCESS_KPROBE"]}]"#);
        assert_eq!(admitted(&f), vec!["process_exec:/usr/bin/curl"]);
    }

    #[test]
    fn policy_names_and_health_check() {
        let mut evs = corpus();
        let EventKind::ProcessKprobe(k) = &mut evs[1].kind else { panic!() };
        k.policy_name = Some("block-nc".into());
        let f = filter(r#"{"policy_names":["block-nc"]}"#, "");
        assert_eq!(evs.iter().filter(|e| f.admit(e).is_ok()).count(), 1);
        let EventKind::ProcessKprobe(k) = &mut evs[2].kind else { panic!() };
        let c = k.process.as_mut().unwrap().make_mut().pod.as_mut().unwrap().container.as_mut().unwrap();
        c.extra.insert("maybe_exec_probe".into(), Value::Bool(true));
        let f = filter("", r#"{"health_check":true}"#);
        assert_eq!(evs.iter().filter(|e| f.admit(e).is_ok()).count(), 2);
    }

    #[test]
    fn bad_filters_are_refused_with_what_and_where() {
        let e = Filter::new(&FilterConfig {
            allowlist: Lines::Text("{}\n{\"binary_regex\":[\"(\"]}".into()),
            ..Default::default()
        })
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("allowlist") && e.contains("bad regex"), "{e}");
        let e = Filter::new(&FilterConfig { denylist: Lines::Text("{\"bogus\":1}".into()), ..Default::default() })
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("denylist: line 1") && e.contains("bogus"), "{e}");
        let e = Filter::new(&FilterConfig {
            denylist: Lines::Text("{\"event_set\":[\"EXEC\"]}".into()),
            ..Default::default()
        })
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("unknown event type"), "{e}");
    }

    #[test]
    fn redaction_and_field_filters() {
        let f = Filter::new(&FilterConfig {
            redaction_filters: Lines::Text(
                r#"{"redact":["(?:--password|-p)[ =](\\S+)"],"binary_regex":["mysql$"]}"#.into(),
            ),
            field_filters: Lines::Text(
                r#"{"event_set":["PROCESS_EXEC"],"fields":"process.exec_id,process.binary,process.arguments","action":"INCLUDE"}"#
                    .into(),
            ),
            ..Default::default()
        })
        .unwrap();
        let line = r#"{"process_exec":{"process":{"exec_id":"e1","pid":7,"binary":"/usr/bin/mysql","arguments":"-u root --password=hunter2 -p s3cret db"},"parent":{"binary":"/bin/sh","arguments":"-p keep"}},"node_name":"n","time":"2024-01-01T00:00:00Z"}"#;
        let mut out = Out::new("filter");
        let mut f = f;
        f.process(Event::from_json(line).unwrap(), Instant::now(), &mut out);
        let v: Value = serde_json::from_str(&out.take()[0].to_json()).unwrap();
        assert_eq!(v["process_exec"]["process"]["arguments"], "-u root --password=***** -p ***** db");
        assert_eq!(v["process_exec"]["process"]["exec_id"], "e1");
        assert!(v["process_exec"]["process"].get("pid").is_none(), "not included: {v}");
        assert!(v["process_exec"].get("parent").is_none(), "not included: {v}");
        assert_eq!(v["node_name"], "n");
    }

    #[test]
    fn redact_str_masks_every_group_once_and_whole_matches_without_groups() {
        let r = |re: &str, s: &str| redact_str(&Regex::new(re).unwrap(), s);
        assert_eq!(r(r"-p (\S+)", "a -p x -p yy b").as_deref(), Some("a -p ***** -p ***** b"));
        assert_eq!(r(r"secret\d", "x secret1 secret2").as_deref(), Some("x ***** *****"));
        // Several groups per match; nested groups are masked once, as the outer one.
        assert_eq!(r(r"u=(\w+) p=(\w+)", "u=me p=pw; u=you p=x").as_deref(), Some("u=***** p=*****; u=***** p=*****"));
        assert_eq!(r(r"k=((\w)\w*)", "k=abc k=d").as_deref(), Some("k=***** k=*****"));
        // A group that did not take part masks nothing; no match at all is None.
        assert_eq!(r(r"a(x)?b", "ab").as_deref(), None);
        assert_eq!(r(r"zz(\d)", "nothing"), None);
    }

    #[test]
    fn dropped_events_are_counted_by_reason() {
        let mut f = filter(r#"{"event_set":["PROCESS_KPROBE"]}"#, r#"{"binary_regex":["nc$"]}"#);
        let mut out = Out::new("filter");
        for e in corpus() {
            f.process(e, Instant::now(), &mut out);
        }
        assert_eq!(out.take().len(), 1);
        assert_eq!(out.report().dropped.get("not_in_allowlist"), Some(&1));
        assert_eq!(out.report().dropped.get("denylist"), Some(&1));
    }
}
