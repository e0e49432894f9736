//! User side of `sensor-bpf/src/stack.rs`: a record's kernel stack id read from `STACKS`
//! (and removed) and symbolized with the kernel's symbols (/proc/kallsyms, read once), as
//! Tetragon exports `kernel_stack_trace`: address, offset from the symbol, symbol.
use std::collections::BTreeMap;

use aya::{
    maps::{MapData, StackTraceMap},
    Ebpf,
};
use serde_json::{json, Value};

/// The kernel's symbols by address, read on first use; empty if they cannot be read.
fn symbols() -> &'static BTreeMap<u64, String> {
    static SYMS: std::sync::OnceLock<BTreeMap<u64, String>> = std::sync::OnceLock::new();
    SYMS.get_or_init(|| match aya::util::kernel_symbols() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read /proc/kallsyms: kernel stack traces carry addresses only");
            BTreeMap::new()
        }
    })
}

/// One frame as Tetragon's `StackTraceEntry` (uint64 fields as JSON strings).
pub fn entry(ip: u64) -> Value {
    match symbols().range(..=ip).next_back() {
        Some((addr, name)) => json!({"address": ip.to_string(), "offset": (ip - addr).to_string(), "symbol": name}),
        None => json!({"address": ip.to_string()}),
    }
}

/// The frames of kernel stack `id`, innermost first; the entry is removed from the map
/// (another event with the same stack takes it again). None if it is gone (replaced by
/// a colliding stack before it was read: counted).
pub fn kernel(ebpf: &mut Ebpf, id: i32) -> Option<Vec<Value>> {
    let map = ebpf.map_mut("STACKS")?;
    let mut stacks = StackTraceMap::<&mut MapData>::try_from(map).ok()?;
    let id = u32::try_from(id).ok()?;
    let Ok(trace) = stacks.get(&id, 0) else {
        nightjar_event::metrics::count_stage_drop("sensor_policy", "stack_trace_lost", 1);
        return None;
    };
    let _ = stacks.remove(&id);
    Some(trace.frames().iter().map(|f| entry(f.ip)).collect())
}
