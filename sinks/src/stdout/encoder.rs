//! Events become lines: Tetragon JSON, or the compact view.
use std::sync::Arc;

use pipeline::Event;

use super::{compact_line, Colour, StdoutFormat};

/// Formats one event as the line a sink writes (without newline).
pub fn format_event(e: &Event, format: StdoutFormat, colour: Colour) -> String {
    match format {
        StdoutFormat::Json => e.to_json(),
        StdoutFormat::Compact => compact_line(e, colour),
    }
}

/// Encodes a batch into `buf` (cleared first), one line per event.
pub fn lines(batch: &[Arc<Event>], format: StdoutFormat, colour: Colour, buf: &mut Vec<u8>) {
    buf.clear();
    for e in batch {
        match format {
            StdoutFormat::Json => e.write_json(buf),
            StdoutFormat::Compact => buf.extend_from_slice(compact_line(e, colour).as_bytes()),
        }
        buf.push(b'\n');
    }
}
