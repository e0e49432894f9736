//! End-to-end acknowledgement. A source that can replay (the `tetragon_file` tail) gives
//! each event an [`Ack`]; every copy of the event the fan-out hands to a sink holds a
//! clone, and a sink's buffer lets go of its clone once it has the event durably (written
//! to its disk buffer, or delivered). When the last clone goes, the source is told
//! [`AckSink::done`] with the token's id, so its checkpoint can pass that event.
//! An event a stage discards on purpose (filtered, deduplicated) drops its token too.
//!
//! Std only, so it can move with the event model.
use std::sync::Arc;

/// Where a source learns that everything holding one of its tokens is done.
pub trait AckSink: Send + Sync {
    fn done(&self, id: u64);
}

struct Inner {
    sink: Arc<dyn AckSink>,
    id: u64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.sink.done(self.id);
    }
}

/// A source's claim on the events it produced; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Ack(Arc<Inner>);

impl Ack {
    pub fn new(sink: Arc<dyn AckSink>, id: u64) -> Self {
        Ack(Arc::new(Inner { sink, id }))
    }

    pub fn id(&self) -> u64 {
        self.0.id
    }
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ack({})", self.0.id)
    }
}

/// The slot an event carries its token in. Two events never differ by their tokens.
#[derive(Clone, Debug, Default)]
pub struct AckSlot(pub Option<Ack>);

impl AckSlot {
    pub fn take(&mut self) -> Option<Ack> {
        self.0.take()
    }
}

impl PartialEq for AckSlot {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Log(Mutex<Vec<u64>>);
    impl AckSink for Log {
        fn done(&self, id: u64) {
            self.0.lock().unwrap().push(id);
        }
    }

    #[test]
    fn done_fires_once_when_the_last_clone_goes() {
        let log = Arc::new(Log::default());
        let a = Ack::new(log.clone(), 7);
        let b = a.clone();
        drop(a);
        assert!(log.0.lock().unwrap().is_empty());
        drop(b);
        assert_eq!(*log.0.lock().unwrap(), vec![7]);
    }
}
