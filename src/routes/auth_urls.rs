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

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use secrecy::ExposeSecret as _;
use serde::Serialize;
use serde_json::json;

use super::docs::{PublicPath, TokenDenied};
use crate::channels::Channel;
use crate::domain::ids::PublicId;
use crate::domain::{now_millis, rfc3339};
use crate::error::{ApiError, ErrorEnvelope};
use crate::secrets::hashing::verify_salted;
use crate::state::limiter::{client, Attempt, Family};
use crate::state::AppState;
use crate::store::{AuditEntry, ConnectionRecord, TokenMeta};
use crate::token_cache::TokenFailure;

pub const AUTH_HEADER: &str = "DANBEE-NAVERWORKS-AUTH";

/// A NAVER WORKS bot's access token, as its auth URLs answer it. (No
/// `Debug`: it holds the token.)
#[derive(Serialize, utoipa::ToSchema)]
pub struct NaverWorksToken<'a> {
    pub access_token: &'a str,
    /// `Bearer`.
    pub token_type: &'static str,
    /// RFC 3339.
    pub expires_at: String,
    /// Seconds left.
    pub expires_in: i64,
    /// Space-separated.
    pub scope: &'a str,
    pub bot_id: &'a str,
}

/// A Slack workspace's bot token, as the connection's auth URLs answer it.
/// (No `Debug`: it holds the token.)
#[derive(Serialize, utoipa::ToSchema)]
pub struct SlackToken<'a> {
    pub access_token: &'a str,
    /// `Bearer`.
    pub token_type: &'static str,
    /// The workspace (`T…`).
    pub team_id: &'a str,
    pub bot_user_id: &'a str,
    /// Comma-separated, as Slack granted them.
    pub scope: &'a str,
    /// With token rotation: RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// With token rotation: seconds left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<i64>,
}

/// Checked when the connection does not exist, so that the answer takes as
/// long as a wrong header on a real one. Matches nothing.
const DUMMY_HASH: &str = "s256$00000000000000000000000000000000$0000000000000000000000000000000000000000000000000000000000000000";

#[utoipa::path(get, path = "/auth/naverworks/{connection}",
    summary = "The bot's current access token (DANBEE-NAVERWORKS-AUTH)", tag = "naverworks",
    params(PublicPath),
    responses((status = 200, description = "The bot's current token", body = NaverWorksToken<'static>), TokenDenied),
    security(("naverworksAuth" = [])))]
pub async fn read(request: TokenRequest) -> Result<HttpResponse, ApiError> {
    serve(request, false, Channel::NaverWorks).await
}

#[utoipa::path(post, path = "/auth/naverworks/{connection}/refresh",
    summary = "Force a new access token", tag = "naverworks", params(PublicPath),
    responses((status = 200, description = "The new token", body = NaverWorksToken<'static>), TokenDenied),
    security(("naverworksAuth" = [])))]
pub async fn refresh(request: TokenRequest) -> Result<HttpResponse, ApiError> {
    serve(request, true, Channel::NaverWorks).await
}

#[utoipa::path(get, path = "/auth/slack/{connection}",
    summary = "A workspace's current bot token (DANBEE-NAVERWORKS-AUTH or X-Botgate-Auth)", tag = "slack",
    params(PublicPath, ("team" = Option<String>, Query, description = "The workspace (T…); the pasted token's when absent, and required without one")),
    responses((status = 200, description = "The workspace's bot token", body = SlackToken<'static>), TokenDenied, (status = 400, description = "Not a team id, or no team named where one must be", body = ErrorEnvelope<'static>), (status = 404, description = "No installation for that workspace"), (status = 409, description = "The workspace must install the app again")),
    security(("naverworksAuth" = [])))]
pub async fn slack_read(request: TokenRequest) -> Result<HttpResponse, ApiError> {
    serve(request, false, Channel::Slack).await
}

#[utoipa::path(post, path = "/auth/slack/{connection}/refresh",
    summary = "A refreshed bot token (with token rotation; else the current one)", tag = "slack",
    params(PublicPath, ("team" = Option<String>, Query)),
    responses((status = 200, description = "The workspace's new bot token", body = SlackToken<'static>), TokenDenied, (status = 400, description = "Not a team id, or no team named where one must be", body = ErrorEnvelope<'static>), (status = 404, description = "No installation for that workspace"), (status = 409, description = "The workspace must install the app again")),
    security(("naverworksAuth" = [])))]
pub async fn slack_refresh(request: TokenRequest) -> Result<HttpResponse, ApiError> {
    serve(request, true, Channel::Slack).await
}

/// The header botgate's own name for every channel, beside the contract's.
pub const BOTGATE_AUTH_HEADER: &str = "X-Botgate-Auth";

fn unauthorized() -> HttpResponse {
    HttpResponse::Unauthorized().json(json!({"error": {
        "code": "unauthorized",
        "message": format!("a valid {AUTH_HEADER} header is required for this URL"),
    }}))
}

/// Whether a connection's auth networks (CIDRs, comma-separated; empty for
/// any address) hold `ip`.
fn network_allows(networks: &str, ip: std::net::IpAddr) -> bool {
    networks.is_empty()
        || crate::outbound::Network::parse_list(networks)
            .is_ok_and(|list| list.iter().any(|n| n.contains(ip)))
}

/// What each auth URL's handler takes: the request (its headers and
/// address), its `{connection}`, and the app.
type TokenRequest = (HttpRequest, web::Path<String>, web::Data<AppState>);

async fn serve(
    (req, path, state): TokenRequest,
    force: bool,
    channel: Channel,
) -> Result<HttpResponse, ApiError> {
    let public_id: &str = &path;
    let ip = client(
        req.peer_addr().map(|a| a.ip()),
        req.headers(),
        &state.settings.trusted_proxies,
    );
    let attempt = Attempt::new(ip, Family::AuthUrls, Some(public_id));
    if let Some(retry) = state.limiter.blocked(&attempt) {
        state.metrics.auth_urls.inc("limited");
        return Ok(HttpResponse::TooManyRequests()
            .insert_header((header::RETRY_AFTER, retry.to_string()))
            .json(json!({"error": {"code": "too_many_failures", "message": "too many failed attempts from this address; try again later"}})));
    }
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let presented = match channel {
        Channel::NaverWorks => header(AUTH_HEADER),
        Channel::Slack => header(AUTH_HEADER).or(header(BOTGATE_AUTH_HEADER)),
    }
    .unwrap_or("");
    // Another channel's connection is as unknown as none.
    let found = match PublicId::parse(public_id) {
        Some(id) => state.store.connection_by_public_id(id.as_str()).await?,
        None => None,
    }
    .filter(|(c, _)| Channel::of(c) == channel);
    let hash = found
        .as_ref()
        .map_or(DUMMY_HASH, |(c, _)| c.auth_header_hash.as_str());
    let valid = verify_salted(presented, hash) && !presented.is_empty() && found.is_some();
    // A connection that names its networks answers no other address: the
    // same 401 as a wrong header (the caller learns nothing), audited apart.
    let from_outside = found
        .as_ref()
        .is_some_and(|(c, _)| !network_allows(&c.auth_networks, ip));
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
    let Some((connection, meta)) = found.as_ref().filter(|_| valid && !from_outside) else {
        audit(if valid { "network_denied" } else { "denied" });
        state.metrics.auth_urls.inc("denied");
        let delay = state.limiter.failure(&attempt);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        return Ok(unauthorized());
    };
    let served = match channel {
        Channel::NaverWorks => naverworks_token(&state, connection, meta, force).await,
        Channel::Slack => slack_token(&req, &state, connection, force).await,
    };
    audit(served.outcome);
    let counted = if served.outcome == "ok" {
        "ok"
    } else {
        "error"
    };
    state.metrics.auth_urls.inc(counted);
    served.answer
}

/// A token URL's answer for a valid header, with the outcome the audit
/// records for it (`ok`, or the error's code).
struct Served {
    outcome: &'static str,
    answer: Result<HttpResponse, ApiError>,
}

impl Served {
    fn token(body: impl Serialize) -> Self {
        Self {
            outcome: "ok",
            answer: Ok(HttpResponse::Ok().json(body)),
        }
    }
}

/// The NAVER WORKS auth URL's answer: the bot's access token.
async fn naverworks_token(
    state: &AppState,
    connection: &ConnectionRecord,
    meta: &Option<TokenMeta>,
    force: bool,
) -> Served {
    match state.tokens.token(connection, meta.clone(), force).await {
        Ok(token) => Served::token(NaverWorksToken {
            access_token: token.access_token.expose_secret(),
            token_type: "Bearer",
            expires_at: rfc3339(token.expires_at),
            expires_in: seconds_left(token.expires_at),
            scope: &token.scope,
            bot_id: &connection.bot_id,
        }),
        Err(e) => {
            let error = ApiError::from(e);
            Served {
                outcome: error.code(),
                answer: Err(error),
            }
        }
    }
}

/// Whole seconds from now until `expires_at` (Unix ms), never negative.
fn seconds_left(expires_at: i64) -> i64 {
    (expires_at - now_millis()).max(0) / 1000
}

/// The Slack auth URL's answer: the named workspace's bot token.
async fn slack_token(
    req: &HttpRequest,
    state: &AppState,
    connection: &ConnectionRecord,
    force: bool,
) -> Served {
    use crate::channels::slack::installs::{bot_token, TokenProblem};
    use crate::channels::slack::{team_id, Details};
    let asked = url::form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k == "team")
        .map(|(_, v)| v.into_owned());
    // A malformed team is refused, not read as none (which would serve the
    // pasted token's workspace); none is refused where there is no pasted
    // token, as the send API refuses it.
    let refuse = |code: &'static str, message: &str| Served {
        outcome: code,
        answer: Err(ApiError::BadRequest(code, message.to_owned())),
    };
    let team = match asked.as_deref() {
        Some(t) if team_id(t).is_none() => {
            return refuse("invalid_team", "team: is not a Slack team id (T…)")
        }
        None if Details::of(connection).identity.is_none() => return refuse(
            "team_required",
            "team: is required: name the workspace (?team=T…) whose installation's token to read",
        ),
        team => team,
    };
    match bot_token(state, connection, team, None, force).await {
        Ok(token) => Served::token(SlackToken {
            access_token: token.token.expose_secret(),
            token_type: "Bearer",
            team_id: &token.team_id,
            bot_user_id: &token.bot_user_id,
            scope: &token.scopes,
            expires_at: token.expires_at.map(rfc3339),
            expires_in: token.expires_at.map(seconds_left),
        }),
        Err(problem) => {
            let (status, code) = match &problem {
                TokenProblem::NoInstallation(_) => {
                    (actix_web::http::StatusCode::NOT_FOUND, "no_installation")
                }
                TokenProblem::NeedsReinstall(_) => {
                    (actix_web::http::StatusCode::CONFLICT, "needs_reinstall")
                }
                TokenProblem::Unavailable(_) => (
                    actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                    "slack_unavailable",
                ),
                TokenProblem::Store(_) => {
                    (actix_web::http::StatusCode::SERVICE_UNAVAILABLE, "busy")
                }
            };
            Served {
                outcome: code,
                answer: Ok(HttpResponse::build(status)
                    .json(json!({"error": {"code": code, "message": problem.to_string()}}))),
            }
        }
    }
}

impl From<TokenFailure> for ApiError {
    fn from(e: TokenFailure) -> Self {
        match e {
            TokenFailure::Token(t) => ApiError::Token(t),
            TokenFailure::Store(s) => s.into(),
            TokenFailure::Timeout => ApiError::Busy,
            e @ TokenFailure::NotAuthorized => {
                ApiError::Authorization("not_authorized", e.to_string())
            }
            e @ TokenFailure::NeedsReauthorization => {
                ApiError::Authorization("needs_reauthorization", e.to_string())
            }
            other => ApiError::Internal(anyhow::Error::new(other)),
        }
    }
}
