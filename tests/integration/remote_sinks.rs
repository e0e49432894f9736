//! A remote sink that cannot start (nothing listens at its address) is reported with its
//! name and cause; the agent runs on and the other sinks keep writing.
use std::time::Duration;

use crate::common::*;

#[test]
fn unreachable_remote_sinks_are_named_and_the_file_sink_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let port = free_port();
    let dead = free_port();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let agent = Agent::spawn(
        agent_run(dir.path())
            .args(["--set", &format!("metrics.listen=127.0.0.1:{port}")])
            .args(["--set", &format!("sinks.file.path={}", log.display())])
            .args(["--set", "sinks.elasticsearch.enabled=true"])
            .args(["--set", &format!("sinks.elasticsearch.endpoint=http://127.0.0.1:{dead}")])
            .args(["--set", "sinks.kafka.enabled=true"])
            .args(["--set", &format!("sinks.kafka.brokers=127.0.0.1:{dead}")]),
    );
    let up = wait_for(Duration::from_secs(60), || http_get(addr, "/healthz").ok().filter(|(s, _)| *s == 200));
    assert!(up.is_some(), "agent never became healthy");
    let marker = std::process::Command::new("/bin/true").status().unwrap();
    assert!(marker.success());
    let written = wait_for(Duration::from_secs(20), || {
        std::fs::read_to_string(&log).ok().filter(|t| t.contains("process_exec")).map(|_| ())
    });
    let out = agent.terminate();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(written.is_some(), "the file sink wrote no process_exec; stderr: {stderr}");
    assert!(out.status.success(), "agent exit {}: {stderr}", out.status);
    assert!(stderr.contains(&format!("sink elasticsearch: cannot reach http://127.0.0.1:{dead}/")), "{stderr}");
    assert!(stderr.contains(&format!("sink kafka: cannot reach brokers 127.0.0.1:{dead}")), "{stderr}");
}
