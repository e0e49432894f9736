//! The table of event kinds: every payload Tetragon's `GetEventsResponse` can carry, with
//! its JSON key, its `EventType` name and number, and what nightjar knows of it. Filters
//! (`event_set`), getevents (`--event-types`), metrics (`type` label), dedup, enrichment,
//! redaction, the compact view, Parquet and ECS all read kinds from here.

/// One kind of event payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    ProcessExec,
    ProcessExit,
    ProcessKprobe,
    ProcessTracepoint,
    ProcessLoader,
    ProcessUprobe,
    ProcessThrottle,
    ProcessLsm,
    ProcessUsdt,
    Test,
    RateLimitInfo,
}

/// What nightjar knows of a kind.
#[derive(Debug, PartialEq, Eq)]
pub struct KindInfo {
    pub kind: Kind,
    /// The payload's JSON key, also the `type` label of metrics: `process_exec`.
    pub key: &'static str,
    /// The `tetragon.EventType` name (filters, `--event-types`): `PROCESS_EXEC`.
    pub event_type: &'static str,
    /// The `EventType` number, which is also the payload's field number in `GetEventsResponse`.
    pub number: u32,
    /// The payload is a typed struct in [`crate::event`] (else it is kept as JSON).
    pub typed: bool,
    /// The payload describes a process (`process`, and usually `parent` and `ancestors`).
    pub has_process: bool,
    /// A tracing policy produced it (`policy_name`, `action`, `args`).
    pub policy: bool,
    /// ECS `event.category` and `event.type`.
    pub ecs: (&'static str, &'static str),
}

const fn k(
    kind: Kind,
    key: &'static str,
    event_type: &'static str,
    number: u32,
    flags: (bool, bool, bool),
    ecs: (&'static str, &'static str),
) -> KindInfo {
    KindInfo { kind, key, event_type, number, typed: flags.0, has_process: flags.1, policy: flags.2, ecs }
}

/// Every kind, in `EventType` number order. Flags: (typed, has_process, policy).
pub const KINDS: [KindInfo; 11] = [
    k(Kind::ProcessExec, "process_exec", "PROCESS_EXEC", 1, (true, true, false), ("process", "start")),
    k(Kind::ProcessExit, "process_exit", "PROCESS_EXIT", 5, (true, true, false), ("process", "end")),
    k(Kind::ProcessKprobe, "process_kprobe", "PROCESS_KPROBE", 9, (true, true, true), ("process", "info")),
    k(Kind::ProcessTracepoint, "process_tracepoint", "PROCESS_TRACEPOINT", 10, (true, true, true), ("process", "info")),
    k(Kind::ProcessLoader, "process_loader", "PROCESS_LOADER", 11, (true, true, false), ("library", "start")),
    k(Kind::ProcessUprobe, "process_uprobe", "PROCESS_UPROBE", 12, (true, true, true), ("process", "info")),
    k(Kind::ProcessThrottle, "process_throttle", "PROCESS_THROTTLE", 27, (true, false, false), ("host", "info")),
    k(Kind::ProcessLsm, "process_lsm", "PROCESS_LSM", 28, (true, true, true), ("process", "info")),
    k(Kind::ProcessUsdt, "process_usdt", "PROCESS_USDT", 29, (true, true, true), ("process", "info")),
    k(Kind::Test, "test", "TEST", 40000, (false, false, false), ("host", "info")),
    k(Kind::RateLimitInfo, "rate_limit_info", "RATE_LIMIT_INFO", 40001, (true, false, false), ("host", "info")),
];

impl Kind {
    pub fn info(self) -> &'static KindInfo {
        // KINDS is in declaration order, so the discriminant is the index.
        &KINDS[self as usize]
    }
    pub fn key(self) -> &'static str {
        self.info().key
    }
    /// By JSON key (`process_lsm`).
    pub fn from_key(key: &str) -> Option<Kind> {
        KINDS.iter().find(|i| i.key == key).map(|i| i.kind)
    }
    /// By `EventType` name (`PROCESS_LSM`; lower case accepted too, as nightjar once spelled it).
    pub fn from_event_type(name: &str) -> Option<Kind> {
        KINDS.iter().find(|i| i.event_type == name || i.key == name).map(|i| i.kind)
    }
    /// The `EventType` names, for error messages.
    pub fn event_type_names() -> String {
        KINDS.iter().map(|i| i.event_type).collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_indexed_by_kind_and_names_round_trip() {
        for (i, info) in KINDS.iter().enumerate() {
            assert_eq!(info.kind as usize, i, "{info:?}");
            assert_eq!(Kind::from_key(info.key), Some(info.kind));
            assert_eq!(Kind::from_event_type(info.event_type), Some(info.kind));
            assert_eq!(info.event_type.to_ascii_lowercase(), info.key);
        }
        assert_eq!(Kind::from_event_type("PROCESS_NOPE"), None);
    }
}
