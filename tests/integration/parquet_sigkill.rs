//! SIGKILL during Parquet writing: the real agent, real exec events, killed mid-file.
//! What a reader sees must be only complete files; the partial one stays under its hidden
//! temporary name until the next start, which removes it (it has no footer, so its rows
//! cannot be recovered) and says so in its log. Rows count as delivered only once their
//! file is visible: the metric read just before the kill never exceeds what readers see.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::common::*;

const READBACK_PY: &str = include_str!("../../sinks/src/parquet/readback.py");

fn python() -> PathBuf {
    let p = std::env::var_os("NIGHTJAR_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/nightjar/venv/bin/python")
    });
    assert!(p.exists(), "{} is missing: run scripts/setup.sh (it installs pyarrow and duckdb)", p.display());
    p
}

/// (complete `*.parquet`, temporary `.part-*.parquet.tmp`) under `root`.
fn scan(root: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    fn walk(d: &Path, out: &mut (Vec<PathBuf>, Vec<PathBuf>)) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                walk(&p, out);
            } else if name.ends_with(".parquet.tmp") {
                out.1.push(p);
            } else if name.ends_with(".parquet") {
                out.0.push(p);
            }
        }
    }
    let mut out = (Vec::new(), Vec::new());
    walk(root, &mut out);
    out
}

fn agent(dir: &Path, pq: &Path, port: u16) -> Agent {
    Agent::spawn(
        nightjar()
            .arg("run")
            .args(["--set", &format!("metrics.listen=127.0.0.1:{port}")])
            // Its own control socket, and no policies: other tests' agents run alongside.
            .args(["--set", &format!("control.socket={}", dir.join("nj.sock").display())])
            .args(["--set", "sensor.policies_dir="])
            .args(["--set", "sinks.stdout.enabled=false", "--set", "sinks.file.enabled=false"])
            .args(["--set", "sinks.parquet.enabled=true"])
            .args(["--set", &format!("sinks.parquet.path={}", pq.display())])
            .args(["--set", "sinks.parquet.max_file_size=65536", "--set", "sinks.parquet.row_group_rows=200"])
            .args(["--set", "sinks.parquet.batch.max_age_ms=50"]),
    )
}

fn wait_healthy(port: u16) {
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let up = wait_for(Duration::from_secs(60), || http_get(addr, "/healthz").ok().filter(|(s, _)| *s == 200));
    assert!(up.is_some(), "agent never became healthy");
}

/// The exec loop, killed when dropped.
struct Loop(Child);
impl Drop for Loop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn readback(root: &Path) -> serde_json::Value {
    let out = Command::new(python()).arg("-c").arg(READBACK_PY).arg(root).output().expect("run python");
    assert!(
        out.status.success(),
        "pyarrow/duckdb could not read the dataset: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn sigkill_mid_file_leaves_only_complete_files_and_next_start_removes_the_partial_one() {
    let dir = tempfile::tempdir().unwrap();
    let pq = dir.path().join("pq");
    let port = free_port();
    let mut a = agent(dir.path(), &pq, port);
    wait_healthy(port);
    let exec_loop = Loop(
        Command::new("/bin/sh")
            .args(["-c", "while :; do /bin/true; done"])
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn exec loop"),
    );
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let delivered = || -> u64 {
        let (_, body) = http_get(addr, "/metrics").unwrap_or_default();
        body.lines()
            .filter(|l| l.starts_with("nightjar_sink_events_total{"))
            .filter(|l| l.contains("sink=\"parquet\"") && l.contains("outcome=\"delivered\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    // The metric is read first, then the agent is stopped (SIGSTOP: it can neither finish
    // nor start a file meanwhile), then the files are looked at; if they are not yet what
    // the test needs, the agent goes on. A file completed after the metric was read only
    // adds visible rows. (Without the stop, a file finished between the look and the kill
    // left no partial one: seen once under load.)
    let pid = a.0.as_ref().expect("agent").id() as libc::pid_t;
    let ready = wait_for(Duration::from_secs(60), || {
        let counted = delivered();
        // SAFETY: signals the agent this test started, by its pid.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        let (done, tmp) = scan(&pq);
        let ok = done.len() >= 2 && !tmp.is_empty() && counted > 0;
        if !ok {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGCONT) };
        }
        ok.then_some(counted)
    });
    let child = a.0.as_mut().expect("agent");
    child.kill().expect("SIGKILL the agent"); // Child::kill is SIGKILL; a stopped process dies too
    let _ = child.wait();
    drop(exec_loop);
    let Some(counted) = ready else {
        panic!("the agent never had two complete files and one in progress: {:?}", scan(&pq))
    };

    let (done, partial) = scan(&pq);
    assert!(!partial.is_empty(), "the file being written must stay under its temporary name");
    for p in &partial {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(".part-"), "temporary files are hidden: {name}");
    }
    let got = readback(&pq);
    let rows = got["rows"].as_u64().unwrap();
    assert!(rows > 0);
    assert!(
        counted <= rows,
        "the delivered metric said {counted} rows while readers see {rows}: rows still in memory were counted"
    );
    eprintln!("parquet sigkill: {counted} counted delivered before the kill, {rows} visible after it");
    assert_eq!(got["duck_rows"].as_u64(), Some(rows), "duckdb and pyarrow agree");
    assert_eq!(got["files"].as_array().unwrap().len(), done.len(), "readers see exactly the complete files");

    // Next start: the partial file is removed (cleaned, not recovered) and logged.
    let a2 = agent(dir.path(), &pq, port);
    wait_healthy(port);
    let out = a2.terminate();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "second run: {stderr}");
    for p in &partial {
        assert!(!p.exists(), "{} must be removed at start", p.display());
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(stderr.contains("removed a partial file") && stderr.contains(&name), "not logged: {stderr}");
    }
    let (_, tmp_after) = scan(&pq);
    assert!(tmp_after.is_empty(), "{tmp_after:?}");
    let again = readback(&pq);
    assert!(again["rows"].as_u64().unwrap() >= rows, "complete files are kept");
}
