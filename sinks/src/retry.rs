//! Retries, owned by each sink's driver (one owner: the sinks themselves never retry),
//! with the one backoff of the project: bounded exponential with jitter. Also the request
//! path the remote sinks share, as `tower` layers: concurrency limit → timeout → the
//! sink's own I/O service.
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower::{util::BoxCloneService, BoxError, ServiceBuilder};

/// `sinks.<name>.retry`: how the driver retries a batch that failed and may work later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retries before a batch counts as failed; 0: until it is delivered (the buffer
    /// holds what comes meanwhile, and applies `when_full` once full).
    #[serde(deserialize_with = "crate::bounds::count")]
    pub max_retries: u32,
    /// First wait, milliseconds; doubles per retry up to `max_backoff_ms`; each wait is
    /// drawn uniformly in [backoff/2, backoff] (jitter).
    #[serde(deserialize_with = "crate::bounds::millis")]
    pub initial_backoff_ms: u64,
    #[serde(deserialize_with = "crate::bounds::millis")]
    pub max_backoff_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig { max_retries: 0, initial_backoff_ms: 200, max_backoff_ms: 10_000 }
    }
}

/// `request:` settings of a remote sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestConfig {
    /// Requests in flight at once.
    #[serde(deserialize_with = "crate::bounds::concurrency")]
    pub concurrency: usize,
    /// Timeout of one request attempt, milliseconds.
    #[serde(deserialize_with = "crate::bounds::millis")]
    pub timeout_ms: u64,
}

impl Default for RequestConfig {
    fn default() -> Self {
        RequestConfig { concurrency: 4, timeout_ms: 30_000 }
    }
}

/// Bounded exponential backoff with jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(cfg: &RetryConfig) -> Self {
        let first = Duration::from_millis(cfg.initial_backoff_ms.max(1));
        Backoff { first, next: first, max: Duration::from_millis(cfg.max_backoff_ms.max(1)) }
    }

    /// The next wait: uniform in [b/2, b], then b doubles up to the cap.
    pub fn next_wait(&mut self) -> Duration {
        let b = self.next.min(self.max);
        self.next = (self.next * 2).min(self.max);
        let half = b / 2;
        half + Duration::from_nanos(fastrand::u64(0..=(b - half).as_nanos() as u64))
    }

    /// Back to the first wait (after a success).
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// An error a remote sink's service returns, saying whether trying again may help.
pub trait Classify {
    fn is_retryable(&self) -> bool;
}

/// Whether a boxed error (from the timeout layer or the service) is worth retrying.
pub fn retryable<E: Classify + std::error::Error + 'static>(e: &BoxError) -> bool {
    if e.is::<tower::timeout::error::Elapsed>() {
        return true;
    }
    e.downcast_ref::<E>().is_some_and(Classify::is_retryable)
}

/// Wraps `svc` in the shared layers: concurrency limit, timeout; boxed.
pub fn layered<S, Req>(cfg: &RequestConfig, svc: S) -> BoxCloneService<Req, S::Response, BoxError>
where
    Req: Send + 'static,
    S: tower::Service<Req> + Clone + Send + 'static,
    S::Response: Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    let svc = ServiceBuilder::new()
        .concurrency_limit(cfg.concurrency.max(1))
        .timeout(Duration::from_millis(cfg.timeout_ms.max(1)))
        .service(svc);
    BoxCloneService::new(svc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(&RetryConfig { initial_backoff_ms: 100, max_backoff_ms: 800, ..Default::default() });
        let waits: Vec<u128> = (0..6).map(|_| b.next_wait().as_millis()).collect();
        for (w, cap) in waits.iter().zip([100u128, 200, 400, 800, 800, 800]) {
            assert!(*w >= cap / 2 && *w <= cap, "{waits:?}");
        }
        b.reset();
        assert!(b.next_wait().as_millis() <= 100);
    }
}
