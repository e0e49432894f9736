//! Helpers shared by the end-to-end tests.
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::{fs::MetadataExt, process::CommandExt},
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

/// The binary under test (built by cargo for this test target).
pub fn nightjar() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nightjar"));
    // Tests must not pick up a developer's environment overrides.
    for (k, _) in std::env::vars() {
        if k.starts_with("NIGHTJAR") {
            c.env_remove(k);
        }
    }
    // No gRPC API unless a test asks for one (`--set server.address=...` wins over this):
    // its default port 54321 is shared with every agent on the machine.
    c.env("NIGHTJAR__SERVER__ADDRESS", "");
    c
}

/// `nightjar run` for tests. Safety on shared machines: the agent loads only the policies
/// that observe (never the enforcing seed policies, which could kill processes the test did
/// not start); tests that need enforcement load restricted variants themselves.
pub fn agent_run(dir: &std::path::Path) -> Command {
    let pdir = dir.join("observe-only-policies");
    std::fs::create_dir_all(&pdir).expect("policies dir");
    for name in ["monitor-sensitive-files", "detect-privilege-escalation"] {
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("config/policies/{name}.yaml"));
        std::fs::copy(&src, pdir.join(format!("{name}.yaml"))).expect("copy policy");
    }
    let mut c = nightjar();
    c.arg("run")
        .args(["--set", &format!("sensor.policies_dir={}", pdir.display())])
        .args(["--set", &format!("control.socket={}", dir.join("nj.sock").display())]);
    c
}

pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn nightjar");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Tetragon's samples, vendored from `../shared/corpus/tetragon/` so that a clone
/// anywhere is self-contained (`pipeline/tests/corpus.rs` checks both copies).
pub fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/tetragon")
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Minimal HTTP GET on loopback; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// Polls `f` until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed (SIGKILL) when dropped, so a failing test never leaks an agent.
pub struct Agent(pub Option<Child>);

impl Agent {
    pub fn spawn(cmd: &mut Command) -> Self {
        Agent(Some(cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn agent")))
    }
    /// SIGTERM, then wait for the exit and return the output.
    pub fn terminate(mut self) -> Output {
        let child = self.0.take().expect("agent running");
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait_with_output().expect("wait agent")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Tetragon's own `tetra` CLI (`../shared/tools/tetra.xz`, unpacked once into the target
/// dir), or why it is not there.
pub fn tetra() -> Result<PathBuf, String> {
    static TETRA: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    TETRA
        .get_or_init(|| {
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            // NIGHTJAR_SHARED: the shared dir when it is not beside the checkout (a worktree).
            let shared =
                std::env::var_os("NIGHTJAR_SHARED").map(PathBuf::from).unwrap_or_else(|| root.join("../shared"));
            let xz = shared.join("tools/tetra.xz");
            if !xz.exists() {
                return Err(format!("{} is not there", xz.display()));
            }
            let dir = root.join("target/tetra");
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let bin = dir.join("tetra");
            if !bin.exists() {
                let tmp = dir.join(format!("tetra.{}", std::process::id()));
                let out = std::fs::File::create(&tmp).map_err(|e| e.to_string())?;
                let st = Command::new("xz").arg("-dc").arg(&xz).stdout(out).status().map_err(|e| e.to_string())?;
                if !st.success() {
                    return Err(format!("xz -dc {} failed: {st}", xz.display()));
                }
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
                std::fs::rename(&tmp, &bin).map_err(|e| e.to_string())?;
            }
            Ok(bin)
        })
        .clone()
}

/// A cgroup v2 group of the test's own (`<prefix>-<pid>` under the cgroup2 mount), removed
/// on drop: the sensor's `cgroup_filter` then counts only the test's processes.
pub struct TestCgroup(pub PathBuf);

impl TestCgroup {
    pub fn new(prefix: &str) -> Self {
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mount = info
            .lines()
            .find_map(|l| {
                let (pre, post) = l.split_once(" - ")?;
                post.starts_with("cgroup2 ").then(|| pre.split_whitespace().nth(4).map(PathBuf::from)).flatten()
            })
            .expect("a cgroup2 hierarchy");
        let dir = mount.join(format!("{prefix}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TestCgroup(dir)
    }
    /// The id the kernel gives the group (its inode number), as `cgroup_filter` takes it.
    pub fn id(&self) -> u64 {
        std::fs::metadata(&self.0).unwrap().ino()
    }
    /// Runs `prog args` inside the group and waits for it.
    pub fn run(&self, prog: &str, args: &[&str]) {
        let procs = self.0.join("cgroup.procs");
        let mut cmd = Command::new(prog);
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
        // SAFETY: between fork and exec only a write(2) of "0" (this process) to cgroup.procs.
        unsafe {
            cmd.pre_exec(move || std::fs::write(&procs, "0"));
        }
        assert!(cmd.status().unwrap().success(), "{prog} {args:?}");
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.0).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
