//! The request path shared by the remote sinks (Elasticsearch, Kafka), declared once as
//! `tower` layers as in Vector: concurrency limit → retry (bounded exponential backoff
//! with full jitter) → timeout → the sink's own I/O service.
use std::{future::Future, pin::Pin, time::Duration};

use pipeline::metrics::names;
use serde::{Deserialize, Serialize};
use tower::{util::BoxCloneService, BoxError, ServiceBuilder};

/// `request:` settings of a remote sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestConfig {
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Timeout of one request attempt, milliseconds.
    pub timeout_ms: u64,
    /// Retries of a retryable failure (connection refused, timeout, 429, 5xx).
    pub max_retries: u32,
    /// First backoff, milliseconds; doubles per retry up to `max_backoff_ms`; each
    /// wait is drawn uniformly in [backoff/2, backoff] (jitter).
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
}

impl Default for RequestConfig {
    fn default() -> Self {
        RequestConfig {
            concurrency: 4,
            timeout_ms: 30_000,
            max_retries: 10,
            initial_backoff_ms: 200,
            max_backoff_ms: 10_000,
        }
    }
}

/// Bounded exponential backoff with jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(cfg: &RequestConfig) -> Self {
        Backoff {
            next: Duration::from_millis(cfg.initial_backoff_ms.max(1)),
            max: Duration::from_millis(cfg.max_backoff_ms.max(1)),
        }
    }

    /// The next wait: uniform in [b/2, b], then b doubles up to the cap.
    pub fn next_wait(&mut self) -> Duration {
        let b = self.next.min(self.max);
        self.next = (self.next * 2).min(self.max);
        let half = b / 2;
        half + Duration::from_nanos(fastrand::u64(0..=(b - half).as_nanos() as u64))
    }
}

/// An error a remote sink's service returns, saying whether to try again.
pub trait Classify {
    fn is_retryable(&self) -> bool;
}

/// A request that knows how many events it carries (for the `retried` metric).
pub trait Events {
    fn events(&self) -> u64;
}

/// Retries retryable errors (and timeouts) with [`Backoff`], at most `max_retries` times,
/// counting the events of each retried request in `nightjar_sink_events_total{outcome="retried"}`.
pub struct RetryPolicy<E> {
    sink: &'static str,
    remaining: u32,
    backoff: Backoff,
    _err: std::marker::PhantomData<fn() -> E>,
}

impl<E> Clone for RetryPolicy<E> {
    fn clone(&self) -> Self {
        RetryPolicy {
            sink: self.sink,
            remaining: self.remaining,
            backoff: self.backoff.clone(),
            _err: std::marker::PhantomData,
        }
    }
}

impl<E> RetryPolicy<E> {
    pub fn new(sink: &'static str, cfg: &RequestConfig) -> Self {
        RetryPolicy { sink, remaining: cfg.max_retries, backoff: Backoff::new(cfg), _err: std::marker::PhantomData }
    }
}

/// Whether a boxed error (from the timeout layer or the service) is worth retrying.
pub fn retryable<E: Classify + std::error::Error + 'static>(e: &BoxError) -> bool {
    if e.is::<tower::timeout::error::Elapsed>() {
        return true;
    }
    e.downcast_ref::<E>().is_some_and(Classify::is_retryable)
}

impl<Req, Res, E> tower::retry::Policy<Req, Res, BoxError> for RetryPolicy<E>
where
    Req: Clone + Events,
    E: Classify + std::error::Error + 'static,
{
    type Future = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn retry(&mut self, req: &mut Req, result: &mut Result<Res, BoxError>) -> Option<Self::Future> {
        let err = result.as_ref().err()?;
        if self.remaining == 0 || !retryable::<E>(err) {
            return None;
        }
        self.remaining -= 1;
        let wait = self.backoff.next_wait();
        metrics::counter!(names::SINK_EVENTS, "sink" => self.sink, "outcome" => "retried").increment(req.events());
        metrics::counter!(names::SINK_RETRIES, "sink" => self.sink).increment(1);
        tracing::warn!(sink = self.sink, error = %err, wait_ms = wait.as_millis() as u64, "request failed, retrying");
        Some(Box::pin(tokio::time::sleep(wait)))
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

/// Wraps `svc` in the shared layers: concurrency limit, retry, timeout; boxed.
pub fn layered<S, Req, E>(
    sink: &'static str,
    cfg: &RequestConfig,
    svc: S,
) -> BoxCloneService<Req, S::Response, BoxError>
where
    Req: Clone + Events + Send + 'static,
    E: Classify + std::error::Error + 'static,
    S: tower::Service<Req> + Clone + Send + 'static,
    S::Response: Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    let svc = ServiceBuilder::new()
        .concurrency_limit(cfg.concurrency.max(1))
        .retry(RetryPolicy::<E>::new(sink, cfg))
        .timeout(Duration::from_millis(cfg.timeout_ms.max(1)))
        .service(svc);
    BoxCloneService::new(svc)
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    };

    use tower::{Service, ServiceExt};

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("fake: retryable={0}")]
    struct FakeErr(bool);
    impl Classify for FakeErr {
        fn is_retryable(&self) -> bool {
            self.0
        }
    }
    #[derive(Clone)]
    struct Req;
    impl Events for Req {
        fn events(&self) -> u64 {
            1
        }
    }

    /// A mock service (allowed in a unit test of the retry policy): fails `fails` times.
    fn flaky(
        fails: u32,
        retryable: bool,
        calls: Arc<AtomicU32>,
    ) -> impl Service<Req, Response = u32, Error = BoxError, Future = futures_util::future::Ready<Result<u32, BoxError>>>
           + Clone {
        tower::service_fn(move |_: Req| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            futures_util::future::ready(if n < fails { Err(Box::new(FakeErr(retryable)) as BoxError) } else { Ok(n) })
        })
    }

    fn cfg(max_retries: u32) -> RequestConfig {
        RequestConfig { max_retries, initial_backoff_ms: 1, max_backoff_ms: 4, ..Default::default() }
    }

    #[tokio::test]
    async fn retries_retryable_errors_until_success() {
        let calls = Arc::new(AtomicU32::new(0));
        let mut svc = layered::<_, Req, FakeErr>("t", &cfg(5), flaky(3, true, calls.clone()));
        let r = svc.ready().await.unwrap().call(Req).await.unwrap();
        assert_eq!(r, 3);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn gives_up_after_max_retries_and_never_retries_fatal() {
        let calls = Arc::new(AtomicU32::new(0));
        let mut svc = layered::<_, Req, FakeErr>("t", &cfg(2), flaky(10, true, calls.clone()));
        assert!(svc.ready().await.unwrap().call(Req).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 3);

        let calls = Arc::new(AtomicU32::new(0));
        let mut svc = layered::<_, Req, FakeErr>("t", &cfg(5), flaky(10, false, calls.clone()));
        assert!(svc.ready().await.unwrap().call(Req).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter() {
        let mut b = Backoff::new(&RequestConfig { initial_backoff_ms: 100, max_backoff_ms: 800, ..Default::default() });
        let waits: Vec<u128> = (0..6).map(|_| b.next_wait().as_millis()).collect();
        for (w, cap) in waits.iter().zip([100u128, 200, 400, 800, 800, 800]) {
            assert!(*w >= cap / 2 && *w <= cap, "{waits:?}");
        }
    }
}
