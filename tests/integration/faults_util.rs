//! Helpers of the fault-injection tests (`faults_*.rs`): an agent without the sensor, a raw
//! control-socket client with a deadline, and readings of the agent's process.
use std::{
    io::{BufRead, BufReader, Write},
    net::SocketAddr,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::common::*;

/// A running agent and where to reach it.
pub struct Running {
    pub agent: Agent,
    pub socket: PathBuf,
    pub sink: PathBuf,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.agent.0.as_ref().expect("agent running").id()
    }
}

/// The command of an agent writing JSON lines into `dir/events.log`, nothing on stdout,
/// with its control socket and metrics in `dir` and on a free port. Extra `--set`s follow.
pub fn agent_cmd(dir: &Path, sensor: bool) -> (Command, SocketAddr) {
    let port = free_port();
    let mut c = if sensor { agent_run(dir) } else { nightjar() };
    if !sensor {
        c.arg("run")
            .args(["--set", "sensor.enabled=false"])
            .args(["--set", &format!("control.socket={}", dir.join("nj.sock").display())]);
    }
    c.args(["--set", &format!("metrics.listen=127.0.0.1:{port}")])
        .args(["--set", &format!("sinks.file.path={}", dir.join("events.log").display())])
        .args(["--set", "sinks.stdout.enabled=false"]);
    (c, format!("127.0.0.1:{port}").parse().expect("address"))
}

/// Spawns `cmd` (from [`agent_cmd`]) and waits until `/healthz` answers 200.
pub fn start(dir: &Path, (mut cmd, metrics): (Command, SocketAddr)) -> Running {
    let agent = Agent::spawn(&mut cmd);
    let up = wait_for(Duration::from_secs(60), || http_get(metrics, "/healthz").ok().filter(|(s, _)| *s == 200));
    assert!(up.is_some(), "agent never became healthy");
    Running { agent, socket: dir.join("nj.sock"), sink: dir.join("events.log") }
}

/// One request line to the control socket; the response, or why there was none within
/// `deadline` (a hung control plane, not a slow one: deadlines here are generous).
pub fn request(socket: &Path, line: &str, deadline: Duration) -> Result<serde_json::Value, String> {
    let mut s = UnixStream::connect(socket).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(deadline)).map_err(|e| e.to_string())?;
    s.write_all(format!("{line}\n").as_bytes()).map_err(|e| format!("write: {e}"))?;
    let mut resp = String::new();
    BufReader::new(&s).read_line(&mut resp).map_err(|e| format!("no answer within {deadline:?}: {e}"))?;
    serde_json::from_str(&resp).map_err(|e| format!("bad response {resp:?}: {e}"))
}

/// A field of /proc/PID/status in KiB (VmRSS, VmHWM).
pub fn proc_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Open file descriptors of a process.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// Raises this test process' soft open-files limit (it holds many sockets).
pub fn raise_own_nofile(want: u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: get/setrlimit(2) on this process with a valid rlimit we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < want {
            lim.rlim_cur = want.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Sum of the values of a metric's series whose labels contain every one of `labels`.
pub fn metric(addr: SocketAddr, name: &str, labels: &[&str]) -> f64 {
    let (_, text) = http_get(addr, "/metrics").unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
