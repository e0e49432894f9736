//! The main job as an operator meets it: `nightjar run` on the default config (with
//! test-local paths and ports), `cat /etc/shadow` in another shell shows a compact line on
//! the agent's stdout and lands in the JSON file; `getevents` streams live with filters;
//! `status` shows the kernel, the hooks serving each policy and the queues.
use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use crate::common::*;

#[test]
fn cat_shadow_shows_a_compact_line_lands_in_the_file_and_streams_to_getevents() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("nightjar.log");
    let socket = dir.path().join("nj.sock");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut cmd = agent_run(dir.path());
    cmd.args(["--set", &format!("metrics.listen=127.0.0.1:{port}")])
        .args(["--set", &format!("sinks.file.path={}", log.display())]);
    let mut agent = Agent::spawn(&mut cmd);
    // The agent's stdout (compact view), read line by line in the background.
    let stdout = agent.0.as_mut().unwrap().stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let up = wait_for(Duration::from_secs(60), || http_get(addr, "/healthz").ok().filter(|(s, _)| *s == 200));
    assert!(up.is_some(), "agent never became healthy");

    // A live getevents with filters, started before the event: `cat /etc/shadow` until it
    // has streamed one (its subscription takes a moment on a busy machine).
    let mut ge = nightjar()
        .args(["getevents", "-o", "json", "--event-types", "process_kprobe", "--process", "/cat$"])
        .args(["--set", &format!("control.socket={}", socket.display())])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ge_stdout = ge.stdout.take().unwrap();
    let (ge_tx, ge_rx) = mpsc::channel::<String>();
    let ge_reader = std::thread::spawn(move || {
        for l in BufReader::new(ge_stdout).lines().map_while(Result::ok) {
            let _ = ge_tx.send(l);
        }
    });
    let mut streamed: Vec<String> = Vec::new();
    let shadow = |l: &String| {
        let e: serde_json::Value = serde_json::from_str(l).unwrap();
        e["process_kprobe"]["args"][0]["file_arg"]["path"] == "/etc/shadow"
    };
    let seen = wait_for(Duration::from_secs(30), || {
        assert!(Command::new("/bin/cat").arg("/etc/shadow").output().unwrap().status.success());
        std::thread::sleep(Duration::from_millis(200));
        streamed.extend(ge_rx.try_iter());
        streamed.iter().any(shadow).then_some(())
    });
    assert!(seen.is_some(), "getevents streamed no /etc/shadow open: {streamed:?}");
    assert!(Command::new("/bin/cat").arg("/etc/hostname").output().unwrap().status.success());

    // tetra's line for a security_file_open kprobe: `❓ syscall NODE BINARY FUNCTION`, then
    // root's `🛑 CAP_SYS_ADMIN` trailer.
    let want = " /usr/bin/cat security_file_open";
    let line =
        wait_for(Duration::from_secs(20), || rx.try_iter().find(|l| l.starts_with("❓ syscall ") && l.contains(want)));
    assert!(line.is_some(), "no compact line with {want:?} on the agent's stdout");

    // status, while it runs
    let st = run_ok(nightjar().arg("status").args(["--set", &format!("control.socket={}", socket.display())]));
    let text = String::from_utf8_lossy(&st.stdout);
    for want in [
        "agent:         running",
        "monitor-sensitive-files",
        "security_file_open served by tracepoints syscalls:{sys_exit_openat",
        "tracepoint:sched:sched_process_exec",
        "file: ",
        "missed events: 0",
    ] {
        assert!(text.contains(want), "status lacks {want:?}:\n{text}");
    }
    let js =
        run_ok(nightjar().args(["status", "--json"]).args(["--set", &format!("control.socket={}", socket.display())]));
    let v: serde_json::Value = serde_json::from_slice(&js.stdout).unwrap();
    assert_eq!(v["kernel"]["btf"], true);
    assert!(v["pipeline"]["events_total"].as_u64().unwrap() > 0);

    // SAFETY: kill(2) on the getevents child we spawned.
    unsafe { libc::kill(ge.id() as i32, libc::SIGTERM) };
    let _ = ge.wait();
    let _ = ge_reader.join();
    streamed.extend(ge_rx.try_iter());
    let evs: Vec<serde_json::Value> = streamed.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(evs.iter().all(|e| e.get("process_kprobe").is_some()), "filters applied: {streamed:?}");

    let out = agent.terminate();
    assert!(out.status.success());
    let file = std::fs::read_to_string(&log).unwrap();
    let in_file = file.lines().any(|l| {
        let e: serde_json::Value = serde_json::from_str(l).unwrap();
        e["process_kprobe"]["args"][0]["file_arg"]["path"] == "/etc/shadow"
            && e["process_kprobe"]["process"]["binary"] == "/usr/bin/cat"
    });
    assert!(in_file, "the event is in the JSON file");
    assert!(!file.contains("\"/etc/hostname\"}}"), "hostname reads are not policy events");
}
