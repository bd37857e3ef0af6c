//! `POST /webhooks/naverworks/{connection}`: a NAVER WORKS callback.
//!
//! NAVER WORKS never re-sends a failed callback and sends no event id
//! (NAVERWORKS.md §3.1), so: the body is read under a size limit; the
//! signature (`X-WORKS-Signature`, base64 HMAC-SHA256 of the raw bytes with
//! the bot secret) is checked in constant time before anything is parsed; the
//! bot id header must match; a body seen again within the dedup window is
//! answered 200 without a second delivery; a new event is committed to the
//! inbox before the 200. No call to the engine or to NAVER WORKS happens
//! here. If the event cannot be stored, the answer is not 200.

use actix_web::{web, HttpRequest, HttpResponse};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::docs::PublicPath;
use crate::channels::{self, naverworks, Channel};
use crate::domain::ids::PublicId;
use crate::domain::now_millis;
use crate::error::{ApiError, ErrorEnvelope};
use crate::naverworks::signature;
use crate::secrets::hex;
use crate::state::AppState;
use crate::store::queue::{issued_key, Inserted, NewInbound};
use crate::store::ConnectionRecord;

/// Callbacks are small JSON documents; this is generous.
pub const WEBHOOK_BODY_LIMIT: usize = 256 * 1024;

/// How far ahead of this clock a callback's `issuedTime` may be (clock
/// skew), as the engine protocol's timestamps may (±300 s).
const FUTURE_SKEW_MS: i64 = 300_000;

/// What a platform's callback came to.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Received {
    /// `accepted`; `duplicate` (the same body within the dedup window);
    /// `refused` (stored over a quota, replayable); from Slack, `ignored`
    /// (an event botgate does not forward, e.g. the bot's own message).
    pub status: &'static str,
}

#[utoipa::path(post, path = "/webhooks/naverworks/{connection}",
    summary = "NAVER WORKS callback (X-WORKS-Signature, X-WORKS-BotId)", tag = "naverworks",
    params(PublicPath),
    request_body(content = Object, description = "The callback as NAVER WORKS sends it"),
    responses((status = 200, description = "Stored (or a duplicate of a stored one)", body = Received), (status = 400, description = "Malformed callback or missing X-WORKS-BotId", body = ErrorEnvelope<'static>), (status = 401, description = "Missing or wrong signature", body = ErrorEnvelope<'static>), (status = 403, description = "X-WORKS-BotId is another bot", body = ErrorEnvelope<'static>), (status = 404, description = "Unknown webhook", body = ErrorEnvelope<'static>), (status = 413, description = "Body too large", body = ErrorEnvelope<'static>)),
    security(()))]
pub async fn naverworks(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let result = receive(req, path, payload, &state).await;
    let outcome = match &result {
        Ok(Inserted::New | Inserted::Claimed | Inserted::Queued) => "accepted",
        Ok(Inserted::Duplicate) => "duplicate",
        Ok(Inserted::Refused) => "refused",
        Err(ApiError::Signature(_)) => "bad_signature",
        Err(ApiError::BotMismatch(_)) => "bot_mismatch",
        Err(ApiError::NotFound(_)) => "unknown_connection",
        Err(ApiError::PayloadTooLarge(_)) => "too_large",
        Err(_) => "invalid",
    };
    state.metrics.webhooks.inc(outcome);
    result.map(|inserted| {
        let status = match inserted {
            Inserted::Duplicate => "duplicate",
            Inserted::Refused => "refused",
            _ => "accepted",
        };
        HttpResponse::Ok().json(Received { status })
    })
}

async fn receive(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: &AppState,
) -> Result<Inserted, ApiError> {
    let body = read_body(payload).await?;
    let connection = webhook_connection(state, &path, Channel::NaverWorks).await?;

    // Header names are case-insensitive (HTTP, and the docs say so).
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let presented = header("x-works-signature").ok_or(ApiError::Signature(
        "the X-WORKS-Signature header is missing",
    ))?;
    let secret = webhook_secret(state, &connection).await?;
    if !signature::verify(secret.expose_secret().as_bytes(), &body, presented) {
        tracing::warn!(connection_id = %connection.id, "callback with a bad signature refused");
        return Err(ApiError::Signature(
            "the X-WORKS-Signature does not match the body and the bot secret",
        ));
    }
    match header("x-works-botid") {
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
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let (event_type, conversation) =
        naverworks::classify(&callback).map_err(|m| ApiError::BadRequest("invalid_callback", m))?;
    let received_at = now_millis();
    // A callback issued before the dedup window (or far ahead of this
    // clock) is refused: its hash may be gone, so a captured callback
    // replayed later would be taken as new.
    let issued = naverworks::issued_millis(&callback);
    if let Some(at) = issued {
        let window = i64::try_from(state.settings.dedup_window.as_millis()).unwrap_or(i64::MAX / 4);
        if at < received_at - window || at > received_at + FUTURE_SKEW_MS {
            return Err(ApiError::BadRequest(
                "stale_callback",
                "the callback's issuedTime is outside the dedup window (a replay, or a clock far off)"
                    .into(),
            ));
        }
    }
    let event = NewInbound {
        id: crate::domain::ids::queue_id("evt"),
        tenant_id: connection.tenant_id.clone(),
        connection_id: connection.id.clone(),
        conversation,
        event_type,
        // An undated body keeps '' (deduplicated by its hash alone).
        issued: issued.map(issued_key).unwrap_or_default(),
        raw: body.to_vec(),
        body_hash: hex(&Sha256::digest(&body)),
        received_at,
        dedup_at: received_at,
        refused: None,
    };
    store_event(state, event).await
}

/// A webhook's body, read under [`WEBHOOK_BODY_LIMIT`].
pub(super) async fn read_body(payload: web::Payload) -> Result<web::Bytes, ApiError> {
    match payload.to_bytes_limited(WEBHOOK_BODY_LIMIT).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(_)) => Err(ApiError::InvalidJson("the body could not be read".into())),
        Err(_) => Err(ApiError::PayloadTooLarge(WEBHOOK_BODY_LIMIT)),
    }
}

/// The connection of a webhook URL, if it is one of `channel`'s (the same
/// 404 for an unknown id and another channel's).
pub(super) async fn webhook_connection(
    state: &AppState,
    public_id: &str,
    channel: Channel,
) -> Result<ConnectionRecord, ApiError> {
    const UNKNOWN: ApiError = ApiError::NotFound("no such webhook");
    let public_id = PublicId::parse(public_id).ok_or(UNKNOWN)?;
    match state
        .store
        .connection_by_public_id(public_id.as_str())
        .await?
    {
        Some((connection, _)) if Channel::of(&connection) == channel => Ok(connection),
        _ => Err(UNKNOWN),
    }
}

/// Stores a verified event (group commit) and wakes a worker when it heads
/// its conversation. Over one of its tenant's quotas, the event is stored
/// as refused (kept, replayable, not handled) and counted: NAVER WORKS does
/// not send a callback again, so dropping it would lose it.
pub(super) async fn store_event(
    state: &AppState,
    mut event: NewInbound,
) -> Result<Inserted, ApiError> {
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

/// The connection's webhook secret (its bot secret, its signing secret).
pub(super) async fn webhook_secret(
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
