//! The agent's local control socket (root only, mode 0600): one JSON request per line,
//! one JSON response per line. `nightjar status` and `nightjar policy add|delete|list`
//! are its clients. It answers whatever the data path does: requests are bounded in size,
//! connections in number and idle time, and every wait on the sensor has a deadline.
pub(crate) mod protocol;

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::{
        fs::{FileTypeExt, PermissionsExt},
        net::UnixStream,
    },
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

pub use protocol::{Request, Response, NOTICE_PREFIX};
use serde_json::Value;
use tokio::{
    io::AsyncWriteExt,
    net::UnixListener,
    sync::{broadcast, mpsc, oneshot, Semaphore},
};

/// Request connections open at once; beyond, a connection is told so and closed.
pub const MAX_CONNECTIONS: usize = 32;
/// `getevents` streams open at once.
pub const MAX_SUBSCRIBERS: usize = 64;
/// A connection that sends no (whole) request for this long is closed: clients send theirs
/// at once.
const IDLE: Duration = Duration::from_secs(5);
/// Longest wait for the sensor to answer a status or list request.
const SENSOR_QUICK: Duration = Duration::from_secs(2);
/// Longest wait for the sensor to add or delete a policy (compile, load, attach).
const SENSOR_SLOW: Duration = Duration::from_secs(30);
/// Longest wait for a client to take a response.
const WRITE: Duration = Duration::from_secs(5);
/// How long a client waits for an answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(40);

/// Extra status the binary adds to the sensor's (pipeline figures).
pub type StatusExtra = std::sync::Arc<dyn Fn() -> Value + Send + Sync>;

/// Whether the agent may bind `path`: nothing there, or a socket nobody answers on (left
/// by an agent that crashed). Anything else — a live agent, a regular file, a directory,
/// a symlink — is refused and never removed.
pub fn check_socket_path(path: &Path) -> Result<(), String> {
    let md = match std::fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if !md.file_type().is_socket() {
        let what = if md.is_dir() {
            "a directory"
        } else if md.file_type().is_symlink() {
            "a symbolic link"
        } else if md.is_file() {
            "a regular file"
        } else {
            "not a socket"
        };
        return Err(format!("{} exists and is {what}: refusing to replace it (choose another path)", path.display()));
    }
    if UnixStream::connect(path).is_ok() {
        return Err(format!("{} is in use: another nightjar agent is running", path.display()));
    }
    Ok(())
}

/// Serves the socket until the task is dropped. Replaces only a stale socket.
pub async fn serve(
    path: PathBuf,
    sensor: mpsc::Sender<sensor::loader::Command>,
    extra: StatusExtra,
    events: broadcast::Sender<Arc<pipeline::Event>>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    check_socket_path(&path).map_err(|e| std::io::Error::new(std::io::ErrorKind::AddrInUse, e))?;
    if std::fs::symlink_metadata(&path).is_ok() {
        std::fs::remove_file(&path)?;
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let requests = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let subscribers = Arc::new(Semaphore::new(MAX_SUBSCRIBERS));
    let handler = Arc::new(Handler { sensor, extra });
    Ok(tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    tracing::warn!(error = %e, "control socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = requests.clone().try_acquire_owned() else {
                pipeline::metrics::count_stage_drop("control", "too_many_connections", 1);
                tokio::spawn(refuse(stream, format!("too many connections (at most {MAX_CONNECTIONS}); retry")));
                continue;
            };
            let (handler, events, subscribers) = (handler.clone(), events.clone(), subscribers.clone());
            tokio::spawn(async move {
                let _permit = permit;
                connection(stream, &handler, &events, &subscribers).await;
            });
        }
    }))
}

async fn refuse(mut stream: tokio::net::UnixStream, why: String) {
    let _ = tokio::time::timeout(WRITE, stream.write_all(Response::err(why).to_line().as_bytes())).await;
}

/// Requests of one connection, until it hangs up, idles or misbehaves.
async fn connection(
    stream: tokio::net::UnixStream,
    handler: &Handler,
    events: &broadcast::Sender<Arc<pipeline::Event>>,
    subscribers: &Arc<Semaphore>,
) {
    let (r, mut w) = stream.into_split();
    let mut r = tokio::io::BufReader::new(r);
    let mut line = Vec::new();
    loop {
        let resp = match tokio::time::timeout(IDLE, protocol::read_line(&mut r, &mut line, protocol::MAX_LINE)).await {
            Err(_) | Ok(Ok(false)) => return,
            Ok(Err(protocol::LineError::Io(_))) => return,
            Ok(Err(e @ protocol::LineError::TooLong { .. })) => {
                pipeline::metrics::count_stage_drop("control", "request_too_long", 1);
                let _ = tokio::time::timeout(WRITE, w.write_all(Response::err(e).to_line().as_bytes())).await;
                return;
            }
            Ok(Ok(true)) => match protocol::decode(&line) {
                Ok(Request::Subscribe) => {
                    let Ok(_sub) = subscribers.clone().try_acquire_owned() else {
                        let why = format!("too many getevents streams (at most {MAX_SUBSCRIBERS})");
                        let _ = tokio::time::timeout(WRITE, w.write_all(Response::err(why).to_line().as_bytes())).await;
                        return;
                    };
                    drop(r);
                    stream_events(events.subscribe(), &mut w).await;
                    return;
                }
                Ok(req) => handler.handle(req).await,
                Err(e) => Response::err(e),
            },
        };
        // A large policy is not kept for the life of the connection.
        line = Vec::new();
        match tokio::time::timeout(WRITE, w.write_all(resp.to_line().as_bytes())).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
}

/// Writes events to a subscriber until it hangs up. A subscriber that cannot keep up
/// loses events: counted, and told so in a notice line.
async fn stream_events(mut rx: broadcast::Receiver<Arc<pipeline::Event>>, w: &mut tokio::net::unix::OwnedWriteHalf) {
    loop {
        let line = match rx.recv().await {
            Ok(e) => {
                let mut l = e.to_json();
                l.push('\n');
                l
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                pipeline::metrics::count_stage_drop("getevents", "subscriber_lagged", n);
                format!("{NOTICE_PREFIX}{n} events skipped: this reader fell behind\n")
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if w.write_all(line.as_bytes()).await.is_err() {
            return;
        }
    }
}

struct Handler {
    sensor: mpsc::Sender<sensor::loader::Command>,
    extra: StatusExtra,
}

/// Why the sensor did not answer.
enum Unanswered {
    Gone,
    Late(Duration),
}

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unanswered::Gone => f.write_str("the sensor is not running"),
            Unanswered::Late(d) => write!(f, "the sensor did not answer within {} s", d.as_secs()),
        }
    }
}

impl Handler {
    /// Sends a command to the sensor and waits for its reply, at most `within`.
    async fn ask<T>(
        &self,
        within: Duration,
        make: impl FnOnce(oneshot::Sender<T>) -> sensor::loader::Command,
    ) -> Result<T, Unanswered> {
        let (tx, rx) = oneshot::channel();
        let exchange = async {
            self.sensor.send(make(tx)).await.map_err(|_| Unanswered::Gone)?;
            rx.await.map_err(|_| Unanswered::Gone)
        };
        tokio::time::timeout(within, exchange).await.unwrap_or(Err(Unanswered::Late(within)))
    }

    async fn handle(&self, req: Request) -> Response {
        use sensor::loader::Command;
        match req {
            Request::Status => {
                let mut v = match self.ask(SENSOR_QUICK, Command::Status).await {
                    Ok(s) => serde_json::to_value(s).unwrap_or(Value::Null),
                    // The pipeline's half of the status is still worth showing.
                    Err(e) => serde_json::json!({ "sensor_error": e.to_string() }),
                };
                if let Value::Object(o) = &mut v {
                    o.insert("pipeline".into(), (self.extra)());
                }
                Response::ok(v)
            }
            Request::PolicyAdd { source, yaml } => {
                // Parsed off the runtime's threads: a hostile file stalls no event.
                let parsed = tokio::task::spawn_blocking(move || sensor::policy::parse(&source, &yaml)).await;
                let loaded = match parsed {
                    Ok(Ok(l)) => l,
                    Ok(Err(e)) => return Response::err(e),
                    Err(e) => return Response::err(format!("policy parser failed: {e}")),
                };
                match self.ask(SENSOR_SLOW, |tx| Command::AddPolicy(Box::new(loaded), tx)).await {
                    Ok(Ok(st)) => Response::ok(st),
                    Ok(Err(e)) => Response::err(e),
                    Err(e) => Response::err(e),
                }
            }
            Request::PolicyDelete { name } => match self.ask(SENSOR_SLOW, |tx| Command::DeletePolicy(name, tx)).await {
                Ok(Ok(st)) => Response::ok(st),
                Ok(Err(e)) => Response::err(e),
                Err(e) => Response::err(e),
            },
            Request::PolicyList => match self.ask(SENSOR_QUICK, Command::ListPolicies).await {
                Ok(l) => Response::ok(l),
                Err(e) => Response::err(e),
            },
            Request::Subscribe => Response::err("subscribe is a stream: send it as the first request"),
        }
    }
}

fn connect(path: &Path) -> Result<UnixStream, String> {
    UnixStream::connect(path)
        .map_err(|e| format!("cannot reach the agent at {}: {e} (is `nightjar run` running?)", path.display()))
}

/// Client side: one request, one response.
pub fn call(path: &Path, req: &Request) -> Result<Response, String> {
    let mut s = connect(path)?;
    s.set_read_timeout(Some(CLIENT_TIMEOUT)).map_err(|e| e.to_string())?;
    let mut line = serde_json::to_string(req).map_err(|e| e.to_string())?;
    line.push('\n');
    s.write_all(line.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut resp = String::new();
    BufReader::new(&s).read_line(&mut resp).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!("the agent at {} did not answer within {} s", path.display(), CLIENT_TIMEOUT.as_secs())
        }
        _ => format!("{}: {e}", path.display()),
    })?;
    serde_json::from_str(&resp).map_err(|e| format!("bad response from the agent: {e}"))
}

/// Client side of Subscribe: the event lines as a reader.
pub fn subscribe(path: &Path, req: &Request) -> Result<BufReader<UnixStream>, String> {
    let mut s = connect(path)?;
    let mut line = serde_json::to_string(req).map_err(|e| e.to_string())?;
    line.push('\n');
    s.write_all(line.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(BufReader::new(s))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// A policy is parsed on a blocking thread: the runtime's tasks (the event path) go on
    /// meanwhile, even on a runtime of one thread.
    #[test]
    fn a_policy_is_parsed_off_the_runtime_threads() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let ticks = Arc::new(AtomicU64::new(0));
            let t = ticks.clone();
            let ticker = tokio::spawn(async move {
                loop {
                    t.fetch_add(1, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            });
            tokio::task::yield_now().await;
            let (sensor, _rx) = mpsc::channel(1);
            let h = Handler { sensor, extra: Arc::new(|| Value::Null) };
            // Just under the size cap, nested within bounds: it takes the parser a while,
            // then validation refuses it.
            let mut yaml = String::from(
                "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: big\nspec:\n  kprobes:\n  \
                 - call: sys_openat\n    syscall: true\n    args:\n    - {index: 1, type: string}\n    selectors:\n    \
                 - matchArgs:\n      - index: 1\n        operator: Prefix\n        values:\n",
            );
            for i in 0..20_000 {
                yaml.push_str(&format!("        - \"/tmp/some/path/number/{i:07}\"\n"));
            }
            let before = ticks.load(Ordering::Relaxed);
            let resp = h.handle(Request::PolicyAdd { source: "big.yaml".into(), yaml }).await;
            let during = ticks.load(Ordering::Relaxed) - before;
            ticker.abort();
            let err = resp.error.unwrap_or_default();
            assert!(err.starts_with("big.yaml:") && err.contains("20000 values"), "{err}");
            assert!(during > 1000, "other tasks ran {during} times while the policy was parsed");
        });
    }
}
