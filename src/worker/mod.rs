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
use tokio::sync::{watch, Notify, Semaphore};

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
const CONCURRENCY: usize = 64;

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

/// Runs `process` on each claimed item in a task of its own, each holding a
/// slot until it is done; a failure is logged, and the item's lease expires
/// so that it is tried again. Each item done wakes its worker (`wake`): its
/// conversation's next row may be claimable now, and a slot is free.
pub(crate) async fn spawn_each<T, Fut>(
    state: &web::Data<AppState>,
    slots: &Arc<Semaphore>,
    items: Vec<T>,
    id: fn(&T) -> &str,
    process: fn(web::Data<AppState>, T) -> Fut,
    wake: fn(&AppState) -> &Notify,
) -> Outcome
where
    T: Send + 'static,
    Fut: std::future::Future<Output = crate::store::StoreResult<()>> + Send + 'static,
{
    let claimed = items.len();
    for item in items {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let item_id = id(&item).to_owned();
        let work = process(state.clone(), item);
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = work.await {
                tracing::error!(item = %item_id, error.message = %e, error.cause_chain = ?e, "processing failed; the lease will expire and it is retried");
            }
            drop(permit);
            wake(&state).notify_one();
        });
    }
    if claimed == 0 {
        Outcome::Empty
    } else {
        Outcome::Claimed(claimed)
    }
}

/// Starts both workers and the housekeeping job on the current runtime.
pub fn spawn(state: web::Data<AppState>) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(run(state.clone(), Kind::Inbox)),
        tokio::spawn(run(state.clone(), Kind::Outbox)),
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

async fn run(state: web::Data<AppState>, kind: Kind) {
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
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
