//! Finishing the two browser OAuth flows once the route has checked the
//! callback's `state` (routes/oauth.rs): NAVER WORKS' user sign-in (the code
//! exchanged for the member's tokens, sealed as the connection's shared
//! token) and "Add to Slack" (the code exchanged for the workspace's tokens,
//! the installation stored). Nothing is stored unless the whole answer is
//! taken. The routes turn what these return into pages.

use super::activity::{self, Actor};
use secrecy::ExposeSecret;

use crate::channels::slack::installs::{self, ExchangeError, Workspace};
use crate::channels::slack::Details;
use crate::domain::naverworks::AuthMode;
use crate::domain::now_millis;
use crate::error::ApiError;
use crate::naverworks::token::TokenError;
use crate::state::AppState;
use crate::store::{ConnectionRecord, ConnectionUpdate, Installation};

/// What a callback's code came to.
#[derive(Debug)]
pub enum Outcome<T> {
    /// Exchanged and stored.
    Done(T),
    /// Refused, with a sentence for the page: never a value from the
    /// request or the platform's answer beyond its error code.
    Refused(String),
    /// The platform could not be reached, or answered badly: nothing stored.
    Unreachable,
}

/// Refused, saying why.
fn refused<T>(message: &str) -> Result<Outcome<T>, ApiError> {
    Ok(Outcome::Refused(message.to_owned()))
}

/// The Redirect URL a NAVER WORKS user-account connection's app has in the
/// Developer Console (one for every connection: the state names the
/// connection).
pub fn naverworks_redirect_url(state: &AppState) -> String {
    state.settings.public_link("oauth/naverworks/callback")
}

/// The Redirect URL to paste into Slack's OAuth & Permissions.
pub fn slack_redirect_url(state: &AppState) -> String {
    state.settings.public_link("oauth/slack/callback")
}

/// A member's sign-in, stored.
#[derive(Debug)]
pub struct Authorized {
    /// The bot now acting with the member's authorisation.
    pub bot_id: String,
    /// NAVER WORKS gave a refresh token (else a person signs in again when
    /// the access token expires).
    pub refreshable: bool,
}

/// Exchanges a NAVER WORKS sign-in's code (form-encoded, with the same
/// `redirect_uri`) and seals the member's tokens as the connection's shared
/// token. Refused: a service-account connection, an unreadable Client
/// Secret, a refused code, a token without the `bot` scope.
pub async fn authorize_user(
    state: &AppState,
    connection: &ConnectionRecord,
    code: &str,
    actor: &Actor,
) -> Result<Outcome<Authorized>, ApiError> {
    if AuthMode::of_details(&connection.details) != AuthMode::User {
        return refused("This connection uses a service account: no one signs in for it.");
    }
    let Ok((creds, _)) = state.tokens.credentials(connection).await else {
        return refused("The connection's Client Secret cannot be read; enter it again.");
    };
    let issued = match state
        .tokens
        .client()
        .code_grant(
            &creds.client_id,
            &creds.client_secret,
            code,
            &naverworks_redirect_url(state),
        )
        .await
    {
        Ok(issued) => issued,
        Err(TokenError::Unavailable(_)) => return Ok(Outcome::Unreachable),
        Err(e) => {
            return refused(&format!(
                "NAVER WORKS refused the sign-in's code ({}).",
                e.code()
            ))
        }
    };
    let can_send = issued
        .scope
        .split(' ')
        .any(|s| matches!(s, "bot" | "bot.message"));
    if !can_send {
        return refused(
            "The authorisation does not grant the `bot` scope, so the bot could not send messages. Grant it to the app in the Developer Console.",
        );
    }
    let refreshable = issued.refresh_token.is_some();
    state
        .tokens
        .authorized(connection, issued, now_millis())
        .await?;
    tracing::info!(connection_id = %connection.id, refreshable, "NAVER WORKS user-account connection authorised");
    let detail = format!(
        "NAVER WORKS bot {} by a member's sign-in",
        connection.bot_id
    );
    activity::record(
        &state.store,
        actor,
        &connection.tenant_id,
        Some(&connection.id),
        "connection.authorized",
        detail,
    )
    .await;
    Ok(Outcome::Done(Authorized {
        bot_id: connection.bot_id.clone(),
        refreshable,
    }))
}

/// Exchanges an install's code (`oauth.v2.access`) and stores the
/// workspace's installation with its sealed tokens. Refused: no client
/// credentials any more, a refused code, an answer for another app than
/// the connection's (whose app id is learnt from the first install).
pub async fn install_workspace(
    state: &AppState,
    connection: &ConnectionRecord,
    code: &str,
    actor: &Actor,
) -> Result<Outcome<Workspace>, ApiError> {
    let Some((client_id, client_secret)) = installs::client_credentials(state, connection).await
    else {
        return refused("The connection has no client id and secret any more.");
    };
    let redirect = slack_redirect_url(state);
    let form = [
        ("code", code),
        ("client_id", &client_id),
        ("client_secret", client_secret.expose_secret()),
        ("redirect_uri", &redirect),
    ];
    let granted = match installs::exchange(state, &form).await {
        Ok(granted) => granted,
        Err(ExchangeError::Refused(code)) => {
            return refused(&format!("Slack refused the install ({code})."))
        }
        Err(ExchangeError::Unavailable(_)) => return Ok(Outcome::Unreachable),
    };
    let mut details = Details::of(connection);
    match &details.app_id {
        Some(app) if *app != granted.workspace.app_id => {
            return refused("Slack answered for another app than this connection's.");
        }
        Some(_) => {}
        None if granted.workspace.app_id.is_empty() => {}
        None => {
            details.app_id = Some(granted.workspace.app_id.clone());
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
        team_id: granted.workspace.team_id.clone(),
        tenant_id: connection.tenant_id.clone(),
        enterprise_id: granted.workspace.enterprise_id.clone(),
        team_name: granted.workspace.team_name.clone(),
        app_id: granted.workspace.app_id.clone(),
        bot_user_id: granted.workspace.bot_user_id.clone(),
        scopes: granted.workspace.scopes.clone(),
        status: "active".into(),
        expires_at: granted.expires_in.map(|s| now + s.saturating_mul(1000)),
        generation: 0,
        lease_owner: None,
        lease_until: None,
        installed_at: now,
        updated_at: now,
    };
    let tokens = installs::sealed_tokens(state, connection, &installation.team_id, &granted);
    state.store.put_installation(&installation, &tokens).await?;
    tracing::info!(connection_id = %connection.id, team_id = %installation.team_id, rotation = granted.refresh_token.is_some(), "Slack workspace installed");
    // The name is Slack's (a workspace admin chose it): bounded.
    let name: String = installation
        .team_name
        .chars()
        .filter(|c| !c.is_control())
        .take(80)
        .collect();
    let detail = format!("workspace {} ({name})", installation.team_id);
    activity::record(
        &state.store,
        actor,
        &connection.tenant_id,
        Some(&connection.id),
        "installation.added",
        detail,
    )
    .await;
    Ok(Outcome::Done(granted.workspace))
}
