//! The kernel's own accounting of what each loaded program costs: BPF stats switched on
//! while the sensor runs (`BPF_ENABLE_STATS`, held by a file descriptor, so it ends with
//! the agent), then `run_time_ns` and `run_cnt` read from every loaded program's fd.
//! Keeping stats on costs two clock reads per program run (measured in bench/run.sh).
use std::os::fd::OwnedFd;

use aya::{programs::Program, Ebpf};
use nightjar_event::overhead::ProgramCost;

/// Switches BPF stats on for as long as the returned fd lives; the reason when refused.
pub fn enable() -> Result<OwnedFd, String> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime).map_err(|e| format!("BPF_ENABLE_STATS refused: {e}"))
}

/// The totals of every loaded program of `ebpf` (unloaded ones are skipped).
pub fn read(ebpf: &Ebpf) -> Vec<ProgramCost> {
    let mut out: Vec<ProgramCost> = ebpf
        .programs()
        .filter_map(|(name, prog)| {
            let info = prog.info().ok()?;
            let kind = kind(prog);
            Some(ProgramCost {
                policy_namespace: String::new(),
                policy: String::new(),
                sensor: sensor(name, kind).to_owned(),
                attach: attach(name, kind),
                section: format!("{kind}/{name}"),
                runs: info.run_count(),
                run_time_ns: u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
            })
        })
        .collect();
    out.sort_by(|a, b| a.section.cmp(&b.section));
    out
}

fn kind(p: &Program) -> &'static str {
    match p {
        Program::TracePoint(_) => "tracepoint",
        Program::RawTracePoint(_) => "raw_tracepoint",
        Program::KProbe(_) => "kprobe",
        Program::UProbe(_) => "uprobe",
        Program::FEntry(_) => "fentry",
        Program::FExit(_) => "fexit",
        Program::Lsm(_) => "lsm",
        _ => "other",
    }
}

/// Tetragon's sensor names: the process lifecycle hooks are its base sensor.
fn sensor(name: &str, kind: &str) -> &'static str {
    if name.starts_with("sched_process_") {
        return "__base__";
    }
    match kind {
        "tracepoint" | "raw_tracepoint" => "generic_tracepoint",
        "kprobe" | "fentry" | "fexit" => "generic_kprobe",
        "lsm" => "generic_lsm",
        "uprobe" => "generic_uprobe",
        _ => "generic",
    }
}

/// Where the program runs; for a program every policy shares, the kind of point it serves
/// (stable while policies come and go, so the series keeps one identity).
fn attach(name: &str, kind: &str) -> String {
    match name {
        "sched_process_exec" | "sched_process_exit" => format!("sched/{name}"),
        "sched_process_fork" => name.to_owned(),
        "exec_binmask" | "exec_policy" => "sched/sched_process_exec".into(),
        "policy_sys_enter" => "syscalls/sys_enter_*".into(),
        "policy_sys_exit" => "syscalls/sys_exit_*".into(),
        "policy_tp" => "tracepoints of policies".into(),
        _ => match kind {
            "kprobe" | "fentry" | "fexit" | "lsm" | "uprobe" => format!("functions of policies ({name})"),
            _ => name.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_programs_are_tetragons_base_sensor() {
        assert_eq!(sensor("sched_process_exec", "tracepoint"), "__base__");
        assert_eq!(sensor("policy_sys_exit", "tracepoint"), "generic_tracepoint");
        assert_eq!(sensor("kretprobe_policy", "kprobe"), "generic_kprobe");
        assert_eq!(attach("sched_process_exit", "tracepoint"), "sched/sched_process_exit");
        assert_eq!(attach("policy_sys_exit", "tracepoint"), "syscalls/sys_exit_*");
    }
}
