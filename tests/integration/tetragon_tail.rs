//! Source `tetragon_file`: a Tetragon-format export written, rotated (rename + create, also
//! while the agent is down), copy-truncated, with the agent restarted twice — the sink
//! receives every line exactly once.
use std::{collections::HashMap, io::Write, path::Path, time::Duration};

use base64::Engine;

use crate::common::*;

pub const NODE: &str = "tetragon-tail-test";

pub fn write_lines(log: &Path, from: usize, n: usize) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    write_lines_to(&mut f, from, n);
}

/// Tetragon-format exec lines `from..from+n` (pid = i) into an open file.
pub fn write_lines_to(f: &mut std::fs::File, from: usize, n: usize) {
    for i in from..from + n {
        let id = base64::engine::general_purpose::STANDARD.encode(format!("{NODE}:{i}:{i}"));
        writeln!(
            f,
            r#"{{"process_exec":{{"process":{{"exec_id":"{id}","pid":{i},"uid":0,"binary":"/usr/bin/tail-{i}","arguments":"line {i}","flags":"execve"}}}},"node_name":"{NODE}","time":"2026-01-01T00:00:00.{i:09}Z"}}"#
        )
        .unwrap();
    }
}

/// Times each tailed line (by pid) reached the sink so far.
pub fn delivered(sink: &Path) -> HashMap<u64, usize> {
    let mut out = HashMap::new();
    for l in std::fs::read_to_string(sink).unwrap_or_default().lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else { continue };
        if v["node_name"] == NODE {
            if let Some(pid) = v["process_exec"]["process"]["pid"].as_u64() {
                *out.entry(pid).or_default() += 1;
            }
        }
    }
    out
}

fn start(dir: &Path, log: &Path, sink: &Path) -> Agent {
    start_with(dir, log, sink, &[]).0
}

/// The agent tailing `log` into the file sink `sink`, with more `--set KEY=VALUE`s;
/// returns it and its metrics port once it is up.
pub fn start_with(dir: &Path, log: &Path, sink: &Path, extra: &[&str]) -> (Agent, u16) {
    let port = free_port();
    let mut cmd = nightjar();
    let agent = Agent::spawn(
        cmd.arg("run")
            .args(["--set", "sensor.enabled=false"])
            .args(["--set", "sources.tetragon_file.enabled=true"])
            .args(["--set", &format!("sources.tetragon_file.path={}", log.display())])
            .args(["--set", &format!("sources.tetragon_file.checkpoint={}", dir.join("cp").display())])
            .args(["--set", "sources.tetragon_file.poll_interval_ms=50"])
            .args(["--set", &format!("sinks.file.path={}", sink.display())])
            .args(["--set", "sinks.file.max_size=0"])
            .args(["--set", "sinks.stdout.enabled=false"])
            .args(["--set", &format!("control.socket={}", dir.join("nj.sock").display())])
            .args(["--set", &format!("metrics.listen=127.0.0.1:{port}")])
            .args(["--set", &format!("sinks.data_dir={}", dir.join("buffers").display())])
            .args(extra.iter().flat_map(|e| ["--set", e])),
    );
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let up = wait_for(Duration::from_secs(30), || http_get(addr, "/metrics").ok().filter(|(s, _)| *s == 200));
    assert!(up.is_some(), "agent never served metrics");
    (agent, port)
}

pub fn wait_all(sink: &Path, n: usize) -> HashMap<u64, usize> {
    wait_for(Duration::from_secs(30), || {
        let d = delivered(sink);
        (d.len() >= n).then_some(d)
    })
    .unwrap_or_else(|| panic!("only {} of {n} lines reached the sink", delivered(sink).len()))
}

/// Tailed events are exported as received: this host's node name and user names are not
/// added to events that came from another exporter (enrichment is off for the source).
fn exported_as_received(log: &Path, sink: &Path, foreign: &str) {
    let parse = |l: &str| serde_json::from_str::<serde_json::Value>(l).unwrap();
    let out: Vec<serde_json::Value> =
        std::fs::read_to_string(sink).unwrap().lines().filter(|l| !l.trim().is_empty()).map(parse).collect();
    let find = |binary: &str| {
        out.iter().find(|v| v["process_exec"]["process"]["binary"] == binary).cloned().unwrap_or_default()
    };
    assert_eq!(find("/usr/bin/elsewhere"), parse(foreign), "the line without node_name changed on the way");
    let first = std::fs::read_to_string(log).unwrap().lines().nth(1).map(parse).unwrap();
    assert_eq!(find("/usr/bin/tail-0"), first, "a tailed line changed on the way");
}

fn stop(agent: Agent) {
    let out = agent.terminate();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn every_line_exactly_once_across_rotations_truncation_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tetragon.log");
    let sink = dir.path().join("out.log");
    // A line without node_name, from a host whose users this host does not know.
    let foreign = r#"{"process_exec":{"process":{"exec_id":"b3RoZXI6MTox","pid":99999,"uid":0,"binary":"/usr/bin/elsewhere","flags":"execve"}},"time":"2026-01-01T00:00:00Z"}"#;
    std::fs::write(&log, format!("{foreign}\n")).unwrap();
    write_lines(&log, 0, 100); // A
    let agent = start(dir.path(), &log, &sink);
    wait_all(&sink, 100);
    exported_as_received(&log, &sink, foreign);

    write_lines(&log, 100, 100); // B, then rename-rotate, then C in the new file
    std::fs::rename(&log, dir.path().join("tetragon.log.1")).unwrap();
    write_lines(&log, 200, 100);
    wait_all(&sink, 300);

    stop(agent); // restart 1, with a rotation while the agent is down
    write_lines(&log, 300, 100); // D into the file the checkpoint names
    std::fs::rename(dir.path().join("tetragon.log.1"), dir.path().join("tetragon.log.2")).unwrap();
    std::fs::rename(&log, dir.path().join("tetragon.log.1")).unwrap();
    write_lines(&log, 400, 100); // E into a new file
    let agent = start(dir.path(), &log, &sink);
    wait_all(&sink, 500);

    // copytruncate: everything so far has been read; copy, truncate, write F.
    std::fs::copy(&log, dir.path().join("tetragon.log.copy")).unwrap();
    std::fs::OpenOptions::new().write(true).truncate(true).open(&log).unwrap();
    write_lines(&log, 500, 50); // F, shorter than what was there: the shrink is seen
    wait_all(&sink, 550);

    stop(agent); // restart 2
    write_lines(&log, 550, 100); // G
    let agent = start(dir.path(), &log, &sink);
    let d = wait_all(&sink, 650);
    stop(agent);

    let d2 = delivered(&sink);
    assert_eq!(d2.len(), 650, "distinct lines delivered");
    let dups: Vec<_> = d2.iter().filter(|(_, n)| **n != 1).collect();
    assert!(dups.is_empty(), "lines delivered more than once: {dups:?}");
    assert_eq!(d.len(), 650);
}
