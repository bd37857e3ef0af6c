//! Group commit for the webhook: concurrent callbacks are written in batches
//! (one transaction, one flush for many), and each caller is answered only
//! after its batch is committed. A failed batch answers every caller in it
//! with an error, and stores none of them.
//!
//! One writer task per process drains the queue: while a batch commits, the
//! next one gathers, so batches grow with load and stay at one under light
//! load (no added latency).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::store::queue::{Inserted, NewInbound};
use crate::store::{Store, StoreError};

/// The most callbacks written in one transaction.
pub const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<Inserted, StoreError>>;

pub struct Ingest {
    tx: mpsc::Sender<(NewInbound, Reply)>,
    /// Transactions committed (for tests and metrics).
    pub commits: AtomicU64,
}

impl Ingest {
    /// Starts the writer on the current runtime.
    pub fn spawn(store: Store, dedup_window_ms: i64) -> Arc<Self> {
        let (tx, mut rx) = mpsc::channel::<(NewInbound, Reply)>(4 * MAX_BATCH);
        let ingest = Arc::new(Self {
            tx,
            commits: AtomicU64::new(0),
        });
        let counter = Arc::clone(&ingest);
        tokio::spawn(async move {
            let mut batch: Vec<(NewInbound, Reply)> = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let events: Vec<NewInbound> = batch.iter().map(|(e, _)| e.clone()).collect();
                match store.insert_inbound_batch(&events, dedup_window_ms).await {
                    Ok(results) => {
                        counter.commits.fetch_add(1, Ordering::Relaxed);
                        for ((_, reply), result) in batch.drain(..).zip(results) {
                            let _ = reply.send(Ok(result));
                        }
                    }
                    Err(e) => {
                        tracing::error!(error.message = %e, callbacks = batch.len(), "a batch of callbacks could not be stored; every caller gets an error");
                        for (_, reply) in batch.drain(..) {
                            let _ = reply.send(Err(match &e {
                                StoreError::Busy => StoreError::Busy,
                                other => StoreError::Other(anyhow::anyhow!(
                                    "the batch was not stored: {other}"
                                )),
                            }));
                        }
                    }
                }
            }
        });
        ingest
    }

    /// Stores one callback with the next batch; returns once it is committed.
    pub async fn submit(&self, event: NewInbound) -> Result<Inserted, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((event, reply))
            .await
            .map_err(|_| StoreError::Busy)?;
        answer.await.map_err(|_| StoreError::Busy)?
    }
}
