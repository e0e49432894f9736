//! Kubernetes pod metadata from the API server, for enrichment.
//!
//! In a cluster (`KUBERNETES_SERVICE_HOST` set and a service-account token mounted) the
//! pods of this node are listed (`/api/v1/pods?fieldSelector=spec.nodeName=NODE`) over
//! HTTPS, verified against the service account's CA, and the cache is replaced on every
//! refresh. The cache is bounded (`max_pods`); the response body too (`max_response_bytes`).
use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Duration,
};

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::TcpStream;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum K8sMode {
    /// Use the API server when running in a cluster, else the cgroup path only.
    Auto,
    /// Require the API server: failing to reach its config is a start-up error.
    On,
    Off,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct K8sConfig {
    pub mode: K8sMode,
    /// API server URL; empty means https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT.
    pub api_url: String,
    pub token_path: PathBuf,
    pub ca_path: PathBuf,
    /// Seconds between two listings of this node's pods.
    #[serde(deserialize_with = "crate::config::bounded::<_, _, 1, 86400>")]
    pub refresh_secs: u64,
    /// Most pods kept in the cache.
    #[serde(deserialize_with = "crate::config::bounded::<_, _, 1, 1048576>")]
    pub max_pods: usize,
    /// Largest pod-list response accepted, in bytes.
    #[serde(deserialize_with = "crate::config::bounded::<_, _, 4096, 1073741824>")]
    pub max_response_bytes: usize,
    /// Timeout of one listing, in seconds.
    #[serde(deserialize_with = "crate::config::bounded::<_, _, 1, 3600>")]
    pub timeout_secs: u64,
}

impl Default for K8sConfig {
    fn default() -> Self {
        K8sConfig {
            mode: K8sMode::Auto,
            api_url: String::new(),
            token_path: "/var/run/secrets/kubernetes.io/serviceaccount/token".into(),
            ca_path: "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt".into(),
            refresh_secs: 30,
            max_pods: 2048,
            max_response_bytes: 64 << 20,
            timeout_secs: 10,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error("bad API server URL {url:?}: {why}")]
    Url { url: String, why: String },
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("bad CA bundle {path}: {why}")]
    Ca { path: String, why: String },
    #[error("mode is `on` but KUBERNETES_SERVICE_HOST is not set and api_url is empty")]
    NotInCluster,
    #[error("connecting to {addr}: {source}")]
    Connect { addr: String, source: std::io::Error },
    #[error("HTTP: {0}")]
    Http(String),
    #[error("API server answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("pod list is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("listing pods timed out")]
    Timeout,
}

/// One container of a pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerInfo {
    pub name: String,
    pub image: Option<String>,
    pub image_id: Option<String>,
    pub started_at: Option<String>,
    /// `exec` commands of the liveness/readiness/startup probes.
    pub exec_probes: Vec<Vec<String>>,
}

/// What the API server says about one pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodInfo {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub workload: Option<String>,
    pub workload_kind: Option<String>,
    /// By bare container id (64 hex).
    pub containers: HashMap<String, ContainerInfo>,
}

/// Pods by uid and by bare container id.
#[derive(Debug, Default)]
pub struct PodIndex {
    pub by_uid: HashMap<String, Arc<PodInfo>>,
    pub by_container: HashMap<String, Arc<PodInfo>>,
}

impl PodIndex {
    pub fn build(pods: Vec<PodInfo>, max_pods: usize) -> Self {
        let mut ix = PodIndex::default();
        for p in pods.into_iter().take(max_pods) {
            let p = Arc::new(p);
            for cid in p.containers.keys() {
                ix.by_container.insert(cid.clone(), p.clone());
            }
            ix.by_uid.insert(p.uid.clone(), p);
        }
        ix
    }
}

pub type PodCache = Arc<RwLock<PodIndex>>;

/// The pod cache for other readers than enrichment (the sensor's Kubernetes scopes):
/// `refreshed` moves at each successful listing.
#[derive(Clone)]
pub struct PodFeed {
    pub cache: PodCache,
    pub refreshed: tokio::sync::watch::Receiver<u64>,
}

/// Where and how to reach the API server.
#[derive(Clone)]
pub struct ApiTarget {
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub token: Option<String>,
    tls: Option<tokio_rustls::TlsConnector>,
    pub max_response_bytes: usize,
    pub timeout: Duration,
}

/// Decides from config and environment whether to use the API server.
pub fn detect(cfg: &K8sConfig, env: impl Fn(&str) -> Option<String>) -> Result<Option<ApiTarget>, K8sError> {
    if cfg.mode == K8sMode::Off {
        return Ok(None);
    }
    let url = if !cfg.api_url.is_empty() {
        cfg.api_url.clone()
    } else {
        match env("KUBERNETES_SERVICE_HOST") {
            Some(h) if !cfg.token_path.exists() && cfg.mode == K8sMode::Auto => {
                tracing::info!(host = %h, "KUBERNETES_SERVICE_HOST set but no service-account token: pod names from cgroups only");
                return Ok(None);
            }
            Some(h) => {
                let port = env("KUBERNETES_SERVICE_PORT").unwrap_or_else(|| "443".into());
                let h = if h.contains(':') { format!("[{h}]") } else { h };
                format!("https://{h}:{port}")
            }
            None if cfg.mode == K8sMode::On => return Err(K8sError::NotInCluster),
            None => return Ok(None),
        }
    };
    let bad = |why: &str| K8sError::Url { url: url.clone(), why: why.into() };
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(bad("expected http:// or https://"));
    };
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') {
        return Err(bad("expected no path"));
    }
    let default_port = if https { 443 } else { 80 };
    let (host, port) = match authority.strip_prefix('[') {
        Some(r) => {
            let (h, rest) = r.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            let port = match rest.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad("bad port"))?,
                None => default_port,
            };
            (h.to_owned(), port)
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().map_err(|_| bad("bad port"))?),
            None => (authority.to_owned(), default_port),
        },
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let token = match std::fs::read_to_string(&cfg.token_path) {
        Ok(t) => Some(t.trim().to_owned()),
        Err(_) if !https => None,
        Err(source) => return Err(K8sError::Read { path: cfg.token_path.display().to_string(), source }),
    };
    let tls = if https { Some(tls_connector(cfg)?) } else { None };
    Ok(Some(ApiTarget {
        https,
        host,
        port,
        token,
        tls,
        max_response_bytes: cfg.max_response_bytes,
        timeout: Duration::from_secs(cfg.timeout_secs.max(1)),
    }))
}

fn tls_connector(cfg: &K8sConfig) -> Result<tokio_rustls::TlsConnector, K8sError> {
    use tokio_rustls::rustls::{self, pki_types::pem::PemObject, pki_types::CertificateDer};
    let path = cfg.ca_path.display().to_string();
    let ca_err = |why: String| K8sError::Ca { path: path.clone(), why };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&cfg.ca_path).map_err(|e| ca_err(e.to_string()))?;
    for c in certs {
        roots.add(c.map_err(|e| ca_err(e.to_string()))?).map_err(|e| ca_err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ca_err("no certificate in the file".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ca_err(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

impl ApiTarget {
    /// Lists the pods scheduled on `node`.
    pub async fn list_pods(&self, node: &str) -> Result<Vec<PodInfo>, K8sError> {
        let path = format!("/api/v1/pods?fieldSelector=spec.nodeName%3D{}", encode(node));
        let body = tokio::time::timeout(self.timeout, self.get(&path)).await.map_err(|_| K8sError::Timeout)??;
        let v: Value = serde_json::from_slice(&body)?;
        Ok(parse_pod_list(&v))
    }

    async fn get(&self, path: &str) -> Result<Bytes, K8sError> {
        let addr = format!("{}:{}", self.host, self.port);
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|source| K8sError::Connect { addr: addr.clone(), source })?;
        let mut req = hyper::Request::get(path).header(hyper::header::HOST, self.host.as_str());
        req = req.header(hyper::header::ACCEPT, "application/json");
        if let Some(t) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req.body(Empty::<Bytes>::new()).map_err(|e| K8sError::Http(e.to_string()))?;
        match &self.tls {
            Some(tls) => {
                let name = tokio_rustls::rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| K8sError::Http(format!("server name {}: {e}", self.host)))?;
                let stream =
                    tls.connect(name, tcp).await.map_err(|source| K8sError::Connect { addr: addr.clone(), source })?;
                self.send(hyper_util::rt::TokioIo::new(stream), req).await
            }
            None => self.send(hyper_util::rt::TokioIo::new(tcp), req).await,
        }
    }

    async fn send<T>(&self, io: T, req: hyper::Request<Empty<Bytes>>) -> Result<Bytes, K8sError>
    where
        T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(io).await.map_err(|e| K8sError::Http(e.to_string()))?;
        let conn = tokio::spawn(conn);
        let resp = sender.send_request(req).await.map_err(|e| K8sError::Http(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), self.max_response_bytes)
            .collect()
            .await
            .map_err(|e| K8sError::Http(format!("reading the body: {e}")))?
            .to_bytes();
        conn.abort();
        if status != 200 {
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
            return Err(K8sError::Status { status, body: text });
        }
        Ok(body)
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn s(v: &Value, p: &str) -> Option<String> {
    v.pointer(p).and_then(Value::as_str).map(str::to_owned)
}

/// Bare 64-hex id from `containerd://<id>` (or the id itself).
pub fn bare_container_id(id: &str) -> &str {
    id.rsplit_once("://").map(|(_, b)| b).unwrap_or(id)
}

/// Reads a `PodList`; pods without a uid are skipped.
pub fn parse_pod_list(v: &Value) -> Vec<PodInfo> {
    let Some(items) = v.get("items").and_then(Value::as_array) else { return Vec::new() };
    items.iter().filter_map(parse_pod).collect()
}

fn parse_pod(p: &Value) -> Option<PodInfo> {
    let uid = s(p, "/metadata/uid")?;
    let name = s(p, "/metadata/name").unwrap_or_default();
    let labels = p
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
        .unwrap_or_default();
    let owner = p.pointer("/metadata/ownerReferences/0");
    let (workload, workload_kind) = match owner.and_then(|o| Some((s(o, "/kind")?, s(o, "/name")?))) {
        // Deployment → ReplicaSet `name-<hash>` → pod: the workload is the Deployment.
        Some((k, n)) if k == "ReplicaSet" => match n.rsplit_once('-') {
            Some((d, _)) => (Some(d.to_owned()), Some("Deployment".to_owned())),
            None => (Some(n), Some(k)),
        },
        Some((k, n)) => (Some(n), Some(k)),
        None => (Some(name.clone()), Some("Pod".to_owned())),
    };
    let mut probes: HashMap<String, Vec<Vec<String>>> = HashMap::new();
    let mut images: HashMap<String, String> = HashMap::new();
    for c in p.pointer("/spec/containers").and_then(Value::as_array).into_iter().flatten() {
        let Some(cname) = s(c, "/name") else { continue };
        if let Some(img) = s(c, "/image") {
            images.insert(cname.clone(), img);
        }
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            if let Some(cmd) = c.pointer(&format!("/{probe}/exec/command")).and_then(Value::as_array) {
                let cmd: Vec<String> = cmd.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect();
                if !cmd.is_empty() {
                    probes.entry(cname.clone()).or_default().push(cmd);
                }
            }
        }
    }
    let mut containers = HashMap::new();
    for st in ["containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"] {
        for c in p.pointer(&format!("/status/{st}")).and_then(Value::as_array).into_iter().flatten() {
            let (Some(cname), Some(cid)) = (s(c, "/name"), s(c, "/containerID")) else { continue };
            let info = ContainerInfo {
                image: s(c, "/image").or_else(|| images.get(&cname).cloned()),
                image_id: s(c, "/imageID"),
                started_at: s(c, "/state/running/startedAt"),
                exec_probes: probes.get(&cname).cloned().unwrap_or_default(),
                name: cname,
            };
            containers.insert(bare_container_id(&cid).to_owned(), info);
        }
    }
    Some(PodInfo {
        uid,
        name,
        namespace: s(p, "/metadata/namespace").unwrap_or_default(),
        labels,
        workload,
        workload_kind,
        containers,
    })
}

/// Lists this node's pods now and then every `refresh`, replacing the cache each time.
/// A failed listing keeps the previous cache and is logged.
pub fn spawn_refresher(
    target: ApiTarget,
    node: String,
    cache: PodCache,
    refresh: Duration,
    max_pods: usize,
    refreshed: tokio::sync::watch::Sender<u64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut t = tokio::time::interval(refresh.max(Duration::from_secs(1)));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            t.tick().await;
            match target.list_pods(&node).await {
                Ok(pods) => {
                    if pods.len() > max_pods {
                        tracing::warn!(pods = pods.len(), max_pods, "more pods on this node than the cache keeps");
                    }
                    let ix = PodIndex::build(pods, max_pods);
                    tracing::debug!(pods = ix.by_uid.len(), "pod cache refreshed");
                    if let Ok(mut c) = cache.write() {
                        *c = ix;
                    }
                    refreshed.send_modify(|n| *n += 1);
                    if failing {
                        tracing::info!("Kubernetes API reachable again");
                        failing = false;
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot list this node's pods; keeping the previous pod cache");
                    }
                    failing = true;
                }
            }
        }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const ID: &str = "551e161c47d8ff0eb665438a7bcd5b4e3ef5a297282b40a92b7c77d6bd168eb3";

    pub fn pod_list() -> String {
        serde_json::json!({
            "kind": "PodList",
            "items": [{
                "metadata": {
                    "uid": "0b5a4c6e-8f0c-4c57-9a3e-1f2a3b4c5d6e", "name": "xwing-7d4b9c-abcde", "namespace": "default",
                    "labels": {"app": "xwing", "org": "alliance"},
                    "ownerReferences": [{"kind": "ReplicaSet", "name": "xwing-7d4b9c"}]
                },
                "spec": {"nodeName": "node-1", "containers": [{
                    "name": "spaceship", "image": "docker.io/tgraf/netperf:latest",
                    "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]}}
                }]},
                "status": {"containerStatuses": [{
                    "name": "spaceship", "containerID": format!("containerd://{ID}"),
                    "image": "docker.io/tgraf/netperf:latest", "imageID": "docker.io/tgraf/netperf@sha256:8e86",
                    "state": {"running": {"startedAt": "2023-10-06T21:52:41Z"}}
                }]}
            }, {"metadata": {"name": "no-uid"}}]
        })
        .to_string()
    }

    #[test]
    fn parses_a_pod_list() {
        let pods = parse_pod_list(&serde_json::from_str(&pod_list()).unwrap());
        assert_eq!(pods.len(), 1);
        let p = &pods[0];
        assert_eq!((p.name.as_str(), p.namespace.as_str()), ("xwing-7d4b9c-abcde", "default"));
        assert_eq!(p.workload.as_deref(), Some("xwing"));
        assert_eq!(p.workload_kind.as_deref(), Some("Deployment"));
        let c = &p.containers[ID];
        assert_eq!(c.name, "spaceship");
        assert_eq!(c.exec_probes, vec![vec!["cat".to_string(), "/tmp/healthy".to_string()]]);
    }

    #[test]
    fn detect_follows_mode_and_environment() {
        let cfg = K8sConfig::default();
        assert!(detect(&cfg, |_| None).unwrap().is_none(), "auto outside a cluster: no API");
        let on = K8sConfig { mode: K8sMode::On, ..Default::default() };
        assert!(matches!(detect(&on, |_| None), Err(K8sError::NotInCluster)));
        let off = K8sConfig { mode: K8sMode::Off, api_url: "http://127.0.0.1:1".into(), ..Default::default() };
        assert!(detect(&off, |_| None).unwrap().is_none());
        let bad = K8sConfig { api_url: "ftp://x".into(), ..Default::default() };
        assert!(matches!(detect(&bad, |_| None), Err(K8sError::Url { .. })));
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, "not a certificate").unwrap();
        let tok = dir.path().join("token");
        std::fs::write(&tok, "t0ken\n").unwrap();
        let https = K8sConfig { ca_path: ca, token_path: tok, ..Default::default() };
        let env = |k: &str| (k == "KUBERNETES_SERVICE_HOST").then(|| "10.0.0.1".to_string());
        assert!(matches!(detect(&https, env), Err(K8sError::Ca { .. })), "a bad CA is refused, not ignored");
    }

    /// A local HTTP fixture standing in for the API server: answers one request with `body`
    /// and hands back the request head it received.
    pub async fn fixture(body: String) -> (u16, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(resp.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&head).into_owned()
        });
        (port, task)
    }

    #[tokio::test]
    async fn lists_pods_of_this_node_with_the_token() {
        let (port, server) = fixture(pod_list()).await;
        let dir = tempfile::tempdir().unwrap();
        let tok = dir.path().join("token");
        std::fs::write(&tok, "s3cret\n").unwrap();
        let cfg = K8sConfig { api_url: format!("http://127.0.0.1:{port}"), token_path: tok, ..Default::default() };
        let target = detect(&cfg, |_| None).unwrap().unwrap();
        let pods = target.list_pods("node-1").await.unwrap();
        assert_eq!(pods.len(), 1);
        let head = server.await.unwrap();
        assert!(head.starts_with("GET /api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1 HTTP/1.1"), "{head}");
        assert!(head.contains("authorization: Bearer s3cret"), "{head}");
    }
}
