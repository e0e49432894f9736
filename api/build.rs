//! Generates the Rust types of api/proto with protoc (Debian's protobuf-compiler; the
//! well-known types from libprotobuf-dev), prost for the wire, pbjson for protobuf JSON.
use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let protos: Vec<PathBuf> = ["bpf", "capabilities", "tetragon", "events", "sensors"]
        .iter()
        .map(|f| PathBuf::from(format!("proto/tetragon/{f}.proto")))
        .collect();
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let descriptors = out.join("tetragon.bin");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .file_descriptor_set_path(&descriptors)
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_protos(&protos, &[PathBuf::from("proto"), PathBuf::from("/usr/include")])?;
    let set = std::fs::read(&descriptors)?;
    // Unknown fields are ignored when an event becomes a message: what nightjar adds with
    // `export.extensions` is not Tetragon's, and a gRPC client gets Tetragon's schema only
    // (tests/integration/strict_json.rs checks that the export itself has nothing else).
    pbjson_build::Builder::new()
        .register_descriptors(&set)?
        .preserve_proto_field_names()
        .ignore_unknown_fields()
        .build(&[".tetragon"])?;
    Ok(())
}
