//! Slack connections: validate, check the pasted bot token with `auth.test`
//! (which names the workspace and bot), seal the secrets and store them.
//! The same rules as NAVER WORKS connections: every problem at once, no
//! value echoed, secrets sealed with AAD naming the connection.

use super::activity::{self, Actor};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::connections::{
    auth_header, auth_networks, client_id, client_secret, seal_secrets, store_new, ConnectionBody,
    Fields,
};
use crate::channels::slack::installs::{self, TokenProblem, Workspace};
use crate::channels::slack::{api, Details, DEFAULT_RATE_LIMIT_PER_MINUTE};
use crate::channels::{Channel, Sent};
use crate::domain::ids::{ConnectionId, PublicId};
use crate::domain::naverworks::{parse_rate_limit, parse_secret};
use crate::domain::{now_millis, rfc3339, FieldError};
use crate::error::ApiError;
use crate::secrets::hashing::hash_salted;
use crate::state::AppState;
use crate::store::{field, ConnectionRecord, ConnectionUpdate, TenantRecord};

/// The scopes asked for at install when none are given (SLACK.md §6).
pub const DEFAULT_SCOPES: &str =
    "chat:write,commands,app_mentions:read,im:history,channels:history";

/// How long `auth.test` may take at connect time.
const AUTH_TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Slack's Signing Secret: 32 hex digits today; anything visible from 16
/// to 128 characters is taken.
fn signing_secret(v: &Value) -> Result<SecretString, FieldError> {
    parse_secret("signing_secret", v, 16, 128)
}

/// A bot token: `xoxb-` and letters, digits and dashes.
fn bot_token(v: &Value) -> Result<SecretString, FieldError> {
    let token = parse_secret("bot_token", v, 12, 256)?;
    let ok = token.expose_secret().starts_with("xoxb-")
        && token
            .expose_secret()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(token)
    } else {
        Err(FieldError::new(
            "bot_token",
            "must be a Slack bot token (xoxb-…, OAuth & Permissions → Bot User OAuth Token)",
        ))
    }
}

/// Comma- or space-separated Slack scope names, kept comma-separated.
fn scopes(v: &Value) -> Result<String, FieldError> {
    let bad = || {
        FieldError::new(
            "scopes",
            "must list Slack scopes such as \"chat:write,commands\"",
        )
    };
    let Value::String(text) = v else {
        return Err(bad());
    };
    let list = crate::domain::scope_names(text, b":._").map_err(|_| bad())?;
    if list.is_empty() || list.len() > 64 {
        return Err(bad());
    }
    Ok(list.join(","))
}

fn ack_text(v: &Value) -> Result<String, FieldError> {
    match v {
        Value::String(t) if t.chars().count() <= 200 && !t.chars().any(char::is_control) => {
            Ok(t.trim().to_owned())
        }
        _ => Err(FieldError::new(
            "command_ack_text",
            "must be a text of at most 200 characters",
        )),
    }
}

/// Slack's `auth.test` with `token`, within [`AUTH_TEST_TIMEOUT`].
async fn auth_test(state: &AppState, token: &SecretString) -> Result<api::Identity, Sent> {
    let base = &state.settings.slack_api_url;
    api::auth_test(&state.http, base, token, AUTH_TEST_TIMEOUT).await
}

/// `auth.test` for a pasted token: who it is, or the field error / upstream
/// failure to answer with.
async fn identify(state: &AppState, token: &SecretString) -> Result<api::Identity, ApiError> {
    match auth_test(state, token).await {
        Ok(identity) => Ok(identity),
        Err(Sent::CredentialsRefused(e) | Sent::Rejected(e)) => Err(ApiError::validation(
            "bot_token",
            format!(
                "was refused by Slack's auth.test ({})",
                e.trim_start_matches("Slack refused the bot token: ")
                    .trim_start_matches("Slack: ")
            ),
        )),
        Err(_) => Err(ApiError::Upstream(
            "Slack's auth.test could not be reached to check the bot token; try again",
        )),
    }
}

/// A Slack connection's fields as given (each parsed, its errors kept).
struct Given {
    f: Fields,
    signing: Option<SecretString>,
    token: Option<SecretString>,
    client: Option<String>,
    secret: Option<SecretString>,
    scope: Option<String>,
    rate: Option<u32>,
    ack: Option<String>,
    header: Option<SecretString>,
    networks: Option<String>,
}

impl Given {
    fn parse(body: &ConnectionBody) -> Self {
        let mut f = Fields::for_channel(body, Channel::Slack);
        Self {
            signing: f.optional(&body.signing_secret, signing_secret),
            token: f.optional(&body.bot_token, bot_token),
            client: f.optional(&body.client_id, client_id),
            secret: f.optional(&body.client_secret, client_secret),
            scope: f.optional(&body.scopes, scopes),
            rate: f.optional(&body.rate_limit_per_minute, parse_rate_limit),
            ack: f.optional(&body.command_ack_text, ack_text),
            header: f.optional(&body.auth_header, auth_header),
            networks: f.optional(&body.auth_networks, auth_networks),
            f,
        }
    }

    /// The secrets given, sealed for the connection.
    fn sealed(
        &self,
        state: &AppState,
        c: &ConnectionRecord,
    ) -> Vec<(&'static str, crate::secrets::Sealed)> {
        seal_secrets(
            state,
            &c.tenant_id,
            &c.id,
            [
                (field::SIGNING_SECRET, self.signing.as_ref()),
                (field::BOT_TOKEN, self.token.as_ref()),
                (field::CLIENT_SECRET, self.secret.as_ref()),
            ],
        )
    }
}

pub async fn create(
    state: &AppState,
    tenant: &TenantRecord,
    body: &ConnectionBody,
) -> Result<ConnectionRecord, ApiError> {
    let mut given = Given::parse(body);
    let f = &mut given.f;
    if body.signing_secret.is_none() {
        f.errors
            .push(FieldError::new("signing_secret", "is required"));
    }
    if body.bot_token.is_none() && body.client_id.is_none() {
        f.errors.push(FieldError::new(
            "bot_token",
            "is required unless client_id and client_secret are given (installs by OAuth)",
        ));
    }
    if body.client_id.is_some() != body.client_secret.is_some() {
        f.errors.push(FieldError::new(
            "client_secret",
            "client_id and client_secret go together",
        ));
    }
    if !f.errors.is_empty() {
        return Err(ApiError::Validation(std::mem::take(&mut f.errors)));
    }
    let identity = match &given.token {
        Some(token) => Some(identify(state, token).await?),
        None => None,
    };
    let now = now_millis();
    let bot_id = match (&identity, &given.client) {
        (Some(i), _) if !i.bot_id.is_empty() => i.bot_id.clone(),
        (Some(i), _) => format!("user:{}", i.bot_user_id),
        (None, Some(client)) => format!("app:{client}"),
        (None, None) => return Err(ApiError::validation("bot_token", "is required")),
    };
    let details = Details {
        identity,
        command_ack_text: given.ack.clone().filter(|t| !t.is_empty()),
        app_id: None,
    };
    let record = ConnectionRecord {
        id: ConnectionId::generate(),
        tenant_id: tenant.id.clone(),
        public_id: PublicId::generate(),
        channel: Channel::Slack.name().to_owned(),
        bot_id,
        client_id: given.client.clone().unwrap_or_default(),
        service_account: String::new(),
        scope: given
            .scope
            .clone()
            .unwrap_or_else(|| DEFAULT_SCOPES.to_owned()),
        rate_limit_per_minute: i64::from(given.rate.unwrap_or(DEFAULT_RATE_LIMIT_PER_MINUTE)),
        private_key_info: String::new(),
        auth_header_hash: given.header.as_ref().map(hash_salted).unwrap_or_default(),
        details: serde_json::to_string(&details).unwrap_or_else(|_| "{}".into()),
        created_at: now,
        updated_at: now,
        auth_networks: given.networks.clone().unwrap_or_default(),
    };
    store_new(state, &record, &given.sealed(state, &record)).await?;
    Ok(record)
}

pub async fn update(
    state: &AppState,
    current: &ConnectionRecord,
    body: &ConnectionBody,
) -> Result<ConnectionRecord, ApiError> {
    let given = Given::parse(body);
    if !given.f.errors.is_empty() {
        return Err(ApiError::Validation(given.f.errors));
    }
    let mut details = Details::of(current);
    let mut changed_details = false;
    if let Some(token) = &given.token {
        let identity = identify(state, token).await?;
        if !current.bot_id.starts_with("app:") && identity.bot_id != current.bot_id {
            return Err(ApiError::validation(
                "bot_token",
                "belongs to another bot; create a new connection for it",
            ));
        }
        details.identity = Some(identity);
        changed_details = true;
    }
    if let Some(ack) = given.ack.clone() {
        details.command_ack_text = Some(ack).filter(|t| !t.is_empty());
        changed_details = true;
    }
    let update = ConnectionUpdate {
        client_id: given.client.clone(),
        scope: given.scope.clone(),
        rate_limit_per_minute: given.rate.map(i64::from),
        auth_header_hash: given.header.as_ref().map(hash_salted),
        auth_networks: given.networks.clone(),
        details: changed_details
            .then(|| serde_json::to_string(&details).unwrap_or_else(|_| "{}".into())),
        ..ConnectionUpdate::default()
    };
    super::connections::apply(
        state,
        current,
        &update,
        &given.sealed(state, current),
        false,
    )
    .await
}

/// How many workspaces `POST …/test` asks `auth.test` about (at once).
const CHECKED_WORKSPACES: usize = 20;

/// `POST …/test` for Slack: the stored secrets decrypt; `auth.test` with the
/// pasted bot token names its workspace and bot; and for a connection with
/// installs, each workspace's bot token (the first 20) is asked about the
/// same way, so a revoked or uninstalled one shows by name.
pub async fn checks(state: &AppState, record: &ConnectionRecord) -> Vec<super::checks::Check> {
    use super::checks::check;
    use crate::channels::connection_secret;
    let signing = connection_secret(state, record, field::SIGNING_SECRET).await;
    let token = connection_secret(state, record, field::BOT_TOKEN).await;
    let (Ok(Some(_)), Ok(token)) = (signing, token) else {
        return vec![check(
            "credentials",
            false,
            Some("credentials_unreadable"),
            "The stored credentials cannot be read; enter them again with PATCH.",
        )];
    };
    let mut checks = vec![check(
        "credentials",
        true,
        None,
        "The stored secrets decrypt.",
    )];
    let installs = !record.client_id.is_empty();
    match token {
        Some(token) => checks.push(auth_test_check(state, &token, None).await),
        None if installs => {}
        None => checks.push(check(
            "token",
            false,
            Some("no_bot_token"),
            "No bot token is stored: paste one, or install the app into a workspace.",
        )),
    }
    if installs {
        checks.extend(workspace_checks(state, record).await);
    }
    checks
}

/// `auth.test` with a bot token: the pasted one (`workspace` None, check
/// `token`), or an installation's (check `installation`, its sentences
/// naming the workspace).
async fn auth_test_check(
    state: &AppState,
    token: &SecretString,
    workspace: Option<&str>,
) -> super::checks::Check {
    use super::checks::check;
    let (name, repair) = match workspace {
        None => ("token", "Reinstall the app or paste a new bot token."),
        Some(_) => ("installation", "Install the app in that workspace again."),
    };
    let say = |sentence: String| match workspace {
        Some(w) => format!("Workspace {w}: {sentence}"),
        None => sentence,
    };
    match auth_test(state, token).await {
        Ok(identity) => {
            let who = format!(
                "{} ({}), bot {}",
                identity.team, identity.team_id, identity.bot_id
            );
            let sentence = format!("Slack's auth.test accepts the bot token: workspace {who}.");
            check(name, true, None, say(sentence)).detail(workspace.unwrap_or(&who))
        }
        Err(Sent::CredentialsRefused(e) | Sent::Rejected(e)) => {
            let sentence = say(format!("{e}. {repair}"));
            let check = check(name, false, Some("slack_token_refused"), sentence);
            check.detail(workspace.unwrap_or(&e))
        }
        Err(_) => {
            let sentence = "Slack's auth.test could not be reached. Try again in a moment.";
            let check = check(name, false, Some("slack_unavailable"), say(sentence.into()));
            check.detail(workspace.unwrap_or_default())
        }
    }
}

/// `auth.test` with one installed workspace's bot token (refreshed first if
/// due), or why there is none to ask with.
async fn workspace_check(
    state: &AppState,
    record: &ConnectionRecord,
    i: &crate::store::Installation,
) -> super::checks::Check {
    use super::checks::check;
    let workspace = format!("{} ({})", i.team_name, i.team_id);
    let failed = match installs::bot_token(state, record, Some(&i.team_id), None, false).await {
        Ok(token) => return auth_test_check(state, &token.token, Some(&workspace)).await,
        Err(TokenProblem::NeedsReinstall(_)) => check(
            "installation",
            false,
            Some("needs_reinstall"),
            format!(
                "Workspace {workspace}: Slack refused its refresh token. \
                 Install the app in that workspace again."
            ),
        ),
        Err(problem) => check(
            "installation",
            false,
            Some("slack_unavailable"),
            format!("Workspace {workspace}: {problem}."),
        ),
    };
    failed.detail(workspace)
}

/// One check per installed workspace (the first [`CHECKED_WORKSPACES`]),
/// or why there is none to make.
async fn workspace_checks(
    state: &AppState,
    record: &ConnectionRecord,
) -> Vec<super::checks::Check> {
    use super::checks::check;
    let Ok(installed) = state.store.installations(&record.id).await else {
        return vec![check(
            "installations",
            false,
            Some("busy"),
            "The installations could not be read. Try again in a moment.",
        )];
    };
    if installed.is_empty() {
        return vec![check(
            "installations",
            false,
            Some("not_installed"),
            "The app is not installed in any workspace yet: share its install URL \
             with a workspace's admin.",
        )];
    }
    let checked = installed.iter().take(CHECKED_WORKSPACES);
    let checked = checked.map(|i| workspace_check(state, record, i));
    let mut checks = futures_util::future::join_all(checked).await;
    if let Some(more) = installed
        .len()
        .checked_sub(CHECKED_WORKSPACES)
        .filter(|n| *n > 0)
    {
        let sentence = format!("{more} more workspaces are installed and were not checked here.");
        checks.push(check("installations", true, None, sentence).detail(more.to_string()));
    }
    checks
}

/// One workspace's installation as the API shows it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct InstallationView {
    #[serde(flatten)]
    pub workspace: Workspace,
    /// `active`, or `needs_reinstall` after Slack refused its tokens.
    pub status: String,
    /// The bot token, masked; null when it cannot be read.
    pub bot_token: Option<String>,
    /// The workspace's tokens rotate (they expire and are refreshed).
    pub token_rotation: bool,
    /// RFC 3339: when the bot token expires (with rotation).
    pub expires_at: Option<String>,
    /// RFC 3339.
    pub installed_at: String,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct InstallationList {
    pub installations: Vec<InstallationView>,
}

/// A Slack connection's installations, oldest first, their bot tokens
/// masked.
pub async fn installations(
    state: &AppState,
    record: &ConnectionRecord,
) -> Result<InstallationList, ApiError> {
    let secrets = state.store.secrets(record.id.as_str()).await?;
    let installations = state
        .store
        .installations(&record.id)
        .await?
        .into_iter()
        .map(|i| {
            let field = crate::store::bot_token_field(&i.team_id);
            let bot_token = secrets
                .iter()
                .find(|s| s.field == field)
                .and_then(|s| state.vault.open_str(&s.sealed, s.aad()).ok())
                .map(|t| crate::secrets::mask::mask(t.expose_secret()));
            InstallationView {
                token_rotation: i.expires_at.is_some(),
                expires_at: i.expires_at.map(rfc3339),
                installed_at: rfc3339(i.installed_at),
                bot_token,
                workspace: Workspace {
                    team_id: i.team_id,
                    team_name: i.team_name,
                    enterprise_id: i.enterprise_id,
                    app_id: i.app_id,
                    bot_user_id: i.bot_user_id,
                    scopes: i.scopes,
                },
                status: i.status,
            }
        })
        .collect();
    Ok(InstallationList { installations })
}

/// Removes a workspace's installation and its tokens (the workspace must
/// install the app again to be answered).
pub async fn remove_installation(
    state: &AppState,
    record: &ConnectionRecord,
    team: &str,
    actor: &Actor,
) -> Result<(), ApiError> {
    const NONE: ApiError = ApiError::NotFound("no installation for that workspace");
    let team = crate::channels::slack::team_id(team).ok_or(NONE)?;
    if !state.store.delete_installation(&record.id, team).await? {
        return Err(NONE);
    }
    tracing::info!(connection_id = %record.id, team_id = %team, "Slack installation removed");
    let detail = format!("workspace {team}");
    activity::record(
        &state.store,
        actor,
        &record.tenant_id,
        Some(&record.id),
        "installation.removed",
        detail,
    )
    .await;
    Ok(())
}
