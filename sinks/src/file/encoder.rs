//! A batch becomes JSON lines (Tetragon's export format), one reused buffer per batch.
use std::sync::Arc;

use pipeline::Event;

/// Encodes `batch` into `buf` (cleared first), one JSON object and newline per event.
pub fn json_lines(batch: &[Arc<Event>], buf: &mut Vec<u8>) {
    buf.clear();
    for e in batch {
        e.write_json(buf);
        buf.push(b'\n');
    }
}
