//! libFuzzer target: the tetragon_file source's line reader (harness/tail_lines.rs).
#![no_main]

#[path = "../harness/tail_lines.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::one(data);
});
