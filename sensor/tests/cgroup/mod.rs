//! The cgroup v2 hierarchy the sensor tests make their own cgroups under.
use std::path::PathBuf;

/// Where cgroup2 is mounted (from /proc/self/mountinfo).
pub fn cgroup2_mount() -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for l in info.lines() {
        let Some((pre, post)) = l.split_once(" - ") else { continue };
        if post.starts_with("cgroup2 ") {
            return PathBuf::from(pre.split_whitespace().nth(4).unwrap());
        }
    }
    panic!("no cgroup2 hierarchy mounted");
}
