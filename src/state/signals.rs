//! Wake-ups and the stop signal, shared by the web handlers (which wake a
//! worker after writing work for it) and the workers.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use tokio::sync::{watch, Notify};

/// Which worker: the inbox's (events to the engine) or the outbox's
/// (messages to the platform).
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Inbox = 0,
    Outbox = 1,
}

/// Wake-ups and the stop signal, shared by the web handlers and the workers.
pub struct WorkerSignals {
    pub inbox: Arc<Notify>,
    pub outbox: Arc<Notify>,
    /// Per worker: its last claim filled every free slot (or found none
    /// free), so rows may be waiting for a slot; each slot freed wakes it
    /// then, and only then.
    hungry: [AtomicBool; 2],
    pub(crate) stop: watch::Sender<bool>,
}

impl Default for WorkerSignals {
    fn default() -> Self {
        Self {
            inbox: Arc::default(),
            outbox: Arc::default(),
            hungry: [AtomicBool::new(false), AtomicBool::new(false)],
            stop: watch::channel(false).0,
        }
    }
}

impl WorkerSignals {
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    pub(crate) fn notify(&self, kind: Kind) -> &Notify {
        match kind {
            Kind::Inbox => &self.inbox,
            Kind::Outbox => &self.outbox,
        }
    }

    pub(crate) fn hungry(&self, kind: Kind) -> &AtomicBool {
        &self.hungry[kind as usize]
    }
}
