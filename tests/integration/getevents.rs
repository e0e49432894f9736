//! `nightjar getevents -f` on Tetragon's own exports (the corpus).
use crate::common::*;

#[test]
fn reads_the_corpus_in_both_formats() {
    let f = corpus_dir().join("process_kprobe.jsonl");
    let out = run_ok(nightjar().args(["getevents", "-o", "compact", "-f"]).arg(&f));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains("job7189-apps/identity-service-84bb4c7857-ab12d /bin/sh -c whoami"), "{}", lines[0]);
    assert!(lines[1].starts_with("💀"), "the SIGKILL event is shown as a kill: {}", lines[1]);

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
