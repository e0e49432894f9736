//! stdout sink: JSON lines, or a compact one-line view close to `tetra getevents -o compact`.
//! The writes happen on a blocking thread: a pipe nobody reads stalls this sink only (its
//! buffer drops what does not fit, counted, by default), never the others or shutdown.
mod compact;
pub mod config;
pub mod encoder;
pub mod service;
pub mod sink;
#[cfg(test)]
mod tests;

pub use compact::{compact_line, tetra_timestamp, Colour};
pub use config::{StdoutConfig, StdoutFormat};
pub use encoder::format_event;
pub use sink::StdoutSink;
