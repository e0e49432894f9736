//! Sinks whose I/O blocks (files, stdout) run it on tokio's blocking threads, never on the
//! async workers: a full disk, a slow `fsync` or a pipe nobody reads holds that one sink
//! up, not the runtime, the other sinks or shutdown.
use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use pipeline::Event;

use crate::{SendOutcome, Sink};

/// A sink's operations, synchronous.
pub trait BlockingSink: Send + 'static {
    fn send(&mut self, batch: &[Arc<Event>]) -> SendOutcome;
    fn flush(&mut self) -> Result<(), String>;
    fn tick(&mut self) -> Result<(), String> {
        Ok(())
    }
    /// See [`Sink::settle`] (called on the async side: must not block).
    fn settle(&mut self) -> Option<(u64, u64)> {
        None
    }
}

/// Runs a [`BlockingSink`] on the blocking threads, one call at a time.
pub struct OffThread<S> {
    name: &'static str,
    inner: Option<S>,
    tick: Option<Duration>,
}

impl<S: BlockingSink> OffThread<S> {
    pub fn new(name: &'static str, inner: S, tick: Option<Duration>) -> Self {
        OffThread { name, inner: Some(inner), tick }
    }

    async fn call<R: Send + 'static>(&mut self, f: impl FnOnce(&mut S) -> R + Send + 'static) -> Result<R, String> {
        let Some(mut s) = self.inner.take() else {
            return Err(format!("sink {}: its thread failed earlier", self.name));
        };
        match tokio::task::spawn_blocking(move || {
            let r = f(&mut s);
            (s, r)
        })
        .await
        {
            Ok((s, r)) => {
                self.inner = Some(s);
                Ok(r)
            }
            Err(e) => Err(format!("sink {}: {e}", self.name)),
        }
    }
}

#[async_trait]
impl<S: BlockingSink> Sink for OffThread<S> {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn send(&mut self, batch: &[Arc<Event>]) -> SendOutcome {
        let batch = batch.to_vec();
        self.call(move |s| s.send(&batch)).await.unwrap_or_else(SendOutcome::Fatal)
    }

    async fn flush(&mut self) -> Result<(), String> {
        self.call(|s| s.flush()).await?
    }

    fn tick_interval(&self) -> Option<Duration> {
        self.tick
    }

    async fn tick(&mut self) -> Result<(), String> {
        self.call(|s| s.tick()).await?
    }

    fn settle(&mut self) -> Option<(u64, u64)> {
        self.inner.as_mut()?.settle()
    }
}
