//! Group commit for the webhook: concurrent callbacks are written in batches
//! (one transaction, one flush for many), and each caller is answered only
//! after its batch is committed. A failed batch answers every caller in it
//! with an error, and stores none of them.
//!
//! Writer tasks ("lanes") drain the queue: while a lane's batch commits, its
//! next one gathers, so batches grow with load and stay at one under light
//! load (no added latency). A callback's lane is chosen by its conversation,
//! so two callbacks of one conversation are never in two transactions at
//! once: their order in the inbox (`seq`) is the order they arrived in, and
//! no reader sees a later one committed before an earlier one. SQLite has one
//! writer, so one lane; PostgreSQL commits several transactions at once, and
//! gets [`POSTGRES_LANES`].

use std::hash::{Hash, Hasher};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::store::queue::{Inserted, NewInbound};
use crate::store::{Backend, Store, StoreError};

/// The most callbacks written in one transaction.
pub const MAX_BATCH: usize = 256;

/// Concurrent batches on PostgreSQL. Two beat four on the project's 2-core
/// machine (BENCHMARKS.md, session 4: B1 12.8k → 14.3–14.8k callbacks/s,
/// ~17 instead of ~8 per commit), and one (a single writer, as on SQLite)
/// had a worse tail at half the maximum rate.
pub const POSTGRES_LANES: usize = 2;

type Reply = oneshot::Sender<Result<Inserted, StoreError>>;

pub struct Ingest {
    /// Seals each callback's body on its caller's task, before the write.
    store: Store,
    lanes: Vec<mpsc::Sender<(NewInbound, Reply)>>,
    /// Transactions committed (for tests and metrics).
    pub commits: AtomicU64,
}

impl Ingest {
    /// Starts the writers on the current runtime.
    pub fn spawn(store: Store, dedup_window_ms: i64) -> Arc<Self> {
        let lanes = match store.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => POSTGRES_LANES,
        };
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..lanes)
            .map(|_| mpsc::channel::<(NewInbound, Reply)>(4 * MAX_BATCH))
            .unzip();
        let ingest = Arc::new(Self {
            store: store.clone(),
            lanes: senders,
            commits: AtomicU64::new(0),
        });
        for rx in receivers {
            tokio::spawn(write_lane(
                rx,
                store.clone(),
                dedup_window_ms,
                Arc::clone(&ingest),
            ));
        }
        ingest
    }

    /// Stores one callback with the next batch of its lane; returns once it
    /// is committed.
    pub async fn submit(&self, event: NewInbound) -> Result<Inserted, StoreError> {
        let lane = {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            (event.connection_id.as_str(), event.conversation.as_str()).hash(&mut hasher);
            usize::try_from(hasher.finish() % self.lanes.len() as u64).unwrap_or(0)
        };
        let event = self.store.seal_inbound(event);
        let (reply, answer) = oneshot::channel();
        self.lanes[lane]
            .send((event, reply))
            .await
            .map_err(|_| StoreError::Busy)?;
        answer.await.map_err(|_| StoreError::Busy)?
    }
}

/// One lane's writer: a batch per transaction, until every sender is gone.
async fn write_lane(
    mut rx: mpsc::Receiver<(NewInbound, Reply)>,
    store: Store,
    dedup_window_ms: i64,
    ingest: Arc<Ingest>,
) {
    let mut batch: Vec<(NewInbound, Reply)> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // SQLite: the turn first (the workers' writes share it); what arrives
        // while waiting for it joins this batch.
        let turn = store.write_turn().await;
        while batch.len() < MAX_BATCH {
            let Ok(more) = rx.try_recv() else {
                break;
            };
            batch.push(more);
        }
        // The events move into the write; their callers wait for its result.
        let (events, replies): (Vec<NewInbound>, Vec<Reply>) = batch.drain(..).unzip();
        let written = store
            .insert_inbound_batch(&events, dedup_window_ms, turn)
            .await;
        store.end_batch(
            replies,
            &written,
            &[&ingest.commits],
            "a batch of callbacks could not be stored; every caller gets an error",
        );
    }
}
