//! The generated types: prost messages (the wire) with pbjson's protobuf-JSON serde, so an
//! event's export JSON and its gRPC message are one and the same contract.
#![allow(clippy::all, missing_docs)]

tonic::include_proto!("tetragon");
include!(concat!(env!("OUT_DIR"), "/tetragon.serde.rs"));
