//! A sink's health and figures, kept by its driver and read by `nightjar status`,
//! `/healthz`, the metrics and the shutdown report.
use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use pipeline::{fanout::OutputCounters, metrics::names};
use serde_json::json;

use crate::buffer::{BufferStats, BufferType};

/// Health as `/healthz` and `nightjar status` judge it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Health {
    Healthy,
    /// Delivering late or not at all for longer than the sink's `health_timeout_secs`.
    Degraded(String),
    /// A configuration error (bad credentials, bad URL): the sink will not deliver.
    Disabled(String),
}

#[derive(Debug, Clone)]
enum Phase {
    Starting,
    Running,
    Disabled(String),
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    /// The current run of failures: since when, and the last error.
    failing: Option<(Instant, String)>,
}

/// Shared between a sink's driver and the readers of its state.
#[derive(Debug)]
pub struct SinkHealth {
    pub name: &'static str,
    pub buffer_type: BufferType,
    pub timeout: Duration,
    pub stats: Arc<BufferStats>,
    /// What the fan-out queued for this sink and dropped.
    pub fanout: Arc<OutputCounters>,
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Unix ms when the oldest event the sink has not yet taken entered the buffer (0: none).
    oldest_ms: AtomicU64,
    inner: Mutex<Inner>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl SinkHealth {
    pub fn new(name: &'static str, buffer_type: BufferType, timeout: Duration, stats: Arc<BufferStats>) -> Self {
        metrics::gauge!(names::SINK_UP, "sink" => name).set(0.0);
        metrics::gauge!(names::BUFFER_OLDEST_AGE, "sink" => name).set(0.0);
        SinkHealth {
            name,
            buffer_type,
            timeout,
            stats,
            fanout: Arc::default(),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            oldest_ms: AtomicU64::new(0),
            inner: Mutex::new(Inner { phase: Phase::Starting, failing: None }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sink delivered (or started): the failure run is over.
    pub fn ok(&self) {
        let mut g = self.lock();
        if g.failing.take().is_some() {
            tracing::info!(sink = self.name, "sink recovered");
        }
        if matches!(g.phase, Phase::Starting) {
            g.phase = Phase::Running;
        }
        metrics::gauge!(names::SINK_UP, "sink" => self.name).set(1.0);
    }

    /// An attempt failed and will be retried.
    pub fn failing(&self, why: &str) {
        let mut g = self.lock();
        let since = g.failing.as_ref().map(|f| f.0).unwrap_or_else(Instant::now);
        g.failing = Some((since, why.to_owned()));
        metrics::gauge!(names::SINK_UP, "sink" => self.name).set(0.0);
    }

    pub fn disable(&self, why: &str) {
        self.lock().phase = Phase::Disabled(why.to_owned());
        metrics::gauge!(names::SINK_UP, "sink" => self.name).set(0.0);
    }

    /// The batch in hand entered the buffer at `ms` (0: nothing in hand).
    pub fn set_oldest(&self, ms: u64) {
        self.oldest_ms.store(ms, Ordering::Relaxed);
        let age = if ms == 0 { 0.0 } else { now_ms().saturating_sub(ms) as f64 / 1000.0 };
        metrics::gauge!(names::BUFFER_OLDEST_AGE, "sink" => self.name).set(age);
    }

    /// Seconds the oldest undelivered event has waited.
    pub fn oldest_age(&self) -> Duration {
        match self.oldest_ms.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            ms => Duration::from_millis(now_ms().saturating_sub(ms)),
        }
    }

    pub fn health(&self) -> Health {
        let g = self.lock();
        if let Phase::Disabled(why) = &g.phase {
            return Health::Disabled(why.clone());
        }
        if let Some((since, why)) = &g.failing {
            if since.elapsed() >= self.timeout {
                return Health::Degraded(format!("failing for {}s: {why}", since.elapsed().as_secs()));
            }
        }
        let age = self.oldest_age();
        if age >= self.timeout {
            return Health::Degraded(format!("nothing delivered for {}s (events are waiting)", age.as_secs()));
        }
        Health::Healthy
    }

    /// One line for `nightjar status`.
    pub fn summary(&self) -> String {
        let h = self.health();
        let g = self.lock();
        match (h, &g.phase, &g.failing) {
            (Health::Disabled(why), _, _) => format!("disabled: {why}"),
            (Health::Degraded(why), _, _) => format!("degraded: {why}"),
            (Health::Healthy, _, Some((since, why))) => {
                format!("retrying for {}s (events are buffered): {why}", since.elapsed().as_secs())
            }
            (Health::Healthy, Phase::Starting, None) => "starting".into(),
            (Health::Healthy, _, None) => "healthy".into(),
        }
    }

    pub fn status_json(&self) -> serde_json::Value {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        json!({
            "state": self.summary(),
            "healthy": self.health() == Health::Healthy,
            "buffer": {
                "type": match self.buffer_type { BufferType::Memory => "memory", BufferType::Disk => "disk" },
                "events": get(&self.stats.events),
                "bytes": get(&self.stats.bytes),
                "oldest_event_age_secs": self.oldest_age().as_secs_f64(),
                "replayed": get(&self.stats.replayed),
                "corrupt_skipped": get(&self.stats.corrupt),
            },
            "delivered": get(&self.delivered),
            "failed": get(&self.failed),
            "dead_lettered": get(&self.dead_lettered),
            "dropped": get(&self.fanout.dropped_full) + get(&self.fanout.dropped_closed) + get(&self.stats.dropped),
        })
    }
}
