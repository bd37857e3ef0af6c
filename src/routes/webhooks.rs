//! `POST /webhooks/naverworks/{connection}`: a NAVER WORKS callback, read
//! under a size limit and handed to [`callbacks::naverworks`] with its
//! headers; answered 200 only once its event is committed (or was already).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::docs::PublicPath;
use crate::error::{ApiError, ErrorEnvelope};
use crate::service::callbacks::{self, WorksHeaders};
use crate::state::AppState;
use crate::store::queue::Inserted;

/// Callbacks are small JSON documents; this is generous.
pub const WEBHOOK_BODY_LIMIT: usize = 256 * 1024;

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
    let headers = WorksHeaders {
        // Header names are case-insensitive (HTTP, and the docs say so).
        signature: header(&req, "x-works-signature"),
        bot_id: header(&req, "x-works-botid"),
    };
    callbacks::naverworks(state, &path, headers, &body).await
}

/// A header's value, trimmed (`None` if absent or not text).
pub(super) fn header<'r>(req: &'r HttpRequest, name: &str) -> Option<&'r str> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// A webhook's body, read under [`WEBHOOK_BODY_LIMIT`].
pub(super) async fn read_body(payload: web::Payload) -> Result<web::Bytes, ApiError> {
    match payload.to_bytes_limited(WEBHOOK_BODY_LIMIT).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(_)) => Err(ApiError::InvalidJson("the body could not be read".into())),
        Err(_) => Err(ApiError::PayloadTooLarge(WEBHOOK_BODY_LIMIT)),
    }
}
