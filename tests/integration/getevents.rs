//! `nightjar getevents -f` on Tetragon's own exports (the corpus), and its compact view
//! against the real `tetra getevents -o compact` on the same input.
use std::{io::Write, path::Path, process::Stdio};

use crate::common::*;

fn compact_dir() -> std::path::PathBuf {
    corpus_dir().join("../compact")
}

/// What `tetra getevents -o compact --color never` prints for `input` (stdin).
fn tetra_compact(tetra: &Path, input: &[u8]) -> String {
    let mut child = std::process::Command::new(tetra)
        .args(["getevents", "-o", "compact", "--color", "never"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run tetra");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "tetra failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// Compact lines equal tetra's, line for line: against tetra's recorded output always, and
/// against tetra itself where it is present (the recording must still be what it prints).
#[test]
fn compact_lines_are_tetras_line_for_line() {
    let samples = ["process_exec.jsonl", "process_kprobe.jsonl"]
        .iter()
        .map(|f| std::fs::read_to_string(corpus_dir().join(f)).unwrap())
        .collect::<String>();
    let cases = std::fs::read_to_string(compact_dir().join("cases.jsonl")).unwrap();
    let sets = [("tetragon-samples", samples), ("cases", cases)];
    let tetra = tetra();
    for (name, input) in &sets {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("in.jsonl");
        std::fs::write(&f, input).unwrap();
        let ours =
            String::from_utf8(run_ok(nightjar().args(["getevents", "-o", "compact", "-f"]).arg(&f)).stdout).unwrap();
        let recorded = std::fs::read_to_string(compact_dir().join(format!("{name}.tetra-compact"))).unwrap();
        for (i, (a, b)) in ours.lines().zip(recorded.lines()).enumerate() {
            assert_eq!(a, b, "{name} line {}: nightjar vs tetra's recording", i + 1);
        }
        assert_eq!(ours.lines().count(), recorded.lines().count(), "{name}");
        match &tetra {
            Ok(t) => {
                assert_eq!(tetra_compact(t, input.as_bytes()), recorded, "{name}: tetra no longer prints the recording")
            }
            Err(why) => eprintln!("tetra not run ({why}); compared with its recorded output only"),
        }
    }
}

#[test]
fn reads_the_corpus_in_both_formats() {
    let f = corpus_dir().join("process_kprobe.jsonl");
    let out = run_ok(nightjar().args(["getevents", "-o", "compact", "-f"]).arg(&f));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    // As tetra prints them (the kprobe of a function it has no icon for).
    assert_eq!(lines[0], "❓ syscall job7189-apps/identity-service-84bb4c7857-ab12d /bin/sh sys_execve");
    assert_eq!(lines[1], "❓ syscall job7189-apps/tetragon-test /bin/nc sys_execve");

    let out = run_ok(nightjar().args(["getevents", "-o", "json", "-f"]).arg(&f));
    let original = std::fs::read_to_string(&f).unwrap();
    for (got, want) in String::from_utf8_lossy(&out.stdout).lines().zip(original.lines()) {
        let got: serde_json::Value = serde_json::from_str(got).unwrap();
        let want: serde_json::Value = serde_json::from_str(want).unwrap();
        assert_eq!(got, want);
    }
}

#[test]
fn bad_lines_are_reported_with_their_number_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("mixed.log");
    let good = std::fs::read_to_string(corpus_dir().join("process_exec.jsonl")).unwrap();
    std::fs::write(&f, format!("{}\nnot json\n{{\"node_name\":\"x\"}}\n{}\n", good.trim(), good.trim())).unwrap();
    let out = run_ok(nightjar().args(["getevents", "-o", "compact", "-f"]).arg(&f));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mixed.log:2: skipped"), "{err}");
    assert!(err.contains("mixed.log:3: skipped"), "{err}");
}

fn compact(args: &[&str], file: &std::path::Path) -> Vec<String> {
    let out = run_ok(nightjar().args(["getevents", "-o", "compact", "-f"]).arg(file).args(args));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

/// A recorded stream: the corpus plus events of several kinds, nodes and pods.
fn recorded(dir: &std::path::Path) -> std::path::PathBuf {
    let mut lines = Vec::new();
    for f in ["process_exec.jsonl", "process_kprobe.jsonl"] {
        lines.extend(std::fs::read_to_string(corpus_dir().join(f)).unwrap().lines().map(str::to_owned));
    }
    lines.push(r#"{"process_exit":{"process":{"binary":"/usr/bin/cat","arguments":"/etc/shadow"},"status":0},"node_name":"node-b","time":"2026-01-01T00:00:00Z"}"#.into());
    lines.push(r#"{"process_kprobe":{"process":{"binary":"/usr/bin/cat","pod":{"namespace":"prod","name":"api-7d9"}},"function_name":"security_file_open","args":[{"file_arg":{"path":"/etc/shadow"}}],"policy_name":"monitor-sensitive-files","action":"KPROBE_ACTION_POST"},"node_name":"node-b","time":"2026-01-01T00:00:01Z"}"#.into());
    let p = dir.join("recorded.jsonl");
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

#[test]
fn filters_on_a_recorded_stream_and_the_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let f = recorded(dir.path());
    assert_eq!(compact(&[], &f).len(), 5);
    assert_eq!(compact(&["--event-types", "process_exit"], &f).len(), 1);
    assert_eq!(compact(&["--event-types", "process_exec,process_exit"], &f).len(), 2);
    let ns = compact(&["--namespace", "job7189-apps"], &f);
    assert_eq!(ns.len(), 2, "{ns:?}");
    assert_eq!(compact(&["--pod", "^xwing$"], &f).len(), 1);
    assert_eq!(compact(&["--pod", "identity-service"], &f).len(), 1);
    assert_eq!(compact(&["--process", "/bin/nc$"], &f).len(), 1);
    assert_eq!(compact(&["--process", "cat"], &f).len(), 2);
    assert_eq!(compact(&["--policy-names", "monitor-sensitive-files"], &f).len(), 1);
    assert_eq!(compact(&["--node", "node-b"], &f).len(), 2);
    assert_eq!(compact(&["--node", "gke-john-632-default-pool-7041cac0-9s95"], &f).len(), 1);
    // Filters combine with AND.
    assert_eq!(compact(&["--node", "node-b", "--event-types", "process_kprobe"], &f).len(), 1);
    assert_eq!(compact(&["--node", "node-b", "--namespace", "default"], &f).len(), 0);
    // tetra's spellings: -e with upper-case types, -n, --host (events of no pod).
    assert_eq!(compact(&["-e", "PROCESS_EXEC,PROCESS_EXIT"], &f).len(), 2);
    assert_eq!(compact(&["--process-only"], &f).len(), 2);
    assert_eq!(compact(&["-n", "job7189-apps"], &f).len(), 2);
    assert_eq!(compact(&["--namespace-regex", "^job[0-9]+-"], &f).len(), 2);
    assert_eq!(compact(&["--host"], &f), vec!["💥 exit    node-b /usr/bin/cat /etc/shadow 0"]);
    // The corpus itself, filtered.
    let k = corpus_dir().join("process_kprobe.jsonl");
    assert_eq!(compact(&["--event-types", "process_kprobe", "--pod", "tetragon-test"], &k).len(), 1);
}

#[test]
fn bad_filters_are_usage_errors() {
    let f = corpus_dir().join("process_exec.jsonl");
    let out = nightjar().args(["getevents", "--process", "(", "-f"]).arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--process"), "{out:?}");
    let out = nightjar().args(["getevents", "--event-types", "process_nope", "-f"]).arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// The seed's workflow: `kubectl logs ... | nightjar getevents -o compact --namespace default
/// --pod 'x-*'` reads the pipe (no -f) and prints exactly the matching lines.
#[test]
fn piped_export_is_read_from_stdin_with_tetras_flags() {
    let pod = |ns: &str, name: &str, bin: &str, s: u8| {
        format!(
            r#"{{"process_exec":{{"process":{{"binary":"{bin}","arguments":"","pod":{{"namespace":"{ns}","name":"{name}"}}}}}},"node_name":"n","time":"2026-01-01T00:00:0{s}Z"}}"#
        )
    };
    let input = [
        pod("default", "x-1", "/bin/a", 1),
        pod("default", "web-1", "/bin/b", 6),
        pod("prod", "x-2", "/bin/c", 2),
        pod("default", "x-3", "/bin/d", 3),
    ]
    .join("\n")
        + "\n";
    let run = |args: &[&str]| {
        let mut child = nightjar()
            .arg("getevents")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let out = run(&["-o", "compact", "--namespace", "default", "--pod", "x-*"]);
    assert_eq!(out, "🚀 process default/x-1 /bin/a \n🚀 process default/x-3 /bin/d \n");
    // --timestamps: tetra's nine fractional digits; --exclude-fields / --include-fields on JSON.
    let out = run(&["-o", "compact", "--timestamps", "--pod", "^web"]);
    assert_eq!(out, "2026-01-01T00:00:06.000000000Z 🚀 process default/web-1 /bin/b \n");
    let out = run(&["-o", "json", "--pod", "^web", "-F", "process.pod"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(
        v["process_exec"]["process"].get("pod").is_none() && v["process_exec"]["process"]["binary"] == "/bin/b",
        "{v}"
    );
    let out = run(&["-o", "json", "--pod", "^web", "--include-fields", "process.binary"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["process_exec"], serde_json::json!({"process": {"binary": "/bin/b"}}), "{v}");
}
