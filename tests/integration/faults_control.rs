//! The control socket under abuse: requests without a newline, thousands of idle
//! connections and hostile policies are bounded, and the agent keeps answering.
use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    time::Duration,
};

use crate::{common::wait_for, faults_util::*};

const ANSWER: Duration = Duration::from_secs(5);

#[test]
fn long_lines_and_idle_connections_are_bounded() {
    raise_own_nofile(16_384);
    let dir = tempfile::tempdir().unwrap();
    let r = start(dir.path(), agent_cmd(dir.path(), false));
    let pid = r.pid();

    // 4 clients × 100 MB without a newline took the agent to 2 GB.
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let socket = r.socket.clone();
            std::thread::spawn(move || {
                let mut s = UnixStream::connect(&socket).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let chunk = vec![b'x'; 1 << 20];
                let mut sent = 0usize;
                while sent < 100 << 20 && s.write_all(&chunk).is_ok() {
                    sent += chunk.len();
                }
                let mut resp = String::new();
                let _ = s.read_to_string(&mut resp);
                (sent, resp)
            })
        })
        .collect();
    for w in writers {
        let (sent, resp) = w.join().unwrap();
        assert!(sent < 100 << 20, "the agent read all {sent} bytes of a line without a newline");
        assert!(resp.contains("request line longer than 3145728 bytes"), "response: {resp:?}");
    }
    let hwm_mib = proc_kib(pid, "VmHWM") / 1024;
    assert!(hwm_mib < 256, "the agent's peak RSS reached {hwm_mib} MiB");

    // 5,000 idle connections: all but 32 are told at once, and those 32 are closed when
    // they idle; the agent's descriptors stay bounded meanwhile.
    let before = fd_count(pid);
    let conns: Vec<UnixStream> = (0..5000).map(|_| UnixStream::connect(&r.socket).unwrap()).collect();
    // Refusals in flight settle; the 32 held ones stay until they idle out.
    let fds = wait_for(Duration::from_secs(4), || Some(fd_count(pid)).filter(|n| *n <= before + 32 + 8))
        .unwrap_or_else(|| fd_count(pid));
    let (mut refused, mut closed) = (0, 0);
    for mut c in conns {
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut resp = String::new();
        match c.read_to_string(&mut resp) {
            Ok(_) if resp.contains("too many connections") => refused += 1,
            Ok(_) => closed += 1,
            Err(e) => panic!("a connection was neither refused nor closed within 30 s: {e}"),
        }
    }
    assert!(fds <= before + 32 + 8, "the agent held {fds} descriptors ({before} before) with 5,000 idle clients");
    assert_eq!(refused + closed, 5000);
    assert!(refused >= 5000 - 32, "only {refused} of 5,000 idle connections refused ({closed} held, then closed)");
    let st = request(&r.socket, r#"{"cmd":"status"}"#, ANSWER).unwrap();
    assert_eq!(st["ok"], true, "{st}");
}

#[test]
fn hostile_policies_are_refused_without_stalling_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let r = start(dir.path(), agent_cmd(dir.path(), false));
    // Two concurrent `policy add`s of deeply nested YAML froze the agent for 46 s.
    let yaml = format!("apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nspec: {}", "[".repeat(400_000));
    let line = serde_json::json!({"cmd": "policy_add", "source": "hostile.yaml", "yaml": yaml}).to_string();
    let adds: Vec<_> = (0..2)
        .map(|_| {
            let (socket, line) = (r.socket.clone(), line.clone());
            std::thread::spawn(move || request(&socket, &line, Duration::from_secs(300)))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..3 {
        let st = request(&r.socket, r#"{"cmd":"status"}"#, ANSWER).unwrap_or_else(|e| panic!("status: {e}"));
        assert_eq!(st["ok"], true, "{st}");
    }
    for a in adds {
        let resp = a.join().unwrap().unwrap();
        assert_eq!(resp["ok"], false, "{resp}");
        let e = resp["error"].as_str().unwrap_or_default();
        assert!(e.starts_with("hostile.yaml:3:") && e.contains("nested deeper than 64 levels"), "{e}");
    }
}
