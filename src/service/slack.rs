//! Slack connections: validate, check the pasted bot token with `auth.test`
//! (which names the workspace and bot), seal the secrets and store them.
//! The same rules as NAVER WORKS connections: every problem at once, no
//! value echoed, secrets sealed with AAD naming the connection.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::connections::{
    auth_header, client_id, client_secret, refuse_foreign, seal_secrets, store_new, ConnectionBody,
    Fields,
};
use crate::channels::slack::{api, Details, DEFAULT_RATE_LIMIT_PER_MINUTE};
use crate::channels::{Channel, Sent};
use crate::domain::ids::{ConnectionId, PublicId};
use crate::domain::naverworks::{parse_rate_limit, parse_secret};
use crate::domain::{now_millis, FieldError};
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
    let mut list: Vec<&str> = Vec::new();
    for scope in text.split([',', ' ']).filter(|s| !s.is_empty()) {
        let ok = scope.len() <= 64
            && scope
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b":._".contains(&b));
        if !ok {
            return Err(bad());
        }
        if !list.contains(&scope) {
            list.push(scope);
        }
    }
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

/// `auth.test` for a pasted token: who it is, or the field error / upstream
/// failure to answer with.
async fn identify(state: &AppState, token: &SecretString) -> Result<api::Identity, ApiError> {
    match api::auth_test(
        &state.http,
        &state.settings.slack_api_url,
        token,
        AUTH_TEST_TIMEOUT,
    )
    .await
    {
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

pub async fn create(
    state: &AppState,
    tenant: &TenantRecord,
    body: &ConnectionBody,
) -> Result<ConnectionRecord, ApiError> {
    let mut f = Fields::default();
    refuse_foreign(&mut f, body, Channel::Slack);
    let signing = f.required("signing_secret", &body.signing_secret, signing_secret);
    let token = f.optional(&body.bot_token, bot_token);
    let client = f.optional(&body.client_id, client_id);
    let secret = f.optional(&body.client_secret, client_secret);
    let scope = f.optional(&body.scopes, scopes);
    let rate = f.optional(&body.rate_limit_per_minute, parse_rate_limit);
    let ack = f.optional(&body.command_ack_text, ack_text);
    let header = f.optional(&body.auth_header, auth_header);
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
    let (Some(signing), true) = (signing, f.errors.is_empty()) else {
        return Err(ApiError::Validation(f.errors));
    };
    let identity = match &token {
        Some(token) => Some(identify(state, token).await?),
        None => None,
    };
    let now = now_millis();
    let bot_id = match (&identity, &client) {
        (Some(i), _) if !i.bot_id.is_empty() => i.bot_id.clone(),
        (Some(i), _) => format!("user:{}", i.bot_user_id),
        (None, Some(client)) => format!("app:{client}"),
        (None, None) => unreachable_bot(),
    };
    let details = Details {
        identity,
        command_ack_text: ack.filter(|t| !t.is_empty()),
    };
    let record = ConnectionRecord {
        id: ConnectionId::generate(),
        tenant_id: tenant.id.clone(),
        public_id: PublicId::generate(),
        channel: Channel::Slack.name().to_owned(),
        bot_id,
        client_id: client.unwrap_or_default(),
        service_account: String::new(),
        scope: scope.unwrap_or_else(|| DEFAULT_SCOPES.to_owned()),
        rate_limit_per_minute: i64::from(rate.unwrap_or(DEFAULT_RATE_LIMIT_PER_MINUTE)),
        private_key_info: String::new(),
        auth_header_hash: header.as_ref().map(hash_salted).unwrap_or_default(),
        details: serde_json::to_string(&details).unwrap_or_else(|_| "{}".into()),
        created_at: now,
        updated_at: now,
    };
    let sealed = seal_secrets(
        state,
        &tenant.id,
        &record.id,
        [
            (field::SIGNING_SECRET, Some(&signing)),
            (field::BOT_TOKEN, token.as_ref()),
            (field::CLIENT_SECRET, secret.as_ref()),
        ],
    );
    store_new(state, &record, &sealed).await?;
    Ok(record)
}

/// Validation guarantees a bot token or a client id.
fn unreachable_bot() -> String {
    "unknown".to_owned()
}

pub async fn update(
    state: &AppState,
    current: &ConnectionRecord,
    body: &ConnectionBody,
) -> Result<ConnectionRecord, ApiError> {
    let mut f = Fields::default();
    refuse_foreign(&mut f, body, Channel::Slack);
    if body.channel.is_some() {
        f.errors.push(FieldError::new(
            "channel",
            "cannot be changed; create a new connection",
        ));
    }
    let signing = f.optional(&body.signing_secret, signing_secret);
    let token = f.optional(&body.bot_token, bot_token);
    let client = f.optional(&body.client_id, client_id);
    let secret = f.optional(&body.client_secret, client_secret);
    let scope = f.optional(&body.scopes, scopes);
    let rate = f.optional(&body.rate_limit_per_minute, parse_rate_limit);
    let ack = f.optional(&body.command_ack_text, ack_text);
    let header = f.optional(&body.auth_header, auth_header);
    if !f.errors.is_empty() {
        return Err(ApiError::Validation(f.errors));
    }
    let mut details = Details::of(current);
    let mut changed_details = false;
    if let Some(token) = &token {
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
    if let Some(ack) = ack {
        details.command_ack_text = Some(ack).filter(|t| !t.is_empty());
        changed_details = true;
    }
    let sealed = seal_secrets(
        state,
        &current.tenant_id,
        &current.id,
        [
            (field::SIGNING_SECRET, signing.as_ref()),
            (field::BOT_TOKEN, token.as_ref()),
            (field::CLIENT_SECRET, secret.as_ref()),
        ],
    );
    let update = ConnectionUpdate {
        client_id: client,
        scope,
        rate_limit_per_minute: rate.map(i64::from),
        auth_header_hash: header.as_ref().map(hash_salted),
        details: changed_details
            .then(|| serde_json::to_string(&details).unwrap_or_else(|_| "{}".into())),
        ..ConnectionUpdate::default()
    };
    let nothing = sealed.is_empty()
        && update.client_id.is_none()
        && update.scope.is_none()
        && update.rate_limit_per_minute.is_none()
        && update.auth_header_hash.is_none()
        && update.details.is_none();
    if nothing {
        return Err(ApiError::validation("body", "names no field to change"));
    }
    state
        .store
        .update_connection(
            &current.tenant_id,
            &current.id,
            &update,
            &sealed,
            false,
            now_millis(),
        )
        .await?
        .ok_or(ApiError::NotFound("no such connection"))
}

/// `POST …/test` for Slack: the stored secrets decrypt, and `auth.test`
/// with the bot token names the workspace and bot.
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
    let Some(token) = token else {
        checks.push(check(
            "token",
            false,
            Some("no_bot_token"),
            "No bot token is stored: paste one, or install the app into a workspace.",
        ));
        return checks;
    };
    match api::auth_test(
        &state.http,
        &state.settings.slack_api_url,
        &token,
        AUTH_TEST_TIMEOUT,
    )
    .await
    {
        Ok(identity) => checks.push(check(
            "token",
            true,
            None,
            format!(
                "Slack's auth.test accepts the bot token: workspace {} ({}), bot {}.",
                identity.team, identity.team_id, identity.bot_id
            ),
        )),
        Err(Sent::CredentialsRefused(e) | Sent::Rejected(e)) => checks.push(check(
            "token",
            false,
            Some("slack_token_refused"),
            format!("{e}. Reinstall the app or paste a new bot token."),
        )),
        Err(_) => checks.push(check(
            "token",
            false,
            Some("slack_unavailable"),
            "Slack's auth.test could not be reached. Try again in a moment.",
        )),
    }
    checks
}
