//! The stdout sink's output read back with serde and jq.
use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use super::{
    config::{StdoutConfig, StdoutFormat},
    StdoutSink,
};
use crate::test_util::*;
use crate::{blocking::BlockingSink, SendOutcome};

/// A writer tests can read back.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);
impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn write_n(format: StdoutFormat, n: u64) -> String {
    let buf = Shared::default();
    let cfg = StdoutConfig { format, ..StdoutConfig::default() };
    let mut s = StdoutSink::with_writer(&cfg, Box::new(buf.clone()));
    let events: Vec<_> = (0..n).map(seq_event).collect();
    for chunk in events.chunks(100) {
        assert!(matches!(s.send(chunk), SendOutcome::Delivered));
    }
    s.flush().unwrap();
    let bytes = buf.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn json_lines_read_back_with_serde_and_jq() {
    let n = 500;
    let text = write_n(StdoutFormat::Json, n).await;
    let seqs: Vec<u64> = text.lines().map(seq_of).collect();
    assert_eq!(seqs, (0..n).collect::<Vec<_>>());
    let mut jq = std::process::Command::new("jq")
        .args(["-c", "select(.process_kprobe.policy_name == \"block-nc\") | .process_kprobe.action"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run jq (scripts/setup.sh installs it)");
    jq.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = jq.wait_with_output().unwrap();
    assert!(out.status.success());
    let actions = String::from_utf8(out.stdout).unwrap();
    let expect: Vec<String> = (0..n).filter_map(expected_action).map(|a| format!("\"{a}\"")).collect();
    assert_eq!(actions.lines().collect::<Vec<_>>(), expect);
}

#[tokio::test]
async fn compact_is_one_plain_line_per_event() {
    let text = write_n(StdoutFormat::Compact, 40).await;
    assert_eq!(text.lines().count(), 40);
    assert!(!text.contains('\x1b'), "no colour when not a TTY");
    assert!(text.lines().nth(7).unwrap().contains("/usr/bin/b7"), "{text}");
}
