//! Background workers: the inbox worker hands events to the engine, the
//! outbox worker sends messages to NAVER WORKS. Both are loops around a step
//! function that claims a batch of leased rows and processes each in its own
//! task (bounded by a semaphore); they wake on a notification from the
//! webhook handler (or the inbox worker) or on a short poll, and stop when
//! told to.

pub mod inbox;
pub mod outbox;
pub mod retry;
pub mod status_hook;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::store::bodies::Stored;
use crate::store::queue::{Handoff, InboundEvent, OutboundMessage, Taken};

use crate::state::signals::Kind;
use crate::state::AppState;

/// Claims are leases longer than the longest call they cover (the engine
/// timeout, or a send's), so a live worker never loses one; a crashed
/// worker's claims come back after this long.
pub fn lease_ms(settings: &crate::config::Settings) -> i64 {
    let longest = settings.engine_timeout.max(settings.send_timeout);
    i64::try_from((longest + Duration::from_secs(10)).as_millis()).unwrap_or(60_000)
}

/// Claims, for `free` slots, the `kind`'s rows that are due now, leased
/// to this worker, and starts each.
async fn step(
    state: &web::Data<AppState>,
    slots: &Arc<Semaphore>,
    free: usize,
    kind: Kind,
) -> crate::store::StoreResult<Outcome> {
    let (owner, now) = (&state.worker_id, crate::domain::now_millis());
    let (until, limit) = (
        now + lease_ms(&state.settings),
        i64::try_from(free).unwrap_or(1),
    );
    let store = &state.store;
    Ok(match kind {
        Kind::Inbox => {
            let events: Vec<InboundEvent> = store.claim(owner, now, until, limit).await?;
            spawn_each(state, slots, events).await
        }
        Kind::Outbox => {
            let messages: Vec<OutboundMessage> = store.claim(owner, now, until, limit).await?;
            spawn_each(state, slots, messages).await
        }
    })
}

/// How long one attempt may run: the lease less a margin for writing its
/// result, so that the result is written while the lease still holds.
pub fn attempt_budget(settings: &crate::config::Settings) -> Duration {
    Duration::from_millis(u64::try_from(lease_ms(settings) - 5_000).unwrap_or(1_000))
}
/// Events or messages in flight at once, per worker.
const CONCURRENCY: usize = 256;

/// What a step did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Claimed this many rows (now being processed).
    Claimed(usize),
    Empty,
}

/// Starts each claimed item, each holding a slot until it is
/// done.
async fn spawn_each<T: Work>(
    state: &web::Data<AppState>,
    slots: &Arc<Semaphore>,
    items: Vec<T>,
) -> Outcome {
    let claimed = items.len();
    for item in items {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        spawn_one(state, slot, item);
    }
    if claimed == 0 {
        Outcome::Empty
    } else {
        Outcome::Claimed(claimed)
    }
}

/// What a worker does with one claimed row (an event, a message).
pub(crate) trait Work: Stored + Send + 'static {
    /// The worker whose rows these are.
    const KIND: Kind;
    fn process(
        state: web::Data<AppState>,
        item: Self,
    ) -> impl std::future::Future<Output = crate::store::StoreResult<()>> + Send + 'static;
}

/// Runs `T::process` on one claimed item in a task of its own, holding
/// `slot` until it is done; a failure is logged, and the item's lease
/// expires so that it is tried again. The slot freed wakes the worker if
/// rows may be waiting for one. (The next row of the item's conversation,
/// if any, is woken for by the write of the item's result.)
fn spawn_one<T: Work>(state: &web::Data<AppState>, slot: OwnedSemaphorePermit, item: T) {
    let kind = T::KIND;
    let item_id = item.id().to_owned();
    let work = T::process(state.clone(), item);
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(e) = work.await {
            tracing::error!(item = %item_id, error.message = %e, error.cause_chain = ?e, "processing failed; the lease will expire and it is retried");
        }
        drop(slot);
        if state.signals.hungry(kind).load(Ordering::SeqCst) {
            state.signals.notify(kind).notify_one();
        }
    });
}

/// Starts the rows claimed for a worker as they were written (see
/// [`crate::store::handoff`]). When the workers stop, what was already handed
/// over is started (the worker waits for it), and nothing more is taken.
async fn take<T: Work>(state: web::Data<AppState>, mut taken: Taken<T>) {
    let mut stop = state.signals.stop.subscribe();
    loop {
        tokio::select! {
            item = taken.recv() => match item {
                Some((item, slot)) => start_opened(&state, slot, item),
                None => return,
            },
            _ = stop.changed() => break,
        }
    }
    taken.close();
    while let Ok((item, slot)) = taken.try_recv() {
        start_opened(&state, slot, item);
    }
}

/// Starts a handed-over row once its body is opened; one that cannot be
/// opened keeps its lease until it expires (and is claimed again).
fn start_opened<T: Work>(state: &web::Data<AppState>, slot: OwnedSemaphorePermit, item: T) {
    match T::opened(&state.store, vec![item]).map(|mut rows| rows.pop()) {
        Ok(Some(item)) => spawn_one(state, slot, item),
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error.message = %e, "a handed-over row could not be opened; its lease will expire")
        }
    }
}

/// Starts both workers, the status hook's and the housekeeping job on the
/// current runtime.
pub fn spawn(state: web::Data<AppState>) -> Vec<tokio::task::JoinHandle<()>> {
    let lease = lease_ms(&state.settings);
    let inbox = Arc::new(Semaphore::new(CONCURRENCY));
    let outbox = Arc::new(Semaphore::new(CONCURRENCY));
    let (to_inbox, inbox_taken) = Handoff::new(
        inbox.clone(),
        state.worker_id.clone(),
        lease,
        state.signals.inbox.clone(),
    );
    let (to_outbox, outbox_taken) = Handoff::new(
        outbox.clone(),
        state.worker_id.clone(),
        lease,
        state.signals.outbox.clone(),
    );
    state.store.hand_off_inbound(to_inbox);
    state.store.hand_off_outbound(to_outbox);
    vec![
        tokio::spawn(run(state.clone(), Kind::Inbox, inbox)),
        tokio::spawn(run(state.clone(), Kind::Outbox, outbox)),
        tokio::spawn(take(state.clone(), inbox_taken)),
        tokio::spawn(take(state.clone(), outbox_taken)),
        tokio::spawn(status_hook::run(state.clone())),
        tokio::spawn(housekeeping(state)),
    ]
}

/// How much longer than the window a hash is kept: Slack retries an event
/// (same `event_time`) up to about 5 minutes after it first came (SLACK.md
/// §2), and a callback accepted at the window's edge keeps its hash.
const PRUNE_MARGIN_MS: i64 = 15 * 60 * 1000;

/// Forgets dedup hashes issued more than the window (and a margin) ago,
/// every few minutes.
async fn housekeeping(state: web::Data<AppState>) {
    let mut stop = state.signals.stop.subscribe();
    loop {
        let window = state.settings.dedup_window_ms();
        match state
            .store
            .prune_dedup(crate::domain::now_millis() - window - PRUNE_MARGIN_MS)
            .await
        {
            Ok(n) if n > 0 => tracing::debug!(pruned = n, "old dedup hashes forgotten"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error.message = %e, "dedup pruning failed"),
        }
        prune_history(&state).await;
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

/// Deletes finished rows past their retention (`retain_*_days`).
async fn prune_history(state: &AppState) {
    let now = crate::domain::now_millis();
    let ago = |d: Duration| now - i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4);
    let retention = crate::store::Retention {
        done_before: ago(state.settings.retain_done),
        dead_before: ago(state.settings.retain_dead),
        audit_before: ago(state.settings.retain_audit),
    };
    match state
        .store
        .prune_history(&retention, crate::store::lifecycle::BATCH)
        .await
    {
        Ok(p) if p != crate::store::Pruned::default() => tracing::info!(
            events = p.events,
            messages = p.messages,
            audit = p.audit,
            activity = p.activity,
            "rows past their retention deleted"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error.message = %e, "retention pruning failed"),
    }
}

async fn run(state: web::Data<AppState>, kind: Kind, slots: Arc<Semaphore>) {
    let mut stop = state.signals.stop.subscribe();
    loop {
        if *stop.borrow() {
            break;
        }
        state.worker_ticks[kind as usize].store(
            crate::domain::now_millis(),
            std::sync::atomic::Ordering::Relaxed,
        );
        // Rows due by now are the step's to claim; those due later are waited for.
        let stepped_at = crate::domain::now_millis();
        let free = slots.available_permits();
        let step = if free == 0 {
            Ok(Outcome::Empty)
        } else {
            step(&state, &slots, free, kind).await
        };
        let busy = matches!(step, Ok(Outcome::Claimed(n)) if n == free);
        // A step that ran took every row due by `stepped_at` it could.
        let claimed_due = free > 0 && step.is_ok();
        if let Err(e) = step {
            tracing::error!(error.message = %e, "worker step failed");
        }
        if busy {
            continue;
        }
        // Rows may wait for a slot: the next slot freed wakes this loop. A
        // slot freed before the flag was up is seen here instead.
        let hungry = free == 0;
        state.signals.hungry(kind).store(hungry, Ordering::SeqCst);
        if hungry && slots.available_permits() > 0 {
            continue;
        }
        // Until woken, the next row put back for later comes due, or the
        // poll (for what no wake covers: another replica's rows, leases of a
        // stopped process).
        let wait = claimed_due
            .then(|| {
                state
                    .store
                    .next_due(matches!(kind, Kind::Outbox), stepped_at)
            })
            .flatten()
            .map_or(state.settings.worker_poll, |due| {
                let left = due - crate::domain::now_millis();
                let until = Duration::from_millis(u64::try_from(left).unwrap_or(0) + 1);
                until.min(state.settings.worker_poll)
            });
        tokio::select! {
            () = state.signals.notify(kind).notified() => {}
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
    // Let in-flight work finish (each holds a permit).
    let _ = slots
        .acquire_many(u32::try_from(CONCURRENCY).unwrap_or(u32::MAX))
        .await;
}
