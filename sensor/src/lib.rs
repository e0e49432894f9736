//! Owns: loading nightjar's eBPF programs (aya), probing what the kernel allows, reading
//! and decoding ring-buffer records, and the process cache that turns them into events.
//! Must not know about: sinks, the pipeline's stages, or how events are exported.

pub mod btf;
pub mod cache;
pub mod clock;
pub mod container;
pub mod decode;
pub mod hooks;
pub mod loader;
pub mod offsets;
pub mod overhead;
pub mod perf;
pub mod policy;
pub mod probe;
pub mod procfs;
pub mod progprobe;

pub use loader::{Sensor, SensorConfig, SensorError};
