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

use super::docs::{CallbackQuery, PublicPath};
use super::oauth::{self, page, Flow};
use crate::channels::Channel;
use crate::error::ApiError;
use crate::service::connections;
use crate::service::oauth::{self as service, slack_redirect_url as redirect_url};
use crate::state::AppState;

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
    actor: "workspace admin",
    what: "install",
    unreachable: "Nothing was installed. Try again in a moment.",
};

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
    let connection = connections::public_connection(&state, &path, Channel::Slack).await?;
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
    oauth::callback(&req, &state, &FLOW, service::install_workspace, |installed| {
        page(
            StatusCode::OK,
            "Installed",
            html! {
                p #installed data-team=(installed.team_id) { "The app is installed in " strong { (installed.team_name) } " (" code { (installed.team_id) } ")." }
                p { "Next: invite the bot to a channel (" code { "/invite @" } "the bot) or send it a direct message. You can close this page." }
            },
        )
    })
    .await
}
