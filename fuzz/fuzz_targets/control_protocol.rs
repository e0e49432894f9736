//! libFuzzer target: the control socket's protocol (harness/control_protocol.rs).
#![no_main]

#[path = "../../src/control/protocol.rs"]
#[allow(dead_code)]
mod protocol;

#[path = "../harness/control_protocol.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::one(data);
});
