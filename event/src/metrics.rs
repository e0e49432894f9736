//! Metric names and the counters every part of the agent increments, written through the
//! `metrics` facade (the recorder and the `/metrics` endpoint live in the pipeline).
//! The headline counters can also be exported under Tetragon's names.
use std::sync::atomic::{AtomicBool, Ordering};

/// Metric names (the `nightjar_` prefix is part of each).
pub mod names {
    pub const EVENTS: &str = "nightjar_events_total";
    pub const POLICY_EVENTS: &str = "nightjar_policy_events_total";
    pub const PROCESS_EXEC: &str = "nightjar_process_exec_total";
    pub const MISSED_EVENTS: &str = "nightjar_missed_events_total";
    pub const STAGE_DROPPED: &str = "nightjar_stage_dropped_total";
    pub const BUFFER_EVENTS: &str = "nightjar_buffer_events";
    pub const BUFFER_BYTES: &str = "nightjar_buffer_bytes";
    pub const BUFFER_MAX_EVENTS: &str = "nightjar_buffer_max_events";
    pub const BUFFER_MAX_BYTES: &str = "nightjar_buffer_max_bytes";
    pub const BUFFER_BORROWED_BYTES: &str = "nightjar_buffer_borrowed_bytes";
    pub const FANOUT_OVERFLOW: &str = "nightjar_fanout_overflow_events";
    pub const BUFFER_OLDEST_AGE: &str = "nightjar_buffer_oldest_event_age_seconds";
    pub const BUFFER_REPLAYED: &str = "nightjar_buffer_replayed_events_total";
    pub const BUFFER_CORRUPT: &str = "nightjar_buffer_corrupt_skipped_total";
    pub const BUFFER_COMMIT_FAILURES: &str = "nightjar_buffer_commit_failures_total";
    pub const SINK_UP: &str = "nightjar_sink_up";
    pub const SINK_EVENTS: &str = "nightjar_sink_events_total";
    pub const SINK_BATCH_SECONDS: &str = "nightjar_sink_batch_seconds";
    pub const SINK_RETRIES: &str = "nightjar_sink_retries_total";
    pub const PROCESS_CACHE_SIZE: &str = "nightjar_process_cache_size";
    pub const POLICY_FILTERED: &str = "nightjar_policy_filtered_total";
    pub const POLICY_RATE_LIMITED: &str = "nightjar_policy_rate_limited_total";
    pub const ENFORCER_SIGNALS: &str = "nightjar_enforcer_signals_total";
    pub const BUILD_INFO: &str = "nightjar_build_info";

    pub const TETRAGON_EVENTS: &str = "tetragon_events_total";
    pub const TETRAGON_POLICY_EVENTS: &str = "tetragon_policy_events_total";
    pub const TETRAGON_PROCESS_EXEC: &str = "tetragon_process_exec_total";
    pub const TETRAGON_MISSED_EVENTS: &str = "tetragon_missed_events_total";
}

static TETRAGON_NAMES: AtomicBool = AtomicBool::new(false);

/// Also export the four headline series under Tetragon's names.
pub fn set_tetragon_names(on: bool) {
    TETRAGON_NAMES.store(on, Ordering::Relaxed);
}

pub(crate) fn tetragon() -> bool {
    TETRAGON_NAMES.load(Ordering::Relaxed)
}

/// One event of `event_type` entered the pipeline.
pub fn count_event(event_type: &'static str) {
    count_events(event_type, 1);
}

/// `n` events of one type (a batch's, counted once: each series lookup costs a hash and a lock).
pub fn count_events(event_type: &'static str, n: u64) {
    metrics::counter!(names::EVENTS, "type" => event_type).increment(n);
    if tetragon() {
        metrics::counter!(names::TETRAGON_EVENTS, "type" => event_type).increment(n);
    }
}

/// One process execution was observed.
pub fn count_exec() {
    metrics::counter!(names::PROCESS_EXEC).increment(1);
    if tetragon() {
        metrics::counter!(names::TETRAGON_PROCESS_EXEC).increment(1);
    }
}

/// A policy produced an event with `action`.
pub fn count_policy_event(policy: &str, action: &str) {
    count_policy_events(policy, action, 1);
}

/// `n` events of one policy and action (a batch's, counted once).
pub fn count_policy_events(policy: &str, action: &str, n: u64) {
    metrics::counter!(names::POLICY_EVENTS, "policy" => policy.to_owned(), "action" => action.to_owned()).increment(n);
    if tetragon() {
        metrics::counter!(names::TETRAGON_POLICY_EVENTS, "policy" => policy.to_owned(), "hook" => action.to_owned())
            .increment(n);
    }
}

/// Sets the absolute number of events lost for `cause` (the kernel keeps the count).
pub fn set_missed(cause: &'static str, kind: &'static str, total: u64) {
    metrics::counter!(names::MISSED_EVENTS, "cause" => cause, "kind" => kind).absolute(total);
    if tetragon() {
        metrics::counter!(names::TETRAGON_MISSED_EVENTS, "cause" => cause, "kind" => kind).absolute(total);
    }
}

/// Sets the absolute number of hook hits a policy's selectors filtered out in the kernel.
pub fn set_policy_filtered(policy: &str, hook: &str, total: u64) {
    metrics::counter!(names::POLICY_FILTERED, "policy" => policy.to_owned(), "hook" => hook.to_owned()).absolute(total);
}

/// Sink outcomes, as `sink_events_total{outcome}` labels them.
pub const SINK_OUTCOMES: [&str; 5] = ["delivered", "retried", "failed", "dead_lettered", "dropped"];

/// Registers every series an alert may take `increase()` of at 0 before its first
/// increment (a counter born at 1 shows no increase): the event types of the kinds table.
pub fn init_event_series() {
    for k in &crate::KINDS {
        metrics::counter!(names::EVENTS, "type" => k.key).increment(0);
        if tetragon() {
            metrics::counter!(names::TETRAGON_EVENTS, "type" => k.key).increment(0);
        }
    }
}

/// The `policy_events_total` series of a loaded policy at 0, one per action its events carry.
pub fn init_policy_series(policy: &str, actions: &[&str]) {
    for a in actions {
        metrics::counter!(names::POLICY_EVENTS, "policy" => policy.to_owned(), "action" => (*a).to_owned())
            .increment(0);
        if tetragon() {
            metrics::counter!(names::TETRAGON_POLICY_EVENTS, "policy" => policy.to_owned(), "hook" => (*a).to_owned())
                .increment(0);
        }
    }
}

/// The `sink_events_total` series of a sink at 0, one per outcome.
pub fn init_sink_series(sink: &'static str) {
    for outcome in SINK_OUTCOMES {
        metrics::counter!(names::SINK_EVENTS, "sink" => sink, "outcome" => outcome).increment(0);
    }
}

/// Sets the kernel's count of events a policy hook's rateLimit held back.
pub fn set_policy_rate_limited(policy: &str, hook: &str, total: u64) {
    metrics::counter!(names::POLICY_RATE_LIMITED, "policy" => policy.to_owned(), "hook" => hook.to_owned())
        .absolute(total);
}

/// Sets the kernel's counts of NotifyEnforcer signals the enforcer sent and failed to send.
pub fn set_enforcer_signals(sent: u64, failed: u64) {
    metrics::counter!(names::ENFORCER_SIGNALS, "outcome" => "sent").absolute(sent);
    metrics::counter!(names::ENFORCER_SIGNALS, "outcome" => "failed").absolute(failed);
}

/// A stage discarded `n` events for `reason`.
pub fn count_stage_drop(stage: &'static str, reason: &'static str, n: u64) {
    metrics::counter!(names::STAGE_DROPPED, "stage" => stage, "reason" => reason).increment(n);
}

/// HELP text for every series (Prometheus' linter, `promtool check metrics`, wants it).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(names::EVENTS, "Events that entered the pipeline, by type.");
    describe_counter!(names::POLICY_EVENTS, "Events produced by a tracing policy, by policy and action.");
    describe_counter!(names::PROCESS_EXEC, "Process executions observed.");
    describe_counter!(names::MISSED_EVENTS, "Events the kernel could not hand to the agent, by cause and kind.");
    describe_counter!(names::STAGE_DROPPED, "Events a pipeline stage discarded, by stage and reason.");
    describe_gauge!(names::BUFFER_EVENTS, "Events in a sink's buffer, not yet acknowledged by the sink.");
    describe_gauge!(names::BUFFER_BYTES, "Bytes a sink's disk buffer holds on disk.");
    describe_gauge!(names::BUFFER_MAX_EVENTS, "Size of a sink's memory buffer in events (0: a disk buffer).");
    describe_gauge!(names::BUFFER_MAX_BYTES, "Size of a sink's disk buffer in bytes (0: a memory buffer).");
    describe_gauge!(
        names::BUFFER_BORROWED_BYTES,
        "Bytes a full blocking disk buffer holds beyond its max_size, in the room the other blocking disk buffers leave."
    );
    describe_gauge!(
        names::FANOUT_OVERFLOW,
        "Events waiting in the fan-out for a full blocking sink buffer, in the room the other blocking buffers leave."
    );
    describe_gauge!(
        names::BUFFER_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest event a sink has not delivered yet (0 when it is caught up)."
    );
    describe_counter!(names::BUFFER_REPLAYED, "Events read back from a disk buffer written by an earlier run.");
    describe_counter!(names::BUFFER_CORRUPT, "Records of a disk buffer found corrupt or truncated and skipped.");
    describe_counter!(
        names::BUFFER_COMMIT_FAILURES,
        "Failed writes of the disk buffers' commit point (each is retried; meanwhile nothing new is accepted)."
    );
    describe_gauge!(names::SINK_UP, "1 when a sink is delivering, 0 while it retries or is disabled.");
    describe_counter!(
        names::SINK_EVENTS,
        "Events handled by a sink, by outcome (delivered, retried, failed, dead_lettered, dropped)."
    );
    describe_counter!(
        names::SINK_RETRIES,
        "Retries of a remote sink after a failure (Elasticsearch _bulk requests; Kafka produce requests and broker reconnections)."
    );
    describe_histogram!(names::SINK_BATCH_SECONDS, Unit::Seconds, "Time to deliver one batch to a sink.");
    describe_gauge!(names::PROCESS_CACHE_SIZE, "Executions held in the process cache.");
    describe_counter!(
        names::POLICY_FILTERED,
        "Hook hits no selector of the policy matched: filtered in the kernel, never sent to user space."
    );
    describe_counter!(
        names::POLICY_RATE_LIMITED,
        "Events a policy's rateLimit held back in the kernel (repeats within the period), by policy and hook."
    );
    describe_counter!(
        names::ENFORCER_SIGNALS,
        "Signals the enforcer sent (or failed to send) at the exit of an enforced syscall after a NotifyEnforcer."
    );
    describe_gauge!(names::BUILD_INFO, "Always 1; the version label says which nightjar runs.");
    describe_counter!(names::TETRAGON_EVENTS, "Tetragon-compatible name of nightjar_events_total.");
    describe_counter!(names::TETRAGON_POLICY_EVENTS, "Tetragon-compatible name of nightjar_policy_events_total.");
    describe_counter!(names::TETRAGON_PROCESS_EXEC, "Tetragon-compatible name of nightjar_process_exec_total.");
    describe_counter!(names::TETRAGON_MISSED_EVENTS, "Tetragon-compatible name of nightjar_missed_events_total.");
}

/// Every metric name the agent exports (dashboards and alert rules are checked against it).
pub const ALL_NAMES: [&str; 30] = [
    names::ENFORCER_SIGNALS,
    crate::overhead::PROGRAM_SECONDS,
    crate::overhead::PROGRAM_RUNS,
    names::POLICY_FILTERED,
    names::POLICY_RATE_LIMITED,
    names::EVENTS,
    names::POLICY_EVENTS,
    names::PROCESS_EXEC,
    names::MISSED_EVENTS,
    names::STAGE_DROPPED,
    names::BUFFER_EVENTS,
    names::BUFFER_BYTES,
    names::BUFFER_MAX_EVENTS,
    names::BUFFER_MAX_BYTES,
    names::BUFFER_BORROWED_BYTES,
    names::FANOUT_OVERFLOW,
    names::BUFFER_OLDEST_AGE,
    names::BUFFER_REPLAYED,
    names::BUFFER_CORRUPT,
    names::BUFFER_COMMIT_FAILURES,
    names::SINK_UP,
    names::SINK_EVENTS,
    names::SINK_BATCH_SECONDS,
    names::SINK_RETRIES,
    names::PROCESS_CACHE_SIZE,
    names::BUILD_INFO,
    names::TETRAGON_EVENTS,
    names::TETRAGON_POLICY_EVENTS,
    names::TETRAGON_PROCESS_EXEC,
    names::TETRAGON_MISSED_EVENTS,
];

/// The fan-out could not queue an event for `sink` (`queue_full`, `sink_closed`).
pub fn count_sink_drop(sink: &'static str, reason: &'static str) {
    metrics::counter!(names::STAGE_DROPPED, "stage" => "fanout", "reason" => reason, "sink" => sink).increment(1);
    metrics::counter!(names::SINK_EVENTS, "sink" => sink, "outcome" => "dropped").increment(1);
}
