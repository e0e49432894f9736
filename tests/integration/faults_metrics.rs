//! Slowloris on the metrics endpoint: 1,100 half-open connections exhausted the agent's
//! descriptors, `/healthz` stopped answering and the file sink lost events when it could
//! not open its rotated file. Now the connections are capped and cut off, the soft limit is
//! raised to the hard one at start, and every event still arrives.
use std::{
    io::{Read, Write},
    net::TcpStream,
    os::unix::process::CommandExt,
    path::Path,
    time::Duration,
};

use crate::{common::*, faults_util::*};

const NODE: &str = "faults-metrics";
const N: usize = 3000;
const CONNECTIONS: usize = 1100;

fn write_lines(path: &Path, n: usize) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    for i in 0..n {
        writeln!(
            f,
            r#"{{"process_exec":{{"process":{{"exec_id":"{NODE}-{i}","pid":{i},"uid":0,"binary":"/usr/bin/slow-{i}","arguments":"line {i}","flags":"execve"}}}},"node_name":"{NODE}","time":"2026-01-01T00:00:00.{i:09}Z"}}"#
        )
        .unwrap();
    }
}

/// Distinct tailed lines in the sink's file and its rotated copies.
fn delivered(dir: &Path) -> usize {
    let mut pids = std::collections::HashSet::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if !e.file_name().to_string_lossy().starts_with("events.log") {
            continue;
        }
        for l in std::fs::read_to_string(e.path()).unwrap_or_default().lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else { continue };
            if v["node_name"] == NODE {
                pids.insert(v["process_exec"]["process"]["pid"].as_u64());
            }
        }
    }
    pids.len()
}

#[test]
fn slowloris_neither_starves_health_nor_the_file_sink() {
    raise_own_nofile(16_384);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("tetragon.log");
    std::fs::write(&input, "").unwrap();
    let (mut cmd, metrics) = agent_cmd(dir.path(), false);
    cmd.args(["--set", "sources.tetragon_file.enabled=true"])
        .args(["--set", &format!("sources.tetragon_file.path={}", input.display())])
        .args(["--set", &format!("sources.tetragon_file.checkpoint={}", dir.path().join("cp").display())])
        .args(["--set", "sources.tetragon_file.poll_interval_ms=50"])
        // Rotate every ~100 lines: each rotation opens a new file.
        .args(["--set", "sinks.file.max_size=30000", "--set", "sinks.file.max_backups=1000"])
        .args(["--set", "sinks.file.compress=false", "--set", "sinks.file.batch.max_events=50"]);
    // SAFETY: setrlimit(2) in the child between fork and exec, on its own limits only.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 256, rlim_max: 4096 };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let r = start(dir.path(), (cmd, metrics));
    // The agent raised its soft limit on descriptors to the hard one at start.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", r.pid())).unwrap();
    let open_files: Vec<&str> =
        limits.lines().find(|l| l.starts_with("Max open files")).unwrap_or_default().split_whitespace().collect();
    assert_eq!(open_files.get(3..5), Some(&["4096", "4096"][..]), "soft and hard limits of the agent: {limits}");

    let mut held = Vec::with_capacity(CONNECTIONS);
    for i in 0..CONNECTIONS {
        // A full accept backlog (an agent out of descriptors) shows as a connect timeout.
        let mut s = TcpStream::connect_timeout(&metrics, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connection {i} of {CONNECTIONS} to the metrics endpoint: {e}"));
        // Headers that never end.
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1\r\n").unwrap();
        held.push(s);
    }
    write_lines(&input, N);

    let healthy = wait_for(Duration::from_secs(20), || http_get(metrics, "/healthz").ok().filter(|(s, _)| *s == 200));
    assert!(healthy.is_some(), "/healthz did not answer during the flood");
    let fds = fd_count(r.pid());
    assert!(fds < 128 + 200, "the agent holds {fds} descriptors during the flood");
    let got = wait_for(Duration::from_secs(60), || Some(delivered(dir.path())).filter(|n| *n == N));
    assert_eq!(got, Some(N), "events in the file sink and its rotations: {}", delivered(dir.path()));
    assert!(dir.path().join("events.log.10").exists(), "the sink rotated (opened new files) during the flood");

    // Every half-open connection is closed by the agent (header timeout), none kept.
    let mut closed = 0;
    for s in &mut held {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut buf = Vec::new();
        match s.read_to_end(&mut buf) {
            Ok(_) => closed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
            Err(_) => {}
        }
    }
    assert_eq!(closed, CONNECTIONS, "half-open connections the agent closed");
    let out = r.agent.terminate();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("Too many open files"), "{stderr}");
}
