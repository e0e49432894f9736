//! Dedup: within a time window, events with the same key (configured fields) after the first
//! are discarded and counted (`reason="duplicate"`); when the window closes, the last
//! duplicate is emitted once with `"aggregation_info": {"count": "N"}` (N duplicates folded
//! into it), like Tetragon's aggregation. Keys live in a bounded table that forgets the
//! oldest first ([`KeyFifo`]); a key forgotten early has its summary emitted then.
use std::{
    num::NonZeroUsize,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{
    fifo::KeyFifo,
    key::{key_into, KeyField},
    Out, Stage, StageError,
};
use crate::Event;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupConfig {
    pub enabled: bool,
    /// Fields that make two events the same.
    pub key_fields: Vec<KeyField>,
    /// Window, from the first event of a key, in milliseconds.
    #[serde(deserialize_with = "crate::config::bounded::<_, _, 1, 3600000>")]
    pub window_ms: u64,
    /// Most keys remembered at once.
    #[serde(deserialize_with = "crate::config::bounded::<_, _, 1, 1048576>")]
    pub max_keys: usize,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            enabled: true,
            key_fields: vec![
                KeyField::Type,
                KeyField::ExecId,
                KeyField::FunctionName,
                KeyField::PolicyName,
                KeyField::Action,
                KeyField::Args,
            ],
            window_ms: 1000,
            max_keys: 65536,
        }
    }
}

struct Entry {
    started: Instant,
    duplicates: u64,
    /// Boxed: most keys never see a duplicate, and an inline event would make every
    /// entry (moved on each insert and eviction) seven times larger (288 bytes, not 40).
    last: Option<Box<Event>>,
}

pub struct Dedup {
    fields: Vec<KeyField>,
    window: Duration,
    // Entries are not moved on a hit, so insertion order is window-start order: the
    // expired ones are always at the old end.
    seen: KeyFifo<Entry>,
    /// The key being looked up, reused from event to event.
    key: Vec<u8>,
}

impl Dedup {
    pub fn new(cfg: &DedupConfig) -> Result<Self, StageError> {
        let cap = NonZeroUsize::new(cfg.max_keys).ok_or_else(|| StageError::Dedup("max_keys must be > 0".into()))?;
        if cfg.key_fields.is_empty() {
            return Err(StageError::Dedup("key_fields must name at least one field".into()));
        }
        if cfg.window_ms == 0 {
            return Err(StageError::Dedup("window_ms must be > 0 (or set enabled: false)".into()));
        }
        Ok(Dedup {
            fields: cfg.key_fields.clone(),
            window: Duration::from_millis(cfg.window_ms),
            seen: KeyFifo::new(cap.get()),
            key: Vec::with_capacity(64),
        })
    }

    fn summarise(e: Entry, out: &mut Out) {
        if let Some(ev) = e.last {
            let mut ev = *ev;
            // AggregationInfo.count is a uint64: a string in protobuf JSON.
            ev.extra.insert("aggregation_info".into(), json!({ "count": e.duplicates.to_string() }));
            out.generate(ev);
        }
    }

    pub fn keys(&self) -> usize {
        self.seen.len()
    }
}

impl Stage for Dedup {
    fn name(&self) -> &'static str {
        "dedup"
    }

    fn process(&mut self, ev: Event, now: Instant, out: &mut Out) {
        // Rate-limit reports and summaries are never folded, nor kinds nightjar does not
        // model: their key fields cannot be read, so distinct events would look alike.
        let untyped = ev.kind.payload().is_none();
        if untyped || ev.extra.contains_key("aggregation_info") || matches!(ev.kind, crate::EventKind::RateLimitInfo(_))
        {
            out.pass(ev);
            return;
        }
        self.tick(now, out);
        key_into(&self.fields, &ev, &mut self.key);
        let hash = self.seen.hash(&self.key);
        if let Some(e) = self.seen.get_mut(&self.key, hash) {
            e.duplicates += 1;
            match &mut e.last {
                Some(last) => **last = ev,
                None => e.last = Some(Box::new(ev)),
            }
            out.drop("duplicate", 1);
            return;
        }
        out.pass(ev);
        if let Some(old) = self.seen.push(&self.key, hash, Entry { started: now, duplicates: 0, last: None }) {
            Self::summarise(old, out);
        }
    }

    fn tick(&mut self, now: Instant, out: &mut Out) {
        while let Some(e) = self.seen.oldest() {
            if now.duration_since(e.started) < self.window {
                break;
            }
            if let Some(e) = self.seen.pop_oldest() {
                Self::summarise(e, out);
            }
        }
    }

    fn finish(&mut self, _now: Instant, out: &mut Out) {
        while let Some(e) = self.seen.pop_oldest() {
            Self::summarise(e, out);
        }
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some((self.window / 4).max(Duration::from_millis(10)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, Process, ProcessKprobe};

    fn kprobe(exec_id: &str, func: &str) -> Event {
        Event::new(
            EventKind::ProcessKprobe(Box::new(ProcessKprobe {
                process: Some(Process { exec_id: Some(exec_id.into()), ..Default::default() }.into()),
                function_name: Some(func.into()),
                ..Default::default()
            })),
            "n",
            crate::time::Timestamp::now(),
        )
    }

    #[test]
    fn distinct_events_of_every_kind_are_not_folded() {
        let mut d = Dedup::new(&DedupConfig::default()).unwrap();
        let mut out = Out::new("dedup");
        let t0 = Instant::now();
        let lines = [
            // Two LSM events of two executions: same function, policy and action.
            r#"{"process_lsm":{"process":{"exec_id":"a"},"function_name":"file_open","policy_name":"p","action":"KPROBE_ACTION_POST"}}"#,
            r#"{"process_lsm":{"process":{"exec_id":"b"},"function_name":"file_open","policy_name":"p","action":"KPROBE_ACTION_POST"}}"#,
            // Two events of a kind newer than nightjar's table, with different contents.
            r#"{"process_future":{"process":{"exec_id":"a"},"x":1}}"#,
            r#"{"process_future":{"process":{"exec_id":"b"},"x":2}}"#,
        ];
        for l in lines {
            d.process(Event::from_json(l).unwrap(), t0, &mut out);
        }
        assert_eq!(out.take().len(), 4, "distinct events were folded: {:?}", out.report());
        // The same LSM event again is a duplicate.
        d.process(Event::from_json(lines[0]).unwrap(), t0, &mut out);
        assert_eq!(out.report().dropped.get("duplicate"), Some(&1));
    }

    #[test]
    fn duplicates_in_window_are_counted_and_summarised() {
        let mut d = Dedup::new(&DedupConfig::default()).unwrap();
        let mut out = Out::new("dedup");
        let t0 = Instant::now();
        for i in 0..10 {
            d.process(kprobe("a", "security_file_open"), t0 + Duration::from_millis(i), &mut out);
        }
        d.process(kprobe("b", "security_file_open"), t0, &mut out);
        let first = out.take();
        assert_eq!(first.len(), 2, "one per key passes");
        assert_eq!(out.report().dropped.get("duplicate"), Some(&9));
        // Window over: the summary of key a carries the count; b had no duplicates.
        d.tick(t0 + Duration::from_millis(1000), &mut out);
        let summaries = out.take();
        assert_eq!(summaries.len(), 1);
        assert_eq!(summaries[0].extra["aggregation_info"]["count"], "9");
        assert_eq!(d.keys(), 0);
        // A new window starts afresh.
        d.process(kprobe("a", "security_file_open"), t0 + Duration::from_millis(1001), &mut out);
        assert_eq!(out.take().len(), 1);
    }

    #[test]
    fn lru_is_bounded_and_eviction_summarises() {
        let cfg = DedupConfig { max_keys: 2, ..Default::default() };
        let mut d = Dedup::new(&cfg).unwrap();
        let mut out = Out::new("dedup");
        let t = Instant::now();
        d.process(kprobe("a", "f"), t, &mut out);
        d.process(kprobe("a", "f"), t, &mut out);
        d.process(kprobe("b", "f"), t, &mut out);
        d.process(kprobe("c", "f"), t, &mut out); // evicts a, whose summary goes out
        assert_eq!(d.keys(), 2);
        let evs = out.take();
        assert_eq!(evs.len(), 4);
        assert_eq!(evs[3].extra["aggregation_info"]["count"], "1");
        let r = out.report();
        assert_eq!((r.passed, r.generated, r.dropped.get("duplicate")), (3, 1, Some(&1)));
        d.finish(t, &mut out);
        assert!(out.take().is_empty(), "b and c had no duplicates");
    }

    #[test]
    fn bad_config_is_refused() {
        assert!(Dedup::new(&DedupConfig { max_keys: 0, ..Default::default() }).is_err());
        assert!(Dedup::new(&DedupConfig { key_fields: vec![], ..Default::default() }).is_err());
    }
}
