//! Kernel structs read whole as typed policy arguments, user side of
//! `sensor-bpf/src/kstruct.rs`: which argument source reads each type, and the decoding
//! of the slot bytes into the message Tetragon exports (`process_credentials_arg`
//! (ProcessCredentials), `user_ns_arg` (UserNamespace), `module_arg` (KernelModule),
//! `bpf_attr_arg` (KprobeBpfAttr), `bpf_map_arg` (KprobeBpfMap), `perf_event_arg`
//! (KprobePerfEvent)).
use nightjar_common::{argsrc, kstruct as k};
use serde_json::{json, Map, Value};

use crate::policy::ArgType;

/// The kernel's argument source for a struct type nightjar reads, and the C type the
/// argument must point to (a tracepoint field is checked against it).
pub fn source(ty: ArgType) -> Option<(u8, &'static str)> {
    Some(match ty {
        ArgType::Cred => (argsrc::CRED, "struct cred"),
        ArgType::UserNamespace => (argsrc::USER_NS, "struct user_namespace"),
        ArgType::Module => (argsrc::MODULE, "struct module"),
        ArgType::LoadInfo => (argsrc::LOAD_INFO, "struct load_info"),
        ArgType::BpfAttr => (argsrc::BPF_ATTR, "union bpf_attr"),
        ArgType::BpfMap => (argsrc::BPF_MAP, "struct bpf_map"),
        ArgType::PerfEvent => (argsrc::PERF_EVENT, "struct perf_event"),
        _ => return None,
    })
}

/// True for the struct types read here.
pub fn reads(ty: ArgType) -> bool {
    source(ty).is_some()
}

fn u32_at(d: &[u8], at: usize) -> u32 {
    d.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(0)
}

fn u64_at(d: &[u8], at: usize) -> u64 {
    d.get(at..at + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]))).unwrap_or(0)
}

/// The exported value of a struct argument read by source `src` (None: not a struct source).
pub fn decode(src: u8, data: &[u8]) -> Option<(&'static str, Value)> {
    Some(match src {
        argsrc::CRED => ("process_credentials_arg", cred(data)),
        argsrc::USER_NS => ("user_ns_arg", user_ns(data, 0)),
        argsrc::MODULE | argsrc::LOAD_INFO => ("module_arg", module(data)),
        argsrc::BPF_ATTR => ("bpf_attr_arg", bpf_attr(data)),
        argsrc::BPF_MAP => ("bpf_map_arg", bpf_map(data)),
        argsrc::PERF_EVENT => ("perf_event_arg", perf_event(data)),
        _ => return None,
    })
}

/// Tetragon's UserNamespace: the namespace is the host's when its level is 0.
fn user_ns(d: &[u8], at: usize) -> Value {
    let level = u32_at(d, at) as i32;
    let mut ns = Map::new();
    ns.insert("inum".into(), json!(u32_at(d, at + 12)));
    if level == 0 {
        ns.insert("is_host".into(), json!(true));
    }
    json!({"level": level, "uid": u32_at(d, at + 4), "gid": u32_at(d, at + 8), "ns": ns})
}

/// Names of the set bits of `mask` among `names` (bit i = `names[i]`), as a JSON array;
/// None when empty (protobuf JSON leaves an empty repeated field out).
fn bit_names(names: Vec<String>) -> Option<Value> {
    (!names.is_empty()).then(|| json!(names))
}

/// Tetragon's SecureBitsType names of a securebits word.
fn securebits(v: u32) -> Vec<String> {
    const NAMES: [&str; 8] = [
        "SecBitNoRoot",
        "SecBitNoRootLocked",
        "SecBitNoSetUidFixup",
        "SecBitNoSetUidFixupLocked",
        "SecBitKeepCaps",
        "SecBitKeepCapsLocked",
        "SecBitNoCapAmbientRaise",
        "SecBitNoCapAmbientRaiseLocked",
    ];
    (0..8).filter(|b| v & (1 << b) != 0).map(|b| NAMES[b].to_owned()).collect()
}

/// Tetragon's ProcessCredentials.
fn cred(d: &[u8]) -> Value {
    let id = |i: usize| json!(u32_at(d, k::CRED_IDS + 4 * i));
    let mut m = Map::new();
    for (i, name) in ["uid", "gid", "euid", "egid", "suid", "sgid", "fsuid", "fsgid"].iter().enumerate() {
        m.insert((*name).into(), id(i));
    }
    if let Some(sb) = bit_names(securebits(u32_at(d, k::CRED_IDS + 32))) {
        m.insert("securebits".into(), sb);
    }
    let mut caps = Map::new();
    for (i, set) in ["permitted", "effective", "inheritable"].iter().enumerate() {
        let names = crate::hooks::process::cap_names(u64_at(d, k::CRED_CAPS + 8 * i));
        if let Some(v) = bit_names(names) {
            caps.insert((*set).into(), v);
        }
    }
    m.insert("caps".into(), Value::Object(caps));
    m.insert("user_ns".into(), user_ns(d, k::CRED_USER_NS));
    Value::Object(m)
}

/// Tetragon's TaintedBitsType names of a module's taints (the bits it knows).
fn taints(v: u64) -> Vec<String> {
    const NAMES: [(u32, &str); 8] = [
        (0, "TAINT_PROPRIETARY_MODULE"),
        (1, "TAINT_FORCED_MODULE"),
        (2, "TAINT_FORCED_UNLOAD_MODULE"),
        (10, "TAINT_STAGED_MODULE"),
        (12, "TAINT_OUT_OF_TREE_MODULE"),
        (13, "TAINT_UNSIGNED_MODULE"),
        (15, "TAINT_KERNEL_LIVE_PATCH_MODULE"),
        (18, "TAINT_TEST_MODULE"),
    ];
    NAMES.iter().filter(|(b, _)| v & (1 << b) != 0).map(|(_, n)| (*n).to_owned()).collect()
}

/// Tetragon's KernelModule (signature_ok is always set: false unless load_info said so).
fn module(d: &[u8]) -> Value {
    let name = d.get(k::MODULE_NAME..).unwrap_or_default();
    let name = String::from_utf8_lossy(name.split(|b| *b == 0).next().unwrap_or_default()).into_owned();
    let mut m = Map::new();
    m.insert("name".into(), json!(name));
    m.insert("signature_ok".into(), json!(u32_at(d, 8) != 0));
    if let Some(t) = bit_names(taints(u64_at(d, 0))) {
        m.insert("tainted".into(), t);
    }
    Value::Object(m)
}

/// Tetragon's names of BPF program types (`BPF_PROG_TYPE_UNKNOWN` past the table).
fn prog_type(t: u32) -> String {
    const NAMES: [&str; 33] = [
        "UNSPEC",
        "SOCKET_FILTER",
        "KPROBE",
        "SCHED_CLS",
        "SCHED_ACT",
        "TRACEPOINT",
        "XDP",
        "PERF_EVENT",
        "CGROUP_SKB",
        "CGROUP_SOCK",
        "LWT_IN",
        "LWT_OUT",
        "LWT_XMIT",
        "SOCK_OPS",
        "SK_SKB",
        "CGROUP_DEVICE",
        "SK_MSG",
        "RAW_TRACEPOINT",
        "CGROUP_SOCK_ADDR",
        "LWT_SEG6LOCAL",
        "LIRC_MODE2",
        "SK_REUSEPORT",
        "FLOW_DISSECTOR",
        "CGROUP_SYSCTL",
        "RAW_TRACEPOINT_WRITABLE",
        "CGROUP_SOCKOPT",
        "TRACING",
        "STRUCT_OPS",
        "EXT",
        "LSM",
        "SK_LOOKUP",
        "SYSCALL",
        "NETFILTER",
    ];
    format!("BPF_PROG_TYPE_{}", NAMES.get(t as usize).unwrap_or(&"UNKNOWN"))
}

/// Tetragon's KprobeBpfAttr (its fields keep their Go names: ProgType, InsnCnt, ProgName).
fn bpf_attr(d: &[u8]) -> Value {
    let name = d.get(k::BPF_ATTR_NAME..k::BPF_ATTR_NAME + 16).unwrap_or_default();
    let name = String::from_utf8_lossy(name.split(|b| *b == 0).next().unwrap_or_default()).into_owned();
    json!({"ProgType": prog_type(u32_at(d, 0)), "InsnCnt": u32_at(d, 4), "ProgName": name})
}

/// Tetragon's names of BPF map types (`BPF_MAP_TYPE_UNKNOWN` past the table).
fn map_type(t: u32) -> String {
    const NAMES: [&str; 34] = [
        "UNSPEC",
        "HASH",
        "ARRAY",
        "PROG_ARRAY",
        "PERF_EVENT_ARRAY",
        "PERCPU_HASH",
        "PERCPU_ARRAY",
        "STACK_TRACE",
        "CGROUP_ARRAY",
        "LRU_HASH",
        "LRU_PERCPU_HASH",
        "LPM_TRIE",
        "ARRAY_OF_MAPS",
        "HASH_OF_MAPS",
        "DEVMAP",
        "SOCKMAP",
        "CPUMAP",
        "XSKMAP",
        "SOCKHASH",
        "CGROUP_STORAGE",
        "REUSEPORT_SOCKARRAY",
        "PERCPU_CGROUP_STORAGE",
        "QUEUE",
        "STACK",
        "SK_STORAGE",
        "DEVMAP_HASH",
        "STRUCT_OPS",
        "RINGBUF",
        "INODE_STORAGE",
        "TASK_STORAGE",
        "BLOOM_FILTER",
        "USER_RINGBUF",
        "CGRP_STORAGE",
        "ARENA",
    ];
    format!("BPF_MAP_TYPE_{}", NAMES.get(t as usize).unwrap_or(&"UNKNOWN"))
}

/// Tetragon's names of perf event types (uapi/linux/perf_event.h); a dynamic PMU's type
/// (kprobe, uprobe) is its number.
fn perf_type(t: u32) -> String {
    const NAMES: [&str; 7] = ["HARDWARE", "SOFTWARE", "TRACEPOINT", "HW_CACHE", "RAW", "BREAKPOINT", "MAX"];
    NAMES.get(t as usize).map_or_else(|| t.to_string(), |n| format!("PERF_TYPE_{n}"))
}

/// A NUL-terminated (or slot-ending) string at `at`.
fn str_at(d: &[u8], at: usize, len: usize) -> String {
    let b = d.get(at..(at + len).min(d.len())).unwrap_or_default();
    String::from_utf8_lossy(b.split(|c| *c == 0).next().unwrap_or_default()).into_owned()
}

/// An object of the fields that are set (proto3 JSON leaves out zeros and empty strings).
fn set_fields(fields: Vec<(&str, Value)>) -> Value {
    let unset = |v: &Value| v == &json!(0) || v == &json!("") || v == &json!("0");
    Value::Object(fields.into_iter().filter(|(_, v)| !unset(v)).map(|(k, v)| (k.to_owned(), v)).collect())
}

/// Tetragon's KprobeBpfMap (Go field names; the u32 sizes are JSON numbers).
fn bpf_map(d: &[u8]) -> Value {
    set_fields(vec![
        ("MapType", json!(map_type(u32_at(d, 0)))),
        ("KeySize", json!(u32_at(d, 4))),
        ("ValueSize", json!(u32_at(d, 8))),
        ("MaxEntries", json!(u32_at(d, 12))),
        ("MapName", json!(str_at(d, k::BPF_MAP_NAME, 16))),
    ])
}

/// Tetragon's KprobePerfEvent (Config and ProbeOffset are uint64: JSON strings).
fn perf_event(d: &[u8]) -> Value {
    set_fields(vec![
        ("KprobeFunc", json!(str_at(d, k::PERF_FUNC, k::PERF_FUNC_LEN))),
        ("Type", json!(perf_type(u32_at(d, 0)))),
        ("Config", json!(u64_at(d, k::PERF_CONFIG).to_string())),
        ("ProbeOffset", json!(u64_at(d, k::PERF_PROBE_OFFSET).to_string())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpf_map_and_perf_event_keep_tetragons_field_names() {
        let mut d = vec![0u8; k::BPF_MAP_LEN];
        for (i, v) in [1u32, 4, 8, 16].iter().enumerate() {
            d[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
        }
        d[k::BPF_MAP_NAME..k::BPF_MAP_NAME + 3].copy_from_slice(b"map");
        assert_eq!(
            decode(argsrc::BPF_MAP, &d).unwrap(),
            (
                "bpf_map_arg",
                json!({"MapType": "BPF_MAP_TYPE_HASH", "KeySize": 4, "ValueSize": 8, "MaxEntries": 16, "MapName": "map"})
            )
        );
        let mut d = vec![0u8; k::PERF_FUNC];
        d[0..4].copy_from_slice(&1u32.to_le_bytes());
        d[k::PERF_CONFIG..k::PERF_CONFIG + 8].copy_from_slice(&9u64.to_le_bytes());
        d.extend_from_slice(b"f");
        assert_eq!(
            decode(argsrc::PERF_EVENT, &d).unwrap(),
            ("perf_event_arg", json!({"KprobeFunc": "f", "Type": "PERF_TYPE_SOFTWARE", "Config": "9"}))
        );
        assert_eq!(perf_type(9), "9");
        assert_eq!(map_type(99), "BPF_MAP_TYPE_UNKNOWN");
    }

    #[test]
    fn cred_decodes_as_tetragon_exports_it() {
        let mut d = vec![0u8; k::CRED_LEN];
        for i in 0..8 {
            d[4 * i..4 * i + 4].copy_from_slice(&(1000 + i as u32).to_le_bytes());
        }
        d[32..36].copy_from_slice(&0x10u32.to_le_bytes());
        d[k::CRED_CAPS + 8..k::CRED_CAPS + 16].copy_from_slice(&(1u64 << 21).to_le_bytes());
        d[k::CRED_USER_NS + 12..k::CRED_USER_NS + 16].copy_from_slice(&4026531837u32.to_le_bytes());
        let (key, v) = decode(argsrc::CRED, &d).unwrap();
        assert_eq!(key, "process_credentials_arg");
        assert_eq!(
            v,
            json!({"uid": 1000, "gid": 1001, "euid": 1002, "egid": 1003, "suid": 1004, "sgid": 1005,
                   "fsuid": 1006, "fsgid": 1007, "securebits": ["SecBitKeepCaps"],
                   "caps": {"effective": ["CAP_SYS_ADMIN"]},
                   "user_ns": {"level": 0, "uid": 0, "gid": 0, "ns": {"inum": 4026531837u32, "is_host": true}}})
        );
    }

    #[test]
    fn bpf_attr_keeps_tetragons_field_names() {
        let mut d = vec![0u8; k::BPF_ATTR_LEN];
        d[0..4].copy_from_slice(&1u32.to_le_bytes());
        d[4..8].copy_from_slice(&2u32.to_le_bytes());
        d[8..12].copy_from_slice(b"prog");
        let (key, v) = decode(argsrc::BPF_ATTR, &d).unwrap();
        assert_eq!(key, "bpf_attr_arg");
        assert_eq!(v, json!({"ProgType": "BPF_PROG_TYPE_SOCKET_FILTER", "InsnCnt": 2, "ProgName": "prog"}));
        assert_eq!(prog_type(99), "BPF_PROG_TYPE_UNKNOWN");
    }

    #[test]
    fn module_and_nested_user_ns() {
        let mut d = vec![0u8; k::MODULE_NAME];
        d[0..8].copy_from_slice(&(1u64 << 13).to_le_bytes());
        d.extend_from_slice(b"nls_utf8");
        let (key, v) = decode(argsrc::MODULE, &d).unwrap();
        assert_eq!(key, "module_arg");
        assert_eq!(v, json!({"name": "nls_utf8", "signature_ok": false, "tainted": ["TAINT_UNSIGNED_MODULE"]}));
        let mut u = vec![0u8; k::USER_NS_LEN];
        u[0..4].copy_from_slice(&1u32.to_le_bytes());
        u[4..8].copy_from_slice(&1000u32.to_le_bytes());
        u[12..16].copy_from_slice(&4026532000u32.to_le_bytes());
        let (_, v) = decode(argsrc::USER_NS, &u).unwrap();
        assert_eq!(v, json!({"level": 1, "uid": 1000, "gid": 0, "ns": {"inum": 4026532000u32}}));
    }
}
