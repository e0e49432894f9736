//! Tetragon's own `tetra` CLI against the agent's gRPC API: status, version, tracing
//! policies (list, add, delete) and a live `getevents -o compact` with filters.
use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use crate::common::*;

fn tetra_cmd(tetra: &std::path::Path, addr: &str) -> Command {
    let mut c = Command::new(tetra);
    c.args(["--server-address", addr]).stdin(Stdio::null());
    c
}

/// Lines a `tetra getevents` prints, read in the background.
fn stream(mut cmd: Command) -> (Agent, mpsc::Receiver<String>) {
    let mut child = Agent::spawn(&mut cmd);
    let out = child.0.as_mut().unwrap().stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

#[test]
fn tetra_status_policies_and_live_events() {
    let tetra = match tetra() {
        Ok(t) => t,
        Err(why) => {
            eprintln!("tetra not present ({why}): the gRPC API was not tested with Tetragon's client");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let api = format!("127.0.0.1:{}", free_port());
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let _agent = Agent::spawn(
        agent_run(dir.path())
            .args(["--set", &format!("metrics.listen=127.0.0.1:{port}")])
            .args(["--set", &format!("server.address={api}")])
            .args(["--set", &format!("sinks.file.path={}", dir.path().join("events.log").display())])
            .args(["--set", "sinks.stdout.enabled=false"]),
    );
    let up = wait_for(Duration::from_secs(60), || http_get(addr, "/healthz").ok().filter(|(s, _)| *s == 200));
    assert!(up.is_some(), "agent never became healthy");

    let out = run_ok(tetra_cmd(&tetra, &api).arg("status"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Health Status: running"), "{out:?}");
    let out = run_ok(tetra_cmd(&tetra, &api).args(["tracingpolicy", "list"]));
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(list.contains("monitor-sensitive-files"), "{list}");

    let policy = dir.path().join("p.yaml");
    std::fs::write(
        &policy,
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: api-tetra-added\nspec:\n  tracepoints:\n  - subsystem: syscalls\n    event: sys_enter_getpgid\n",
    )
    .unwrap();
    run_ok(tetra_cmd(&tetra, &api).args(["tracingpolicy", "add"]).arg(&policy));
    let out = run_ok(tetra_cmd(&tetra, &api).args(["tracingpolicy", "list"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("api-tetra-added"), "{out:?}");
    run_ok(tetra_cmd(&tetra, &api).args(["tracingpolicy", "delete", "api-tetra-added"]));
    let out = run_ok(tetra_cmd(&tetra, &api).args(["tracingpolicy", "list"]));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("api-tetra-added"), "{out:?}");

    // Live: the allow list tetra builds from --process, and one from --namespace that no
    // host process matches.
    let mut matching = tetra_cmd(&tetra, &api);
    matching.args(["getevents", "-o", "compact", "--color", "never", "--process", "/cat$"]);
    let (_m, lines) = stream(matching);
    let mut none = tetra_cmd(&tetra, &api);
    none.args(["getevents", "-o", "compact", "--namespace", "nope", "--process", "/cat$"]);
    let (_n, no_lines) = stream(none);
    std::thread::sleep(Duration::from_secs(1));
    let found = wait_for(Duration::from_secs(20), || {
        let _ = Command::new("/bin/cat").arg("/etc/shadow").output();
        lines.try_iter().find(|l| l.contains("/usr/bin/cat"))
    });
    let line = found.expect("tetra getevents printed no line of cat");
    assert!(
        line.starts_with("🚀 process ") || line.starts_with("💥 exit ") || line.starts_with("❓ syscall "),
        "{line}"
    );
    assert!(no_lines.try_iter().next().is_none(), "the --namespace filter let a host event through");
}

/// `server.address: unix:///path`: the socket is the owner's only (0600) and tetra talks
/// to it (`--server-address unix://...`). No sensor: this needs no kernel.
#[test]
fn tetra_over_the_unix_socket() {
    let tetra = match tetra() {
        Ok(t) => t,
        Err(why) => {
            eprintln!("tetra not present ({why}): the gRPC API's unix socket was not tested with Tetragon's client");
            return;
        }
    };
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("api/tetragon.sock");
    let addr = format!("unix://{}", sock.display());
    let _agent = Agent::spawn(
        nightjar()
            .arg("run")
            .args(["--set", "sensor.enabled=false"])
            .args(["--set", &format!("control.socket={}", dir.path().join("nj.sock").display())])
            .args(["--set", &format!("metrics.listen=127.0.0.1:{}", free_port())])
            .args(["--set", &format!("server.address={addr}")])
            .args(["--set", &format!("sinks.data_dir={}", dir.path().join("buf").display())])
            .args(["--set", "sinks.stdout.enabled=false"])
            .args(["--set", &format!("sinks.file.path={}", dir.path().join("events.log").display())]),
    );
    let status = wait_for(Duration::from_secs(30), || {
        let out = tetra_cmd(&tetra, &addr).arg("status").output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("Health Status: running").then_some(text)
    });
    assert!(status.is_some(), "tetra status never said running over {addr}");
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", sock.display());
    let out = run_ok(tetra_cmd(&tetra, &addr).args(["tracingpolicy", "list"]));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ID "), "{out:?}");
}
