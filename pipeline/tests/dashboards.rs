//! The Grafana dashboards and Prometheus alert rules only name metrics the agent exports.
use std::{collections::BTreeSet, path::Path};

use nightjar_pipeline::metrics::ALL_NAMES;

fn config_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config")
}

/// `nightjar_*` / `tetragon_*` identifiers in a PromQL expression, summary suffixes removed.
fn metric_names(expr: &str) -> Vec<String> {
    let re = regex::Regex::new(r"\b(?:nightjar|tetragon)_[a-z0-9_]+").unwrap();
    re.find_iter(expr)
        .map(|m| {
            let n = m.as_str();
            for suffix in ["_sum", "_count", "_bucket"] {
                if let Some(base) = n.strip_suffix(suffix) {
                    if ALL_NAMES.contains(&base) {
                        return base.to_owned();
                    }
                }
            }
            n.to_owned()
        })
        .collect()
}

fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("expr", serde_json::Value::String(s)) => out.push(s.clone()),
                    _ => exprs(x, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| exprs(x, out)),
        _ => {}
    }
}

#[test]
fn every_dashboard_query_names_an_exported_metric() {
    let mut dashboards = 0;
    let mut seen = BTreeSet::new();
    for entry in std::fs::read_dir(config_dir().join("grafana")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        dashboards += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
        assert!(v.get("panels").and_then(|p| p.as_array()).is_some_and(|p| !p.is_empty()), "no panels");
        let mut qs = Vec::new();
        exprs(&v, &mut qs);
        assert!(!qs.is_empty(), "{}: no queries", path.display());
        for q in qs {
            let names = metric_names(&q);
            assert!(!names.is_empty(), "{}: query names no nightjar metric: {q}", path.display());
            for n in names {
                assert!(ALL_NAMES.contains(&n.as_str()), "{}: {n} is not exported (query: {q})", path.display());
                seen.insert(n);
            }
        }
    }
    assert!(dashboards > 0);
    // The headline panels the issue asks for.
    for must in [
        "nightjar_events_total",
        "nightjar_policy_events_total",
        "nightjar_missed_events_total",
        "nightjar_buffer_events",
        "nightjar_buffer_oldest_event_age_seconds",
        "nightjar_sink_events_total",
    ] {
        assert!(seen.contains(must), "no panel shows {must}");
    }
}

#[test]
fn alert_rules_name_exported_metrics() {
    let text = std::fs::read_to_string(config_dir().join("prometheus/alerts.yml")).unwrap();
    let v: serde_json::Value = serde_norway::from_str(&text).unwrap();
    let mut n = 0;
    for g in v["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            let expr = r["expr"].as_str().unwrap();
            for m in metric_names(expr) {
                assert!(ALL_NAMES.contains(&m.as_str()), "alert {}: {m} is not exported", r["alert"]);
            }
            n += 1;
        }
    }
    assert_eq!(n, 8);
}
