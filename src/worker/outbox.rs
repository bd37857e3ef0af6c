//! The outbox worker: claim messages, deliver each through its channel's
//! adapter (`channels`), paced under the connection's per-minute limit per
//! the adapter's pace key, and write the result:
//! - delivered: closed;
//! - rate limited: the pace key waits as asked; retried, not counted;
//! - server errors, network errors, no token, credentials refused: backoff
//!   with jitter, counted, failed after the last attempt;
//! - refused by the platform: failed, with its (bounded) reason.

use actix_web::web;

use super::retry::backoff;
use super::{Kind, Work};
use crate::channels::{Channel, Sent};
use crate::domain::now_millis;
use crate::state::AppState;
use crate::store::queue::OutboundMessage;
use crate::store::StoreResult;

/// How long a connection's sends are held after its credentials were
/// refused (a rotated token is used once the hold ends): 20 retry bases
/// (20 s by default), at most a minute.
fn credentials_pause_ms(settings: &crate::config::Settings) -> i64 {
    i64::try_from(settings.retry_base.as_millis().saturating_mul(20))
        .unwrap_or(60_000)
        .min(60_000)
}

impl Work for OutboundMessage {
    const KIND: Kind = Kind::Outbox;

    async fn process(state: web::Data<AppState>, message: Self) -> StoreResult<()> {
        process(&state, &message).await
    }
}

async fn process(state: &AppState, message: &OutboundMessage) -> StoreResult<()> {
    let owner = &state.worker_id;
    let now = now_millis();
    let Some((connection, meta)) = state
        .store
        .connection_with_token(&message.connection_id)
        .await?
        .filter(|(c, _)| c.tenant_id == message.tenant_id)
    else {
        return Ok(()); // deleted: its messages went with it
    };
    let channel = Channel::of(&connection);
    let pace_key = channel.pace_key(message);
    // Credentials that were refused hold every send they serve (the
    // connection, or a Slack workspace), whatever its finer pace key.
    let hold_key = channel.hold_key(message);
    let held = (pace_key != hold_key)
        .then(|| state.pacer.held(&hold_key, now))
        .flatten();
    // Held, or over the pace: put back until then, not counted as an
    // attempt. (A held send takes no token from the pace.)
    let wait = match held {
        Some(until) => Some(("held", until)),
        None => state
            .pacer
            .try_acquire(&pace_key, connection.rate_limit_per_minute, now)
            .err()
            .map(|ready| ("deferred", ready)),
    };
    if let Some((why, until)) = wait {
        state.metrics.pacing_delays.inc(why);
        state
            .store
            .retry_outbound(message, owner, None, until, false, now)
            .await?;
        return Ok(());
    }
    let retry_later = |error: String| async move {
        let attempts = u32::try_from(message.attempts).unwrap_or(u32::MAX);
        let now = now_millis();
        if attempts >= state.settings.send_max_attempts {
            tracing::warn!(message_id = %message.id, attempts, error.message = %error, "message failed after its last attempt");
            state
                .store
                .close_outbound(message, owner, false, Some(&error), now)
                .await
        } else {
            let delay = backoff(state.settings.retry_base, message.attempts);
            let next = now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 4);
            state
                .store
                .retry_outbound(message, owner, Some(&error), next, true, now)
                .await
        }
    };
    // One deadline for the whole attempt — the token (which may wait for
    // another replica's refresh), the send, one refresh and one more send —
    // inside the lease: past it, another worker could claim the message and
    // send it while this one still might.
    let attempt = channel.deliver(state, &connection, meta, message);
    let outcome = match tokio::time::timeout(super::attempt_budget(&state.settings), attempt).await
    {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(error)) => {
            retry_later(error).await?;
            return Ok(());
        }
        Err(_) => {
            state.metrics.sends.inc("deadline");
            tracing::warn!(message_id = %message.id, "the attempt did not finish within its lease; given back for later");
            retry_later("the attempt did not finish within its lease".into()).await?;
            return Ok(());
        }
    };
    let now = now_millis();
    match outcome {
        Sent::Delivered => {
            state
                .store
                .close_outbound(message, owner, true, None, now)
                .await?;
        }
        Sent::RateLimited { until, error } => {
            state.pacer.pause(&pace_key, until);
            tracing::info!(connection_id = %connection.id, wait_ms = until - now, "rate limited; pausing these sends");
            state
                .store
                .retry_outbound(message, owner, Some(&error), until, false, now)
                .await?;
        }
        Sent::ServerError(error) | Sent::Unreachable(error) => {
            retry_later(error).await?;
        }
        // Only after a forced refresh: the fresh token was refused too.
        Sent::Unauthorized(error) => {
            retry_later(error).await?;
        }
        Sent::CredentialsRefused(error) => {
            // Every send of the connection waits; this one counts an attempt
            // and fails with the reason after the last.
            let until = now + credentials_pause_ms(&state.settings);
            state.pacer.pause(&hold_key, until);
            tracing::warn!(connection_id = %connection.id, error.message = %error, "the platform refused the connection's credentials; its sends are held");
            retry_later(error).await?;
        }
        Sent::Rejected(error) => {
            tracing::warn!(message_id = %message.id, error.message = %error, "the platform refused the message");
            state
                .store
                .close_outbound(message, owner, false, Some(&error), now)
                .await?;
        }
    }
    Ok(())
}
