//! Policies through the running agent's control socket: 100 malformed files are each
//! refused with a located error while the agent keeps its earlier policies; policies are
//! added and deleted at runtime without a restart.
use std::{os::unix::process::ExitStatusExt, path::Path, process::Command, time::Duration};

use crate::common::*;

const SEED: &str = include_str!("../../config/policies/monitor-sensitive-files.yaml");
const MINERS: &str = include_str!("../../config/policies/block-cryptominers.yaml");

struct Running {
    agent: Agent,
    socket: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn start_agent() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let pdir = dir.path().join("policies");
    std::fs::create_dir(&pdir).unwrap();
    std::fs::write(pdir.join("monitor-sensitive-files.yaml"), SEED).unwrap();
    let socket = dir.path().join("nj.sock").display().to_string();
    let log = dir.path().join("events.log");
    let port = free_port();
    let agent = Agent::spawn(
        nightjar()
            .arg("run")
            .args(["--set", &format!("sensor.policies_dir={}", pdir.display())])
            .args(["--set", &format!("control.socket={socket}")])
            .args(["--set", &format!("metrics.listen=127.0.0.1:{port}")])
            .args(["--set", &format!("sinks.file.path={}", log.display())])
            .args(["--set", "sinks.stdout.enabled=false"]),
    );
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let up = wait_for(Duration::from_secs(60), || http_get(addr, "/healthz").ok().filter(|(s, _)| *s == 200));
    assert!(up.is_some(), "agent never became healthy");
    Running { agent, socket, log, _dir: dir }
}

fn policy_cmd(r: &Running, args: &[&str]) -> std::process::Output {
    nightjar().arg("policy").args(args).args(["--set", &format!("control.socket={}", r.socket)]).output().unwrap()
}

/// 100 malformed variants of a valid policy, each with the line its error must name.
fn malformed() -> Vec<(String, &'static str)> {
    let base = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: bad-N\nspec:\n  kprobes:\n  - call: security_file_open\n    args:\n    - index: 0\n      type: file\n    selectors:\n    - matchArgs:\n      - index: 0\n        operator: Prefix\n        values:\n        - /etc/secretN\n      matchActions:\n      - action: Post\n";
    let mut out = Vec::new();
    for i in 0..10 {
        let b = base.replace("bad-N", &format!("bad-{i}")).replace("secretN", &format!("secret{i}"));
        out.push((b.replace("kind: TracingPolicy", &format!("kind: TracingPolicyX{i}")), "2"));
        out.push((b.replace("operator: Prefix", &format!("operator: Prefixish{i}")), "14"));
        out.push((
            b.replace("      - index: 0\n        operator", &format!("      - index: {}\n        operator", i % 4 + 1)),
            "13",
        ));
        out.push((b.replace("      type: file", &format!("      type: wide_string{i}")), "10"));
        let many: String = (0..33 + i).map(|v| format!("        - /etc/v{v}\n")).collect();
        out.push((b.replace(&format!("        - /etc/secret{i}\n"), &many), "15"));
        out.push((b.replace("    args:\n", &format!("    args: [\n  {i}\n")), "9"));
        out.push((b.replace("      matchActions:", &format!("      matchFoo{i}: 1\n      matchActions:")), "17"));
        out.push((b.replace("apiVersion: cilium.io/v1alpha1", &format!("apiVersion: cilium.io/v{i}")), "1"));
        out.push((b.replace("action: Post", &format!("action: Explode{i}")), "18"));
        out.push((
            b.replace("    - index: 0\n      type: file", &format!("    - index: {}\n      type: file", 6 + i)),
            "9",
        ));
    }
    out
}

#[test]
fn malformed_policies_are_refused_with_located_errors_and_runtime_add_delete_works() {
    let r = start_agent();
    let dir = tempfile::tempdir().unwrap();
    let cases = malformed();
    assert_eq!(cases.len(), 100);
    for (i, (text, line)) in cases.iter().enumerate() {
        let f = dir.path().join(format!("bad{i}.yaml"));
        std::fs::write(&f, text).unwrap();
        let out = policy_cmd(&r, &["add", f.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "case {i}: {err}");
        let want = format!("{}:{line}:", f.display());
        assert!(err.starts_with(&want), "case {i}: want {want:?}, got {err:?}");
        assert_eq!(err.trim_end().lines().count(), 1, "case {i}: one line: {err}");
    }
    // A policy that parses but cannot be served on this kernel: refused by the agent.
    let unservable =
        SEED.replace("monitor-sensitive-files", "unservable").replace("security_file_open", "security_file_permission");
    let f = dir.path().join("unservable.yaml");
    std::fs::write(&f, unservable).unwrap();
    let out = policy_cmd(&r, &["add", f.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("security_file_permission") && err.contains("needs kprobes, which this kernel does not have"),
        "{err}"
    );

    // The agent still has (only) its earlier policy, and it still works.
    let list = policy_cmd(&r, &["list"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    assert!(text.contains("monitor-sensitive-files") && !text.contains("bad-"), "{text}");

    // Runtime add: a miner policy listing a copy of sleep made here.
    let miner = dir.path().join("nightjar-test-miner");
    std::fs::copy("/bin/sleep", &miner).unwrap();
    let miner = std::fs::canonicalize(&miner).unwrap().display().to_string();
    let variant = MINERS
        .replace("\"Postfix\"", "\"Equal\"")
        .replace("        - \"/xmrig\"\n", &format!("        - \"{miner}\"\n"));
    let f = dir.path().join("miners.yaml");
    std::fs::write(&f, variant).unwrap();
    let out = policy_cmd(&r, &["add", f.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let st = Command::new(&miner).arg("30").status().unwrap();
    assert_eq!(st.signal(), Some(9), "killed while the policy is loaded: {st:?}");

    // The earlier policy keeps reporting meanwhile.
    assert!(Command::new("/bin/cat").arg("/etc/shadow").output().unwrap().status.success());

    let out = policy_cmd(&r, &["delete", "block-cryptominers"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let st = Command::new(&miner).arg("0.1").status().unwrap();
    assert!(st.success(), "not killed once the policy is deleted: {st:?}");

    let out = r.agent.terminate();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let events = read_events(&r.log);
    assert!(
        events.iter().any(|e| e["process_kprobe"]["policy_name"] == "monitor-sensitive-files"
            && e["process_kprobe"]["args"][0]["file_arg"]["path"] == "/etc/shadow"),
        "the earlier policy kept working"
    );
    assert!(events.iter().any(|e| e["process_kprobe"]["policy_name"] == "block-cryptominers"
        && e["process_kprobe"]["action"] == "KPROBE_ACTION_SIGKILL"));
}

fn read_events(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}
