//! How the agent's memory behaves: small pages, and freed pages given back at once.
//! Measured with bench/run.sh (scenario 5) and smaps: with transparent huge pages each
//! 2 MiB region the allocator touches is zeroed whole on its first fault (a fifth of the
//! agent's time under load) and counts whole in RSS; with mimalloc's default purge delay
//! (1 s, applied only when the allocator runs again) an idle agent keeps what a start-up
//! burst freed. Purging at once: idle RSS went 62 -> 37-40 MiB on this machine (10 ms, v2's
//! default: 41-44). The price is page faults when a loaded agent reuses a purged page;
//! bench/run.sh's event-path scenarios are where it would show.

/// Call first in the agent, before its threads start (mimalloc's options are not
/// thread-safe to set).
pub fn tune() {
    // SAFETY: PR_SET_THP_DISABLE takes integer arguments only; it affects this process's
    // future page faults.
    let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if r != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "PR_SET_THP_DISABLE refused");
    }
    // mimalloc read its environment when the process started: a MIMALLOC_PURGE_DELAY the
    // user set is kept.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a plain integer option; called while the process has one thread.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
}

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_t` (15 in v2 and v3; the -sys crate
/// names only some options).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
