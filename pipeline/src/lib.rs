//! Owns: the event model (Tetragon's export schema), config loading with located errors,
//! the staged pipeline between sources and sinks, and the Prometheus metrics endpoint.
//! Must not know about: BPF, ring buffers or kernel records (the sensor), nor any sink's I/O.

pub mod config;
pub mod event;
pub mod fanout;
pub mod metrics;
pub mod sources;
pub mod stages;
pub mod time;

pub use event::{Event, EventKind};
