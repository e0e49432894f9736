//! stdout sink: JSON lines, or a compact one-line view close to `tetra getevents -o compact`.
mod compact;
pub mod config;

use std::{io::Write, sync::Arc};

use async_trait::async_trait;
pub use compact::{compact_line, Colour};
pub use config::{StdoutConfig, StdoutFormat};
use pipeline::Event;

use crate::{Health, SendOutcome, Sink};

pub struct StdoutSink {
    format: StdoutFormat,
    colour: Colour,
    buf: Vec<u8>,
    /// Where lines go instead of the process's stdout (tests, embedding).
    out: Option<Box<dyn Write + Send>>,
}

impl StdoutSink {
    pub fn new(cfg: &StdoutConfig) -> Self {
        // SAFETY: isatty only inspects the descriptor.
        let tty = unsafe { libc::isatty(libc::STDOUT_FILENO) } == 1;
        StdoutSink {
            format: cfg.format,
            colour: if tty { Colour::Ansi } else { Colour::Plain },
            buf: Vec::new(),
            out: None,
        }
    }

    /// The same sink writing to `out` (never coloured).
    pub fn with_writer(cfg: &StdoutConfig, out: Box<dyn Write + Send>) -> Self {
        StdoutSink { format: cfg.format, colour: Colour::Plain, buf: Vec::new(), out: Some(out) }
    }
}

/// Formats one event as the line a sink writes (without newline).
pub fn format_event(e: &Event, format: StdoutFormat, colour: Colour) -> String {
    match format {
        StdoutFormat::Json => e.to_json(),
        StdoutFormat::Compact => compact_line(e, colour),
    }
}

#[async_trait]
impl Sink for StdoutSink {
    fn name(&self) -> &'static str {
        "stdout"
    }

    async fn send(&mut self, batch: &[Arc<Event>]) -> SendOutcome {
        self.buf.clear();
        for e in batch {
            match self.format {
                StdoutFormat::Json => e.write_json(&mut self.buf),
                StdoutFormat::Compact => self.buf.extend_from_slice(compact_line(e, self.colour).as_bytes()),
            }
            self.buf.push(b'\n');
        }
        let res = match self.out.as_mut() {
            Some(out) => out.write_all(&self.buf).and_then(|_| out.flush()),
            None => {
                let mut out = std::io::stdout().lock();
                out.write_all(&self.buf).and_then(|_| out.flush())
            }
        };
        match res {
            Ok(()) => SendOutcome::Delivered,
            // A closed pipe will not reopen.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => SendOutcome::Fatal(e.to_string()),
            Err(e) => SendOutcome::Retryable(e.to_string()),
        }
    }

    async fn flush(&mut self) -> Result<(), String> {
        match self.out.as_mut() {
            Some(out) => out.flush(),
            None => std::io::stdout().flush(),
        }
        .map_err(|e| e.to_string())
    }

    fn health(&self) -> Health {
        Health::Healthy
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::test_util::*;

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
            assert!(matches!(s.send(chunk).await, SendOutcome::Delivered));
        }
        s.flush().await.unwrap();
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
}
