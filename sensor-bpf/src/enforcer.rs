//! The enforcer (Tetragon's `enforcers:` with `NotifyEnforcer`), user side in
//! `sensor/src/hooks/enforcer.rs`: a selector's NotifyEnforcer notes the current thread
//! (which hook, which signal) in `ENFORCER_NOTES`; at the exit of a syscall the policy
//! lists in `enforcers[].calls` (`ENFORCER_CALLS`, keyed by hook and syscall number) the
//! enforcer program signals that thread and forgets the note. The syscall has run; the
//! signal lands before the thread is back in user space. CleanupEnforcerNotification
//! forgets the note.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated as gen},
    macros::{map, tracepoint},
    maps::{HashMap, LruHashMap, PerCpuArray},
    programs::TracePointContext,
};
use nightjar_common::{enforcer_call, EnforcerNote};

/// Notified threads (by pid_tgid) not yet enforced.
#[map]
static ENFORCER_NOTES: LruHashMap<u64, EnforcerNote> = LruHashMap::with_max_entries(8192, 0);

/// The syscalls each notifying hook's policy enforces at (`enforcer_call(hook, nr)`).
#[map]
static ENFORCER_CALLS: HashMap<u64, u8> = HashMap::with_max_entries(4096, 0);

/// Signals the enforcer sent ([0]) and could not send ([1]).
#[map]
static ENFORCED: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

/// NotifyEnforcer from hook `hook`: the current thread is signalled `sig` at the exit of
/// the next of its policy's enforced syscalls.
#[inline(always)]
pub fn notify(hook: u32, sig: u8) {
    let note = EnforcerNote { hook, sig: u32::from(sig) };
    let _ = ENFORCER_NOTES.insert(&bpf_get_current_pid_tgid(), &note, 0);
}

/// CleanupEnforcerNotification: the current thread's note is forgotten.
#[inline(always)]
pub fn cleanup() {
    let _ = ENFORCER_NOTES.remove(&bpf_get_current_pid_tgid());
}

/// `raw_syscalls:sys_exit` (common fields, then `long id` at 8 and `long ret` at 16).
#[tracepoint]
pub fn enforcer_sys_exit(ctx: TracePointContext) -> u32 {
    let id = bpf_get_current_pid_tgid();
    // SAFETY: a plain lookup; the value is copied out before the map changes.
    let Some(note) = (unsafe { ENFORCER_NOTES.get(&id) }).copied() else { return 0 };
    // SAFETY: reads the tracepoint's own record at its `id` field.
    let Ok(nr) = (unsafe { ctx.read_at::<i64>(8) }) else { return 0 };
    if nr < 0 {
        return 0;
    }
    // SAFETY: a plain lookup.
    if unsafe { ENFORCER_CALLS.get(&enforcer_call(note.hook, nr as u32)) }.is_none() {
        return 0;
    }
    let _ = ENFORCER_NOTES.remove(&id);
    // SAFETY: signals the current thread only.
    let sent = unsafe { gen::bpf_send_signal_thread(note.sig) } == 0;
    if let Some(c) = ENFORCED.get_ptr_mut(u32::from(!sent)) {
        // SAFETY: per-CPU counter.
        unsafe { *c += 1 };
    }
    0
}
