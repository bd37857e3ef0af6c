//! "Add to Slack" (DESIGN.md "Slack", SLACK.md §6):
//! `GET /oauth/slack/{connection}/install` — a page with the button (or,
//! with `?direct=1`, the redirect itself) to Slack's authorize URL with the
//! connection's client id and scopes, `redirect_uri` = its
//! `oauth_redirect_url`, and a `state` that is random, single-use, bound to
//! the connection and to this browser (a cookie), expiring in 10 minutes;
//! `GET /oauth/slack/callback?code&state` — the state checked (a forged,
//! reused, expired or other browser's one is refused with a page, nothing
//! stored), the code exchanged (`oauth.v2.access`), the answer checked (this
//! connection's app, a team), the workspace's tokens sealed and stored.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use maud::html;
use secrecy::ExposeSecret;

use super::docs::{CallbackQuery, PublicPath};
use super::oauth::{self, page, Flow};
use super::webhooks::webhook_connection;
use crate::channels::slack::installs::{self, ExchangeError};
use crate::channels::slack::Details;
use crate::channels::Channel;
use crate::domain::now_millis;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{ConnectionUpdate, Installation};

const FLOW: Flow = Flow {
    cookie: "botgate_slack_install",
    path: "/oauth/slack",
    refused_title: "The install did not go through",
    restart: "Nothing was installed. Start again from the app's install page.",
    platform: "Slack",
    cancelled: (
        "The install was cancelled",
        "Nothing was installed. You can start again from the install page whenever you like.",
    ),
    channel: Channel::Slack,
    what: "install",
};

/// The redirect URL to paste into Slack's OAuth & Permissions.
pub fn redirect_url(state: &AppState) -> String {
    state.settings.public_link("oauth/slack/callback")
}

fn refused(message: &str) -> HttpResponse {
    oauth::refused(&FLOW, message)
}

#[utoipa::path(get, path = "/oauth/slack/{connection}/install",
    summary = "Add to Slack: the install page (or ?direct=1, the redirect to Slack)", tag = "slack",
    params(PublicPath, ("direct" = Option<String>, Query, description = "1: redirect at once")),
    responses((status = 200, description = "A page with the Add to Slack button"), (status = 302, description = "To Slack's authorize page"), (status = 404, description = "Unknown connection, or one without a client id")),
    security(()))]
pub async fn install(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let connection = webhook_connection(&state, &path, Channel::Slack).await?;
    if connection.client_id.is_empty() {
        return Err(ApiError::NotFound(
            "this connection takes no installs (it has no client id)",
        ));
    }
    let started = match oauth::start(&req, &state, &FLOW, &connection.id).await? {
        Ok(started) => started,
        Err(busy) => return Ok(busy),
    };
    // The setting is kept as a base URL (with a trailing '/'); Slack's page
    // is `…/oauth/v2/authorize`, without one.
    let mut authorize = url::Url::parse(
        state
            .settings
            .slack_authorize_url
            .as_str()
            .trim_end_matches('/'),
    )
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("slack_authorize_url: {e}")))?;
    authorize
        .query_pairs_mut()
        .append_pair("client_id", &connection.client_id)
        .append_pair("scope", &connection.scope)
        .append_pair("redirect_uri", &redirect_url(&state))
        .append_pair("state", &started.state);
    let direct = req.query_string().split('&').any(|p| p == "direct=1");
    let response = if direct {
        oauth::redirect(authorize.as_str())
    } else {
        page(
            StatusCode::OK,
            "Add this app to your Slack workspace",
            html! {
                p { "You will be asked to allow the app in your workspace. The link works for ten minutes, in this browser." }
                p { a #add-to-slack href=(authorize.as_str()) style="display:inline-block;padding:.6rem 1rem;border-radius:6px;background:#4a154b;color:#fff;text-decoration:none;font-weight:600" { "Add to Slack" } }
            },
        )
    };
    oauth::answer(&started, response)
}

#[utoipa::path(get, path = "/oauth/slack/callback",
    summary = "Slack's redirect after an install (code and state)", tag = "slack",
    params(CallbackQuery),
    responses((status = 200, description = "Installed (or cancelled), as a page"), (status = 400, description = "A refused state or code, as a page"), (status = 502, description = "Slack could not be reached")),
    security(()))]
pub async fn callback(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let returned = match oauth::finish(&req, &state, &FLOW).await? {
        Ok(returned) => returned,
        Err(page) => return Ok(page),
    };
    let (connection, code) = (returned.connection, returned.code);
    let Some((client_id, client_secret)) = installs::client_credentials(&state, &connection).await
    else {
        return Ok(refused(
            "The connection has no client id and secret any more.",
        ));
    };
    let redirect = redirect_url(&state);
    let granted = match installs::exchange(
        &state,
        &[
            ("code", &code),
            ("client_id", &client_id),
            ("client_secret", client_secret.expose_secret()),
            ("redirect_uri", &redirect),
        ],
    )
    .await
    {
        Ok(g) => g,
        Err(ExchangeError::Refused(code)) => {
            return Ok(refused(&format!("Slack refused the install ({code}).")));
        }
        Err(ExchangeError::Unavailable(_)) => {
            return Ok(page(
                StatusCode::BAD_GATEWAY,
                "Slack could not be reached",
                html! { p #problem { "Nothing was installed. Try again in a moment." } },
            ));
        }
    };
    let mut details = Details::of(&connection);
    match &details.app_id {
        Some(app) if *app != granted.app_id => {
            return Ok(refused(
                "Slack answered for another app than this connection's.",
            ));
        }
        Some(_) => {}
        None if granted.app_id.is_empty() => {}
        None => {
            details.app_id = Some(granted.app_id.clone());
            let update = ConnectionUpdate {
                details: serde_json::to_string(&details).ok(),
                ..ConnectionUpdate::default()
            };
            state
                .store
                .update_connection(
                    &connection.tenant_id,
                    &connection.id,
                    &update,
                    &[],
                    false,
                    now_millis(),
                )
                .await?;
        }
    }
    let now = now_millis();
    let installation = Installation {
        connection_id: connection.id.clone(),
        team_id: granted.team_id.clone(),
        tenant_id: connection.tenant_id.clone(),
        enterprise_id: granted.enterprise_id.clone(),
        team_name: granted.team_name.clone(),
        app_id: granted.app_id.clone(),
        bot_user_id: granted.bot_user_id.clone(),
        scopes: granted.scopes.clone(),
        status: "active".into(),
        expires_at: granted.expires_in.map(|s| now + s.saturating_mul(1000)),
        generation: 0,
        lease_owner: None,
        lease_until: None,
        installed_at: now,
        updated_at: now,
    };
    let tokens = installs::sealed_tokens(&state, &connection, &granted.team_id, &granted);
    state.store.put_installation(&installation, &tokens).await?;
    tracing::info!(connection_id = %connection.id, team_id = %granted.team_id, rotation = granted.refresh_token.is_some(), "Slack workspace installed");
    Ok(page(
        StatusCode::OK,
        "Installed",
        html! {
            p #installed data-team=(granted.team_id) { "The app is installed in " strong { (granted.team_name) } " (" code { (granted.team_id) } ")." }
            p { "Next: invite the bot to a channel (" code { "/invite @" } "the bot) or send it a direct message. You can close this page." }
        },
    ))
}
