//! What the sinks would refuse is a configuration error found by `config --check` (and
//! `run`) alike: exit 2 and one line with the file, line, key path and what was expected —
//! distinct from a server that is down, which only delays delivery.
use crate::common::*;

fn check(yaml: &str, want_line: &str, want_text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = nightjar()
        .env_remove("NIGHTJAR_TEST_UNSET_SECRET")
        .args(["config", "--check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    let prefix = format!("nightjar: invalid config: {}:{want_line}", path.display());
    assert!(lines[0].starts_with(&prefix), "want prefix {prefix:?}, got {:?}", lines[0]);
    assert!(lines[0].contains(want_text), "want {want_text:?} in {:?}", lines[0]);
}

#[test]
fn an_elasticsearch_endpoint_that_is_not_a_url() {
    check(
        "sinks:\n  elasticsearch:\n    enabled: true\n    endpoint: not a url\n",
        "4:",
        "sinks.elasticsearch.endpoint: endpoint \"not a url\" is not a URL",
    );
}

#[test]
fn a_bad_percent_field_in_the_index() {
    check(
        "sinks:\n  elasticsearch:\n    index: nightjar-%Q\n",
        "3:",
        "sinks.elasticsearch.index: index \"nightjar-%Q\" has an invalid % field",
    );
}

#[test]
fn kafka_request_timeout_below_message_timeout() {
    check(
        "sinks:\n  kafka:\n    enabled: true\n    message_timeout_ms: 300000\n    request:\n      timeout_ms: 1000\n",
        "2:",
        "sinks.kafka: request.timeout_ms (1000) must be longer than message_timeout_ms (300000)",
    );
}

#[test]
fn an_unknown_librdkafka_option() {
    check(
        "sinks:\n  kafka:\n    enabled: true\n    options:\n      queue.buffering.max.kbites: \"100\"\n",
        "2:",
        "sinks.kafka: options: Client config error: No such configuration property: \"queue.buffering.max.kbites\"",
    );
}

#[test]
fn a_missing_secret_variable() {
    check(
        "sinks:\n  elasticsearch:\n    enabled: true\n    auth:\n      kind: basic\n      user: elastic\n      secret:\n        env: NIGHTJAR_TEST_UNSET_SECRET\n",
        "2:",
        "environment variable NIGHTJAR_TEST_UNSET_SECRET is not set",
    );
}

#[test]
fn a_batch_too_large_to_allocate() {
    check(
        "sinks:\n  file:\n    batch:\n      max_events: 1000000000000000\n",
        "4:",
        "sinks.file.batch.max_events: 1000000000000000 is out of range: expected 1 to 1000000 events",
    );
}

#[test]
fn a_file_mode_above_0o7777() {
    check("sinks:\n  file:\n    mode: 0o17777\n", "3:", "sinks.file.mode: file mode 0o17777 is not a permission mode");
}

#[test]
fn a_disk_buffer_size_out_of_range() {
    check(
        "sinks:\n  kafka:\n    buffer:\n      type: disk\n      max_size: 1KiB\n",
        "5:",
        "sinks.kafka.buffer.max_size: 1024 bytes is out of range",
    );
}
