//! Rate limiting: a global token bucket and one bucket per key (a configured field), both
//! GCRA token buckets from `governor`. A dropped event is counted (`reason="global"` or
//! `"per_key"`); every `report_interval_ms` while drops happen, a `rate_limit_info` event
//! says how many, as Tetragon does. Per-key buckets live in a bounded LRU.
use std::{
    num::{NonZeroU32, NonZeroUsize},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use governor::{
    clock::Clock, middleware::NoOpMiddleware, nanos::Nanos, state::InMemoryState, state::NotKeyed, Quota, RateLimiter,
};
use lru::LruCache;
use serde::{Deserialize, Serialize};

use super::{
    key::{key_into, KeyField},
    Context, Out, Stage, StageError,
};
use crate::{event::RateLimitInfo, time::Timestamp, Event, EventKind};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Events per second for the whole node (0: no global limit).
    pub events_per_second: u32,
    /// Largest burst above the global rate.
    pub burst: u32,
    /// Per-key limit: events per second for each key (0: no per-key limit).
    pub per_key_events_per_second: u32,
    pub per_key_burst: u32,
    /// Fields forming the per-key key (e.g. [binary], [namespace, pod]).
    pub key_fields: Vec<KeyField>,
    /// Most keys with a bucket at once (least recently used ones are forgotten).
    #[serde(deserialize_with = "crate::config::bounded::<_, _, 1, 1048576>")]
    pub max_keys: usize,
    /// How often a `rate_limit_info` event reports the drops, in milliseconds.
    #[serde(deserialize_with = "crate::config::bounded::<_, _, 1, 3600000>")]
    pub report_interval_ms: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            events_per_second: 0,
            burst: 1000,
            per_key_events_per_second: 0,
            per_key_burst: 100,
            key_fields: vec![KeyField::Binary],
            max_keys: 10_000,
            report_interval_ms: 5000,
        }
    }
}

impl RateLimitConfig {
    pub fn enabled(&self) -> bool {
        self.events_per_second > 0 || self.per_key_events_per_second > 0
    }
}

/// The stage's clock: the `now` handed to `process`, so tests control time.
#[derive(Clone)]
struct StageClock {
    base: Instant,
    now: Arc<AtomicU64>,
}

impl StageClock {
    fn set(&self, now: Instant) {
        let n = now.saturating_duration_since(self.base).as_nanos().min(u64::MAX as u128) as u64;
        self.now.fetch_max(n, Ordering::Relaxed);
    }
}

impl Clock for StageClock {
    type Instant = Nanos;
    fn now(&self) -> Nanos {
        Nanos::from(self.now.load(Ordering::Relaxed))
    }
}

type Bucket = RateLimiter<NotKeyed, InMemoryState, StageClock, NoOpMiddleware<Nanos>>;
/// Per-key buckets by key bytes ([`key_into`]).
type Buckets = LruCache<Vec<u8>, Bucket>;

pub struct RateLimit {
    node: String,
    clock: StageClock,
    global: Option<Bucket>,
    per_key: Option<(Quota, Vec<KeyField>, Buckets)>,
    /// The per-key key being looked up, reused from event to event.
    key: Vec<u8>,
    report_every: Duration,
    pending: u64,
    last_report: Option<Instant>,
}

fn quota(what: &str, rate: u32, burst: u32) -> Result<Quota, StageError> {
    let r = NonZeroU32::new(rate).ok_or_else(|| StageError::RateLimit(format!("{what}: rate must be > 0")))?;
    let b = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Ok(Quota::per_second(r).allow_burst(b))
}

impl RateLimit {
    pub fn new(cfg: &RateLimitConfig, ctx: &Context) -> Result<Self, StageError> {
        let clock = StageClock { base: Instant::now(), now: Arc::default() };
        let global = (cfg.events_per_second > 0)
            .then(|| quota("events_per_second", cfg.events_per_second, cfg.burst))
            .transpose()?
            .map(|q| RateLimiter::direct_with_clock(q, clock.clone()));
        let per_key = if cfg.per_key_events_per_second > 0 {
            if cfg.key_fields.is_empty() {
                return Err(StageError::RateLimit("key_fields must name at least one field".into()));
            }
            let cap =
                NonZeroUsize::new(cfg.max_keys).ok_or_else(|| StageError::RateLimit("max_keys must be > 0".into()))?;
            let q = quota("per_key_events_per_second", cfg.per_key_events_per_second, cfg.per_key_burst)?;
            Some((q, cfg.key_fields.clone(), LruCache::new(cap)))
        } else {
            None
        };
        Ok(RateLimit {
            node: ctx.node_name.clone(),
            clock,
            global,
            per_key,
            key: Vec::with_capacity(64),
            report_every: Duration::from_millis(cfg.report_interval_ms.max(1)),
            pending: 0,
            last_report: None,
        })
    }

    fn report(&mut self, now: Instant, out: &mut Out) {
        if self.pending == 0 {
            return;
        }
        let info = RateLimitInfo { number_of_dropped_process_events: Some(self.pending), ..Default::default() };
        out.generate(Event::new(EventKind::RateLimitInfo(info), self.node.clone(), Timestamp::now()));
        self.pending = 0;
        self.last_report = Some(now);
    }
}

impl Stage for RateLimit {
    fn name(&self) -> &'static str {
        "rate_limit"
    }

    fn process(&mut self, ev: Event, now: Instant, out: &mut Out) {
        // The limiter's own reports always pass.
        if matches!(ev.kind, EventKind::RateLimitInfo(_)) {
            out.pass(ev);
            return;
        }
        self.clock.set(now);
        // Per key first, so a noisy key does not spend the global budget.
        if let Some((q, fields, buckets)) = &mut self.per_key {
            key_into(fields, &ev, &mut self.key);
            let clock = &self.clock;
            let b =
                buckets.get_or_insert_ref(self.key.as_slice(), || RateLimiter::direct_with_clock(*q, clock.clone()));
            if b.check().is_err() {
                out.drop("per_key", 1);
                self.pending += 1;
                return;
            }
        }
        if let Some(g) = &self.global {
            if g.check().is_err() {
                out.drop("global", 1);
                self.pending += 1;
                return;
            }
        }
        out.pass(ev);
        if self.pending > 0 && self.last_report.is_none_or(|t| now.duration_since(t) >= self.report_every) {
            self.report(now, out);
        }
    }

    fn tick(&mut self, now: Instant, out: &mut Out) {
        if self.last_report.is_none_or(|t| now.duration_since(t) >= self.report_every) {
            self.report(now, out);
        }
    }

    fn finish(&mut self, now: Instant, out: &mut Out) {
        self.report(now, out);
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(self.report_every)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Process, ProcessExec};

    fn exec(binary: &str) -> Event {
        Event::new(
            EventKind::ProcessExec(Box::new(ProcessExec {
                process: Some(Process { binary: Some(binary.into()), ..Default::default() }.into()),
                ..Default::default()
            })),
            "n",
            Timestamp::now(),
        )
    }

    fn ctx() -> Context {
        Context { node_name: "n".into() }
    }

    #[test]
    fn global_bucket_drops_and_reports() {
        let cfg = RateLimitConfig { events_per_second: 10, burst: 5, report_interval_ms: 1000, ..Default::default() };
        let mut rl = RateLimit::new(&cfg, &ctx()).unwrap();
        let mut out = Out::new("rate_limit");
        let t0 = Instant::now();
        for _ in 0..20 {
            rl.process(exec("/bin/a"), t0, &mut out);
        }
        assert_eq!(out.report().passed, 5, "the burst passes");
        assert_eq!(out.report().dropped.get("global"), Some(&15));
        // First report goes out with the next passing event; later drops wait for the interval.
        rl.process(exec("/bin/a"), t0 + Duration::from_millis(100), &mut out);
        let evs = out.take();
        let info: Vec<_> = evs.iter().filter(|e| matches!(e.kind, EventKind::RateLimitInfo(_))).collect();
        assert_eq!(info.len(), 1);
        let EventKind::RateLimitInfo(i) = &info[0].kind else { unreachable!() };
        assert_eq!(i.number_of_dropped_process_events, Some(15));
        // Refill: 10/s, so 1 s later the bucket holds the full burst again.
        for _ in 0..3 {
            rl.process(exec("/bin/a"), t0 + Duration::from_millis(200), &mut out);
        }
        rl.finish(t0 + Duration::from_millis(200), &mut out);
        let evs = out.take();
        let dropped_after: u64 = evs
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::RateLimitInfo(i) => i.number_of_dropped_process_events,
                _ => None,
            })
            .sum();
        assert_eq!(dropped_after + 15, out.report().dropped_total(), "every drop is reported once");
    }

    #[test]
    fn per_key_buckets_are_independent_and_bounded() {
        let cfg = RateLimitConfig { per_key_events_per_second: 1, per_key_burst: 2, max_keys: 2, ..Default::default() };
        let mut rl = RateLimit::new(&cfg, &ctx()).unwrap();
        let mut out = Out::new("rate_limit");
        let t = Instant::now();
        for b in ["/bin/a", "/bin/a", "/bin/a", "/bin/b", "/bin/b", "/bin/b"] {
            rl.process(exec(b), t, &mut out);
        }
        assert_eq!(out.report().passed, 4);
        assert_eq!(out.report().dropped.get("per_key"), Some(&2));
        rl.process(exec("/bin/c"), t, &mut out);
        let (_, _, buckets) = rl.per_key.as_ref().unwrap();
        assert_eq!(buckets.len(), 2, "LRU bound holds");
    }

    #[test]
    fn zero_keys_is_refused() {
        let cfg = RateLimitConfig { per_key_events_per_second: 1, max_keys: 0, ..Default::default() };
        assert!(RateLimit::new(&cfg, &ctx()).is_err());
    }
}
