//! The `tetragon_file` source under rotation storms and hostile lines: every line of the
//! export arrives exactly once, counted exactly (each of these lost lines before).
use std::{io::Write, path::Path, time::Duration};

use crate::{
    common::*,
    tetragon_tail::{delivered, start_with, wait_all, write_lines, write_lines_to},
};

fn stop(agent: Agent) -> String {
    let out = agent.terminate();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

fn exactly_once(sink: &Path, n: usize) {
    let d = wait_all(sink, n);
    assert_eq!(d.len(), n, "distinct lines");
    let dups: Vec<_> = d.iter().filter(|(_, c)| **c != 1).collect();
    assert!(dups.is_empty(), "delivered more than once: {dups:?}");
    assert_eq!((0..n as u64).filter(|i| !d.contains_key(i)).count(), 0);
}

/// A poll interval far longer than the storm: only inotify and the inode scan can help.
const SLOW_POLL: &str = "sources.tetragon_file.poll_interval_ms=5000";

#[test]
fn two_rotations_within_one_poll_interval_lose_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let (log, sink) = (dir.path().join("tetragon.log"), dir.path().join("out.log"));
    write_lines(&log, 0, 1000);
    let (agent, _) = start_with(dir.path(), &log, &sink, &[SLOW_POLL]);
    wait_all(&sink, 1000);
    // Rotate twice in a row: the middle file exists for microseconds under the live name.
    std::fs::rename(&log, dir.path().join("tetragon.log.1")).unwrap();
    write_lines(&log, 1000, 1000);
    std::fs::rename(dir.path().join("tetragon.log.1"), dir.path().join("tetragon.log.2")).unwrap();
    std::fs::rename(&log, dir.path().join("tetragon.log.1")).unwrap();
    write_lines(&log, 2000, 1000);
    exactly_once(&sink, 3000);
    stop(agent);
}

#[test]
fn a_writer_that_keeps_writing_to_the_renamed_file_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (log, sink) = (dir.path().join("tetragon.log"), dir.path().join("out.log"));
    let mut old = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
    write_lines_to(&mut old, 0, 100);
    let (agent, _) = start_with(dir.path(), &log, &sink, &["sources.tetragon_file.poll_interval_ms=50"]);
    wait_all(&sink, 100);
    std::fs::rename(&log, dir.path().join("tetragon.log.1")).unwrap();
    write_lines(&log, 200, 100); // the new file
                                 // The writer has not reopened yet: a second more into the old file, by its descriptor.
    for i in 0..10 {
        write_lines_to(&mut old, 100 + i * 10, 10);
        std::thread::sleep(Duration::from_millis(100));
    }
    exactly_once(&sink, 300);
    stop(agent);
}

#[test]
fn a_copytruncate_refilled_past_the_old_offset_within_one_poll_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let (log, sink) = (dir.path().join("tetragon.log"), dir.path().join("out.log"));
    write_lines(&log, 0, 100);
    let (agent, _) = start_with(dir.path(), &log, &sink, &[SLOW_POLL]);
    wait_all(&sink, 100);
    std::fs::copy(&log, dir.path().join("tetragon.log.1")).unwrap();
    let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(&log).unwrap();
    write_lines_to(&mut f, 100, 300); // three times the old size, at once
    drop(f);
    exactly_once(&sink, 400);
    let stderr = stop(agent);
    assert!(stderr.contains("truncated (copytruncate)"), "{stderr}");
}

#[test]
fn an_over_long_line_is_skipped_whole_and_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let (log, sink) = (dir.path().join("tetragon.log"), dir.path().join("out.log"));
    write_lines(&log, 0, 10);
    {
        // 3 MiB of junk ending in a valid event line (pid 999): its tail must not be parsed.
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(&vec![b'x'; 3 << 20]).unwrap();
        let mut tail = Vec::new();
        let mut t = tempfile::tempfile().unwrap();
        write_lines_to(&mut t, 999, 1);
        std::io::Seek::rewind(&mut t).unwrap();
        std::io::Read::read_to_end(&mut t, &mut tail).unwrap();
        f.write_all(&tail).unwrap();
    }
    write_lines(&log, 10, 10);
    let (agent, port) = start_with(dir.path(), &log, &sink, &["sources.tetragon_file.max_line_bytes=65536"]);
    let d = wait_all(&sink, 20);
    assert!(!d.contains_key(&999), "the tail of an over-long line was parsed as an event");
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let (_, metrics) = http_get(addr, "/metrics").unwrap();
    let long: Vec<&str> = metrics.lines().filter(|l| l.contains("reason=\"line_too_long\"")).collect();
    assert_eq!(long.len(), 1, "{metrics}");
    assert!(long[0].ends_with(" 1"), "counted once: {long:?}");
    stop(agent);
    assert_eq!(delivered(&sink).len(), 20);
}
