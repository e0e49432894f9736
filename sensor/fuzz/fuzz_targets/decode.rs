//! Fuzz the ring-buffer decoder: any byte sequence must decode or fail, never panic.
//! Run: `cd sensor && cargo +nightly fuzz run decode`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nightjar_sensor::decode::{decode, join_leaf_first, Record};

fuzz_target!(|data: &[u8]| {
    if let Ok(Record::Exec(e)) = decode(data) {
        let _ = join_leaf_first(&e.path);
        let _ = join_leaf_first(&e.cwd);
        let _ = nightjar_sensor::hooks::process::format_arguments(&e.args);
    }
});
