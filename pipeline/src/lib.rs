//! Owns: the staged pipeline between sources and sinks (dedup, enrichment, filters, rate
//! limits, fan-out), the Tetragon export tail source and the Prometheus metrics endpoint.
//! Must not know about: BPF, ring buffers or kernel records (the sensor), nor any sink's I/O.

pub mod fanout;
pub mod metrics;
pub mod sources;
pub mod stages;

/// The event model, config loading and time live in `nightjar-event`; these paths stay.
pub use nightjar_event::{ack, config, event, kinds, time, Event, EventKind, Kind, KINDS};
