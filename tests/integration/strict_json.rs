//! Every line of a live export parses strictly as Tetragon's `tetragon.GetEventsResponse`
//! (Google's protobuf runtime, unknown fields refused, against api/proto), with every event
//! kind the sensor emits on this host: exec, exit, kprobe, tracepoint, LSM. The .proto
//! files themselves are checked against the descriptors compiled into tetra, where present.
use std::{path::PathBuf, process::Command, time::Duration};

use crate::common::*;

fn python() -> String {
    std::env::var("NIGHTJAR_PYTHON").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cache/nightjar/venv/bin/python")
    })
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/integration/strict_json.py")
}

fn proto_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("api/proto")
}

/// A policy with a tracepoint and an LSM hook, both matching only what the test does.
fn policy(dir: &std::path::Path) -> String {
    format!(
        r#"apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: api-strict-json
spec:
  tracepoints:
  - subsystem: "syscalls"
    event: "sys_enter_getpgid"
  lsmhooks:
  - hook: "file_open"
    args:
    - index: 0
      type: "file"
    selectors:
    - matchArgs:
      - index: 0
        operator: "Prefix"
        values:
        - "{}/"
"#,
        dir.display()
    )
}

#[test]
fn every_line_of_a_live_export_parses_strictly() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut cmd = agent_run(dir.path());
    std::fs::write(dir.path().join("observe-only-policies/api-strict-json.yaml"), policy(dir.path())).unwrap();
    cmd.args(["--set", &format!("metrics.listen=127.0.0.1:{port}")])
        .args(["--set", &format!("sinks.file.path={}", log.display())])
        .args(["--set", "sinks.stdout.enabled=false"])
        .args(["--set", "pipeline.dedup.enabled=false"]);
    let agent = Agent::spawn(&mut cmd);
    let up = wait_for(Duration::from_secs(60), || http_get(addr, "/healthz").ok().filter(|(s, _)| *s == 200));
    assert!(up.is_some(), "agent never became healthy");
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "x").unwrap();
    assert!(Command::new("/bin/cat").arg("/etc/shadow").output().unwrap().status.success());
    assert!(Command::new("/bin/cat").arg(&secret).output().unwrap().status.success());
    let _ = Command::new("/bin/sh").args(["-c", "exit 3"]).status();
    // getpgid(2): python's os.getpgid.
    let _ = Command::new(python()).args(["-c", "import os; os.getpgid(0)"]).status();
    let kinds = ["process_exec", "process_exit", "process_kprobe", "process_tracepoint", "process_lsm"];
    let all_seen = wait_for(Duration::from_secs(20), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        kinds.iter().all(|k| text.contains(&format!("{{\"{k}\":"))).then_some(())
    });
    let out = agent.terminate();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        all_seen.is_some(),
        "not every kind was exported: {:?}",
        kinds.iter().filter(|k| !text.contains(*k)).collect::<Vec<_>>()
    );

    let out =
        Command::new(python()).arg(script()).arg("parse").arg(proto_dir()).arg(&log).output().expect("run python");
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "strict parse failed: {summary}{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&summary).unwrap();
    for k in kinds {
        assert!(v["kinds"][k].as_u64().unwrap_or(0) > 0, "no {k} parsed: {summary}");
    }
    assert_eq!(v["lines"].as_u64(), Some(text.lines().filter(|l| !l.trim().is_empty()).count() as u64));
}

#[test]
fn the_proto_is_tetragons_wire_contract() {
    let tetra = match tetra() {
        Ok(t) => t,
        Err(why) => {
            eprintln!("tetra not present ({why}): the .proto was not compared with Tetragon's descriptors");
            return;
        }
    };
    let out = Command::new(python()).arg(script()).arg("contract").arg(proto_dir()).arg(&tetra).output().unwrap();
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{summary}{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert!(v["checked"].as_u64().unwrap_or(0) >= 90, "{summary}");
}
