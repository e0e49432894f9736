//! The index template installed at start: `keyword` for paths, binaries and ids (exact
//! matches and aggregations), `date_nanos` for times, numbers for pids and uids.
use serde_json::{json, Value};

use super::config::DocSchema;

/// Strings are `keyword` unless mapped otherwise (paths, binaries, ids, names).
fn keyword_strings() -> Value {
    json!([{ "strings_as_keyword": { "match_mapping_type": "string", "mapping": { "type": "keyword", "ignore_above": 8191 } } }])
}

fn tetragon_process() -> Value {
    json!({ "properties": {
        "exec_id": { "type": "keyword" }, "parent_exec_id": { "type": "keyword" },
        "pid": { "type": "long" }, "tid": { "type": "long" }, "uid": { "type": "long" }, "auid": { "type": "long" },
        "binary": { "type": "keyword" }, "cwd": { "type": "keyword" },
        "arguments": { "type": "keyword", "ignore_above": 8191, "fields": { "text": { "type": "text" } } },
        "start_time": { "type": "date_nanos" }, "docker": { "type": "keyword" },
        "pod": { "properties": { "namespace": { "type": "keyword" }, "name": { "type": "keyword" },
            "container": { "properties": { "id": { "type": "keyword" }, "name": { "type": "keyword" } } } } }
    } })
}

fn tetragon_mappings() -> Value {
    let kind = || {
        json!({ "properties": { "process": tetragon_process(), "parent": tetragon_process(),
        "policy_name": { "type": "keyword" }, "function_name": { "type": "keyword" }, "action": { "type": "keyword" } } })
    };
    json!({
        "dynamic_templates": keyword_strings(),
        "properties": {
            "time": { "type": "date_nanos" }, "@timestamp": { "type": "date_nanos" }, "node_name": { "type": "keyword" },
            "process_exec": kind(), "process_exit": kind(), "process_kprobe": kind(), "process_tracepoint": kind(),
        }
    })
}

fn ecs_process() -> Value {
    json!({ "properties": {
        "entity_id": { "type": "keyword" }, "pid": { "type": "long" }, "executable": { "type": "keyword" },
        "name": { "type": "keyword" }, "args": { "type": "keyword" }, "args_count": { "type": "long" },
        "command_line": { "type": "keyword", "ignore_above": 8191, "fields": { "text": { "type": "text" } } },
        "working_directory": { "type": "keyword" }, "start": { "type": "date_nanos" }, "exit_code": { "type": "long" }
    } })
}

fn ecs_mappings() -> Value {
    let mut process = ecs_process();
    process["properties"]["parent"] = ecs_process();
    json!({
        "dynamic_templates": keyword_strings(),
        "properties": {
            "@timestamp": { "type": "date_nanos" },
            "event": { "properties": { "kind": { "type": "keyword" }, "category": { "type": "keyword" }, "type": { "type": "keyword" },
                "action": { "type": "keyword" }, "dataset": { "type": "keyword" }, "module": { "type": "keyword" }, "outcome": { "type": "keyword" } } },
            "process": process,
            "user": { "properties": { "id": { "type": "keyword" }, "name": { "type": "keyword" } } },
            "host": { "properties": { "name": { "type": "keyword" }, "hostname": { "type": "keyword" } } },
            "container": { "properties": { "id": { "type": "keyword" }, "name": { "type": "keyword" }, "image": { "properties": { "name": { "type": "keyword" } } } } },
            "orchestrator": { "properties": { "namespace": { "type": "keyword" }, "type": { "type": "keyword" },
                "resource": { "properties": { "type": { "type": "keyword" }, "name": { "type": "keyword" } } } } },
            "rule": { "properties": { "name": { "type": "keyword" } } }
        }
    })
}

/// The body of `PUT _index_template/<name>` for documents written to `index` (a strftime
/// pattern, its static prefix becomes the pattern) or to `data_stream`.
pub fn index_template(schema: DocSchema, index: &str, data_stream: Option<&str>) -> Value {
    let pattern = match data_stream {
        Some(ds) => ds.to_owned(),
        None => format!("{}*", index.split('%').next().unwrap_or(index)),
    };
    let mappings = match schema {
        DocSchema::Tetragon => tetragon_mappings(),
        DocSchema::Ecs => ecs_mappings(),
    };
    let mut t = json!({
        "index_patterns": [pattern],
        "priority": 200,
        "template": { "mappings": mappings },
        "_meta": { "managed_by": "nightjar", "schema": match schema { DocSchema::Tetragon => "tetragon", DocSchema::Ecs => "ecs" } }
    });
    if data_stream.is_some() {
        t["data_stream"] = json!({});
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_the_static_prefix() {
        let t = index_template(DocSchema::Tetragon, "nightjar-%Y.%m.%d", None);
        assert_eq!(t["index_patterns"], json!(["nightjar-*"]));
        assert_eq!(t["template"]["mappings"]["properties"]["time"]["type"], "date_nanos");
        let t = index_template(DocSchema::Ecs, "x", Some("logs-nightjar-default"));
        assert_eq!(t["index_patterns"], json!(["logs-nightjar-default"]));
        assert_eq!(
            t["template"]["mappings"]["properties"]["process"]["properties"]["parent"]["properties"]["executable"]
                ["type"],
            "keyword"
        );
        assert!(t.get("data_stream").is_some());
    }
}
