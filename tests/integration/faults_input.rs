//! Hostile and wrong input: everything `run` refuses, `config --check` refuses first, with
//! exit code 2 and one located line; nesting and sizes are bounded before parsing; the
//! agent never deletes what is not its stale socket, and says each error once, without
//! colour codes when stderr is not a terminal.
use std::{net::TcpListener, path::Path, time::Duration};

use crate::{common::*, faults_util::*};

/// `config --check` and `run` on `yaml` both exit 2 with exactly one line, which starts
/// with the file and `line:` and contains `want`.
fn refused(yaml: &str, line: &str, want: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, yaml).unwrap();
    let (mut run, _) = agent_cmd(dir.path(), false);
    let run = run.args(["--duration", "1", "--config"]).arg(&path).output().unwrap();
    let check = nightjar().args(["config", "--check", "--config"]).arg(&path).output().unwrap();
    for (what, out) in [("config --check", check), ("run", run)] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what} on {yaml:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{what}: one line, said once: {stderr}");
        let prefix = format!("nightjar: invalid config: {}:{line}", path.display());
        assert!(lines[0].starts_with(&prefix), "{what}: want prefix {prefix:?}, got {:?}", lines[0]);
        assert!(lines[0].contains(want), "{what}: want {want:?} in {:?}", lines[0]);
    }
}

#[test]
fn config_check_finds_what_run_finds() {
    refused("sensor:\n  ring_buffer_size: 5000\n", "2:", "sensor.ring_buffer_size: 5000 bytes is not a power of two");
    refused("log:\n  level: verbose-please\n", "2:", "log.level: \"verbose-please\" is not a log filter");
    refused(
        "pipeline:\n  channel_capacity: 1000000000000000\n",
        "2:",
        "pipeline.channel_capacity: 1000000000000000 is out of range: expected 1 to 1048576",
    );
    refused("pipeline:\n  dedup:\n    max_keys: 1000000000000000\n", "3:", "pipeline.dedup.max_keys: 1000000000000000");
    refused(
        "sources:\n  tetragon_file:\n    max_line_bytes: 99999999999\n",
        "3:",
        "sources.tetragon_file.max_line_bytes: 99999999999 is out of range",
    );
    refused("sensor:\n  process_cache_max: 0\n", "2:", "sensor.process_cache_max: 0 is out of range");
    // Semantic errors are located by file and key path (the value is a JSON or regex text).
    refused(
        "pipeline:\n  filter:\n    allowlist: '{bad json'\n",
        "",
        " pipeline.filter: allowlist: line 1: not a filter object",
    );
    refused(
        "pipeline:\n  filter:\n    redaction_filters: '{\"redact\":[\"(unclosed\"]}'\n",
        "",
        "pipeline.filter: redaction_filters: bad regex \"(unclosed\"",
    );
    refused(
        "pipeline:\n  rate_limit:\n    per_key_events_per_second: 10\n    key_fields: []\n",
        "",
        "pipeline.rate_limit: key_fields must name at least one field",
    );
}

#[test]
fn deep_nesting_and_oversized_files_are_refused_before_parsing() {
    // 100,000 `[` (the issue's 200 KB file) took the YAML parser 45 s.
    refused(&format!("pipeline: {}", "[".repeat(100_000)), "1:", "nested deeper than 64 levels");
    refused(&"- ".repeat(100_000), "1:", "nested deeper than 64 levels");
    refused(&format!("node_name: \"{}\"\n", "x".repeat(2 << 20)), "", "larger than 1048576 bytes");
    // A value given with --set is YAML too; its error names it, abridged.
    let set = format!("pipeline.filter={}", "[".repeat(100_000));
    let out = nightjar().args(["config", "--check", "--set", &set]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("nightjar: invalid config: --set pipeline.filter=[[["), "{stderr}");
    assert!(stderr.contains("nested deeper than 64 levels") && stderr.len() < 300, "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        (
            "deep.yaml",
            format!("apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata: {}", "{a: ".repeat(100_000)),
        ),
        ("big.yaml", format!("# {}\n", "x".repeat(2 << 20))),
    ] {
        let f = dir.path().join(name);
        std::fs::write(&f, text).unwrap();
        let out = nightjar().args(["policy", "validate"]).arg(&f).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.starts_with(&format!("{}:", f.display())), "{stderr}");
        assert!(stderr.contains("nested deeper than 64") || stderr.contains("larger than 1048576"), "{stderr}");
    }
}

fn policy(name: &str) -> String {
    include_str!("../../config/policies/monitor-sensitive-files.yaml")
        .replace("name: monitor-sensitive-files", &format!("name: {name}"))
}

#[test]
fn duplicate_policy_names_name_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let pdir = dir.path().join("policies");
    std::fs::create_dir(&pdir).unwrap();
    std::fs::write(pdir.join("a.yaml"), policy("same-name")).unwrap();
    std::fs::write(pdir.join("b.yaml"), policy("same-name")).unwrap();
    let set = format!("sensor.policies_dir={}", pdir.display());
    let check = nightjar().args(["config", "--check", "--set", &set]).output().unwrap();
    let (mut run, _) = agent_cmd(dir.path(), false);
    let run = run.args(["--duration", "1", "--set", &set]).output().unwrap();
    for out in [check, run] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        let (a, b) = (pdir.join("a.yaml").display().to_string(), pdir.join("b.yaml").display().to_string());
        assert!(stderr.contains(&format!("{b}:")) && stderr.contains(&a), "both files named: {stderr}");
        assert!(stderr.contains("metadata.name: policy name \"same-name\""), "{stderr}");
    }
}

fn stderr_of_failed_start(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let (mut cmd, _) = agent_cmd(dir, false);
    let out = cmd.args(["--duration", "30"]).args(args).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn control_socket_on_a_regular_file_keeps_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let precious = dir.path().join("precious.txt");
    std::fs::write(&precious, "keep me\n").unwrap();
    let set = format!("control.socket={}", precious.display());
    let (code, stderr) = stderr_of_failed_start(dir.path(), &["--set", &set]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("exists and is a regular file: refusing to replace it"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me\n", "the file was touched");
    let out = nightjar().args(["config", "--check", "--set", &set]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    // A stale socket (an agent that crashed) is replaced.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let (mut cmd, metrics) = agent_cmd(dir.path(), false);
    cmd.args(["--set", &format!("control.socket={}", stale.display())]);
    let _agent = start(dir.path(), (cmd, metrics));
    let st = request(&stale, r#"{"cmd":"status"}"#, Duration::from_secs(10)).unwrap();
    assert_eq!(st["ok"], true, "{st}");
}

#[test]
fn runtime_errors_are_said_once_without_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = format!("metrics.listen={}", held.local_addr().unwrap());
    let (code, stderr) = stderr_of_failed_start(dir.path(), &["--set", &listen]);
    assert_eq!(code, Some(1), "a busy port is a runtime failure, not bad input: {stderr}");
    assert_eq!(stderr.matches("Address already in use").count(), 1, "said once: {stderr}");
    assert!(!stderr.contains('\x1b'), "colour codes on a stderr that is not a terminal: {stderr:?}");
}

#[test]
fn status_of_an_unreachable_agent_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let set = format!("control.socket={}", dir.path().join("nobody.sock").display());
    for args in [&["status"][..], &["status", "--json"]] {
        let out = nightjar().args(args).args(["--set", &set]).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", String::from_utf8_lossy(&out.stdout));
        assert!(String::from_utf8_lossy(&out.stdout).contains("nobody.sock"), "it says why");
    }
}
