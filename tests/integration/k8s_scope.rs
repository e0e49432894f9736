//! A podSelector policy through the whole agent: the pods come from an HTTP stand-in for
//! the Kubernetes API server (no API server can run here) listing two pods of this node;
//! their containers are cgroups this test makes, laid out as the kubelet's systemd driver
//! names them. The agent lists the pods, matches the policy's scope in the kernel, and
//! reports the dup(2) of the selected pod's process — with Tetragon's `pod` fields from
//! that listing — and not the other pod's.
use std::{
    io::{Read, Write},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::{json, Value};

use crate::common::*;

const FD: u32 = 791;

fn uid(n: u32) -> String {
    format!("7c4f2a10-1d2e-4f3a-8b4c-{n:012}")
}

fn cid(n: u32) -> String {
    format!("{:064x}", 0xabc000 + n)
}

fn pod(n: u32, app: &str) -> Value {
    json!({
        "metadata": {"uid": uid(n), "name": format!("{app}-{n}"), "namespace": "fleet", "labels": {"app": app}},
        "spec": {"nodeName": "scope-node", "containers": [{"name": "main", "image": "docker.io/library/busybox:1"}]},
        "status": {"containerStatuses": [{"name": "main", "containerID": format!("containerd://{}", cid(n)), "image": "docker.io/library/busybox:1"}]}
    })
}

/// Answers every GET with `body` (the agent lists the pods again every second).
fn serve_pods(body: String) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes());
        }
    });
    port
}

/// Runs python in cgroup `cg`: dup(FD) (not open: EBADF), then exits; returns its pid.
fn dup_in(cg: &Path) -> u32 {
    let mut child = Command::new("python3")
        .args(["-c", &format!("import ctypes,sys\nsys.stdin.read(1)\nctypes.CDLL(None).dup({FD})\n")])
        .stdin(Stdio::piped())
        .spawn()
        .expect("python3");
    let pid = child.id();
    std::fs::write(cg.join("cgroup.procs"), pid.to_string()).unwrap();
    child.stdin.take().unwrap().write_all(b"x").unwrap();
    assert!(child.wait().unwrap().success());
    pid
}

#[test]
fn a_pod_selector_policy_reports_the_selected_pod_only() {
    let base = TestCgroup::new("nightjar-k8s-scope");
    let cg = |n: u32| -> PathBuf {
        base.0
            .join("kubepods.slice/kubepods-burstable.slice")
            .join(format!("kubepods-burstable-pod{}.slice", uid(n).replace('-', "_")))
            .join(format!("cri-containerd-{}.scope", cid(n)))
    };
    for n in [1, 2] {
        std::fs::create_dir_all(cg(n)).unwrap();
    }
    let _cleanup = Cleanup(vec![cg(1), cg(2)], base.0.clone());
    let port = serve_pods(json!({"kind": "PodList", "items": [pod(1, "xwing"), pod(2, "tiefighter")]}).to_string());

    let dir = tempfile::tempdir().unwrap();
    let pdir = dir.path().join("policies");
    std::fs::create_dir(&pdir).unwrap();
    std::fs::write(
        pdir.join("xwing-dups.yaml"),
        format!("apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: xwing-dups\nspec:\n  podSelector:\n    matchLabels:\n      app: xwing\n  kprobes:\n  - call: sys_dup\n    syscall: true\n    args:\n    - index: 0\n      type: int\n    selectors:\n    - matchArgs:\n      - index: 0\n        operator: Equal\n        values: [\"{FD}\"]\n"),
    )
    .unwrap();
    let socket = dir.path().join("nj.sock").display().to_string();
    let log = dir.path().join("events.log");
    let mport = free_port();
    let set = |kv: String| ["--set".to_owned(), kv];
    let _agent = Agent::spawn(
        nightjar()
            .arg("run")
            .args(set(format!("sensor.policies_dir={}", pdir.display())))
            .args(set(format!("control.socket={socket}")))
            .args(set(format!("metrics.listen=127.0.0.1:{mport}")))
            .args(set(format!("sinks.file.path={}", log.display())))
            .args(set("sinks.stdout.enabled=false".into()))
            .args(set("node_name=scope-node".into()))
            .args(set("pipeline.enrich.kubernetes.mode=on".into()))
            .args(set(format!("pipeline.enrich.kubernetes.api_url=http://127.0.0.1:{port}")))
            .args(set("pipeline.enrich.kubernetes.refresh_secs=1".into()))
            .args(set(format!("pipeline.enrich.kubernetes.token_path={}", dir.path().join("no-token").display()))),
    );
    let addr = format!("127.0.0.1:{mport}").parse().unwrap();
    let up = wait_for(Duration::from_secs(60), || http_get(addr, "/healthz").ok().filter(|(s, _)| *s == 200));
    assert!(up.is_some(), "agent never became healthy");
    // The listing reaches the sensor: `status` shows the scope admitting one container.
    let status = || {
        let out = nightjar().args(["status", "--set", &format!("control.socket={socket}")]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let want = "scope: pods app=xwing; 1 container cgroup(s) admitted";
    let shown = wait_for(Duration::from_secs(30), || status().contains(want).then_some(()));
    assert!(shown.is_some(), "status never showed {want:?}:\n{}", status());

    let other = dup_in(&cg(2));
    let selected = dup_in(&cg(1));
    let kprobes = |pid: u32| -> Vec<Value> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["process_kprobe"]["process"]["pid"] == json!(pid))
            .collect()
    };
    let hit = wait_for(Duration::from_secs(30), || kprobes(selected).into_iter().next()).expect("the xwing pod's dup");
    let k = &hit["process_kprobe"];
    assert_eq!(k["policy_name"], "xwing-dups");
    assert_eq!(k["args"], json!([{"int_arg": FD}]));
    let p = &k["process"]["pod"];
    assert_eq!((p["namespace"].as_str(), p["name"].as_str()), (Some("fleet"), Some("xwing-1")), "{hit}");
    assert_eq!(p["container"]["id"], format!("containerd://{}", cid(1)));
    // The other pod's dup came first, so it would be in the file by now.
    assert!(kprobes(other).is_empty(), "the tiefighter pod is not in the policy's scope");
}

/// Removes the test's container cgroups (innermost first) before its base group goes.
struct Cleanup(Vec<PathBuf>, PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for leaf in &self.0 {
            let mut d = leaf.as_path();
            while d != self.1 {
                let _ = std::fs::remove_dir(d);
                d = d.parent().unwrap();
            }
        }
    }
}
