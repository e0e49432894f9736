//! Against a real Elasticsearch-API server (osmem-server) on loopback.
use std::{sync::Arc, time::Duration};

use super::{build, ElasticsearchConfig};
use crate::{
    driver::BatchConfig,
    retry::{RequestConfig, RetryConfig},
    test_servers::{free_port, Proxy, Server},
    test_util::{counter, drive, feed, install_metrics, seq_event, through_an_outage},
    SendOutcome, Sink, StartError,
};
use pipeline::{time::Timestamp, Event, EventKind};
use serde_json::{json, Value};

fn cfg(endpoint: String, dir: &std::path::Path) -> ElasticsearchConfig {
    ElasticsearchConfig {
        enabled: true,
        endpoint,
        index: "nj-%Y.%m.%d".into(),
        template_name: "nj-test".into(),
        dead_letter_path: dir.join("dead.log"),
        request: RequestConfig { timeout_ms: 10_000, ..RequestConfig::default() },
        retry: RetryConfig { initial_backoff_ms: 50, max_backoff_ms: 2000, max_retries: 0 },
        batch: BatchConfig { max_events: 2000, max_bytes: 8 << 20, max_age_ms: 200 },
        ..ElasticsearchConfig::default()
    }
}

async fn get(url: &str) -> Value {
    let r = reqwest::get(url).await.unwrap();
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

async fn count(base: &str, query: Option<Value>) -> u64 {
    let c = reqwest::Client::new();
    c.post(format!("{base}/nj-*/_refresh")).send().await.unwrap();
    let mut r = c.post(format!("{base}/nj-*/_count"));
    if let Some(q) = query {
        r = r.header("content-type", "application/json").body(json!({ "query": q }).to_string());
    }
    let v: Value = serde_json::from_slice(&r.send().await.unwrap().bytes().await.unwrap()).unwrap();
    v["count"].as_u64().unwrap_or_else(|| panic!("no count: {v}"))
}

/// Feeds events `0..n` into a driver at `per_sec` (0: as fast as the queue takes them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_events_all_land_once() {
    let srv = Server::osmem();
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(srv.url(), dir.path());
    let sink = build(&c).unwrap();
    const N: u64 = 100_000;
    let (tx, drv, _) = drive(Box::new(sink), c.batch.clone(), c.retry.clone());
    feed(tx, N, 0).await;
    let report = tokio::time::timeout(Duration::from_secs(600), drv).await.unwrap().unwrap();
    assert_eq!((report.delivered, report.failed, report.dead_lettered), (N, 0, 0));
    assert_eq!(count(&srv.url(), None).await, N);
    // The template made paths keywords: an exact term query on a binary matches.
    let b3 = count(&srv.url(), Some(json!({ "term": { "process_exec.process.binary": "/usr/bin/b2" } }))).await;
    assert_eq!(b3, (0..N).filter(|i| i % 10 == 2 && !matches!(i % 8, 3 | 7)).count() as u64);
    let m = get(&format!("{}/nj-2026.01.01/_mapping", srv.url())).await;
    assert_eq!(m["nj-2026.01.01"]["mappings"]["properties"]["time"]["type"], "date_nanos", "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_of_twenty_seconds_loses_and_duplicates_nothing() {
    install_metrics();
    let srv = Server::osmem();
    let proxy = Proxy::start(srv.addr);
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(format!("http://{}", proxy.addr), dir.path());
    let sink = build(&c).unwrap();
    let retries_before = counter("nightjar_sink_retries_total", &["sink=\"test\""]);
    let n = through_an_outage(Box::new(sink), &c.batch, &c.retry, &proxy).await;
    assert_eq!(count(&srv.url(), None).await, n, "exactly N distinct documents");
    let retries = counter("nightjar_sink_retries_total", &["sink=\"elasticsearch\""]) - retries_before;
    assert!(retries > 0.0, "the outage shows in the retry metric");
    assert!(counter("nightjar_sink_events_total", &["sink=\"elasticsearch\"", "outcome=\"retried\""]) > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_document_is_dead_lettered_and_the_rest_land() {
    let srv = Server::osmem();
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(srv.url(), dir.path());
    let mut sink = build(&c).unwrap();
    sink.start().await.unwrap();
    let mut batch: Vec<Arc<Event>> = (0..10).map(seq_event).collect();
    // A pid that is not a number: the template maps process.pid as long.
    let bad = json!({ "process": { "exec_id": "bad-exec", "pid": "not-a-number", "binary": "/bin/x" } });
    batch.insert(
        4,
        Arc::new(Event::new(
            EventKind::Other { key: "process_exec".into(), value: bad },
            "node-a",
            Timestamp::from_unix_nanos(super::super::test_util::BASE_NANOS),
        )),
    );
    let out = sink.send(&batch).await;
    assert!(
        matches!(&out, SendOutcome::Partial { delivered: 10, dead_lettered: 1, failed: 0, retry, .. } if retry.is_empty()),
        "{out:?}"
    );
    assert_eq!(count(&srv.url(), None).await, 10);
    sink.flush().await.unwrap();
    let dl = std::fs::read_to_string(dir.path().join("dead.log")).unwrap();
    let lines: Vec<Value> = dl.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "{dl}");
    assert_eq!(lines[0]["status"], 400);
    assert_eq!(lines[0]["error"]["type"], "mapper_parsing_exception", "{dl}");
    assert!(lines[0]["error"]["reason"].as_str().unwrap().contains("pid"), "{dl}");
    assert_eq!(lines[0]["document"]["process_exec"]["process"]["pid"], "not-a-number");
    // Sending the same batch again duplicates nothing (409 on create = delivered).
    let again: Vec<Arc<Event>> = (0..10).map(seq_event).collect();
    assert!(matches!(sink.send(&again).await, SendOutcome::Delivered));
    assert_eq!(count(&srv.url(), None).await, 10);
}

#[tokio::test]
async fn unreachable_host_at_start_is_retryable_and_names_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(format!("http://127.0.0.1:{}", free_port()), dir.path());
    match build(&c).unwrap().start().await {
        Err(StartError::Retryable(e)) => {
            assert!(e.starts_with("cannot reach http://127.0.0.1:"), "{e}");
            assert!(e.to_lowercase().contains("connection refused"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

/// Wrong credentials at start. Neither test server here does authentication
/// (osmem-server and tansu have none), so this one start check talks to a loopback
/// responder that answers every request as a secured Elasticsearch answers wrong
/// credentials: 401 with a `security_exception`. It records the Authorization header so
/// the test sees the credentials were sent. The proof that the sink works against a
/// server stays with the tests above.
#[tokio::test]
async fn wrong_credentials_at_start_name_the_sink_and_cause_without_the_secret() {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut auth = String::new();
            let mut line = String::new();
            while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) && line != "\r\n" {
                if line.to_ascii_lowercase().starts_with("authorization:") {
                    auth = line.trim().to_owned();
                }
                line.clear();
            }
            seen2.lock().unwrap().push(auth);
            let body = r#"{"error":{"type":"security_exception","reason":"unable to authenticate user [elastic] for REST request [/]"},"status":401}"#;
            let _ = write!(
                conn,
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"security\"\r\nX-Elastic-Product: Elasticsearch\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("es-password");
    std::fs::write(&secret, "not-the-password").unwrap();
    let mut c = cfg(format!("http://{addr}"), dir.path());
    c.auth = super::config::AuthConfig {
        kind: super::config::AuthKind::Basic,
        user: "elastic".into(),
        secret: crate::secret::SecretSource { env: String::new(), file: secret },
    };
    let e = match build(&c).unwrap().start().await {
        Err(StartError::Config(e)) => e,
        other => panic!("a 401 is a configuration error: {other:?}"),
    };
    assert!(e.starts_with("authentication refused by http://127.0.0.1:"), "{e}");
    assert!(e.contains("HTTP 401") && e.contains("sinks.elasticsearch.auth"), "{e}");
    assert!(!e.contains("not-the-password"), "the error must not show the secret: {e}");
    // The credentials were sent, as Basic elastic:not-the-password.
    let sent = seen.lock().unwrap().clone();
    assert!(sent.iter().any(|a| a.ends_with("ZWxhc3RpYzpub3QtdGhlLXBhc3N3b3Jk")), "{sent:?}");
}
