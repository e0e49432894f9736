//! Boot-relative kernel times (`bpf_ktime_get_boot_ns`, `task->start_boottime`) to wall clock.
use nightjar_event::time::Timestamp;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// CLOCK_REALTIME − CLOCK_BOOTTIME at start, in ns.
    offset: i128,
}

fn now_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec we own; both clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

impl Clock {
    pub fn new() -> Self {
        let real = now_ns(libc::CLOCK_REALTIME);
        let boot = now_ns(libc::CLOCK_BOOTTIME);
        Clock { offset: real - boot }
    }

    pub fn wall(&self, boot_ns: u64) -> Timestamp {
        Timestamp::from_unix_nanos(self.offset + boot_ns as i128)
    }

    /// Boot-relative now, on the same clock as the kernel records.
    pub fn boot_now() -> u64 {
        now_ns(libc::CLOCK_BOOTTIME) as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
