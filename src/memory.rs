//! How the agent's memory behaves: small pages, and freed pages given back at once.
//! Measured with bench/run.sh (scenario 5) and smaps: with transparent huge pages each
//! 2 MiB region the allocator touches is zeroed whole on its first fault (a fifth of the
//! agent's time under load) and counts whole in RSS. Freed pages are given back at once
//! (purge delay 0), and once a second the janitor collects what a thread gone idle keeps.
//! The price is paid under load: at 200k events/s a purged page is faulted back in for
//! every third event (0.32 minor faults per event, about a fifth of the agent's time in
//! page faults and madvise). A 100 ms delay cut that to 0.05, but cost idle RSS 39 -> 45
//! MiB and the peak at 10k events/s 47 -> 65 MiB, past both of issue 17's memory goals;
//! the way out is fewer allocations per event, not a later purge.

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
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
}

/// How long freed pages wait before they are given back (mimalloc's `purge_delay`).
const PURGE_DELAY_MS: std::ffi::c_long = 0;

/// Runs for the agent's lifetime on the runtime: once a second, the worker it runs on
/// gives back its free pages and every purge that is due is done (mimalloc does both only
/// when it allocates again, so an agent that went idle would keep them).
pub async fn janitor() {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        // SAFETY: collects the calling thread's heap and purges the arenas; no arguments
        // other than the flag.
        unsafe { libmimalloc_sys::mi_collect(true) };
    }
}

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_t` (15 in v2 and v3; the -sys crate
/// names only some options).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
