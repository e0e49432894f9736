//! Remote sinks whose servers are down when the agent starts are not disabled: they
//! buffer (on disk, by default), say so in `nightjar status`, and the other sinks keep
//! writing. SIGTERM keeps what they hold on disk and exits 0 (nothing was lost).
use std::time::Duration;

use crate::common::*;

#[test]
fn remote_sinks_down_at_start_buffer_and_the_file_sink_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let port = free_port();
    let dead = free_port();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let agent = Agent::spawn(
        agent_run(dir.path())
            .args(["--set", &format!("metrics.listen=127.0.0.1:{port}")])
            .args(["--set", &format!("sinks.file.path={}", log.display())])
            .args(["--set", &format!("sinks.data_dir={}", dir.path().join("buffers").display())])
            .args(["--set", "sinks.elasticsearch.enabled=true"])
            .args(["--set", &format!("sinks.elasticsearch.endpoint=http://127.0.0.1:{dead}")])
            .args(["--set", "sinks.kafka.enabled=true"])
            .args(["--set", &format!("sinks.kafka.brokers=127.0.0.1:{dead}")]),
    );
    let up = wait_for(Duration::from_secs(60), || http_get(addr, "/metrics").ok().filter(|(s, _)| *s == 200));
    assert!(up.is_some(), "agent never served metrics");
    // Metrics are served before the sensor has attached its hooks (seconds later on a busy
    // machine): an exec each round until one is seen.
    let written = wait_for(Duration::from_secs(60), || {
        let marker = std::process::Command::new("/bin/true").status().ok()?;
        assert!(marker.success());
        std::fs::read_to_string(&log).ok().filter(|t| t.contains("process_exec")).map(|_| ())
    });
    // A sink says "starting" until its first attempt has failed (librdkafka's metadata
    // request takes seconds to): the status is read until both say what they are doing.
    let socket = dir.path().join("nj.sock");
    let mut v = serde_json::Value::Null;
    let said = wait_for(Duration::from_secs(60), || {
        let status = nightjar()
            .args(["status", "--json", "--set", &format!("control.socket={}", socket.display())])
            .output()
            .ok()?;
        v = serde_json::from_slice(&status.stdout).unwrap_or_default();
        ["elasticsearch", "kafka"]
            .iter()
            .all(|sink| {
                v["pipeline"]["sinks"][sink]["state"]
                    .as_str()
                    .is_some_and(|st| st.contains("retrying") || st.contains("degraded"))
            })
            .then_some(())
    });
    let out = agent.terminate();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(written.is_some(), "the file sink wrote no process_exec; stderr: {stderr}");
    assert!(out.status.success(), "agent exit {}: {stderr}", out.status);
    assert!(said.is_some(), "the remote sinks never said they retry: {v}");
    for sink in ["elasticsearch", "kafka"] {
        assert_eq!(v["pipeline"]["sinks"][sink]["buffer"]["type"], "disk", "{v}");
    }
    assert!(stderr.contains(&format!("cannot reach http://127.0.0.1:{dead}/")), "{stderr}");
    assert!(stderr.contains(&format!("sink kafka: cannot reach brokers 127.0.0.1:{dead}")), "{stderr}");
    assert!(!stderr.contains("sink disabled"), "a server that is down disables nothing: {stderr}");
}
