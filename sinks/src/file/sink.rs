//! The file sink: encode a batch, write it whole, on a blocking thread.
use std::{sync::Arc, time::Duration};

use pipeline::Event;

use super::{
    config::{FileConfig, OnError},
    encoder,
    service::{FileSinkError, FileWriter},
};
use crate::{blocking::BlockingSink, SendOutcome};

pub struct FileSink {
    writer: FileWriter,
    on_error: OnError,
    buf: Vec<u8>,
}

impl FileSink {
    /// Opens (creating with the configured mode) the file; fails with a clear error.
    pub fn new(cfg: &FileConfig) -> Result<Self, FileSinkError> {
        Ok(FileSink { writer: FileWriter::new(cfg)?, on_error: cfg.on_error, buf: Vec::new() })
    }

    pub fn writer(&self) -> &FileWriter {
        &self.writer
    }

    pub fn writer_mut(&mut self) -> &mut FileWriter {
        &mut self.writer
    }

    pub fn tick_interval(&self) -> Duration {
        self.writer.tick_interval()
    }
}

impl BlockingSink for FileSink {
    fn send(&mut self, batch: &[Arc<Event>]) -> SendOutcome {
        encoder::json_lines(batch, &mut self.buf);
        match self.writer.write_batch(&self.buf) {
            Ok(()) => SendOutcome::Delivered,
            Err(e) => match self.on_error {
                OnError::Retry => SendOutcome::Retryable(e.to_string()),
                OnError::Drop => SendOutcome::Fatal(e.to_string()),
            },
        }
    }

    fn flush(&mut self) -> Result<(), String> {
        self.writer.wait_compression();
        self.writer.sync().map_err(|e| e.to_string())
    }

    fn tick(&mut self) -> Result<(), String> {
        self.writer.tick().map_err(|e| e.to_string())
    }
}
