//! NAVER WORKS user-account connections (DESIGN.md "NAVER WORKS
//! user-account connections", NAVERWORKS.md §2):
//! `GET /oauth/naverworks/{connection}/authorize` redirects a member's
//! browser to NAVER WORKS' consent page with the connection's client id and
//! scope, `redirect_uri` = its `oauth_redirect_url`, `response_type=code`
//! and a single-use `state` bound to the connection and to this browser
//! (10 minutes); `GET /oauth/naverworks/callback?code&state` checks the
//! state, exchanges the code (form-encoded, with the same `redirect_uri`),
//! and seals the access and refresh tokens as the connection's shared token.
//! A cancelled consent, a refused state or a refused code store nothing and
//! keep whatever token the connection had.
//!
//! The authorize URL is public, as the Slack install page is: whoever opens
//! it must still sign in to NAVER WORKS as a member of the app's domain and
//! allow the app, and the URL names the connection only by its random
//! public id. The member who allows it is the one the bot's token acts for.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use maud::html;

use super::docs::{CallbackQuery, PublicPath};
use super::oauth::{self, page, Flow};
use crate::channels::Channel;
use crate::domain::naverworks::AuthMode;
use crate::error::ApiError;
use crate::service::connections;
use crate::service::oauth::{self as service, naverworks_redirect_url as redirect_url};
use crate::state::AppState;

const FLOW: Flow = Flow {
    cookie: "botgate_naverworks_signin",
    path: "/oauth/naverworks",
    refused_title: "The sign-in did not go through",
    restart: "Nothing was stored. Start again from the connection's authorize link.",
    platform: "NAVER WORKS",
    cancelled: (
        "The sign-in was cancelled",
        "Nothing was changed: the bot keeps the authorisation it had, if any. You can start again from the authorize link.",
    ),
    channel: Channel::NaverWorks,
    actor: "member",
    what: "sign-in",
    unreachable: "Nothing was stored. Try again in a moment.",
};

#[utoipa::path(get, path = "/oauth/naverworks/{connection}/authorize",
    summary = "A NAVER WORKS member authorises a user-account connection: the redirect to the consent page", tag = "naverworks",
    params(PublicPath),
    responses((status = 302, description = "To NAVER WORKS' authorize page"), (status = 404, description = "Unknown connection, or a service account's")),
    security(()))]
pub async fn authorize(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let connection = connections::public_connection(&state, &path, Channel::NaverWorks).await?;
    if AuthMode::of_details(&connection.details) != AuthMode::User {
        return Err(ApiError::NotFound(
            "this connection uses a service account: no one signs in for it",
        ));
    }
    let started = match oauth::start(&req, &state, &FLOW, &connection.id).await? {
        Ok(started) => started,
        Err(busy) => return Ok(busy),
    };
    let mut authorize = url::Url::parse(&format!(
        "{}/authorize",
        state
            .settings
            .naverworks_auth_url
            .as_str()
            .trim_end_matches('/')
    ))
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("naverworks_auth_url: {e}")))?;
    // `scope` space-separated (%20, not '+': §2 shows %20; both decode the same).
    authorize
        .query_pairs_mut()
        .append_pair("client_id", &connection.client_id)
        .append_pair("redirect_uri", &redirect_url(&state))
        .append_pair("scope", &connection.scope)
        .append_pair("response_type", "code")
        .append_pair("state", &started.state);
    let location = authorize.as_str().replace('+', "%20");
    oauth::answer(&started, oauth::redirect(&location))
}

#[utoipa::path(get, path = "/oauth/naverworks/callback",
    summary = "NAVER WORKS' redirect after a member's consent (code and state)", tag = "naverworks",
    params(CallbackQuery),
    responses((status = 200, description = "Authorised (or cancelled), as a page"), (status = 400, description = "A refused state or code, as a page"), (status = 502, description = "NAVER WORKS could not be reached")),
    security(()))]
pub async fn callback(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    oauth::callback(&req, &state, &FLOW, service::authorize_user, |authorized| {
        let bot = authorized.bot_id;
        page(
            StatusCode::OK,
            "The bot is authorised",
            html! {
                p #authorized data-bot=(bot) { "Bot " code { (bot) } " now sends and reads with your NAVER WORKS authorisation. botgate refreshes it before it expires." }
                @if !authorized.refreshable { p { "NAVER WORKS gave no refresh token: sign in again when the authorisation expires." } }
                p { "You can close this page." }
            },
        )
    })
    .await
}
