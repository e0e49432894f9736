//! The I/O: a `tower::Service` that POSTs one `_bulk` body and returns the per-item
//! statuses. Built on `reqwest` (rustls, no default features), not the `elasticsearch`
//! crate: that crate pulls a second HTTP/TLS stack and its builders would hide the raw
//! body we gzip once and resend unchanged on retry.
use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use serde::Deserialize;

use super::config::{AuthKind, ElasticsearchConfig};
use crate::retry::Classify;

/// One `_bulk` request: the (maybe gzipped) body and which items it carries, in order.
#[derive(Debug, Clone)]
pub struct BulkRequest {
    pub body: Bytes,
    /// Indexes into the sink's item list, in body order.
    pub items: Arc<Vec<usize>>,
}

/// Status and error of one item, in request order.
#[derive(Debug, Clone)]
pub struct ItemResult {
    pub status: u16,
    pub error: Option<serde_json::Value>,
}

#[derive(Debug)]
pub struct BulkResponse {
    pub items: Vec<ItemResult>,
}

#[derive(Debug, thiserror::Error)]
pub enum EsError {
    #[error("cannot reach {url}: {why}")]
    Connect { url: String, why: String },
    #[error("HTTP {status} from {url}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("unreadable response from {url}: {why}")]
    BadResponse { url: String, why: String },
    #[error("the response to a _bulk request has {got} items for {sent} sent")]
    ItemCount { got: usize, sent: usize },
}

impl Classify for EsError {
    fn is_retryable(&self) -> bool {
        match self {
            EsError::Connect { .. } | EsError::BadResponse { .. } => true,
            EsError::Status { status, .. } => *status == 429 || *status >= 500,
            EsError::ItemCount { .. } => false,
        }
    }
}

/// The HTTP client with the sink's auth and TLS; cheap to clone.
#[derive(Clone)]
pub struct EsClient {
    pub http: reqwest::Client,
    pub base: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Secret(#[from] crate::secret::SecretError),
    #[error("tls.ca_file {path}: {why}")]
    Ca { path: String, why: String },
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
}

impl EsClient {
    pub fn new(cfg: &ElasticsearchConfig) -> Result<Self, ClientError> {
        let mut headers = HeaderMap::new();
        let auth = match cfg.auth.kind {
            AuthKind::None => None,
            AuthKind::Basic => {
                use base64::Engine;
                let pw = cfg.auth.secret.load("sinks.elasticsearch.auth.secret")?;
                let raw = format!("{}:{}", cfg.auth.user, pw.expose());
                Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw)))
            }
            AuthKind::ApiKey => {
                Some(format!("ApiKey {}", cfg.auth.secret.load("sinks.elasticsearch.auth.secret")?.expose()))
            }
            AuthKind::Bearer => {
                Some(format!("Bearer {}", cfg.auth.secret.load("sinks.elasticsearch.auth.secret")?.expose()))
            }
        };
        if let Some(a) = auth {
            let mut v = HeaderValue::from_str(&a)
                .map_err(|_| ClientError::Build("the credential is not a valid header value".into()))?;
            // Keeps it out of reqwest's Debug output.
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        let mut b =
            reqwest::Client::builder().default_headers(headers).pool_idle_timeout(std::time::Duration::from_secs(30));
        if !cfg.tls.ca_file.as_os_str().is_empty() {
            let path = cfg.tls.ca_file.display().to_string();
            let pem = std::fs::read(&cfg.tls.ca_file)
                .map_err(|e| ClientError::Ca { path: path.clone(), why: e.to_string() })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| ClientError::Ca { path: path.clone(), why: e.to_string() })?;
            if certs.is_empty() {
                return Err(ClientError::Ca { path, why: "no PEM certificate in it".into() });
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        if !cfg.tls.verify {
            tracing::warn!(sink = "elasticsearch", "tls.verify is false: the server's certificate is NOT checked");
            b = b.danger_accept_invalid_certs(true);
        }
        let http = b.build().map_err(|e| ClientError::Build(e.to_string()))?;
        Ok(EsClient { http, base: cfg.endpoint.trim_end_matches('/').to_owned() })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    /// Sends a request and returns the body of a 2xx answer.
    pub async fn call(&self, req: reqwest::RequestBuilder, url: &str) -> Result<Bytes, EsError> {
        let resp =
            req.send().await.map_err(|e| EsError::Connect { url: url.to_owned(), why: chain(&e.without_url()) })?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| EsError::BadResponse { url: url.to_owned(), why: e.without_url().to_string() })?;
        if !(200..300).contains(&status) {
            let mut text = String::from_utf8_lossy(&body).into_owned();
            text.truncate(512);
            return Err(EsError::Status { url: url.to_owned(), status, body: text });
        }
        Ok(body)
    }
}

/// An error and its causes on one line ("error sending request: connection refused").
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// `tower::Service<BulkRequest>` posting to `_bulk`.
#[derive(Clone)]
pub struct BulkService {
    pub client: EsClient,
    pub gzip: bool,
    url: Arc<str>,
}

impl BulkService {
    pub fn new(client: EsClient, gzip: bool) -> Self {
        let url = client.url("_bulk").into();
        BulkService { client, gzip, url }
    }
}

#[derive(Deserialize)]
struct RawBulk {
    items: Vec<std::collections::HashMap<String, RawItem>>,
}

#[derive(Deserialize)]
struct RawItem {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

pub fn parse_bulk(body: &[u8], url: &str, sent: usize) -> Result<BulkResponse, EsError> {
    let raw: RawBulk =
        serde_json::from_slice(body).map_err(|e| EsError::BadResponse { url: url.to_owned(), why: e.to_string() })?;
    if raw.items.len() != sent {
        return Err(EsError::ItemCount { got: raw.items.len(), sent });
    }
    let items = raw
        .items
        .into_iter()
        .map(|m| match m.into_values().next() {
            Some(i) => ItemResult { status: i.status, error: i.error },
            None => ItemResult {
                status: 500,
                error: Some(serde_json::json!({"reason": "empty item in the _bulk response"})),
            },
        })
        .collect();
    Ok(BulkResponse { items })
}

impl tower::Service<BulkRequest> for BulkService {
    type Response = BulkResponse;
    type Error = EsError;
    type Future = Pin<Box<dyn Future<Output = Result<BulkResponse, EsError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: BulkRequest) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let mut r =
                this.client.http.post(&*this.url).header(CONTENT_TYPE, "application/x-ndjson").body(req.body.clone());
            if this.gzip {
                r = r.header(CONTENT_ENCODING, "gzip");
            }
            let body = this.client.call(r, &this.url).await?;
            parse_bulk(&body, &this.url, req.items.len())
        })
    }
}
