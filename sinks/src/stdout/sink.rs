//! The stdout sink: encode, write, on a blocking thread.
use std::sync::Arc;

use pipeline::Event;

use super::{config::StdoutConfig, encoder, service::Out, Colour, StdoutFormat};
use crate::{blocking::BlockingSink, SendOutcome};

pub struct StdoutSink {
    format: StdoutFormat,
    colour: Colour,
    buf: Vec<u8>,
    out: Out,
}

impl StdoutSink {
    pub fn new(cfg: &StdoutConfig) -> Self {
        // SAFETY: isatty only inspects the descriptor.
        let tty = unsafe { libc::isatty(libc::STDOUT_FILENO) } == 1;
        StdoutSink {
            format: cfg.format,
            colour: if tty { Colour::Ansi } else { Colour::Plain },
            buf: Vec::new(),
            out: Out::Stdout,
        }
    }

    /// The same sink writing to `out` (never coloured).
    pub fn with_writer(cfg: &StdoutConfig, out: Box<dyn std::io::Write + Send>) -> Self {
        StdoutSink { format: cfg.format, colour: Colour::Plain, buf: Vec::new(), out: Out::Writer(out) }
    }
}

impl BlockingSink for StdoutSink {
    fn send(&mut self, batch: &[Arc<Event>]) -> SendOutcome {
        encoder::lines(batch, self.format, self.colour, &mut self.buf);
        match self.out.write_all(&self.buf) {
            Ok(()) => SendOutcome::Delivered,
            // A closed pipe will not reopen.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => SendOutcome::Fatal(e.to_string()),
            Err(e) => SendOutcome::Retryable(e.to_string()),
        }
    }

    fn flush(&mut self) -> Result<(), String> {
        self.out.flush().map_err(|e| e.to_string())
    }
}
