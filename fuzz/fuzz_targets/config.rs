//! libFuzzer target: the config loader (harness/config.rs), with the library sections of
//! nightjar's config (the binary's own small sections as plain YAML values).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};

#[path = "../harness/config.rs"]
mod harness;

#[derive(Debug, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Config {
    node_name: String,
    log: serde_norway::Value,
    metrics: serde_norway::Value,
    sensor: sensor::SensorConfig,
    control: serde_norway::Value,
    sources: pipeline::sources::SourcesConfig,
    pipeline: pipeline::stages::PipelineConfig,
    sinks: sinks::SinksConfig,
}

fuzz_target!(|data: &[u8]| {
    harness::one(data, |c: &Config| {
        let ctx = pipeline::stages::Context { node_name: "fuzz".into() };
        pipeline::stages::check(&c.pipeline, &ctx).is_ok()
    });
});
