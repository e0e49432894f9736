//! Owns: Tetragon's gRPC API (`tetragon.FineGuidanceSensors`, types generated from api/proto):
//! GetEvents with its filters, health, version, info and the tracing-policy RPCs.
//! Must not know about: BPF or the sensor's internals (policies go through [`Agent`]), nor sinks.

pub mod events;
pub mod proto;
pub mod server;

pub use server::{serve, Agent, ApiError, PolicyInfo, ServerAddress};
