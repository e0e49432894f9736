//! User side of the enforcer (`sensor-bpf/src/enforcer.rs`): the `enforcer_sys_exit`
//! program on `raw_syscalls:sys_exit`, attached while a loaded policy has `enforcers:`,
//! and the `ENFORCER_CALLS` entries (notifying hook, syscall number) of each such policy.
//! It decodes no records: a NotifyEnforcer's event is the notifying hook's own.
use aya::{
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray},
    programs::{trace_point::TracePointLinkId, ProgramError, TracePoint},
    Ebpf,
};
use nightjar_common::enforcer_call;

/// The program's name in the object.
pub const PROGRAM: &str = "enforcer_sys_exit";

/// Where it is attached, as `status` says it.
pub const POINT: &str = "raw_syscalls/sys_exit";

/// Loads (once) and attaches the enforcer program.
pub fn attach(ebpf: &mut Ebpf) -> Result<TracePointLinkId, ProgramError> {
    let prog: &mut TracePoint = ebpf.program_mut(PROGRAM).ok_or(ProgramError::UnexpectedProgramType)?.try_into()?;
    if prog.fd().is_err() {
        crate::policy::engine::verified(PROGRAM, || prog.load())?;
    }
    prog.attach("raw_syscalls", "sys_exit")
}

/// The `ENFORCER_CALLS` keys of hooks `hooks` enforcing at syscalls `nrs`.
pub fn keys(hooks: &[u32], nrs: &[u32]) -> Vec<u64> {
    hooks.iter().flat_map(|h| nrs.iter().map(move |n| enforcer_call(*h, *n))).collect()
}

/// Inserts (`on`) or removes `keys` in `ENFORCER_CALLS`.
pub fn set_calls(ebpf: &mut Ebpf, keys: &[u64], on: bool) -> Result<(), aya::maps::MapError> {
    let map =
        ebpf.map_mut("ENFORCER_CALLS").ok_or(aya::maps::MapError::InvalidName { name: "ENFORCER_CALLS".into() })?;
    let mut calls: BpfHashMap<&mut MapData, u64, u8> = BpfHashMap::try_from(map)?;
    for k in keys {
        if on {
            calls.insert(k, 1, 0)?;
        } else {
            let _ = calls.remove(k);
        }
    }
    Ok(())
}

/// Signals the enforcer sent and failed to send, summed over CPUs.
pub fn counts(ebpf: &Ebpf) -> (u64, u64) {
    let Some(m) = ebpf.map("ENFORCED") else { return (0, 0) };
    let Ok(a) = PerCpuArray::<&MapData, u64>::try_from(m) else { return (0, 0) };
    let sum = |i| a.get(&i, 0).map(|v| v.iter().sum()).unwrap_or(0);
    (sum(0), sum(1))
}

/// What `status` says of a hook whose policy enforces at `nrs`.
pub fn served_by(nrs: &[u32]) -> String {
    let sys = crate::policy::compile::SYSCALLS;
    let names: Vec<&str> = nrs.iter().filter_map(|n| sys.iter().find(|(_, x)| x == n).map(|(s, _)| *s)).collect();
    let shown = if names.len() > 6 { format!("{} syscalls", names.len()) } else { names.join(", ") };
    format!("; enforcer on tracepoint {} (NotifyEnforcer's signal at the exit of {shown})", POINT.replace('/', ":"))
}
