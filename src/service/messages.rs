//! Sending on a tenant's behalf (the send API and the console's test
//! message): the channel checks its own message bodies and keys the
//! conversation as its replies are keyed, so both keep one order; the
//! messages are queued durably and the outbox woken.

use crate::channels::{Channel, Outgoing, Refused};
use crate::domain::now_millis;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::queue::OutboundMessage;
use crate::store::ConnectionRecord;

/// Queues `outgoing` (one message per content) on `record`; with `key`, a
/// repeat answers the first request's messages.
pub async fn send(
    state: &AppState,
    record: &ConnectionRecord,
    outgoing: &Outgoing<'_>,
    key: Option<&str>,
) -> Result<Vec<OutboundMessage>, ApiError> {
    let (conversation, messages) = Channel::of(record)
        .outgoing(state, record, outgoing)
        .await
        .map_err(|refused| match refused {
            Refused::Invalid(errors) => ApiError::Validation(errors),
            Refused::Store(e) => e.into(),
        })?;
    let tenant = state
        .store
        .tenant(&record.tenant_id)
        .await?
        .ok_or(ApiError::NotFound("no such connection"))?;
    // A repeat of an idempotent request is answered whatever the quota.
    let repeat = match key {
        Some(key) => !state
            .store
            .messages_by_key(&record.id, key)
            .await?
            .is_empty(),
        None => false,
    };
    if !repeat {
        if let Some(quota) = state
            .quotas
            .admit_messages(&state.store, &state.settings, &tenant, messages.len())
            .await?
        {
            return Err(ApiError::Quota(match quota {
                crate::state::quotas::OVER_OPEN_ROWS => "rows open in its queues",
                _ => "callbacks per second",
            }));
        }
    }
    let stored = state
        .store
        .enqueue_messages(
            &record.tenant_id,
            &record.id,
            &conversation,
            &messages,
            key,
            now_millis(),
        )
        .await?;
    state.signals.outbox.notify_one();
    if stored.is_empty() {
        return Err(ApiError::Internal(anyhow::anyhow!("no message stored")));
    }
    Ok(stored)
}
