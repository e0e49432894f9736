//! Real servers for the remote sinks' tests (this crate's and the end-to-end ones, with
//! the `test-servers` feature), on loopback free ports, stopped by PID when dropped:
//! osmem-server (Elasticsearch API) and tansu (Kafka), both installed by
//! `scripts/setup.sh` into ~/.cache/nightjar/bin; and a loopback TCP proxy that can cut
//! the path to a server, hold it (connections accepted, nothing answered), and restore it.
use std::{
    io::{BufRead, BufReader},
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

fn bin(name: &str) -> PathBuf {
    let p = PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/nightjar/bin").join(name);
    assert!(p.exists(), "{} is missing: run scripts/setup.sh", p.display());
    p
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process killed (by its PID) and reaped when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_tcp(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Server {
    /// osmem-server on a free port (it picks it and prints its URL).
    pub fn osmem() -> Server {
        let mut child = Command::new(bin("osmem-server"))
            .args(["-addr", "127.0.0.1:0", "-no-stdin-watch", "-parent-pid", &std::process::id().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start osmem-server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("osmem said {line:?}: {e}"));
        let url = v["url"].as_str().unwrap().trim_start_matches("http://").to_owned();
        let addr: SocketAddr = url.parse().unwrap();
        wait_tcp(addr);
        Server { child, addr }
    }

    /// tansu on a free port, advertising `advertised` (a proxy in front) or itself.
    pub fn tansu(advertised: Option<SocketAddr>) -> Server {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let adv = advertised.unwrap_or(addr);
        let child = Command::new(bin("tansu"))
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://{addr}"),
                "--advertised-listener-url",
                &format!("tcp://{adv}"),
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let s = Server { child, addr };
        wait_tcp(addr);
        s
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Creates a topic with `partitions` on a tansu broker.
pub fn create_topic(broker: SocketAddr, topic: &str, partitions: u32) {
    let st = Command::new(bin("tansu"))
        .args([
            "topic",
            "create",
            topic,
            "--partitions",
            &partitions.to_string(),
            "--broker",
            &format!("tcp://{broker}"),
        ])
        .stdout(Stdio::null())
        .status()
        .expect("run tansu topic create");
    assert!(st.success(), "tansu topic create {topic} failed");
}

/// A loopback TCP proxy to `target`. `cut()` closes every connection and refuses new
/// ones (connections are accepted and closed at once) until `restore()`.
pub struct Proxy {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    hold: Arc<AtomicBool>,
    generation: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(target: SocketAddr) -> Proxy {
        Self::start_on(TcpListener::bind("127.0.0.1:0").unwrap(), target)
    }

    pub fn start_on(listener: TcpListener, target: SocketAddr) -> Proxy {
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let hold = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        listener.set_nonblocking(true).unwrap();
        let (c, h, g, s) = (cut.clone(), hold.clone(), generation.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let client = match listener.accept() {
                    Ok((sock, _)) => sock,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                if c.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                if h.load(Ordering::SeqCst) {
                    // Held: accepted, read and never answered (until restore or drop).
                    let (h, s) = (h.clone(), s.clone());
                    std::thread::spawn(move || swallow(client, &h, &s));
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(target) else { continue };
                let _ = client.set_nonblocking(false);
                let my_gen = g.load(Ordering::SeqCst);
                for (from, to) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)] {
                    let (g, c) = (g.clone(), c.clone());
                    std::thread::spawn(move || pump(from, to, &g, &c, my_gen));
                }
            }
        });
        Proxy { addr, cut, hold, generation, stop }
    }

    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Connections are accepted and their requests read, but nothing is answered.
    pub fn hold(&self) {
        self.hold.store(true, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
        self.hold.store(false, Ordering::SeqCst);
    }
}

fn swallow(mut c: std::net::TcpStream, hold: &AtomicBool, stop: &AtomicBool) {
    use std::io::Read;
    let _ = c.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = vec![0u8; 64 << 10];
    while hold.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
        match c.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

fn pump(mut from: std::net::TcpStream, mut to: std::net::TcpStream, g: &AtomicU64, c: &AtomicBool, my_gen: u64) {
    use std::io::{Read, Write};
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if g.load(Ordering::SeqCst) != my_gen || c.load(Ordering::SeqCst) {
            break;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
    }
}
