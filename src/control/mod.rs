//! The agent's local control socket (root only, mode 0600): one JSON request per line,
//! one JSON response per line. `nightjar status` and `nightjar policy add|delete|list`
//! are its clients.
use std::{
    io::{BufRead, BufReader, Write},
    os::unix::{fs::PermissionsExt, net::UnixStream},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt},
    net::UnixListener,
    sync::{broadcast, mpsc, oneshot},
};

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    PolicyAdd {
        source: String,
        yaml: String,
    },
    PolicyDelete {
        name: String,
    },
    PolicyList,
    /// Stream every event as a JSON line until the client hangs up.
    Subscribe,
}

/// A line of a Subscribe stream that is a notice for the user, not an event.
pub const NOTICE_PREFIX: &str = "#nightjar: ";

#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub result: Value,
}

impl Response {
    fn ok(result: impl Serialize) -> Self {
        Response { ok: true, error: None, result: serde_json::to_value(result).unwrap_or(Value::Null) }
    }
    fn err(e: impl ToString) -> Self {
        Response { ok: false, error: Some(e.to_string()), result: Value::Null }
    }
}

/// Extra status the binary adds to the sensor's (pipeline figures).
pub type StatusExtra = std::sync::Arc<dyn Fn() -> Value + Send + Sync>;

/// Serves the socket until the task is dropped. Removes a stale socket file first.
pub async fn serve(
    path: PathBuf,
    sensor: mpsc::Sender<sensor::loader::Command>,
    extra: StatusExtra,
    events: broadcast::Sender<Arc<pipeline::Event>>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        // A live agent answers; a stale file from a crashed one is replaced.
        if UnixStream::connect(&path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is in use: another nightjar agent is running", path.display()),
            ));
        }
        std::fs::remove_file(&path)?;
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let sensor = sensor.clone();
            let extra = extra.clone();
            let events = events.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut lines = tokio::io::BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if matches!(serde_json::from_str::<Request>(&line), Ok(Request::Subscribe)) {
                        stream_events(events.subscribe(), &mut w).await;
                        return;
                    }
                    let resp = match serde_json::from_str::<Request>(&line) {
                        Ok(req) => handle(req, &sensor, &extra).await,
                        Err(e) => Response::err(format!("bad request: {e}")),
                    };
                    let mut out = serde_json::to_string(&resp).unwrap_or_default();
                    out.push('\n');
                    if w.write_all(out.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    }))
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

async fn handle(req: Request, sensor: &mpsc::Sender<sensor::loader::Command>, extra: &StatusExtra) -> Response {
    use sensor::loader::Command;
    let gone = || Response::err("the sensor is not running");
    match req {
        Request::Status => {
            let (tx, rx) = oneshot::channel();
            if sensor.send(Command::Status(tx)).await.is_err() {
                return gone();
            }
            match rx.await {
                Ok(s) => {
                    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
                    if let Value::Object(o) = &mut v {
                        o.insert("pipeline".into(), extra());
                    }
                    Response::ok(v)
                }
                Err(_) => gone(),
            }
        }
        Request::PolicyAdd { source, yaml } => {
            let loaded = match sensor::policy::parse(&source, &yaml) {
                Ok(l) => l,
                Err(e) => return Response::err(e),
            };
            let (tx, rx) = oneshot::channel();
            if sensor.send(Command::AddPolicy(Box::new(loaded), tx)).await.is_err() {
                return gone();
            }
            match rx.await {
                Ok(Ok(st)) => Response::ok(st),
                Ok(Err(e)) => Response::err(e),
                Err(_) => gone(),
            }
        }
        Request::PolicyDelete { name } => {
            let (tx, rx) = oneshot::channel();
            if sensor.send(Command::DeletePolicy(name, tx)).await.is_err() {
                return gone();
            }
            match rx.await {
                Ok(Ok(st)) => Response::ok(st),
                Ok(Err(e)) => Response::err(e),
                Err(_) => gone(),
            }
        }
        Request::Subscribe => Response::err("subscribe is a stream: send it as the first request"),
        Request::PolicyList => {
            let (tx, rx) = oneshot::channel();
            if sensor.send(Command::ListPolicies(tx)).await.is_err() {
                return gone();
            }
            match rx.await {
                Ok(l) => Response::ok(l),
                Err(_) => gone(),
            }
        }
    }
}

/// Client side: one request, one response.
pub fn call(path: &Path, req: &Request) -> Result<Response, String> {
    let mut s = UnixStream::connect(path)
        .map_err(|e| format!("cannot reach the agent at {}: {e} (is `nightjar run` running?)", path.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
    let mut line = serde_json::to_string(req).map_err(|e| e.to_string())?;
    line.push('\n');
    s.write_all(line.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut resp = String::new();
    BufReader::new(&s).read_line(&mut resp).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&resp).map_err(|e| format!("bad response from the agent: {e}"))
}

/// Client side of Subscribe: the event lines as a reader.
pub fn subscribe(path: &Path, req: &Request) -> Result<BufReader<UnixStream>, String> {
    let mut s = UnixStream::connect(path)
        .map_err(|e| format!("cannot reach the agent at {}: {e} (is `nightjar run` running?)", path.display()))?;
    let mut line = serde_json::to_string(req).map_err(|e| e.to_string())?;
    line.push('\n');
    s.write_all(line.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(BufReader::new(s))
}
