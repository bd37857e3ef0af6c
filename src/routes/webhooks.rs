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
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::docs::PublicPath;
use crate::domain::ids::PublicId;
use crate::domain::now_millis;
use crate::error::{ApiError, ErrorEnvelope};
use crate::naverworks::signature;
use crate::secrets::hex;
use crate::state::AppState;
use crate::store::queue::{Inserted, NewInbound};
use crate::store::{field, ConnectionRecord};

/// Callbacks are small JSON documents; this is generous.
pub const WEBHOOK_BODY_LIMIT: usize = 256 * 1024;

#[utoipa::path(post, path = "/webhooks/naverworks/{connection}",
    summary = "NAVER WORKS callback (X-WORKS-Signature, X-WORKS-BotId)", tag = "naverworks",
    params(PublicPath),
    request_body(content = Object, description = "The callback as NAVER WORKS sends it"),
    responses((status = 200, description = "{status: accepted | duplicate}", body = Object), (status = 400, description = "Malformed callback or missing X-WORKS-BotId", body = ErrorEnvelope<'static>), (status = 401, description = "Missing or wrong signature", body = ErrorEnvelope<'static>), (status = 403, description = "X-WORKS-BotId is another bot", body = ErrorEnvelope<'static>), (status = 404, description = "Unknown webhook", body = ErrorEnvelope<'static>), (status = 413, description = "Body too large", body = ErrorEnvelope<'static>)),
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
        Err(ApiError::Signature(_)) => "bad_signature",
        Err(ApiError::BotMismatch(_)) => "bot_mismatch",
        Err(ApiError::NotFound(_)) => "unknown_connection",
        Err(ApiError::PayloadTooLarge(_)) => "too_large",
        Err(_) => "invalid",
    };
    state.metrics.webhooks.inc(outcome);
    result.map(|inserted| {
        let status = if inserted == Inserted::Duplicate {
            "duplicate"
        } else {
            "accepted"
        };
        HttpResponse::Ok().json(json!({ "status": status }))
    })
}

async fn receive(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: &AppState,
) -> Result<Inserted, ApiError> {
    const UNKNOWN: ApiError = ApiError::NotFound("no such webhook");
    let body = match payload.to_bytes_limited(WEBHOOK_BODY_LIMIT).await {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => return Err(ApiError::InvalidJson("the body could not be read".into())),
        Err(_) => return Err(ApiError::PayloadTooLarge(WEBHOOK_BODY_LIMIT)),
    };
    let public_id = PublicId::parse(&path).ok_or(UNKNOWN)?;
    let (connection, _) = state
        .store
        .connection_by_public_id(public_id.as_str())
        .await?
        .ok_or(UNKNOWN)?;

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
    let secret = bot_secret(state, &connection).await?;
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
    let (event_type, conversation) = classify(&callback)?;
    let event = NewInbound {
        id: crate::domain::ids::queue_id("evt"),
        tenant_id: connection.tenant_id.clone(),
        connection_id: connection.id.clone(),
        conversation,
        event_type,
        issued: issued_time(&callback),
        raw: body.to_vec(),
        body_hash: hex(&Sha256::digest(&body)),
        received_at: now_millis(),
    };
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

/// The event type and conversation key of a callback: `c:<channelId>` for a
/// room, `u:<userId>` for a 1:1 chat (which has no channelId, §3.3). Unknown
/// types and fields are accepted: the platform adds them.
fn classify(callback: &Value) -> Result<(String, String), ApiError> {
    let invalid = |m: &str| ApiError::BadRequest("invalid_callback", m.to_owned());
    let event_type = callback
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("the callback has no type"))?;
    let source = callback
        .get("source")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("the callback has no source"))?;
    let id = |name: &str| {
        source
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 256)
    };
    let conversation = match (id("channelId"), id("userId")) {
        (Some(channel), _) => format!("c:{channel}"),
        (None, Some(user)) => format!("u:{user}"),
        (None, None) => {
            return Err(invalid(
                "the callback's source has neither channelId nor userId",
            ))
        }
    };
    if event_type.is_empty() || event_type.len() > 64 {
        return Err(invalid("the callback's type is not a short string"));
    }
    Ok((event_type.to_owned(), conversation))
}

/// The callback's `issuedTime` as sent, for its dedup key ('' if it has
/// none or an implausibly long one: the key stays small).
fn issued_time(callback: &Value) -> String {
    callback
        .get("issuedTime")
        .and_then(Value::as_str)
        .filter(|s| s.len() <= 64)
        .unwrap_or_default()
        .to_owned()
}

/// The connection's bot secret, decrypted once per connection version.
async fn bot_secret(
    state: &AppState,
    connection: &ConnectionRecord,
) -> Result<SecretString, ApiError> {
    let cached = {
        let cache = state
            .bot_secrets
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache
            .get(&connection.id)
            .filter(|(version, _)| *version == connection.updated_at)
            .map(|(_, s)| s.clone())
    };
    if let Some(secret) = cached {
        return Ok(secret);
    }
    let secrets = state.store.secrets(connection.id.as_str()).await?;
    let sealed = secrets
        .iter()
        .find(|s| s.field == field::BOT_SECRET)
        .ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!(
                "connection {} has no bot secret",
                connection.id
            ))
        })?;
    let secret = state
        .vault
        .open_str(&sealed.sealed, sealed.aad())
        .map_err(|e| {
            ApiError::Internal(anyhow::Error::new(e).context("bot secret does not decrypt"))
        })?;
    let mut cache = state
        .bot_secrets
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    cache.insert(
        connection.id.clone(),
        (connection.updated_at, secret.clone()),
    );
    Ok(secret)
}
