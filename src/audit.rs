//! The token audit log, written in batches by a background task so the auth
//! URLs' hot path does not wait for a database write. Entries queued when the
//! process dies are lost; a full queue drops entries with a warning.

use tokio::sync::mpsc;

use crate::store::{AuditEntry, Store};

#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<AuditEntry>,
}

impl AuditSink {
    /// Starts the writer on the current runtime.
    pub fn spawn(store: Store) -> Self {
        let (tx, mut rx) = mpsc::channel::<AuditEntry>(10_000);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(256);
            while rx.recv_many(&mut batch, 256).await > 0 {
                if let Err(e) = store.record_audit(&batch).await {
                    tracing::error!(error.message = %e, entries = batch.len(), "cannot write the token audit log");
                }
                batch.clear();
            }
        });
        Self { tx }
    }

    pub fn record(&self, entry: AuditEntry) {
        if self.tx.try_send(entry).is_err() {
            tracing::warn!("token audit queue full; an entry was dropped");
        }
    }
}
