//! User side of `sensor-bpf/src/stack.rs`: a record's stack ids read from `STACKS` (and
//! removed), symbolized as Tetragon exports `kernel_stack_trace` and `user_stack_trace`
//! (address, offset, symbol, and a user frame's module; uint64 fields as JSON strings).
//! Kernel frames by /proc/kallsyms (read once); user frames by the process's mappings
//! (/proc/PID/maps, while it runs) and the mapped binary's ELF symbols (cached per path,
//! bounded): offset is from the symbol's start, or from the module's when no symbol
//! covers the address.
use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use aya::{
    maps::{MapData, StackTraceMap},
    Ebpf,
};
use nightjar_common::PolicyRecord;
use serde_json::{json, Value};

/// A record's stacks, as frames.
#[derive(Debug, Default)]
pub struct Stacks {
    pub kernel: Option<Vec<Value>>,
    pub user: Option<Vec<Value>>,
}

/// The stacks a policy record names.
pub fn of_record(ebpf: &mut Ebpf, r: &PolicyRecord) -> Stacks {
    let kernel = (r.kstack >= 0)
        .then(|| frames(ebpf, r.kstack))
        .flatten()
        .map(|ips| ips.into_iter().map(kernel_entry).collect());
    let user = (r.ustack >= 0).then(|| frames(ebpf, r.ustack)).flatten().map(|ips| user_entries(r.pid, &ips));
    Stacks { kernel, user }
}

/// The frames of stack `id`, innermost first; the entry is removed (another event with the
/// same stack takes it again). None if it is gone (replaced by a colliding stack first:
/// counted).
fn frames(ebpf: &mut Ebpf, id: i32) -> Option<Vec<u64>> {
    let map = ebpf.map_mut("STACKS")?;
    let mut stacks = StackTraceMap::<&mut MapData>::try_from(map).ok()?;
    let id = u32::try_from(id).ok()?;
    let Ok(trace) = stacks.get(&id, 0) else {
        nightjar_event::metrics::count_stage_drop("sensor_policy", "stack_trace_lost", 1);
        return None;
    };
    let _ = stacks.remove(&id);
    Some(trace.frames().iter().map(|f| f.ip).collect())
}

/// The kernel's symbols by address, read on first use; empty if they cannot be read.
fn kernel_symbols() -> &'static BTreeMap<u64, String> {
    static SYMS: std::sync::OnceLock<BTreeMap<u64, String>> = std::sync::OnceLock::new();
    SYMS.get_or_init(|| match aya::util::kernel_symbols() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read /proc/kallsyms: kernel stack traces carry addresses only");
            BTreeMap::new()
        }
    })
}

/// One kernel frame as Tetragon's `StackTraceEntry`.
pub fn kernel_entry(ip: u64) -> Value {
    match kernel_symbols().range(..=ip).next_back() {
        Some((addr, name)) => json!({"address": ip.to_string(), "offset": (ip - addr).to_string(), "symbol": name}),
        None => json!({"address": ip.to_string()}),
    }
}

/// A mapped binary: its loadable segments (file offset, address, size) and its function
/// symbols (address, size, name) sorted by address.
struct Elf {
    loads: Vec<(u64, u64, u64)>,
    syms: Vec<(u64, u64, String)>,
}

impl Elf {
    fn read(path: &str) -> Option<Elf> {
        use object::{Object, ObjectSegment, ObjectSymbol, SymbolKind};
        let data = std::fs::read(path).ok()?;
        let file = object::File::parse(&*data).ok()?;
        let loads = file.segments().map(|s| (s.file_range().0, s.address(), s.file_range().1)).collect();
        let mut syms: Vec<(u64, u64, String)> = file
            .symbols()
            .chain(file.dynamic_symbols())
            .filter(|s| s.kind() == SymbolKind::Text && s.size() > 0)
            .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_owned())))
            .collect();
        syms.sort_unstable();
        syms.dedup_by_key(|s| s.0);
        Some(Elf { loads, syms })
    }

    /// The symbol covering file offset `off`, and the offset into it.
    fn symbol(&self, off: u64) -> Option<(&str, u64)> {
        let (foff, addr, _) = self.loads.iter().find(|(o, _, n)| (*o..o + n).contains(&off))?;
        let vaddr = off - foff + addr;
        let i = self.syms.partition_point(|s| s.0 <= vaddr).checked_sub(1)?;
        let (a, n, name) = &self.syms[i];
        (vaddr < a + n).then(|| (name.as_str(), vaddr - a))
    }
}

/// Parsed binaries by path (at most this many kept).
const ELF_CACHE: usize = 64;

fn elf(path: &str) -> Option<Arc<Elf>> {
    static CACHE: std::sync::OnceLock<Mutex<HashMap<String, Option<Arc<Elf>>>>> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(e) = cache.lock().ok()?.get(path) {
        return e.clone();
    }
    let e = Elf::read(path).map(Arc::new);
    let mut c = cache.lock().ok()?;
    if c.len() >= ELF_CACHE {
        c.clear();
    }
    c.insert(path.to_owned(), e.clone());
    e
}

/// The executable mappings of process `pid`: (start, end, file offset, path).
fn mappings(pid: u32) -> Vec<(u64, u64, u64, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (range, perms, off) = (f.next()?, f.next()?, f.next()?);
            let path = f.nth(2)?;
            if !perms.contains('x') || !path.starts_with('/') {
                return None;
            }
            let (s, e) = range.split_once('-')?;
            let hex = |v: &str| u64::from_str_radix(v, 16).ok();
            Some((hex(s)?, hex(e)?, hex(off)?, path.to_owned()))
        })
        .collect()
}

/// User frames of process `pid` as Tetragon's `StackTraceEntry` (with `module`).
fn user_entries(pid: u32, ips: &[u64]) -> Vec<Value> {
    let maps = mappings(pid);
    ips.iter()
        .map(|&ip| {
            let Some((start, _, off, path)) = maps.iter().find(|(s, e, _, _)| (*s..*e).contains(&ip)) else {
                return json!({"address": ip.to_string()});
            };
            let file_off = ip - start + off;
            match elf(path).as_deref().and_then(|e| e.symbol(file_off)) {
                Some((name, o)) => {
                    json!({"address": ip.to_string(), "offset": o.to_string(), "symbol": name, "module": path})
                }
                None => json!({"address": ip.to_string(), "offset": file_off.to_string(), "module": path}),
            }
        })
        .collect()
}
