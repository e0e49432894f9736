//! Shutdown and a stdout nobody reads, with exact counts (issue 20): the agent says what
//! each sink delivered, dropped and left undelivered, and exits non-zero when anything it
//! accepted was neither delivered nor kept on disk.
use std::{process::Stdio, time::Duration};

use crate::{
    common::*,
    tetragon_tail::{start_with, wait_all, write_lines},
};

/// `s` without ANSI escape sequences.
fn plain(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The number after `key=` in the log line of `sink` that contains `what`.
fn field(stderr: &str, sink: &str, what: &str, key: &str) -> Option<u64> {
    let stderr = plain(stderr);
    let line = stderr.lines().find(|l| {
        l.contains(what) && (l.contains(&format!("sink={sink} ")) || l.contains(&format!("sink=\"{sink}\"")))
    })?;
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    line[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// `n` tailed lines with Elasticsearch at a port nobody listens on (buffer `buffer`), SIGTERM
/// once the file sink has them all: the agent's exit and its log.
fn shutdown_with_es_down(n: usize, buffer: &str) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let (log, sink) = (dir.path().join("tetragon.log"), dir.path().join("out.log"));
    write_lines(&log, 0, n);
    let dead = free_port();
    let endpoint = format!("sinks.elasticsearch.endpoint=http://127.0.0.1:{dead}");
    let buffer = format!("sinks.elasticsearch.buffer.type={buffer}");
    let sets = ["sinks.elasticsearch.enabled=true", &endpoint, &buffer, "pipeline.shutdown_timeout_secs=2"];
    let (agent, _) = start_with(dir.path(), &log, &sink, &sets);
    wait_all(&sink, n);
    let out = agent.terminate();
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn shutdown_during_an_outage_reports_exact_undelivered_counts_and_exits_non_zero() {
    const N: usize = 2000;
    let (status, stderr) = shutdown_with_es_down(N, "memory");
    assert_eq!(status.code(), Some(1), "accepted events were lost: exit 1\n{stderr}");
    let lost = "sink finished with events accepted and not delivered";
    assert_eq!(field(&stderr, "elasticsearch", lost, "undelivered"), Some(N as u64), "{stderr}");
    assert_eq!(field(&stderr, "elasticsearch", lost, "delivered"), Some(0), "{stderr}");
    assert_eq!(field(&stderr, "file", "sink finished", "delivered"), Some(N as u64), "{stderr}");
}

#[test]
fn a_disk_buffer_keeps_what_an_outage_left_and_the_exit_is_clean() {
    const N: usize = 1500;
    let (status, stderr) = shutdown_with_es_down(N, "disk");
    assert!(status.success(), "everything is on disk: exit 0\n{stderr}");
    assert_eq!(field(&stderr, "elasticsearch", "sink finished", "persisted"), Some(N as u64), "{stderr}");
}

#[test]
fn stdout_nobody_reads_blocks_neither_the_file_sink_nor_shutdown() {
    const N: usize = 50_000;
    let dir = tempfile::tempdir().unwrap();
    let (log, sink) = (dir.path().join("tetragon.log"), dir.path().join("out.log"));
    write_lines(&log, 0, N);
    let port = free_port();
    // stdout is a pipe this test never reads: it fills after a few hundred lines.
    let mut child = nightjar()
        .arg("run")
        .args(["--set", "sensor.enabled=false", "--set", "sources.tetragon_file.enabled=true"])
        .args(["--set", &format!("sources.tetragon_file.path={}", log.display())])
        .args(["--set", &format!("sources.tetragon_file.checkpoint={}", dir.path().join("cp").display())])
        .args(["--set", &format!("sinks.file.path={}", sink.display()), "--set", "sinks.file.max_size=0"])
        .args(["--set", "sinks.stdout.enabled=true", "--set", "sinks.stdout.format=json"])
        .args(["--set", &format!("control.socket={}", dir.path().join("nj.sock").display())])
        .args(["--set", &format!("metrics.listen=127.0.0.1:{port}")])
        .args(["--set", &format!("sinks.data_dir={}", dir.path().join("b").display())])
        .args(["--set", "pipeline.shutdown_timeout_secs=3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _unread = child.stdout.take();
    let got = wait_for(Duration::from_secs(60), || (crate::tetragon_tail::delivered(&sink).len() >= N).then_some(()));
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let exited = wait_for(Duration::from_secs(20), || child.try_wait().ok().flatten());
    if exited.is_none() {
        let _ = child.kill();
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(got.is_some(), "the file sink got {} of {N}: {stderr}", crate::tetragon_tail::delivered(&sink).len());
    let status = exited.unwrap_or_else(|| panic!("SIGTERM did not stop the agent within 20 s: {stderr}"));
    assert_eq!(status.code(), Some(1), "stdout events were lost: exit 1\n{stderr}");
    let lost = "sink finished with events accepted and not delivered";
    let n = |k| field(&stderr, "stdout", lost, k).unwrap_or_else(|| panic!("no {k} for stdout: {stderr}"));
    let (delivered, dropped, undelivered) = (n("delivered"), n("dropped"), n("undelivered"));
    assert_eq!(delivered + dropped + undelivered, N as u64, "every event counted once: {stderr}");
    assert!(dropped > 0 && undelivered > 0, "{stderr}");
    assert_eq!(field(&stderr, "file", "sink finished", "delivered"), Some(N as u64), "{stderr}");
}
