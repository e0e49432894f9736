//! What one call of a hooked function costs in the kernel when the policy's selector does
//! not match (issue 14's benchmark): a uprobe on a function of this test executable, the
//! tracepoint `syscalls:sys_enter_getppid`, and — where the kernel has kprobes — a generic
//! kprobe on `__task_pid_nr_ns` (what getppid calls; not a syscall entry, so it is served by
//! `kprobe_policy` even where fentry exists). The figures are the kernel's own accounting
//! (BPF stats: run_time_ns / run_cnt of the program serving the hook), printed as
//! `hook-cost: ...` lines; `bench/vm-hook-cost.sh` runs this in the VMs and collects them.
//! The test asserts that every call ran the program (and nothing else is asserted on time).
use std::sync::Mutex;

use nightjar_sensor::{policy, Sensor, SensorConfig};

static SERIAL: Mutex<()> = Mutex::new(());

/// The uprobe's target: a real function of this executable, kept out of line.
#[no_mangle]
#[inline(never)]
pub extern "C" fn nightjar_hook_cost_target(x: u64) -> u64 {
    std::hint::black_box(x.wrapping_mul(31))
}

/// Calls per hook: enough for a stable mean, few enough for a uprobe under TCG.
fn calls() -> u64 {
    std::env::var("NIGHTJAR_HOOK_COST_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000)
}

/// A policy with one hook whose selector matches only pid 1, which never calls it here.
fn policy_text(name: &str, hook: &str) -> String {
    format!(
        "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: hook-cost-{name}\nspec:\n{hook}\n    selectors:\n    - matchPIDs:\n      - operator: In\n        values: [1]\n"
    )
}

/// (runs, run_time_ns) of the program in `section` now.
fn cost(s: &Sensor, section: &str) -> (u64, u64) {
    let st = s.status();
    assert!(st.program_stats_off.is_none(), "BPF stats are off: {:?}", st.program_stats_off);
    st.programs.iter().find(|p| p.section == section).map_or((0, 0), |p| (p.runs, p.run_time_ns))
}

struct Kind {
    name: &'static str,
    section: &'static str,
    hook: String,
    call: fn(u64),
}

fn call_target(n: u64) {
    for i in 0..n {
        std::hint::black_box(nightjar_hook_cost_target(std::hint::black_box(i)));
    }
}

fn call_getppid(n: u64) {
    for _ in 0..n {
        // SAFETY: getppid takes no arguments and cannot fail.
        std::hint::black_box(unsafe { libc::syscall(libc::SYS_getppid) });
    }
}

#[test]
fn hook_cost_per_call_from_bpf_stats() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let exe = std::env::current_exe().unwrap();
    let cfg = SensorConfig { proc_scan: false, ..SensorConfig::default() };
    let mut sensor = Sensor::load(&cfg, "test-node").expect("load the sensor (root)");
    let mut kinds = vec![
        Kind {
            name: "uprobe",
            section: "uprobe/uprobe_policy",
            hook: format!("  uprobes:\n  - path: \"{}\"\n    symbols: [nightjar_hook_cost_target]", exe.display()),
            call: call_target,
        },
        Kind {
            name: "tracepoint",
            section: "tracepoint/policy_sys_enter",
            hook: "  tracepoints:\n  - subsystem: syscalls\n    event: sys_enter_getppid".into(),
            call: call_getppid,
        },
    ];
    if sensor.features.kprobes {
        kinds.push(Kind {
            name: "kprobe",
            section: "kprobe/kprobe_policy",
            hook: "  kprobes:\n  - call: __task_pid_nr_ns\n    syscall: false".into(),
            call: call_getppid,
        });
    }
    let n = calls();
    let release = sensor.features.kernel_release.clone();
    for k in &kinds {
        let l = policy::parse(&format!("hook-cost-{}.yaml", k.name), &policy_text(k.name, &k.hook)).unwrap();
        let st = sensor.add_policy(&l).unwrap_or_else(|e| panic!("{}: {e}", k.name));
        let backend = &st.hooks[0].backend;
        (k.call)(1); // the first call may fault the page in: not counted
        let (r0, t0) = cost(&sensor, k.section);
        (k.call)(n);
        let (r1, t1) = cost(&sensor, k.section);
        let (runs, ns) = (r1 - r0, t1 - t0);
        // Other processes may call getppid too: at least our calls, each one counted.
        assert!(runs >= n, "{}: {n} calls, but {} counted {runs} runs", k.name, k.section);
        assert!(ns > 0, "{}: runs counted without run time", k.name);
        println!(
            "hook-cost: kernel {release} {} ({backend}, {}): {:.0} ns per call in the kernel's BPF stats ({runs} runs, {ns} ns)",
            k.name,
            k.section,
            ns as f64 / runs as f64
        );
        sensor.delete_policy(&st.name).unwrap();
    }
}
