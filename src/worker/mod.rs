//! Background workers: the inbox worker hands events to the engine, the
//! outbox worker sends messages to NAVER WORKS. Both are loops around a step
//! function that claims a batch of leased rows and processes each in its own
//! task (bounded by a semaphore); they wake on a notification from the
//! webhook handler (or the inbox worker) or on a short poll, and stop when
//! told to.

pub mod inbox;
pub mod outbox;
pub mod pacer;
pub mod retry;

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};

use crate::store::handoff::{Handoff, Taken};

use crate::startup::AppState;

/// Claims are leases longer than the longest call they cover (the engine
/// timeout, or 15 s for a send), so a live worker never loses one; a crashed
/// worker's claims come back after this long.
pub fn lease_ms(settings: &crate::config::Settings) -> i64 {
    let longest = settings.engine_timeout.max(Duration::from_secs(15));
    i64::try_from((longest + Duration::from_secs(10)).as_millis()).unwrap_or(60_000)
}
const POLL: Duration = Duration::from_millis(250);
/// Events or messages in flight at once, per worker.
const CONCURRENCY: usize = 256;

/// Wake-ups and the stop signal, shared by the web handlers and the workers.
pub struct WorkerSignals {
    pub inbox: Notify,
    pub outbox: Notify,
    stop: watch::Sender<bool>,
}

impl Default for WorkerSignals {
    fn default() -> Self {
        Self {
            inbox: Notify::new(),
            outbox: Notify::new(),
            stop: watch::channel(false).0,
        }
    }
}

impl WorkerSignals {
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

/// What a step did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Claimed this many rows (now being processed).
    Claimed(usize),
    Empty,
}

/// Starts each claimed item (`start`), each holding a slot until it is
/// done.
pub(crate) async fn spawn_each<T>(
    state: &web::Data<AppState>,
    slots: &Arc<Semaphore>,
    items: Vec<T>,
    start: Start<T>,
) -> Outcome {
    let claimed = items.len();
    for item in items {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        start(state, slot, item);
    }
    if claimed == 0 {
        Outcome::Empty
    } else {
        Outcome::Claimed(claimed)
    }
}

/// How a worker starts one claimed item in a slot of its own.
pub(crate) type Start<T> = fn(&web::Data<AppState>, OwnedSemaphorePermit, T);

/// Runs `process` on one claimed item in a task of its own, holding `slot`
/// until it is done; a failure is logged, and the item's lease expires so
/// that it is tried again. Each item done wakes its worker (`wake`): its
/// conversation's next row may be claimable now, and a slot is free.
pub(crate) fn spawn_one<T, Fut>(
    state: &web::Data<AppState>,
    slot: OwnedSemaphorePermit,
    item: T,
    id: fn(&T) -> &str,
    process: fn(web::Data<AppState>, T) -> Fut,
    wake: fn(&AppState) -> &Notify,
) where
    T: Send + 'static,
    Fut: std::future::Future<Output = crate::store::StoreResult<()>> + Send + 'static,
{
    let item_id = id(&item).to_owned();
    let work = process(state.clone(), item);
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = work.await {
            tracing::error!(item = %item_id, error.message = %e, error.cause_chain = ?e, "processing failed; the lease will expire and it is retried");
        }
        drop(slot);
        wake(&state).notify_one();
    });
}

/// Starts the rows claimed for a worker as they were written (see
/// [`crate::store::handoff`]). When the workers stop, what was already handed
/// over is started (the worker waits for it), and nothing more is taken.
async fn take<T>(state: web::Data<AppState>, mut taken: Taken<T>, start: Start<T>) {
    let mut stop = state.signals.stop.subscribe();
    loop {
        tokio::select! {
            item = taken.recv() => match item {
                Some((item, slot)) => start(&state, slot, item),
                None => return,
            },
            _ = stop.changed() => break,
        }
    }
    taken.close();
    while let Ok((item, slot)) = taken.try_recv() {
        start(&state, slot, item);
    }
}

/// Starts both workers and the housekeeping job on the current runtime.
pub fn spawn(state: web::Data<AppState>) -> Vec<tokio::task::JoinHandle<()>> {
    let lease = lease_ms(&state.settings);
    let inbox = Arc::new(Semaphore::new(CONCURRENCY));
    let outbox = Arc::new(Semaphore::new(CONCURRENCY));
    let (to_inbox, inbox_taken) = Handoff::new(inbox.clone(), state.worker_id.clone(), lease);
    let (to_outbox, outbox_taken) = Handoff::new(outbox.clone(), state.worker_id.clone(), lease);
    state.store.hand_off_inbound(to_inbox);
    state.store.hand_off_outbound(to_outbox);
    vec![
        tokio::spawn(run(state.clone(), Kind::Inbox, inbox)),
        tokio::spawn(run(state.clone(), Kind::Outbox, outbox)),
        tokio::spawn(take(state.clone(), inbox_taken, inbox::start)),
        tokio::spawn(take(state.clone(), outbox_taken, outbox::start)),
        tokio::spawn(housekeeping(state)),
    ]
}

/// Forgets dedup hashes older than the window, every few minutes.
async fn housekeeping(state: web::Data<AppState>) {
    let mut stop = state.signals.stop.subscribe();
    loop {
        let window = i64::try_from(state.settings.dedup_window.as_millis()).unwrap_or(i64::MAX / 4);
        match state
            .store
            .prune_dedup(crate::domain::now_millis() - window)
            .await
        {
            Ok(n) if n > 0 => tracing::debug!(pruned = n, "old dedup hashes forgotten"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error.message = %e, "dedup pruning failed"),
        }
        if let Err(e) = state
            .store
            .prune_sessions(crate::domain::now_millis())
            .await
        {
            tracing::warn!(error.message = %e, "console session pruning failed");
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(300)) => {}
            _ = stop.changed() => break,
        }
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Inbox,
    Outbox,
}

async fn run(state: web::Data<AppState>, kind: Kind, slots: Arc<Semaphore>) {
    let mut stop = state.signals.stop.subscribe();
    loop {
        if *stop.borrow() {
            break;
        }
        let tick = match kind {
            Kind::Inbox => &state.worker_ticks[0],
            Kind::Outbox => &state.worker_ticks[1],
        };
        tick.store(
            crate::domain::now_millis(),
            std::sync::atomic::Ordering::Relaxed,
        );
        let free = slots.available_permits();
        let step = if free == 0 {
            Ok(Outcome::Empty)
        } else {
            match kind {
                Kind::Inbox => inbox::step(&state, &slots, free).await,
                Kind::Outbox => outbox::step(&state, &slots, free).await,
            }
        };
        let busy = matches!(step, Ok(Outcome::Claimed(n)) if n == free);
        if let Err(e) = step {
            tracing::error!(error.message = %e, "worker step failed");
        }
        if busy {
            continue;
        }
        let notify = match kind {
            Kind::Inbox => &state.signals.inbox,
            Kind::Outbox => &state.signals.outbox,
        };
        tokio::select! {
            () = notify.notified() => {}
            () = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => {}
        }
    }
    // Let in-flight work finish (each holds a permit).
    let _ = slots
        .acquire_many(u32::try_from(CONCURRENCY).unwrap_or(u32::MAX))
        .await;
}
