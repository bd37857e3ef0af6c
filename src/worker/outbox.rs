//! The outbox worker: send claimed messages through the Bot API with the
//! connection's shared token, paced under its per-minute limit.
//! - 201: delivered.
//! - 401/403 `UNAUTHORIZED`: one forced token refresh, then one more try.
//! - 429: wait out `rateLimit-reset` (the connection pauses; not counted).
//! - 5xx, network errors, token endpoint down: backoff with jitter, counted.
//! - other 4xx (validation, unknown user): failed, with NAVER WORKS' error.

use std::sync::Arc;

use actix_web::web;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::retry::{backoff, rate_limit_wait};
use super::{lease_ms, spawn_each, spawn_one, Kind, Outcome};
use crate::domain::now_millis;
use crate::state::AppState;
use crate::store::queue::OutboundMessage;
use crate::store::{ConnectionRecord, StoreResult};

pub async fn step(
    state: &web::Data<AppState>,
    slots: &Arc<Semaphore>,
    free: usize,
) -> StoreResult<Outcome> {
    let now = now_millis();
    let limit = i64::try_from(free).unwrap_or(1);
    let messages = state
        .store
        .claim_outbound(
            &state.worker_id,
            now,
            now + lease_ms(&state.settings),
            limit,
        )
        .await?;
    Ok(spawn_each(state, slots, messages, start).await)
}

/// Processes one claimed message in a slot of its own.
pub(super) fn start(
    state: &web::Data<AppState>,
    slot: OwnedSemaphorePermit,
    message: OutboundMessage,
) {
    spawn_one(
        state,
        slot,
        message,
        |message| &message.id,
        |state, message| async move { process(&state, &message).await },
        Kind::Outbox,
    );
}

enum Sent {
    Delivered,
    Unauthorized,
    RateLimited(Option<String>),
    /// 5xx from NAVER WORKS.
    ServerError(String),
    /// No answer (timeout, connection refused).
    Unreachable(String),
    Rejected(String),
}

/// `send_once`, timed and counted.
async fn send(
    state: &AppState,
    connection: &ConnectionRecord,
    message: &OutboundMessage,
    token: &SecretString,
) -> Sent {
    let started = std::time::Instant::now();
    let sent = send_once(state, connection, message, token).await;
    let endpoint = if message.target_kind == "channel" {
        "channels"
    } else {
        "users"
    };
    state.metrics.send_endpoints.inc(endpoint);
    state.metrics.send_latency.observe(started.elapsed());
    state.metrics.sends.inc(match &sent {
        Sent::Delivered => "delivered",
        Sent::Unauthorized => "unauthorized",
        Sent::RateLimited(_) => "rate_limited",
        Sent::Rejected(_) => "client_error",
        Sent::ServerError(_) => "server_error",
        Sent::Unreachable(_) => "network_error",
    });
    sent
}

async fn send_once(
    state: &AppState,
    connection: &ConnectionRecord,
    message: &OutboundMessage,
    token: &SecretString,
) -> Sent {
    let Ok(mut url) = url::Url::parse(state.settings.naverworks_api_url.as_str()) else {
        return Sent::Rejected("the API URL is invalid".into());
    };
    let kind = if message.target_kind == "channel" {
        "channels"
    } else {
        "users"
    };
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().extend([
            "bots",
            connection.bot_id.as_str(),
            kind,
            message.target_id.as_str(),
            "messages",
        ]);
    }
    let body = format!("{{\"content\":{}}}", message.content);
    let response = state
        .http
        .post(url)
        .timeout(state.settings.send_timeout)
        .bearer_auth(token.expose_secret())
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await;
    let response = match response {
        Ok(r) => r,
        Err(e) => {
            return Sent::Unreachable(if e.is_timeout() {
                "NAVER WORKS timed out".into()
            } else {
                "NAVER WORKS unreachable".into()
            })
        }
    };
    let status = response.status().as_u16();
    let reset = response
        .headers()
        .get("ratelimit-reset")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text: String = response
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(500)
        .collect();
    match status {
        200..=299 => Sent::Delivered,
        // Expired token: 401 today, 403 in an older sample (NAVERWORKS.md §4.4).
        401 | 403 if text.contains("UNAUTHORIZED") => Sent::Unauthorized,
        429 => Sent::RateLimited(reset),
        500..=599 => Sent::ServerError(format!("HTTP {status}: {text}")),
        _ => Sent::Rejected(format!("HTTP {status}: {text}")),
    }
}

/// The connection's shared token, fetched on a task of its own: an attempt
/// that gives up at its deadline leaves the refresh running, so that it
/// completes (and releases its lease) for the next attempt and every other
/// caller, instead of being cut off in the middle.
async fn shared_token(
    state: &AppState,
    connection: &ConnectionRecord,
    meta: Option<crate::store::TokenMeta>,
    force: bool,
) -> Result<crate::token_cache::ServedToken, String> {
    let (tokens, connection) = (state.tokens.clone(), connection.clone());
    tokio::spawn(async move { tokens.token(&connection, meta, force).await })
        .await
        .map_err(|e| format!("the token task failed: {e}"))?
        .map_err(|e| e.to_string())
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
    if let Err(ready) =
        state
            .pacer
            .try_acquire(&connection.id, connection.rate_limit_per_minute, now)
    {
        state.metrics.pacing_delays.inc("deferred");
        state
            .store
            .retry_outbound(message, owner, None, ready, false, now)
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
    let attempt = async {
        let token = match shared_token(state, &connection, meta, false).await {
            Ok(t) => t,
            Err(e) => {
                state.metrics.sends.inc("token_error");
                return Err(format!("no token: {e}"));
            }
        };
        let outcome = send(state, &connection, message, &token.access_token).await;
        if !matches!(outcome, Sent::Unauthorized) {
            return Ok(outcome);
        }
        // One refresh, one more try.
        let meta = state
            .store
            .token_meta(&connection.id)
            .await
            .map_err(|e| format!("the token row could not be read: {e}"))?;
        match shared_token(state, &connection, meta, true).await {
            Ok(fresh) => Ok(send(state, &connection, message, &fresh.access_token).await),
            Err(e) => Err(format!("token refresh failed: {e}")),
        }
    };
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
        Sent::RateLimited(reset) => {
            let wait = rate_limit_wait(reset.as_deref());
            let until = now + i64::try_from(wait.as_millis()).unwrap_or(60_000);
            state.pacer.pause(&connection.id, until);
            tracing::info!(connection_id = %connection.id, wait_ms = until - now, "NAVER WORKS rate limit; pausing this connection");
            state
                .store
                .retry_outbound(
                    message,
                    owner,
                    Some("HTTP 429: rate limited"),
                    until,
                    false,
                    now,
                )
                .await?;
        }
        Sent::ServerError(error) | Sent::Unreachable(error) => {
            retry_later(error).await?;
        }
        // Only after a forced refresh: the fresh token was refused too.
        Sent::Unauthorized => {
            retry_later("NAVER WORKS refused a fresh token (UNAUTHORIZED)".into()).await?;
        }
        Sent::Rejected(error) => {
            tracing::warn!(message_id = %message.id, error.message = %error, "NAVER WORKS refused the message");
            state
                .store
                .close_outbound(message, owner, false, Some(&error), now)
                .await?;
        }
    }
    Ok(())
}
