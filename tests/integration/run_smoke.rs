//! `nightjar run` starts on a real kernel: sensor attached, metrics served, events in the file.
use std::time::Duration;

use crate::common::*;

#[test]
fn run_serves_metrics_and_writes_events() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let agent = Agent::spawn(
        agent_run(dir.path())
            .args(["--set", &format!("metrics.listen=127.0.0.1:{port}")])
            .args(["--set", &format!("sinks.file.path={}", log.display())])
            .args(["--set", "sinks.stdout.format=json"]),
    );
    let up = wait_for(Duration::from_secs(60), || http_get(addr, "/healthz").ok().filter(|(s, _)| *s == 200));
    assert!(up.is_some(), "agent never became healthy");
    let (status, body) = http_get(addr, "/metrics").unwrap();
    assert!(status == 200 && body.contains("nightjar_build_info"), "{status} {body}");
    // Generate an exec the sensor must see.
    let marker = std::process::Command::new("/bin/true").status().unwrap();
    assert!(marker.success());
    let seen = wait_for(Duration::from_secs(10), || {
        let (_, b) = http_get(addr, "/metrics").ok()?;
        b.lines().any(|l| l.starts_with("nightjar_process_exec_total") && !l.ends_with(" 0")).then_some(())
    });
    assert!(seen.is_some(), "no exec counted");
    let (status, health) = http_get(addr, "/healthz").unwrap();
    assert_eq!((status, health.trim()), (200, "ok"));
    let out = agent.terminate();
    assert!(out.status.success(), "agent exit {}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&log).unwrap();
    let execs = text.lines().map(parse_json_line).filter(|v| v.get("process_exec").is_some()).count();
    assert!(execs > 0, "no process_exec in the file sink: {text}");
}

fn parse_json_line(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}
