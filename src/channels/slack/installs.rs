//! Slack installs (SLACK.md §6): the `oauth.v2.access` exchanges (an install's
//! code; with token rotation, a refresh token), the installation's bot token
//! for a workspace, refreshed ahead of expiry single-flight across replicas
//! (a lease on the installation row, as `token_cache` does for NAVER WORKS),
//! the new refresh token committed with the new access token in one
//! transaction before the old one is dropped.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::Details;
use crate::channels::bounded_text;
use crate::domain::{now_millis, str_field};
use crate::secrets::Aad;
use crate::state::AppState;
use crate::store::{
    bot_token_field, field, refresh_token_field, ConnectionRecord, Installation, SealedTokens,
};

/// How long one `oauth.v2.access` call may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// slack_sdk refreshes two hours before expiry (SLACK.md §6); botgate does
/// too, or at half the token's life when that is shorter.
const REFRESH_MARGIN_MS: i64 = 2 * 60 * 60 * 1000;

/// Why no token could be served.
#[derive(Debug, thiserror::Error)]
pub enum TokenProblem {
    #[error("no installation for workspace {0} (install the app there)")]
    NoInstallation(String),
    #[error("workspace {0} must install the app again (its refresh token was refused)")]
    NeedsReinstall(String),
    #[error("Slack did not refresh the token: {0}")]
    Unavailable(String),
    #[error("the token could not be read: {0}")]
    Store(String),
}

impl From<crate::store::StoreError> for TokenProblem {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Store(e.to_string())
    }
}

/// A bot token as served.
pub struct BotToken {
    pub token: SecretString,
    pub team_id: String,
    pub bot_user_id: String,
    pub scopes: String,
    pub expires_at: Option<i64>,
}

/// Which workspace and app an installation is for: what `oauth.v2.access`
/// names (checked and bounded), what an install's page shows and what the
/// API lists for each installation.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Workspace {
    /// The workspace (`T…`).
    pub team_id: String,
    pub team_name: String,
    /// The Enterprise Grid organisation, if any.
    pub enterprise_id: Option<String>,
    pub app_id: String,
    pub bot_user_id: String,
    /// Comma-separated, as Slack granted them.
    pub scopes: String,
}

/// What `oauth.v2.access` answered, checked (SLACK.md §6 [D]).
#[derive(Debug)]
pub struct Granted {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    pub expires_in: Option<i64>,
    pub workspace: Workspace,
}

/// Why an exchange failed: Slack's short error code, or the transport.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("Slack refused: {0}")]
    Refused(String),
    #[error("Slack could not be reached or answered badly: {0}")]
    Unavailable(String),
}

fn short_id(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .filter(|s| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
        .map(str::to_owned)
}

/// `POST oauth.v2.access` (form-encoded, client credentials in the form).
pub async fn exchange(state: &AppState, form: &[(&str, &str)]) -> Result<Granted, ExchangeError> {
    let url = format!(
        "{}/oauth.v2.access",
        state.settings.slack_api_url.as_str().trim_end_matches('/')
    );
    let response = state
        .http
        .post(url)
        .timeout(EXCHANGE_TIMEOUT)
        .form(form)
        .send()
        .await
        .map_err(|e| ExchangeError::Unavailable(crate::outbound::no_answer(&e).into()))?;
    let status = response.status().as_u16();
    let body = crate::outbound::read_capped(response, 64 * 1024)
        .await
        .map_err(|e| ExchangeError::Unavailable(e.to_string()))?;
    if status != 200 {
        return Err(ExchangeError::Unavailable(format!("HTTP {status}")));
    }
    let answer: Value =
        serde_json::from_slice(&body).map_err(|_| ExchangeError::Unavailable("not JSON".into()))?;
    if answer.get("ok").and_then(Value::as_bool) != Some(true) {
        let code = short_id(answer.get("error")).unwrap_or_else(|| "unknown_error".into());
        return Err(ExchangeError::Refused(code));
    }
    let token = str_field(&answer, "access_token")
        .filter(|t| {
            t.len() <= 512 && t.contains("xoxb-") && t.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| ExchangeError::Unavailable("no bot access_token in the answer".into()))?;
    // An install for a whole Enterprise Grid organization (SLACK.md §6's
    // `is_enterprise_install`, with `team: null`; api.slack.com/enterprise/
    // apps/reference) is kept as one installation under the organization's
    // id, which events of its workspaces find by their `enterprise_id`.
    let org_wide = answer.get("is_enterprise_install").and_then(Value::as_bool) == Some(true);
    let team = if org_wide {
        answer.get("enterprise").cloned().unwrap_or(Value::Null)
    } else {
        answer.get("team").cloned().unwrap_or(Value::Null)
    };
    let granted = Granted {
        access_token: SecretString::from(token.to_owned()),
        refresh_token: str_field(&answer, "refresh_token")
            .filter(|t| t.len() <= 512 && t.bytes().all(|b| b.is_ascii_graphic()))
            .map(|t| SecretString::from(t.to_owned())),
        expires_in: answer
            .get("expires_in")
            .and_then(Value::as_i64)
            .filter(|s| *s > 0),
        workspace: Workspace {
            team_id: short_id(team.get("id")).ok_or_else(|| {
                ExchangeError::Unavailable("no team.id (or enterprise.id) in the answer".into())
            })?,
            team_name: bounded_text(str_field(&team, "name").unwrap_or(""), 200),
            enterprise_id: short_id(answer.get("enterprise").and_then(|e| e.get("id"))),
            app_id: short_id(answer.get("app_id")).unwrap_or_default(),
            bot_user_id: short_id(answer.get("bot_user_id")).unwrap_or_default(),
            scopes: bounded_text(str_field(&answer, "scope").unwrap_or(""), 2000),
        },
    };
    Ok(granted)
}

/// The connection's client id and secret (installs need both).
pub async fn client_credentials(
    state: &AppState,
    connection: &ConnectionRecord,
) -> Option<(String, SecretString)> {
    if connection.client_id.is_empty() {
        return None;
    }
    let secret = crate::channels::connection_secret(state, connection, field::CLIENT_SECRET)
        .await
        .ok()
        .flatten()?;
    Some((connection.client_id.clone(), secret))
}

fn seal(
    state: &AppState,
    connection: &ConnectionRecord,
    field: &str,
    value: &SecretString,
) -> crate::secrets::Sealed {
    state.vault.seal(
        value,
        Aad {
            tenant: connection.tenant_id.as_str(),
            connection: Some(connection.id.as_str()),
            field,
        },
    )
}

/// The sealed tokens of a grant for a workspace.
pub fn sealed_tokens(
    state: &AppState,
    connection: &ConnectionRecord,
    team: &str,
    granted: &Granted,
) -> SealedTokens {
    SealedTokens {
        bot_token: seal(
            state,
            connection,
            &bot_token_field(team),
            &granted.access_token,
        ),
        refresh_token: granted
            .refresh_token
            .as_ref()
            .map(|r| seal(state, connection, &refresh_token_field(team), r)),
    }
}

/// One of an installation's sealed tokens, opened.
async fn open(
    state: &AppState,
    connection: &ConnectionRecord,
    field: &str,
) -> Result<Option<SecretString>, TokenProblem> {
    let secrets = state.store.secrets(connection.id.as_str()).await?;
    let Some(sealed) = secrets.iter().find(|s| s.field == field) else {
        return Ok(None);
    };
    state
        .vault
        .open_str(&sealed.sealed, sealed.aad())
        .map(Some)
        .map_err(|e| TokenProblem::Store(e.to_string()))
}

fn due(i: &Installation, now: i64) -> bool {
    i.expires_at.is_some_and(|expires| {
        let margin = REFRESH_MARGIN_MS.min((expires - i.updated_at).max(0) / 2);
        expires - now <= margin
    })
}

/// Whether an installation is an Enterprise Grid organization's (kept
/// under the organization's id), not one workspace's.
pub fn org_wide(i: &Installation) -> bool {
    i.enterprise_id.as_deref() == Some(i.team_id.as_str())
}

/// The installation that answers a workspace: its own, else its
/// organization's org-wide one (`enterprise`, from the event: its
/// `enterprise_id`).
pub async fn installation_for(
    state: &AppState,
    connection: &ConnectionRecord,
    team: &str,
    enterprise: Option<&str>,
) -> Result<Option<Installation>, crate::store::StoreError> {
    if let Some(i) = state.store.installation(&connection.id, team).await? {
        return Ok(Some(i));
    }
    let Some(enterprise) = enterprise.filter(|e| *e != team) else {
        return Ok(None);
    };
    let org = state.store.installation(&connection.id, enterprise).await?;
    Ok(org.filter(org_wide))
}

/// The bot token for a workspace of a connection (of the organization
/// `enterprise`, if the event said): its installation's (refreshed first
/// when due, or when `force` and rotation is on), else the pasted token
/// when it is that workspace's (or no workspace is named).
pub async fn bot_token(
    state: &AppState,
    connection: &ConnectionRecord,
    team: Option<&str>,
    enterprise: Option<&str>,
    force: bool,
) -> Result<BotToken, TokenProblem> {
    if let Some(team) = team {
        if let Some(i) = installation_for(state, connection, team, enterprise).await? {
            return installed_token(state, connection, i, force).await;
        }
    }
    let details = Details::of(connection);
    let pasted_team = details.identity.as_ref().map(|i| i.team_id.as_str());
    if team.is_none() || pasted_team.is_none() || team == pasted_team {
        if let Some(token) = crate::channels::connection_secret(state, connection, field::BOT_TOKEN)
            .await
            .map_err(|e| TokenProblem::Store(e.to_string()))?
        {
            let identity = details.identity.unwrap_or_default();
            return Ok(BotToken {
                token,
                team_id: identity.team_id,
                bot_user_id: identity.bot_user_id,
                scopes: connection.scope.clone(),
                expires_at: None,
            });
        }
    }
    Err(TokenProblem::NoInstallation(team.unwrap_or("-").to_owned()))
}

async fn installed_token(
    state: &AppState,
    connection: &ConnectionRecord,
    mut i: Installation,
    force: bool,
) -> Result<BotToken, TokenProblem> {
    let lease = i64::try_from(state.settings.token_lease.as_millis()).unwrap_or(30_000);
    let deadline = now_millis() + lease + 5_000;
    let first_generation = i.generation;
    loop {
        if i.status != "active" {
            return Err(TokenProblem::NeedsReinstall(i.team_id.clone()));
        }
        let now = now_millis();
        let forced = force && i.generation == first_generation && i.expires_at.is_some();
        if !(forced || due(&i, now)) {
            return served(state, connection, &i).await;
        }
        if state
            .store
            .lease_installation(
                &connection.id,
                &i.team_id,
                &state.worker_id,
                (now, now + lease),
                i.generation,
            )
            .await?
        {
            return refresh(state, connection, i).await;
        }
        // Another caller (or replica) is refreshing: its current token while
        // it is still valid, else wait for the new generation.
        if i.expires_at.is_some_and(|e| e > now + 1_000) {
            return served(state, connection, &i).await;
        }
        if now > deadline {
            return Err(TokenProblem::Unavailable(
                "another refresh did not finish".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        i = state
            .store
            .installation(&connection.id, &i.team_id)
            .await?
            .ok_or_else(|| TokenProblem::NoInstallation(i.team_id.clone()))?;
    }
}

async fn served(
    state: &AppState,
    connection: &ConnectionRecord,
    i: &Installation,
) -> Result<BotToken, TokenProblem> {
    let token = open(state, connection, &bot_token_field(&i.team_id))
        .await?
        .ok_or_else(|| TokenProblem::NoInstallation(i.team_id.clone()))?;
    Ok(BotToken {
        token,
        team_id: i.team_id.clone(),
        bot_user_id: i.bot_user_id.clone(),
        scopes: i.scopes.clone(),
        expires_at: i.expires_at,
    })
}

/// Holding the lease: `grant_type=refresh_token`, then the new tokens
/// committed with a new generation; a refused refresh token marks the
/// installation "needs re-install".
async fn refresh(
    state: &AppState,
    connection: &ConnectionRecord,
    i: Installation,
) -> Result<BotToken, TokenProblem> {
    let owner = &state.worker_id;
    let (Some(refresh), Some((client_id, client_secret))) = (
        open(state, connection, &refresh_token_field(&i.team_id)).await?,
        client_credentials(state, connection).await,
    ) else {
        state.store.release_installation(&i, owner).await?;
        return served(state, connection, &i).await;
    };
    let granted = exchange(
        state,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.expose_secret()),
            ("client_id", &client_id),
            ("client_secret", client_secret.expose_secret()),
        ],
    )
    .await;
    let now = now_millis();
    match granted {
        Ok(granted) => {
            let expires_at = granted.expires_in.map(|s| now + s.saturating_mul(1000));
            let tokens = sealed_tokens(state, connection, &i.team_id, &granted);
            if !state
                .store
                .rotate_installation(&i, owner, expires_at, &tokens, now)
                .await?
            {
                return Err(TokenProblem::Unavailable(
                    "the refresh lease was lost".into(),
                ));
            }
            state.metrics.tokens.inc("refreshed");
            tracing::info!(connection_id = %connection.id, team_id = %i.team_id, "Slack token refreshed");
            Ok(BotToken {
                token: granted.access_token,
                team_id: i.team_id.clone(),
                bot_user_id: i.bot_user_id.clone(),
                scopes: i.scopes.clone(),
                expires_at,
            })
        }
        Err(ExchangeError::Refused(code))
            if matches!(
                code.as_str(),
                "invalid_refresh_token"
                    | "invalid_grant"
                    | "invalid_client_id"
                    | "bad_client_secret"
            ) =>
        {
            tracing::warn!(connection_id = %connection.id, team_id = %i.team_id, error.code = %code, "Slack refused the refresh token; the workspace must install again");
            state.store.needs_reinstall(&i, now).await?;
            state.metrics.tokens.inc("failed");
            Err(TokenProblem::NeedsReinstall(i.team_id.clone()))
        }
        Err(e) => {
            state.store.release_installation(&i, owner).await?;
            state.metrics.tokens.inc("failed");
            if i.expires_at.is_some_and(|x| x > now) {
                return served(state, connection, &i).await;
            }
            Err(TokenProblem::Unavailable(e.to_string()))
        }
    }
}
