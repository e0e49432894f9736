//! Owns: the event model (Tetragon's export schema), timestamps, config loading with located
//! errors, and metric names with the counter helpers every crate increments (`metrics` facade).
//! Must not know about: BPF or the sensor, the pipeline's stages, any sink, or how metrics are served.

pub mod ack;
pub mod config;
pub mod event;
pub mod kinds;
pub mod metrics;
pub mod overhead;
pub mod shared;
pub mod time;

pub use event::{Event, EventKind, Origin};
pub use kinds::{Kind, KINDS};
