//! The `tetragon.FineGuidanceSensors` service on a TCP address (default `localhost:54321`,
//! tetra's default) or a unix socket (mode 0600: root only).
use std::{path::PathBuf, pin::Pin, sync::Arc, time::Instant};

use nightjar_event::Event;
use pipeline::stages::Out;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{Request, Response, Status};

use crate::{
    events::{to_response, RequestFilter},
    proto::{self, fine_guidance_sensors_server::FineGuidanceSensors},
};

/// A loaded policy as the API lists it.
#[derive(Debug, Clone, Default)]
pub struct PolicyInfo {
    pub id: u64,
    pub name: String,
    pub enabled: bool,
    pub error: Option<String>,
    pub sensors: Vec<String>,
    pub info: String,
}

/// What the API asks of the running agent (the binary implements it over the sensor).
#[async_trait::async_trait]
pub trait Agent: Send + Sync + 'static {
    async fn add_policy(&self, yaml: String) -> Result<(), String>;
    async fn delete_policy(&self, name: String) -> Result<(), String>;
    async fn list_policies(&self) -> Result<Vec<PolicyInfo>, String>;
    /// Enable or disable a loaded policy (kept, not forgotten, while disabled).
    async fn set_enabled(&self, name: String, enabled: bool) -> Result<(), String>;
    /// `Ok` while the sensor runs, else why not.
    fn health(&self) -> Result<(), String>;
    fn node_name(&self) -> String;
}

/// Where the API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAddress {
    Tcp(String),
    Unix(PathBuf),
}

impl ServerAddress {
    /// `host:port`, or `unix:///path` / `unix:/path` for a socket (tetra's spellings).
    pub fn parse(s: &str) -> Self {
        match s.strip_prefix("unix://").or_else(|| s.strip_prefix("unix:")) {
            Some(p) => ServerAddress::Unix(PathBuf::from(p)),
            None => ServerAddress::Tcp(s.to_owned()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
}

struct Service {
    agent: Arc<dyn Agent>,
    events: broadcast::Sender<Arc<Event>>,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<proto::GetEventsResponse, Status>> + Send>>;

fn internal(e: String) -> Status {
    Status::internal(e)
}

#[tonic::async_trait]
impl FineGuidanceSensors for Service {
    type GetEventsStream = EventStream;

    async fn get_events(&self, req: Request<proto::GetEventsRequest>) -> Result<Response<EventStream>, Status> {
        let mut filter = RequestFilter::new(req.get_ref()).map_err(|e| Status::invalid_argument(e.0))?;
        let mut rx = self.events.subscribe();
        let (tx, out_rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            let period = filter.tick_interval().unwrap_or(std::time::Duration::from_secs(3600));
            let mut tick = tokio::time::interval(period);
            loop {
                let mut out = Out::new("getevents");
                tokio::select! {
                    m = rx.recv() => match m {
                        Ok(ev) => filter.apply((*ev).clone(), Instant::now(), &mut out),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            pipeline::metrics::count_stage_drop("getevents", "subscriber_lagged", n);
                            tracing::warn!(skipped = n, "a GetEvents client fell behind; events skipped for it");
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = tick.tick() => filter.tick(Instant::now(), &mut out),
                    _ = tx.closed() => return,
                }
                for ev in out.take() {
                    let resp = match to_response(&ev) {
                        Ok(r) => r,
                        Err(e) => {
                            // One odd event must not end the client's stream: counted, logged.
                            pipeline::metrics::count_stage_drop("getevents", "not_in_tetragon_schema", 1);
                            tracing::warn!(kind = ev.kind.key(), error = %e, "an event did not convert to Tetragon's GetEventsResponse; not sent to a GetEvents client");
                            continue;
                        }
                    };
                    if tx.send(Ok(resp)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }

    async fn get_health(
        &self,
        _req: Request<proto::GetHealthStatusRequest>,
    ) -> Result<Response<proto::GetHealthStatusResponse>, Status> {
        let (status, details) = match self.agent.health() {
            Ok(()) => (proto::HealthStatusResult::HealthStatusRunning, "running".to_owned()),
            Err(why) => (proto::HealthStatusResult::HealthStatusError, why),
        };
        Ok(Response::new(proto::GetHealthStatusResponse {
            health_status: vec![proto::HealthStatus {
                event: proto::HealthStatusType::Status as i32,
                status: status as i32,
                details,
            }],
        }))
    }

    async fn add_tracing_policy(
        &self,
        req: Request<proto::AddTracingPolicyRequest>,
    ) -> Result<Response<proto::AddTracingPolicyResponse>, Status> {
        self.agent.add_policy(req.into_inner().yaml).await.map_err(Status::invalid_argument)?;
        Ok(Response::new(proto::AddTracingPolicyResponse {}))
    }

    async fn delete_tracing_policy(
        &self,
        req: Request<proto::DeleteTracingPolicyRequest>,
    ) -> Result<Response<proto::DeleteTracingPolicyResponse>, Status> {
        self.agent.delete_policy(req.into_inner().name).await.map_err(Status::not_found)?;
        Ok(Response::new(proto::DeleteTracingPolicyResponse {}))
    }

    async fn list_tracing_policies(
        &self,
        _req: Request<proto::ListTracingPoliciesRequest>,
    ) -> Result<Response<proto::ListTracingPoliciesResponse>, Status> {
        let policies = self.agent.list_policies().await.map_err(internal)?;
        let policies = policies
            .into_iter()
            .map(|p| {
                let state = match (&p.error, p.enabled) {
                    (Some(_), _) => proto::TracingPolicyState::TpStateError,
                    (None, true) => proto::TracingPolicyState::TpStateEnabled,
                    (None, false) => proto::TracingPolicyState::TpStateDisabled,
                };
                // `enabled` is deprecated in favour of `state`; older tetra versions read it.
                #[allow(deprecated)]
                proto::TracingPolicyStatus {
                    id: p.id,
                    name: p.name,
                    info: p.info,
                    sensors: p.sensors,
                    enabled: p.enabled,
                    error: p.error.unwrap_or_default(),
                    state: state as i32,
                    mode: proto::TracingPolicyMode::TpModeEnforce as i32,
                    ..Default::default()
                }
            })
            .collect();
        Ok(Response::new(proto::ListTracingPoliciesResponse { policies }))
    }

    async fn configure_tracing_policy(
        &self,
        req: Request<proto::ConfigureTracingPolicyRequest>,
    ) -> Result<Response<proto::ConfigureTracingPolicyResponse>, Status> {
        let r = req.into_inner();
        if let Some(mode) = r.mode {
            if mode != proto::TracingPolicyMode::TpModeEnforce as i32 {
                return Err(Status::unimplemented("nightjar runs policies in enforce mode only"));
            }
        }
        if let Some(enable) = r.enable {
            self.agent.set_enabled(r.name, enable).await.map_err(Status::failed_precondition)?;
        }
        Ok(Response::new(proto::ConfigureTracingPolicyResponse {}))
    }

    async fn enable_tracing_policy(
        &self,
        req: Request<proto::EnableTracingPolicyRequest>,
    ) -> Result<Response<proto::EnableTracingPolicyResponse>, Status> {
        self.agent.set_enabled(req.into_inner().name, true).await.map_err(Status::failed_precondition)?;
        Ok(Response::new(proto::EnableTracingPolicyResponse {}))
    }

    async fn disable_tracing_policy(
        &self,
        req: Request<proto::DisableTracingPolicyRequest>,
    ) -> Result<Response<proto::DisableTracingPolicyResponse>, Status> {
        self.agent.set_enabled(req.into_inner().name, false).await.map_err(Status::failed_precondition)?;
        Ok(Response::new(proto::DisableTracingPolicyResponse {}))
    }

    async fn get_version(
        &self,
        _req: Request<proto::GetVersionRequest>,
    ) -> Result<Response<proto::GetVersionResponse>, Status> {
        Ok(Response::new(proto::GetVersionResponse { version: env!("CARGO_PKG_VERSION").to_owned() }))
    }

    async fn get_info(&self, _req: Request<proto::GetInfoRequest>) -> Result<Response<proto::GetInfoResponse>, Status> {
        Ok(Response::new(proto::GetInfoResponse {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            name: format!("nightjar on {}", self.agent.node_name()),
            ..Default::default()
        }))
    }
}

/// Serves the API until the task is dropped; returns the bound TCP address, if any.
pub async fn serve(
    addr: &ServerAddress,
    agent: Arc<dyn Agent>,
    events: broadcast::Sender<Arc<Event>>,
) -> Result<(Option<std::net::SocketAddr>, tokio::task::JoinHandle<()>), ApiError> {
    let svc = proto::fine_guidance_sensors_server::FineGuidanceSensorsServer::new(Service { agent, events });
    let router = tonic::transport::Server::builder().add_service(svc);
    let bind = |e: std::io::Error| ApiError::Bind { addr: format!("{addr:?}"), source: e };
    match addr {
        ServerAddress::Tcp(a) => {
            // `localhost` is loopback without a name lookup: a pod's root may have no
            // /etc/hosts, and the default address must not depend on one.
            let a = match a.strip_prefix("localhost:") {
                Some(port) => format!("127.0.0.1:{port}"),
                None => a.clone(),
            };
            let l = tokio::net::TcpListener::bind(a.as_str()).await.map_err(bind)?;
            let bound = l.local_addr().map_err(bind)?;
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(l);
            let task = tokio::spawn(async move {
                if let Err(e) = router.serve_with_incoming(incoming).await {
                    tracing::error!(error = %e, "gRPC API stopped");
                }
            });
            Ok((Some(bound), task))
        }
        ServerAddress::Unix(p) => {
            use std::os::unix::fs::PermissionsExt;
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir).map_err(bind)?;
            }
            let _ = std::fs::remove_file(p);
            let l = tokio::net::UnixListener::bind(p).map_err(bind)?;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).map_err(bind)?;
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(l);
            let task = tokio::spawn(async move {
                if let Err(e) = router.serve_with_incoming(incoming).await {
                    tracing::error!(error = %e, "gRPC API stopped");
                }
            });
            Ok((None, task))
        }
    }
}
