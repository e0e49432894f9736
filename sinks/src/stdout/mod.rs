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
}

impl StdoutSink {
    pub fn new(cfg: &StdoutConfig) -> Self {
        // SAFETY: isatty only inspects the descriptor.
        let tty = unsafe { libc::isatty(libc::STDOUT_FILENO) } == 1;
        StdoutSink { format: cfg.format, colour: if tty { Colour::Ansi } else { Colour::Plain }, buf: Vec::new() }
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
            self.buf.extend_from_slice(format_event(e, self.format, self.colour).as_bytes());
            self.buf.push(b'\n');
        }
        let mut out = std::io::stdout().lock();
        match out.write_all(&self.buf).and_then(|_| out.flush()) {
            Ok(()) => SendOutcome::Delivered,
            // A closed pipe will not reopen.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => SendOutcome::Fatal(e.to_string()),
            Err(e) => SendOutcome::Retryable(e.to_string()),
        }
    }

    async fn flush(&mut self) -> Result<(), String> {
        std::io::stdout().flush().map_err(|e| e.to_string())
    }

    fn health(&self) -> Health {
        Health::Healthy
    }
}
