//! The status hook's worker: posts the final status (delivered, failed,
//! cancelled) of each message written while its tenant had a status hook
//! (`PUT /api/v1/tenants/{tenant}/status-hook`) to that hook, signed as
//! engine requests are. At least once: a post is settled only after the
//! hook answered 2xx, tried again with backoff on anything else, and given
//! up after [`MAX_POSTS`] tries; a replica that stops mid-post leaves a
//! lease that expires, and the post is made again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use actix_web::web;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};

use super::retry::backoff;
use crate::domain::now_millis;
use crate::service::status_hook;
use crate::state::AppState;
use crate::store::queue::StatusNotice;

/// Posts in flight at once, per replica.
const SLOTS: usize = 64;
/// Free slots the worker waits for before it claims.
const CLAIM_BATCH: u32 = 16;
/// Posts of one tenant in flight past which none more are claimed for it.
/// A claim (a batch at most) may take a tenant just below it a batch past
/// it, so a hook that hangs holds at most 47 of the 64 slots and the other
/// tenants keep the rest; a quick hook seldom has this many under way, so
/// its claims stay whole batches.
const TENANT_SLOTS: usize = 32;
/// A claimed post's lease: past it, another worker posts it again.
const LEASE_MS: i64 = 30_000;
/// Tries before a status is given up: with the default `retry_base_ms`
/// (1 s) the retry schedule (1, 2, 5, …, 300 times it) spans about an hour.
pub const MAX_POSTS: i64 = 20;

/// Claims due posts for the free slots and makes each in a task of its
/// own, until told to stop; the posts the hooks took are settled in
/// batches by [`settle_posted`].
pub async fn run(state: web::Data<AppState>) {
    let slots = Arc::new(Semaphore::new(SLOTS));
    let (posted, taken) = mpsc::unbounded_channel();
    tokio::spawn(settle_posted(state.clone(), taken));
    let in_flight = InFlight::default();
    let mut stop = state.signals.stop.subscribe();
    loop {
        // Free slots first, a batch's worth: while the slots post, nothing
        // is claimed, and a claim is never of one or two rows at a time
        // (each claim is a write). Only this loop takes slots, so those
        // counted are there to take below.
        tokio::select! {
            batch = slots.clone().acquire_many_owned(CLAIM_BATCH) => if batch.is_err() { break },
            _ = stop.changed() => break,
        };
        // At most a batch at a time, so that a tenant below its share gets
        // at most a batch more.
        let free = slots.available_permits().min(CLAIM_BATCH as usize);
        let now = now_millis();
        let limit = i64::from(CLAIM_BATCH).min(i64::try_from(free).unwrap_or(1));
        let busy = in_flight.busy();
        let busy: Vec<&str> = busy.iter().map(String::as_str).collect();
        let notices = match state
            .store
            .claim_status_notices(now, now + LEASE_MS, limit, &busy)
            .await
        {
            Ok(notices) => notices,
            Err(e) => {
                tracing::warn!(error.message = %e, "could not claim message statuses to post");
                Vec::new()
            }
        };
        // Fewer than asked for: nothing more is due now; look again after
        // `worker_poll_ms`, as the queues' workers look for work not woken for.
        let idle = notices.len() < free;
        for notice in notices {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                break;
            };
            let counted = in_flight.start(notice.message.tenant_id.as_str());
            let (state, posted) = (state.clone(), posted.clone());
            tokio::spawn(async move {
                post(state, notice, slot, posted).await;
                drop(counted);
            });
        }
        // A tenant skipped as busy has posts due: look again as soon as
        // one of its (or anyone's) posts ends.
        if idle {
            tokio::select! {
                () = tokio::time::sleep(state.settings.worker_poll) => {}
                () = in_flight.ended(), if !busy.is_empty() => {}
                _ = stop.changed() => break,
            }
        }
    }
}

/// Posts in flight per tenant, and a signal when one ends.
#[derive(Default, Clone)]
struct InFlight(Arc<Posts>);

#[derive(Default)]
struct Posts {
    per_tenant: Mutex<HashMap<String, usize>>,
    ended: Notify,
}

/// One post counted in [`InFlight`] until dropped.
struct Counted(InFlight, String);

impl InFlight {
    fn start(&self, tenant: &str) -> Counted {
        *self.lock().entry(tenant.to_owned()).or_default() += 1;
        Counted(self.clone(), tenant.to_owned())
    }

    /// The tenants with [`TENANT_SLOTS`] posts or more in flight.
    fn busy(&self) -> Vec<String> {
        let counts = self.lock();
        counts
            .iter()
            .filter(|(_, n)| **n >= TENANT_SLOTS)
            .map(|(tenant, _)| tenant.clone())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.0
            .per_tenant
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Until a post ends (at once if one ended since the last call).
    async fn ended(&self) {
        self.0.ended.notified().await;
    }

    fn end(&self, tenant: &str) {
        let mut counts = self.lock();
        if let Some(n) = counts.get_mut(tenant) {
            *n -= 1;
            if *n == 0 {
                counts.remove(tenant);
            }
        }
        drop(counts);
        self.0.ended.notify_one();
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.end(&self.1);
    }
}

/// Makes one post: taken, it goes to be settled with others; failed, it is
/// due again after a backoff, or given up.
async fn post(
    state: web::Data<AppState>,
    notice: StatusNotice,
    _slot: OwnedSemaphorePermit,
    posted: mpsc::UnboundedSender<StatusNotice>,
) {
    let next_at = match status_hook::post(&state, &notice).await {
        Ok(taken) => {
            if taken {
                state.metrics.status_posts.inc("posted");
            }
            // The settler writes it (with others) after this slot is free.
            let _ = posted.send(notice);
            return;
        }
        Err(error) if notice.notify_attempts >= MAX_POSTS => {
            state.metrics.status_posts.inc("dropped");
            tracing::warn!(message_id = %notice.message.id, tenant_id = %notice.message.tenant_id, attempts = notice.notify_attempts, error.message = %error, "the status hook kept failing; this message's status is not posted");
            None
        }
        Err(error) => {
            state.metrics.status_posts.inc("retried");
            tracing::info!(message_id = %notice.message.id, tenant_id = %notice.message.tenant_id, attempts = notice.notify_attempts, error.message = %error, "status post failed; will retry");
            let delay = backoff(state.settings.retry_base, notice.notify_attempts);
            Some(now_millis() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 4))
        }
    };
    if let Err(e) = state.store.settle_status_notice(&notice, next_at).await {
        tracing::warn!(message_id = %notice.message.id, error.message = %e, "could not settle a status post; its lease will expire and it is posted again");
    }
}

/// Most posts settled in one transaction.
const SETTLE_BATCH: usize = 512;

/// Settles the posts the hooks took, as many at a time as have come since
/// the last write: one transaction for a batch, not one per post. Ends
/// when every sender is gone.
async fn settle_posted(
    state: web::Data<AppState>,
    mut taken: mpsc::UnboundedReceiver<StatusNotice>,
) {
    while let Some(first) = taken.recv().await {
        let mut batch = vec![first];
        while batch.len() < SETTLE_BATCH {
            match taken.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        if let Err(e) = state.store.settle_status_posted(&batch).await {
            tracing::warn!(posts = batch.len(), error.message = %e, "could not settle status posts; their leases will expire and they are posted again");
        }
    }
}
