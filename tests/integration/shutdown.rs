//! SIGTERM with a full pipeline: every event accepted before the signal is in the file sink
//! afterwards (the batcher holds them until shutdown flushes).
use std::{process::Command, time::Duration};

use crate::common::*;

#[test]
fn sigterm_flushes_everything_accepted_before_it() {
    const N: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let marker = format!("nightjar-shutdown-{}", std::process::id());
    let agent = Agent::spawn(
        agent_run(dir.path())
            .args(["--set", &format!("metrics.listen=127.0.0.1:{port}")])
            .args(["--set", &format!("sinks.file.path={}", log.display())])
            .args(["--set", "sinks.stdout.enabled=false"])
            // Batches close only at shutdown: nothing reaches the file before the signal.
            .args(["--set", "sinks.file.batch.max_age_ms=600000"])
            .args(["--set", "sinks.file.batch.max_events=1000000"])
            .args(["--set", "sinks.file.batch.max_bytes=0"])
            .args(["--set", "pipeline.shutdown_timeout_secs=60"]),
    );
    let up = wait_for(Duration::from_secs(60), || http_get(addr, "/healthz").ok().filter(|(s, _)| *s == 200));
    assert!(up.is_some(), "agent never became healthy");
    let script = format!("i=0; while [ $i -lt {N} ]; do /bin/true {marker} $i; i=$((i+1)); done");
    assert!(Command::new("/bin/sh").args(["-c", &script]).status().unwrap().success());
    // The events are held in the pipeline, not yet written.
    let before = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!before.contains(&marker), "a batch was written before shutdown; the test would prove nothing");

    let out = agent.terminate();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "agent exit {}: {stderr}", out.status);
    assert!(stderr.contains("shutdown complete"), "{stderr}");
    let text = std::fs::read_to_string(&log).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if let Some(args) = v["process_exec"]["process"]["arguments"].as_str() {
            if let Some(i) = args.strip_prefix(&format!("{marker} ")) {
                seen.insert(i.parse::<usize>().unwrap());
            }
        }
    }
    let missing: Vec<usize> = (0..N).filter(|i| !seen.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "{} of {N} execs missing from the file after SIGTERM: {missing:?}\n{stderr}",
        missing.len()
    );
}
