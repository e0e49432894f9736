//! What each of the sensor's BPF programs costs, from the kernel's own accounting
//! (`run_time_ns`, `run_cnt` with BPF stats on): the sensor publishes the totals, `/metrics`
//! renders them as Tetragon's pair. They live here rather than in the `metrics` facade
//! because its counters hold integers and Tetragon's counts seconds.
use std::{fmt::Write, sync::RwLock};

/// Tetragon's names (pkg/metrics/overhead) under nightjar's prefix, and Tetragon's own.
pub const PROGRAM_SECONDS: &str = "nightjar_overhead_program_seconds_total";
pub const PROGRAM_RUNS: &str = "nightjar_overhead_program_runs_total";
pub const TETRAGON_PROGRAM_SECONDS: &str = "tetragon_overhead_program_seconds_total";
pub const TETRAGON_PROGRAM_RUNS: &str = "tetragon_overhead_program_runs_total";

/// One loaded program's totals since it was loaded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProgramCost {
    /// The TracingPolicy's namespace and name when the program serves one policy; empty
    /// for the base sensor and for the programs every policy shares (the kernel counts per
    /// program, so a shared program's time cannot be split between policies).
    pub policy_namespace: String,
    pub policy: String,
    /// Tetragon's sensor names: `__base__`, `generic_tracepoint`, `generic_kprobe`, ...
    pub sensor: String,
    /// Where it runs: `sched/sched_process_exec`, or the kind of point a shared policy
    /// program serves (`syscalls/sys_exit_*`).
    pub attach: String,
    /// `<program type>/<program>` (e.g. `tracepoint/sched_process_exec`).
    pub section: String,
    pub runs: u64,
    pub run_time_ns: u64,
}

impl ProgramCost {
    /// Mean cost of one run, in nanoseconds (0 before the first run).
    pub fn ns_per_run(&self) -> u64 {
        self.run_time_ns.checked_div(self.runs).unwrap_or(0)
    }
}

static COSTS: RwLock<Vec<ProgramCost>> = RwLock::new(Vec::new());

/// Replaces the published totals (the sensor calls this on its stats timer).
pub fn publish(costs: Vec<ProgramCost>) {
    *COSTS.write().unwrap_or_else(|e| e.into_inner()) = costs;
}

/// The last published totals.
pub fn costs() -> Vec<ProgramCost> {
    COSTS.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Appends the pair in Prometheus text format (HELP, TYPE counter, one series a program),
/// under Tetragon's names too with `metrics.tetragon_names`.
pub fn render(out: &mut String) {
    let costs = COSTS.read().unwrap_or_else(|e| e.into_inner());
    if costs.is_empty() {
        return;
    }
    let mut names = vec![(PROGRAM_SECONDS, PROGRAM_RUNS)];
    if crate::metrics::tetragon() {
        names.push((TETRAGON_PROGRAM_SECONDS, TETRAGON_PROGRAM_RUNS));
    }
    for (seconds, runs) in names {
        family(out, seconds, "The total time of BPF program running.", &costs, |c| {
            format!("{}", c.run_time_ns as f64 / 1e9)
        });
        family(out, runs, "The total number of times BPF program was executed.", &costs, |c| c.runs.to_string());
    }
}

fn family(out: &mut String, name: &str, help: &str, costs: &[ProgramCost], value: impl Fn(&ProgramCost) -> String) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for c in costs {
        let _ = write!(out, "{name}{{");
        for (i, (k, v)) in [
            ("policy_namespace", &c.policy_namespace),
            ("policy", &c.policy),
            ("sensor", &c.sensor),
            ("attach", &c.attach),
            ("section", &c.section),
        ]
        .into_iter()
        .enumerate()
        {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(out, "{sep}{k}=\"{}\"", escape(v));
        }
        let _ = writeln!(out, "}} {}", value(c));
    }
}

/// Label values escaped as the text format wants (backslash, quote, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_tetragons_pair_with_its_labels() {
        let c = ProgramCost {
            policy_namespace: String::new(),
            policy: "a\"b".into(),
            sensor: "__base__".into(),
            attach: "sched/sched_process_exec".into(),
            section: "tracepoint/sched_process_exec".into(),
            runs: 4,
            run_time_ns: 1_500_000_000,
        };
        assert_eq!(c.ns_per_run(), 375_000_000);
        let mut out = String::new();
        family(&mut out, PROGRAM_SECONDS, "h", &[c], |c| format!("{}", c.run_time_ns as f64 / 1e9));
        assert_eq!(
            out,
            "# HELP nightjar_overhead_program_seconds_total h\n# TYPE nightjar_overhead_program_seconds_total counter\n\
             nightjar_overhead_program_seconds_total{policy_namespace=\"\",policy=\"a\\\"b\",sensor=\"__base__\",\
             attach=\"sched/sched_process_exec\",section=\"tracepoint/sched_process_exec\"} 1.5\n"
        );
    }
}
