//! `GET /auth/naverworks/{connection}` and
//! `POST /auth/naverworks/{connection}/refresh`, guarded by the header
//! `DANBEE-NAVERWORKS-AUTH`: the tenant's internal services fetch the bot's
//! shared token here instead of minting competing ones.
//!
//! A missing header, a wrong one and an unknown connection get the same 401,
//! after the same work (an unknown connection is checked against a dummy
//! hash). Failures are counted per client address: slowed down after a few,
//! refused with 429 for a while after `auth_failure_limit`. Every attempt on
//! a known connection goes to the audit log (never the token).

use std::net::IpAddr;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::docs::{PublicPath, TokenDenied};
use crate::domain::ids::PublicId;
use crate::domain::{now_millis, rfc3339};
use crate::error::ApiError;
use crate::secrets::hashing::verify_salted;
use crate::state::AppState;
use crate::store::AuditEntry;
use crate::token_cache::TokenFailure;

pub const AUTH_HEADER: &str = "DANBEE-NAVERWORKS-AUTH";

/// Checked when the connection does not exist, so that the answer takes as
/// long as a wrong header on a real one. Matches nothing.
const DUMMY_HASH: &str = "s256$00000000000000000000000000000000$0000000000000000000000000000000000000000000000000000000000000000";

#[utoipa::path(get, path = "/auth/naverworks/{connection}",
    summary = "The bot's current access token (DANBEE-NAVERWORKS-AUTH)", tag = "naverworks",
    params(PublicPath),
    responses((status = 200, description = "{access_token, token_type, expires_at, expires_in, scope, bot_id}", body = Object), TokenDenied),
    security(("naverworksAuth" = [])))]
pub async fn read(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    serve(req, &path, &state, false).await
}

#[utoipa::path(post, path = "/auth/naverworks/{connection}/refresh",
    summary = "Force a new access token", tag = "naverworks", params(PublicPath),
    responses((status = 200, description = "The new token", body = Object), TokenDenied),
    security(("naverworksAuth" = [])))]
pub async fn refresh(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    serve(req, &path, &state, true).await
}

fn unauthorized() -> HttpResponse {
    HttpResponse::Unauthorized().json(json!({"error": {
        "code": "unauthorized",
        "message": format!("a valid {AUTH_HEADER} header is required for this URL"),
    }}))
}

async fn serve(
    req: HttpRequest,
    public_id: &str,
    state: &AppState,
    force: bool,
) -> Result<HttpResponse, ApiError> {
    let ip = req
        .peer_addr()
        .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
    if let Some(retry) = state.limiter.blocked(ip) {
        state.metrics.auth_urls.inc("limited");
        return Ok(HttpResponse::TooManyRequests()
            .insert_header((header::RETRY_AFTER, retry.to_string()))
            .json(json!({"error": {"code": "too_many_failures", "message": "too many failed attempts from this address; try again later"}})));
    }
    let presented = req
        .headers()
        .get(AUTH_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let found = match PublicId::parse(public_id) {
        Some(id) => state.store.connection_by_public_id(id.as_str()).await?,
        None => None,
    };
    let hash = found
        .as_ref()
        .map_or(DUMMY_HASH, |(c, _)| c.auth_header_hash.as_str());
    let valid = verify_salted(presented, hash) && !presented.is_empty() && found.is_some();
    let action = if force { "refresh" } else { "read" };
    let audit = |outcome: &str| {
        if let Some((c, _)) = &found {
            state.audit.record(AuditEntry {
                connection_id: c.id.to_string(),
                tenant_id: c.tenant_id.to_string(),
                at: now_millis(),
                client_addr: ip.to_string(),
                action: action.to_owned(),
                outcome: outcome.to_owned(),
            });
        }
    };
    let Some((connection, meta)) = found.as_ref().filter(|_| valid) else {
        audit("denied");
        state.metrics.auth_urls.inc("denied");
        let delay = state.limiter.failure(ip);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        return Ok(unauthorized());
    };
    match state.tokens.token(connection, meta.clone(), force).await {
        Ok(token) => {
            audit("ok");
            state.metrics.auth_urls.inc("ok");
            let now = now_millis();
            Ok(HttpResponse::Ok().json(json!({
                "access_token": secrecy::ExposeSecret::expose_secret(&token.access_token),
                "token_type": "Bearer",
                "expires_at": rfc3339(token.expires_at),
                "expires_in": (token.expires_at - now).max(0) / 1000,
                "scope": token.scope,
                "bot_id": connection.bot_id,
            })))
        }
        Err(e) => {
            let error = ApiError::from(e);
            audit(error.code());
            state.metrics.auth_urls.inc("error");
            Err(error)
        }
    }
}

impl From<TokenFailure> for ApiError {
    fn from(e: TokenFailure) -> Self {
        match e {
            TokenFailure::Token(t) => ApiError::Token(t),
            TokenFailure::Store(s) => s.into(),
            TokenFailure::Timeout => ApiError::Busy,
            other => ApiError::Internal(anyhow::Error::new(other)),
        }
    }
}
