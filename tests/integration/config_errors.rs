//! A bad config fails fast with one located line and exit code 2.
use crate::common::*;

fn check(yaml: &str, want_line: &str, want_text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = nightjar().args(["config", "--check", "--config"]).arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    let prefix = format!("nightjar: invalid config: {}:{want_line}", path.display());
    assert!(lines[0].starts_with(&prefix), "want prefix {prefix:?}, got {:?}", lines[0]);
    assert!(lines[0].contains(want_text), "want {want_text:?} in {:?}", lines[0]);
}

#[test]
fn unknown_key() {
    check("sinks:\n  file:\n    pathh: /tmp/x\n", "3:", "sinks.file.pathh: unknown field `pathh`");
}

#[test]
fn wrong_type() {
    check("metrics:\n  enabled: sometimes\n", "2:", "metrics.enabled: invalid type");
}

#[test]
fn bad_yaml() {
    check("metrics:\n  enabled: true\nsinks: {stdout: {enabled: true}\n", "4:", "did not find expected");
}

#[test]
fn bad_override_names_it() {
    let out = nightjar().args(["config", "--check", "--set", "sinks.file.max_backups=many"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--set sinks.file.max_backups=many: sinks.file.max_backups"), "{stderr}");
}

#[test]
fn env_override_applies() {
    let out = run_ok(nightjar().args(["config"]).env("NIGHTJAR__SINKS__FILE__MAX_BACKUPS", "9"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("max_backups: 9"), "{text}");
}

#[test]
fn builtin_default_is_valid() {
    run_ok(nightjar().args(["config", "--check"]));
}
