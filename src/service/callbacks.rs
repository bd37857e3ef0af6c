//! Receiving a platform's callback (a NAVER WORKS webhook, Slack's Request
//! URLs): the connection its URL names, the proof that the platform sent it
//! (its signature), the event it carries, and that event committed to the
//! inbox — or refused over a tenant's quota, kept and replayable — before
//! the platform is answered. No engine and no platform call happens here, so
//! the answer comes well within any platform's deadline whatever the engine
//! does. The routes read the body under its limit, hand the headers over,
//! and answer with what these return.

use super::activity::{self, Actor};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::connections::public_connection;
use crate::channels::slack::{inbound, signature as slack_signature, Details};
use crate::channels::{self, naverworks, Channel};
use crate::domain::ids::queue_id;
use crate::domain::now_millis;
use crate::error::ApiError;
use crate::naverworks::signature;
use crate::secrets::hex;
use crate::state::AppState;
use crate::store::queue::{issued_key, Inserted, NewInbound};
use crate::store::ConnectionRecord;

/// How far ahead of this clock a callback's `issuedTime` may be (clock
/// skew), as the engine protocol's timestamps may (±300 s).
const FUTURE_SKEW_MS: i64 = 300_000;

/// How long a Slack event's dedup entry is kept after its `event_time`:
/// Slack retries at once, after about a minute and after about five
/// (SLACK.md §2 [S]); an hour covers them with room.
const RETRY_HORIZON_MS: i64 = 60 * 60 * 1000;

/// The connection's webhook secret (its bot secret, its signing secret).
async fn webhook_secret(
    state: &AppState,
    connection: &ConnectionRecord,
) -> Result<SecretString, ApiError> {
    let field = Channel::of(connection).webhook_secret_field();
    match channels::connection_secret(state, connection, field).await {
        Ok(Some(secret)) => Ok(secret),
        Ok(None) => Err(ApiError::Internal(anyhow::anyhow!(
            "connection {} has no {field}",
            connection.id
        ))),
        Err(channels::SecretError::Store(e)) => Err(e.into()),
        Err(e) => Err(ApiError::Internal(anyhow::Error::new(e))),
    }
}

/// Stores a verified event (group commit) and wakes a worker when it heads
/// its conversation. Over one of its tenant's quotas, the event is stored
/// as refused (kept, replayable, not handled) and counted: NAVER WORKS does
/// not send a callback again, so dropping it would lose it.
async fn store(state: &AppState, mut event: NewInbound) -> Result<Inserted, ApiError> {
    let tenant = state
        .store
        .tenant(&event.tenant_id)
        .await?
        .ok_or(ApiError::NotFound("no such webhook"))?;
    event.refused = state
        .quotas
        .admit_callback(&state.store, &state.settings, &tenant)
        .await?;
    if let Some(reason) = event.refused {
        state.metrics.callbacks_refused.inc(reason);
        tracing::warn!(tenant_id = %tenant.id, connection_id = %event.connection_id, quota = reason, "callback over a tenant quota stored as refused");
    }
    // Group commit: answered once the batch holding it is committed.
    let inserted = state.ingest.submit(event).await?;
    // A new event that heads its conversation but found no free slot waits
    // for a claim. (One behind an open row is handed over, or woken for, by
    // the result that closes that row.)
    if inserted == Inserted::New {
        state.signals.inbox.notify_one();
    }
    Ok(inserted)
}

/// A NAVER WORKS callback's headers (NAVERWORKS.md §3.1).
pub struct WorksHeaders<'a> {
    /// `X-WORKS-Signature`: base64 HMAC-SHA256 of the raw body with the bot
    /// secret.
    pub signature: Option<&'a str>,
    /// `X-WORKS-BotId`.
    pub bot_id: Option<&'a str>,
}

/// A NAVER WORKS callback to `public_id`'s webhook. NAVER WORKS never
/// re-sends a failed callback and sends no event id (NAVERWORKS.md §3.1), so:
/// the signature is checked in constant time before anything is parsed; the
/// bot id must be the connection's; a body seen again within the dedup
/// window is a duplicate; a callback issued outside that window is refused.
pub async fn naverworks(
    state: &AppState,
    public_id: &str,
    headers: WorksHeaders<'_>,
    body: &[u8],
) -> Result<Inserted, ApiError> {
    let connection = public_connection(state, public_id, Channel::NaverWorks).await?;
    let presented = headers.signature.ok_or(ApiError::Signature(
        "the X-WORKS-Signature header is missing",
    ))?;
    let secret = webhook_secret(state, &connection).await?;
    if !signature::verify(secret.expose_secret().as_bytes(), body, presented) {
        tracing::warn!(connection_id = %connection.id, "callback with a bad signature refused");
        return Err(ApiError::Signature(
            "the X-WORKS-Signature does not match the body and the bot secret",
        ));
    }
    match headers.bot_id {
        None => {
            return Err(ApiError::BadRequest(
                "missing_bot_id",
                "the X-WORKS-BotId header is missing".into(),
            ))
        }
        Some(id) if id != connection.bot_id => {
            return Err(ApiError::BotMismatch(
                "X-WORKS-BotId is not this connection's bot",
            ))
        }
        Some(_) => {}
    }

    let callback: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let (event_type, conversation) =
        naverworks::classify(&callback).map_err(|m| ApiError::BadRequest("invalid_callback", m))?;
    let received_at = now_millis();
    // A callback issued before the dedup window (or far ahead of this
    // clock) is refused: its hash may be gone, so a captured callback
    // replayed later would be taken as new.
    let issued = naverworks::issued_millis(&callback);
    if let Some(at) = issued {
        let window = state.settings.dedup_window_ms();
        if at < received_at - window || at > received_at + FUTURE_SKEW_MS {
            return Err(ApiError::BadRequest(
                "stale_callback",
                "the callback's issuedTime is outside the dedup window (a replay, or a clock far off)"
                    .into(),
            ));
        }
    }
    let event = NewInbound {
        id: queue_id("evt"),
        tenant_id: connection.tenant_id.clone(),
        connection_id: connection.id.clone(),
        conversation,
        event_type,
        // An undated body keeps '' (deduplicated by its hash alone).
        issued: issued.map(issued_key).unwrap_or_default(),
        raw: body.to_vec(),
        body_hash: hex(&Sha256::digest(body)),
        received_at,
        dedup_at: received_at,
        refused: None,
    };
    store(state, event).await
}

/// Which of a Slack app's Request URLs a request came to.
#[derive(Clone, Copy)]
pub enum SlackKind {
    Events,
    Commands,
    Interactions,
}

/// A Slack request's headers (SLACK.md §1).
pub struct SlackHeaders<'a> {
    /// `X-Slack-Request-Timestamp`.
    pub timestamp: Option<&'a str>,
    /// `X-Slack-Signature`: `v0=` and the hex HMAC-SHA256.
    pub signature: Option<&'a str>,
    pub content_type: Option<&'a str>,
    /// `X-Slack-Retry-Num`, logged with a duplicate.
    pub retry_num: Option<&'a str>,
}

/// What a Slack request came to.
pub enum SlackAnswer {
    /// `url_verification`: the challenge to echo.
    Challenge(String),
    /// An event botgate does not forward (the bot's own message, …).
    Skipped,
    /// Slack's notice that it is dropping events (logged).
    AppRateLimited,
    Stored(Inserted),
}

/// A Slack request to one of `public_id`'s Request URLs, with the
/// connection's command acknowledgement text for a command: the `v0=`
/// signature over the raw bytes checked in constant time with the timestamp
/// within five minutes; the content type checked (415); the body parsed
/// (400); a retry of a stored event (the same `event_id`, or the same body)
/// a duplicate; an `app_uninstalled` or `tokens_revoked` event removes the
/// workspace's installation.
pub async fn slack(
    state: &AppState,
    public_id: &str,
    kind: SlackKind,
    headers: SlackHeaders<'_>,
    body: &[u8],
) -> Result<(SlackAnswer, Option<String>), ApiError> {
    let connection = public_connection(state, public_id, Channel::Slack).await?;
    let secret = webhook_secret(state, &connection).await?;
    let now = now_millis();
    if let Err(refusal) = slack_signature::verify(
        secret.expose_secret().as_bytes(),
        headers.timestamp,
        headers.signature,
        body,
        now / 1000,
    ) {
        tracing::warn!(connection_id = %connection.id, reason = refusal.message(), "Slack request refused");
        return Err(ApiError::Signature(refusal.message()));
    }
    let content_type = headers.content_type.unwrap_or("").to_ascii_lowercase();
    let essence = content_type.split(';').next().unwrap_or("").trim();
    match (kind, essence) {
        (SlackKind::Events, "application/json")
        | (SlackKind::Commands | SlackKind::Interactions, "application/x-www-form-urlencoded") => {}
        (SlackKind::Events, _) => return Err(ApiError::MediaType("Slack's events are JSON (Content-Type: application/json)")),
        (_, _) => {
            return Err(ApiError::MediaType(
                "Slack's commands and interactions are form-encoded (application/x-www-form-urlencoded)",
            ))
        }
    }
    let parsed = match kind {
        SlackKind::Events => inbound::event_body(body),
        SlackKind::Commands => inbound::command_body(body),
        SlackKind::Interactions => inbound::interaction_body(body),
    }
    .map_err(|m| ApiError::BadRequest("invalid_request", m))?;
    let ack = match kind {
        SlackKind::Commands => Details::of(&connection).command_ack_text,
        _ => None,
    };
    let event = match parsed {
        inbound::Parsed::Challenge(c) => return Ok((SlackAnswer::Challenge(c), None)),
        inbound::Parsed::Skipped(_) => return Ok((SlackAnswer::Skipped, None)),
        inbound::Parsed::AppRateLimited { team, minute } => {
            // Nothing to store: the events Slack drops never come. The
            // operator must hear of it (the log, and the webhook metric's
            // `app_rate_limited` outcome).
            tracing::warn!(
                connection_id = %connection.id,
                team_id = team.as_deref().unwrap_or("-"),
                minute_rate_limited = minute,
                "Slack is dropping this app's events for a workspace (app_rate_limited: \
                 over 30,000 events in an hour); they will not arrive"
            );
            return Ok((SlackAnswer::AppRateLimited, None));
        }
        inbound::Parsed::Store(event) => event,
    };
    // A retry carries the same event_time: its entry counts from a time
    // that keeps it past Slack's retries (bounded, should a clock be off).
    let window = state.settings.dedup_window_ms();
    let dedup_at = event
        .event_time
        .map(|s| s.saturating_mul(1000).clamp(now - RETRY_HORIZON_MS, now))
        .map_or(now, |t| (t + RETRY_HORIZON_MS - window).max(t));
    let (team, uninstalls) = (event.team.clone(), event.uninstalls);
    let stored = store(
        state,
        NewInbound {
            id: queue_id("evt"),
            tenant_id: connection.tenant_id.clone(),
            connection_id: connection.id.clone(),
            conversation: event.conversation,
            event_type: event.event_type,
            // Commands and button presses are not retried: keyed by arrival.
            issued: if event.issued.is_empty() {
                issued_key(dedup_at)
            } else {
                event.issued
            },
            raw: body.to_vec(),
            body_hash: event.key_hash,
            received_at: now,
            dedup_at,
            refused: None,
        },
    )
    .await?;
    if uninstalls
        && state
            .store
            .delete_installation(&connection.id, &team)
            .await?
    {
        // Every replica reads installations from the database: gone for all.
        tracing::info!(connection_id = %connection.id, team_id = %team, "Slack workspace uninstalled; its tokens are deleted");
        let detail = format!("workspace {team}: the app was uninstalled or its token revoked");
        let slack = Actor::new("slack", "events", "");
        activity::record(
            &state.store,
            &slack,
            &connection.tenant_id,
            Some(&connection.id),
            "installation.removed",
            detail,
        )
        .await;
    }
    if stored == Inserted::Duplicate {
        let retry = headers.retry_num.unwrap_or("");
        tracing::info!(connection_id = %connection.id, retry = %retry.chars().take(4).collect::<String>(), "Slack delivery already stored; not processed again");
    }
    Ok((SlackAnswer::Stored(stored), ack))
}
