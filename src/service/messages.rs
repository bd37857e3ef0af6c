//! Sending on a tenant's behalf (the send API and the console's test
//! message): the channel checks its own message bodies and keys the
//! conversation as its replies are keyed, so both keep one order; the
//! messages are queued durably and the outbox woken.

use serde::Serialize;
use serde_json::Value;

use super::activity::{self, Actor};
use crate::channels::{Channel, Outgoing, Refused};
use crate::domain::{now_millis, rfc3339};
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
            return Err(quota_error(quota));
        }
    }
    let stored = state
        .store
        .enqueue_messages(
            &record.tenant_id,
            &record.id,
            &conversation,
            tenant.enqueue(&messages),
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

/// Whom a message goes to.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Target<'a> {
    /// `user` or `channel`.
    pub kind: &'a str,
    pub id: &'a str,
}

impl<'a> Target<'a> {
    pub fn of(m: &'a OutboundMessage) -> Self {
        Self {
            kind: &m.target_kind,
            id: &m.target_id,
        }
    }
}

/// A message to a user or a room, as the send API and a connection's
/// outbox show it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MessageView<'a> {
    pub id: &'a str,
    /// The event it answers, if it is a reply (null for the send API's).
    pub event_id: Option<&'a str>,
    /// queued (`pending` in the outbox) | sending | delivered | failed |
    /// cancelled.
    pub status: &'a str,
    pub target: Target<'a>,
    /// The content as it is sent (the channel's rendering); not in a
    /// status hook's post.
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
    pub attempts: i64,
    pub last_error: Option<&'a str>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    pub delivered_at: Option<String>,
}

impl<'a> MessageView<'a> {
    /// `m`, its status named `status`.
    pub fn of(m: &'a OutboundMessage, status: &'a str) -> Self {
        Self {
            content: Some(serde_json::from_str::<Value>(&m.content).unwrap_or(Value::Null)),
            ..Self::without_content(m, status)
        }
    }

    /// `m` without its content (what a status hook is posted).
    pub fn without_content(m: &'a OutboundMessage, status: &'a str) -> Self {
        Self {
            id: &m.id,
            event_id: m.event_id.as_deref(),
            status,
            target: Target::of(m),
            content: None,
            attempts: m.attempts,
            last_error: m.last_error.as_deref(),
            created_at: rfc3339(m.created_at),
            updated_at: rfc3339(m.updated_at),
            delivered_at: m.delivered_at.map(rfc3339),
        }
    }
}

/// The answer for messages over the tenant's quota `quota`.
fn quota_error(quota: &'static str) -> ApiError {
    ApiError::Quota(match quota {
        crate::state::quotas::OVER_OPEN_ROWS => "rows open in its queues",
        _ => "callbacks per second",
    })
}

/// How many failed messages one request puts back at the most.
pub const RETRY_BATCH: i64 = 1000;

/// Failed messages put back in the outbox, and how many failed ones are
/// left.
pub struct Retried {
    pub messages: Vec<OutboundMessage>,
    pub remaining: i64,
}

/// Sends failed messages again: the one named `id` (404 if there is no
/// such message, 409 unless it failed), or the connection's oldest
/// [`RETRY_BATCH`] failed ones. They count against the tenant's open-rows
/// quota as new messages do. A message that failed after the platform may
/// have taken it (its answer lost) can arrive twice: the caller asked.
pub async fn retry(
    state: &AppState,
    record: &ConnectionRecord,
    id: Option<&str>,
    actor: &Actor,
) -> Result<Retried, ApiError> {
    const ONLY: &str = "a failed message can be sent again";
    let wanted = match id {
        Some(id) => {
            expect_status(state, record, id, "failed", ONLY).await?;
            1
        }
        None => state
            .store
            .count_messages(&record.id, "failed")
            .await?
            .min(RETRY_BATCH),
    };
    let tenant = state
        .store
        .tenant(&record.tenant_id)
        .await?
        .ok_or(ApiError::NotFound("no such connection"))?;
    if wanted > 0 {
        let n = usize::try_from(wanted).unwrap_or(usize::MAX);
        if let Some(quota) = state
            .quotas
            .admit_messages(&state.store, &state.settings, &tenant, n)
            .await?
        {
            return Err(quota_error(quota));
        }
    }
    let messages = state
        .store
        .retry_failed(
            &record.tenant_id,
            &record.id,
            id,
            RETRY_BATCH,
            tenant.status_url.is_some(),
            now_millis(),
        )
        .await?;
    if !messages.is_empty() {
        changed(state, record, actor, id, messages.len(), "messages.retried").await;
    }
    if id.is_some() && messages.is_empty() {
        // Sent again by a request that came first.
        return Err(ApiError::Conflict(format!(
            "only {ONLY}; this one was just put back"
        )));
    }
    let remaining = match id {
        Some(_) => 0,
        None => state.store.count_messages(&record.id, "failed").await?,
    };
    Ok(Retried {
        messages,
        remaining,
    })
}

/// The API's name of a stored status.
pub fn status_name(stored: &str) -> &str {
    match stored {
        "pending" => "queued",
        other => other,
    }
}

/// Cancels queued messages: the one named `id` (404 if there is no such
/// message, 409 unless it is queued), or every queued one of the
/// connection (engine replies and the send API's alike, paced or waiting
/// for a retry). A message a worker has taken (`sending`) is past
/// cancelling: it is delivered or fails as it would have. Returns how many
/// were cancelled, and the one named, as it is now.
pub async fn cancel(
    state: &AppState,
    record: &ConnectionRecord,
    id: Option<&str>,
    actor: &Actor,
) -> Result<(u64, Option<OutboundMessage>), ApiError> {
    const ONLY: &str = "a queued message can be cancelled";
    if let Some(id) = id {
        expect_status(state, record, id, "pending", ONLY).await?;
    }
    let count = state
        .store
        .cancel_queued(&record.tenant_id, &record.id, id, now_millis())
        .await?;
    if count > 0 {
        // A cancelled head lets the next message of its conversation go.
        let n = usize::try_from(count).unwrap_or(usize::MAX);
        changed(state, record, actor, id, n, "messages.cancelled").await;
    }
    let Some(id) = id else {
        return Ok((count, None));
    };
    if count == 0 {
        // Taken by a worker between the look and the change.
        return Err(ApiError::Conflict(format!(
            "only {ONLY}; this one is being sent"
        )));
    }
    let message = state
        .store
        .message(&record.id, id)
        .await?
        .ok_or(ApiError::NotFound("no such message"))?;
    Ok((count, Some(message)))
}

/// After `count` messages were put back or cancelled (`action`): the
/// outbox woken, a log line, and an entry in the tenant's activity.
async fn changed(
    state: &AppState,
    record: &ConnectionRecord,
    actor: &Actor,
    id: Option<&str>,
    count: usize,
    action: &'static str,
) {
    state.signals.outbox.notify_one();
    tracing::info!(connection = %record.id, count, action, "outbox messages changed");
    let detail = match id {
        Some(id) => format!("message {id}"),
        None => format!("{count} messages"),
    };
    activity::record(
        &state.store,
        actor,
        &record.tenant_id,
        Some(&record.id),
        action,
        detail,
    )
    .await;
}

/// The message `id` of `record`, if its stored status is `status`: else
/// 404 (no such message) or 409 saying that `only` (and what it is).
async fn expect_status(
    state: &AppState,
    record: &ConnectionRecord,
    id: &str,
    status: &str,
    only: &str,
) -> Result<OutboundMessage, ApiError> {
    let message = state
        .store
        .message(&record.id, id)
        .await?
        .ok_or(ApiError::NotFound("no such message"))?;
    if message.status != status {
        return Err(ApiError::Conflict(format!(
            "only {only}; this one is {}",
            status_name(&message.status)
        )));
    }
    Ok(message)
}
