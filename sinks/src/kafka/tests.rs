//! Against a real Kafka-protocol broker (tansu) on loopback, read back by Python
//! confluent-kafka as a consumer group.
use std::{net::SocketAddr, time::Duration};

use super::{build, KafkaConfig, KeyField};
use crate::{
    driver::BatchConfig,
    test_servers::{create_topic, free_port, Proxy, Server},
    test_util::{counter, drive, feed, install_metrics, run_python, through_an_outage},
    Sink, StartError,
};

const READBACK: &str = include_str!("readback.py");

fn cfg(brokers: SocketAddr, topic: &str) -> KafkaConfig {
    KafkaConfig {
        enabled: true,
        brokers: brokers.to_string(),
        topic: topic.into(),
        key: KeyField::NamespacePod,
        batch: BatchConfig { max_events: 4000, max_bytes: 20 << 20, max_age_ms: 100 },
        ..KafkaConfig::default()
    }
}

fn read_back(broker: SocketAddr, topic: &str, n: u64) -> serde_json::Value {
    let v = run_python(READBACK, &[&broker.to_string(), topic, &n.to_string(), "namespace_pod", "300"]);
    assert_eq!(v["bad_key"], serde_json::json!([]), "{v}");
    assert_eq!(v["bad_headers"], serde_json::json!([]), "{v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_events_read_back_exactly_once_with_keys_and_headers() {
    let broker = Server::tansu(None);
    create_topic(broker.addr, "nj-events", 3);
    let c = cfg(broker.addr, "nj-events");
    let sink = build(&c).unwrap();
    const N: u64 = 100_000;
    let (tx, drv, _) = drive(Box::new(sink), c.batch.clone(), c.retry.clone());
    feed(tx, N, 0).await;
    let report = tokio::time::timeout(Duration::from_secs(600), drv).await.unwrap().unwrap();
    assert_eq!((report.delivered, report.failed), (N, 0));
    let addr = broker.addr;
    let v = tokio::task::spawn_blocking(move || read_back(addr, "nj-events", N)).await.unwrap();
    assert_eq!(v["count"], N, "{v}");
    assert_eq!(v["distinct_pids"], N, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_of_twenty_seconds_loses_and_duplicates_nothing() {
    install_metrics();
    // The broker advertises the proxy, so every connection of the sink goes through it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_addr = listener.local_addr().unwrap();
    let broker = Server::tansu(Some(proxy_addr));
    let proxy = Proxy::start_on(listener, broker.addr);
    create_topic(broker.addr, "nj-outage", 3);
    let c = cfg(proxy_addr, "nj-outage");
    let sink = build(&c).unwrap();
    let retries_before = counter("nightjar_sink_retries_total", &["sink=\"kafka\""]);
    let n = through_an_outage(Box::new(sink), &c.batch, &c.retry, &proxy).await;
    let v = tokio::task::spawn_blocking(move || read_back(proxy_addr, "nj-outage", n)).await.unwrap();
    assert_eq!(v["count"], n, "exactly N messages: {v}");
    assert_eq!(v["distinct_pids"], n, "{v}");
    // librdkafka's statistics (every second) report the produce requests it retried.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let retries = loop {
        let r = counter("nightjar_sink_retries_total", &["sink=\"kafka\""]) - retries_before;
        if r > 0.0 || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(retries > 0.0, "the outage shows in the retry metric");
    drop(proxy);
}

#[tokio::test]
async fn unreachable_brokers_at_start_are_retryable_and_name_the_cause() {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut c = cfg(addr, "t");
    c.request.timeout_ms = 340_000;
    match build(&c).unwrap().start().await {
        Err(StartError::Retryable(e)) => {
            assert!(e.starts_with(&format!("sink kafka: cannot reach brokers {addr}:")), "{e}")
        }
        other => panic!("{other:?}"),
    }
}
