//! libFuzzer target: the TracingPolicy parser and validator (harness/policy.rs).
#![no_main]

#[path = "../harness/policy.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::one(data);
});
