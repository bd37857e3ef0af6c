//! Connections of every channel: the request body, create and update (each
//! channel's own rules in `service::naverworks` and `service::slack`),
//! delete, and the public view of one (secrets masked, the URLs to paste).
//! The JSON API and the console both call these, so they share every rule.

use super::activity::{self, Actor};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::oauth;
use crate::channels::Channel;
use crate::domain::ids::{ConnectionId, PublicId, TenantId};
use crate::domain::naverworks::{parse_secret, parse_text, AuthMode, Charset};
use crate::domain::{now_millis, rfc3339, FieldError};
use crate::error::ApiError;
use crate::secrets::mask::mask;
use crate::secrets::{Aad, Sealed};
use crate::state::AppState;
use crate::store::{field, ConnectionRecord, ConnectionUpdate, TenantRecord};

/// The body of create (all credentials) and update (any subset). Every field
/// is taken as raw JSON and parsed here, so that no serde message can echo a
/// secret and every problem is reported at once.
/// The console builds the same body from its form, so both share every rule.
/// (The schema names the type each field must have; a value of another
/// type is refused with a field error, not a parse error.)
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionBody {
    /// `naverworks` (the default).
    #[schema(value_type = Option<String>, example = "naverworks")]
    pub channel: Option<Value>,
    /// NAVER WORKS: `service_account` (JWT, the default) or `user` (a
    /// member signs in and allows the app: OAuth authorization code; then
    /// no service account or private key). Cannot be changed.
    #[schema(value_type = Option<String>, example = "service_account")]
    pub auth_mode: Option<Value>,
    /// Required to create; cannot be changed.
    #[schema(value_type = Option<String>, example = "2000001")]
    pub bot_id: Option<Value>,
    #[schema(value_type = Option<String>, example = "ZbsOq6zjt0IhtZZnrc")]
    pub client_id: Option<Value>,
    #[schema(value_type = Option<String>)]
    pub client_secret: Option<Value>,
    #[schema(value_type = Option<String>, example = "1wagx.serviceaccount@example.com")]
    pub service_account: Option<Value>,
    /// The PEM key file's text.
    #[schema(value_type = Option<String>, example = "-----BEGIN PRIVATE KEY-----\n…")]
    pub private_key: Option<Value>,
    #[schema(value_type = Option<String>)]
    pub bot_secret: Option<Value>,
    /// The `DANBEE-NAVERWORKS-AUTH` value internal services will send: at
    /// least 16 characters, stored salted and hashed.
    #[schema(value_type = Option<String>)]
    pub auth_header: Option<Value>,
    /// The networks the auth URLs answer (CIDRs, at most 32); absent or
    /// `[]`: any address that presents the auth header.
    #[schema(value_type = Option<Vec<String>>, example = json!(["10.0.0.0/8"]))]
    pub auth_networks: Option<Value>,
    /// Space-separated OAuth scopes (default `bot`).
    #[schema(value_type = Option<String>, example = "bot")]
    pub scope: Option<Value>,
    #[schema(value_type = Option<i64>, example = 240)]
    pub rate_limit_per_minute: Option<Value>,
    /// Slack: the app's Signing Secret (Basic Information → App Credentials).
    #[schema(value_type = Option<String>)]
    pub signing_secret: Option<Value>,
    /// Slack: a bot token (`xoxb-…`) for one workspace (OAuth & Permissions).
    #[schema(value_type = Option<String>, example = "xoxb-…")]
    pub bot_token: Option<Value>,
    /// Slack: comma-separated bot scopes for installs.
    #[schema(value_type = Option<String>, example = "chat:write,commands,app_mentions:read")]
    pub scopes: Option<Value>,
    /// Slack: answered at once (ephemeral) to a slash command, e.g.
    /// "Working on it…"; none by default.
    #[schema(value_type = Option<String>)]
    pub command_ack_text: Option<Value>,
}

impl ConnectionBody {
    /// The fields of the channel other than `channel`, each with whether
    /// it is set.
    fn foreign_fields(&self, channel: Channel) -> Vec<(&'static str, bool)> {
        let naverworks = [
            ("auth_mode", self.auth_mode.is_some()),
            ("bot_id", self.bot_id.is_some()),
            ("service_account", self.service_account.is_some()),
            ("private_key", self.private_key.is_some()),
            ("bot_secret", self.bot_secret.is_some()),
            ("scope", self.scope.is_some()),
        ];
        let slack = [
            ("signing_secret", self.signing_secret.is_some()),
            ("bot_token", self.bot_token.is_some()),
            ("scopes", self.scopes.is_some()),
            ("command_ack_text", self.command_ack_text.is_some()),
        ];
        match channel {
            Channel::NaverWorks => slack.to_vec(),
            Channel::Slack => naverworks.to_vec(),
        }
    }
}

/// Collects field errors while parsing.
#[derive(Default)]
pub(super) struct Fields {
    pub(super) errors: Vec<FieldError>,
}

impl Fields {
    /// The problems of a body meant for `channel`, starting with the other
    /// channel's fields it sets (all of them at once).
    pub(super) fn for_channel(body: &ConnectionBody, channel: Channel) -> Self {
        let mut f = Self::default();
        let reason = format!("is not a field of {} connections", channel.name());
        f.refuse(&body.foreign_fields(channel), &reason);
        f
    }

    /// Parses a present, non-null value; `None` if absent or invalid.
    pub(super) fn optional<T>(
        &mut self,
        value: &Option<Value>,
        parse: impl FnOnce(&Value) -> Result<T, FieldError>,
    ) -> Option<T> {
        match value {
            None | Some(Value::Null) => None,
            Some(v) => parse(v).map_err(|e| self.errors.push(e)).ok(),
        }
    }

    /// Refuses, for `reason`, each of `fields` (name, set in the body) that
    /// the body sets.
    pub(super) fn refuse(&mut self, fields: &[(&str, bool)], reason: &str) {
        for (name, _) in fields.iter().filter(|(_, set)| *set) {
            self.errors.push(FieldError::new(*name, reason));
        }
    }

    pub(super) fn required<T>(
        &mut self,
        name: &str,
        value: &Option<Value>,
        parse: impl FnOnce(&Value) -> Result<T, FieldError>,
    ) -> Option<T> {
        if matches!(value, None | Some(Value::Null)) {
            self.errors.push(FieldError::new(name, "is required"));
        }
        self.optional(value, parse)
    }
}

pub(super) fn client_id(v: &Value) -> Result<String, FieldError> {
    parse_text("client_id", v, 1, 128, Charset::Id)
}
pub(super) fn client_secret(v: &Value) -> Result<SecretString, FieldError> {
    parse_secret("client_secret", v, 1, 256)
}
/// Chosen by people and checked on every token request: at least 16
/// characters, stored salted and hashed.
pub(super) fn auth_header(v: &Value) -> Result<SecretString, FieldError> {
    parse_secret("auth_header", v, 16, 256)
}

/// The networks the auth URLs answer: a list of CIDRs (`10.0.0.0/8`,
/// `::1/128`; a bare address is one host), at most 32; `[]` for any
/// address. Kept comma-separated, each as `addr/prefix`.
pub fn auth_networks(v: &Value) -> Result<String, FieldError> {
    let bad = |m: &str| FieldError::new("auth_networks", m);
    let Value::Array(items) = v else {
        return Err(bad("must be a list of networks, e.g. [\"10.0.0.0/8\"]"));
    };
    if items.len() > 32 {
        return Err(bad("lists too many networks (at most 32)"));
    }
    let networks = items
        .iter()
        .map(|item| {
            let text = item
                .as_str()
                .filter(|t| t.len() <= 64)
                .ok_or_else(|| bad("must hold networks as strings such as \"10.0.0.0/8\""))?;
            crate::outbound::Network::parse(text)
                .map(|n| n.to_string())
                .map_err(|_| bad("holds something that is not an IP network (e.g. 10.0.0.0/8)"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(networks.join(","))
}
/// The secrets botgate can read back, sealed for one connection.
pub(super) fn seal_secrets<const N: usize>(
    state: &AppState,
    tenant: &TenantId,
    connection: &ConnectionId,
    values: [(&'static str, Option<&SecretString>); N],
) -> Vec<(&'static str, Sealed)> {
    values
        .into_iter()
        .filter_map(|(name, value)| {
            let aad = Aad {
                tenant: tenant.as_str(),
                connection: Some(connection.as_str()),
                field: name,
            };
            value.map(|v| (name, state.vault.seal(v, aad)))
        })
        .collect()
}

/// The body's channel (NAVER WORKS when it names none), or the field error.
fn channel_of(body: &ConnectionBody) -> Result<Channel, ApiError> {
    match &body.channel {
        None | Some(Value::Null) => Ok(Channel::NaverWorks),
        Some(Value::String(s)) => Channel::parse(s).ok_or(()),
        Some(_) => Err(()),
    }
    .map_err(|()| ApiError::validation("channel", "must be \"naverworks\" or \"slack\""))
}

/// Validates a new connection (every problem at once), seals its secrets and
/// stores it.
pub async fn create(
    state: &AppState,
    tenant: &TenantRecord,
    body: &ConnectionBody,
    actor: &Actor,
) -> Result<ConnectionRecord, ApiError> {
    let record = match channel_of(body)? {
        Channel::NaverWorks => super::naverworks::create(state, tenant, body).await?,
        Channel::Slack => super::slack::create(state, tenant, body).await?,
    };
    tracing::info!(tenant_id = %tenant.id, connection_id = %record.id, channel = %record.channel, "connection created");
    let what = describe(&record);
    activity::record(
        &state.store,
        actor,
        &tenant.id,
        Some(&record.id),
        "connection.created",
        what,
    )
    .await;
    Ok(record)
}

/// A connection as the activity log names it: its channel and bot (or
/// app's client id).
fn describe(record: &ConnectionRecord) -> String {
    match Channel::of(record) {
        Channel::NaverWorks => format!("NAVER WORKS bot {}", record.bot_id),
        Channel::Slack if !record.client_id.is_empty() => {
            format!("Slack app {}", record.client_id)
        }
        Channel::Slack => "Slack app with a bot token".to_owned(),
    }
}

impl ConnectionBody {
    /// The names of the fields present (what an update changes).
    pub fn named(&self) -> Vec<&'static str> {
        [
            ("channel", &self.channel),
            ("auth_mode", &self.auth_mode),
            ("bot_id", &self.bot_id),
            ("client_id", &self.client_id),
            ("client_secret", &self.client_secret),
            ("service_account", &self.service_account),
            ("private_key", &self.private_key),
            ("bot_secret", &self.bot_secret),
            ("auth_header", &self.auth_header),
            ("auth_networks", &self.auth_networks),
            ("scope", &self.scope),
            ("rate_limit_per_minute", &self.rate_limit_per_minute),
            ("signing_secret", &self.signing_secret),
            ("bot_token", &self.bot_token),
            ("scopes", &self.scopes),
            ("command_ack_text", &self.command_ack_text),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.is_some().then_some(name))
        .collect()
    }
}

/// Stores a validated connection; `Conflict` names the bot already connected.
pub(super) async fn store_new(
    state: &AppState,
    record: &ConnectionRecord,
    sealed: &[(&'static str, Sealed)],
) -> Result<(), ApiError> {
    state
        .store
        .create_connection(record, sealed)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict(_) => ApiError::Conflict(format!(
                "this tenant already has a connection for bot {}",
                record.bot_id
            )),
            other => other.into(),
        })
}

/// Applies the fields present in `body` (credential rotation).
pub async fn update(
    state: &AppState,
    current: &ConnectionRecord,
    body: &ConnectionBody,
    actor: &Actor,
) -> Result<ConnectionRecord, ApiError> {
    if body.channel.is_some() {
        return Err(ApiError::validation(
            "channel",
            "cannot be changed; create a new connection",
        ));
    }
    let record = match Channel::of(current) {
        Channel::NaverWorks => super::naverworks::update(state, current, body).await?,
        Channel::Slack => super::slack::update(state, current, body).await?,
    };
    tracing::info!(tenant_id = %record.tenant_id, connection_id = %record.id, "connection updated");
    let changed = body.named().join(", ");
    activity::record(
        &state.store,
        actor,
        &record.tenant_id,
        Some(&record.id),
        "connection.updated",
        changed,
    )
    .await;
    Ok(record)
}

/// Writes a validated update (refused when it changes nothing).
pub(super) async fn apply(
    state: &AppState,
    current: &ConnectionRecord,
    update: &ConnectionUpdate,
    sealed: &[(&'static str, Sealed)],
    discard_tokens: bool,
) -> Result<ConnectionRecord, ApiError> {
    if sealed.is_empty() && update.is_empty() {
        return Err(ApiError::validation("body", "names no field to change"));
    }
    state
        .store
        .update_connection(
            &current.tenant_id,
            &current.id,
            update,
            sealed,
            discard_tokens,
            now_millis(),
        )
        .await?
        .ok_or(ApiError::NotFound("no such connection"))
}

/// Removes a connection with every row of it: secrets, tokens, queues,
/// dedup hashes, audit, installations.
pub async fn delete(
    state: &AppState,
    record: &ConnectionRecord,
    actor: &Actor,
) -> Result<(), ApiError> {
    if !state
        .store
        .purge_connection(&record.tenant_id, &record.id)
        .await?
    {
        return Err(ApiError::NotFound("no such connection"));
    }
    tracing::info!(tenant_id = %record.tenant_id, connection_id = %record.id, "connection deleted");
    let what = describe(record);
    activity::record(
        &state.store,
        actor,
        &record.tenant_id,
        Some(&record.id),
        "connection.deleted",
        what,
    )
    .await;
    Ok(())
}

/// The public view of a connection: plain ids, masked secrets, and the URLs
/// to paste. Fields of one channel are absent from the other's view; a
/// masked secret is null when it no longer decrypts.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConnectionView {
    pub id: String,
    pub tenant_id: String,
    /// `naverworks` or `slack`.
    pub channel: String,
    /// NAVER WORKS: the bot id. Slack: the bot id `auth.test` named
    /// (`B…`), or `app:<client id>` for an app installed by OAuth.
    pub bot_id: String,
    pub client_id: String,
    /// Masked (`****a1b2`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub client_secret: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// The private key's size and public-key fingerprint; never the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// Masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub bot_secret: Option<Option<String>>,
    /// Slack: masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub signing_secret: Option<Option<String>>,
    /// Slack: masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub bot_token: Option<Option<String>>,
    /// Slack: the workspace and bot of the pasted token (`auth.test`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub workspace: Option<crate::channels::slack::api::Identity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_ack_text: Option<String>,
    /// Always `****` when set: stored only as a salted hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_header: Option<&'static str>,
    /// The networks the auth URLs answer; absent: any address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_networks: Option<Vec<String>>,
    /// NAVER WORKS: space-separated OAuth scopes. Slack: comma-separated
    /// bot scopes.
    pub scope: String,
    pub rate_limit_per_minute: i64,
    /// NAVER WORKS: `service_account` or `user`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_mode: Option<&'static str>,
    /// NAVER WORKS user accounts: `not_authorized` (no one has signed in
    /// yet), `authorized`, or `needs_reauthorization` (the refresh token was
    /// refused: a member must sign in again at `authorize_url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization: Option<&'static str>,
    /// NAVER WORKS user accounts: where a member signs in and allows the
    /// bot (a redirect to NAVER WORKS' consent page).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorize_url: Option<String>,
    /// NAVER WORKS: the Callback URL to paste into the Developer Console.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// Where internal services read the bot's token with the auth header
    /// (`DANBEE-NAVERWORKS-AUTH`; for Slack also `X-Botgate-Auth`): GET.
    /// Slack, with an `auth_header`: a workspace's token, `?team=T…`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_url: Option<String>,
    /// POST: a new token (NAVER WORKS), or a rotation (Slack).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_refresh_url: Option<String>,
    /// Slack: Event Subscriptions → Request URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_url: Option<String>,
    /// Slack: Slash Commands → Request URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commands_url: Option<String>,
    /// Slack: Interactivity & Shortcuts → Request URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interactions_url: Option<String>,
    /// Slack, with a client id: the "Add to Slack" page to share.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub install_url: Option<String>,
    /// Slack, with a client id: OAuth & Permissions → Redirect URLs.
    /// NAVER WORKS user accounts: the Developer Console's Redirect URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oauth_redirect_url: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    pub updated_at: String,
    /// Secrets that no longer decrypt; re-entering them with PATCH repairs
    /// them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable_secrets: Vec<String>,
}

/// The public view: plain ids, masked secrets, and the URLs to paste.
pub async fn view(state: &AppState, c: &ConnectionRecord) -> Result<ConnectionView, ApiError> {
    let mut masked: Vec<(String, Option<String>)> = Vec::new();
    let mut unreadable = Vec::new();
    for secret in state.store.secrets(c.id.as_str()).await? {
        if matches!(
            secret.field.as_str(),
            field::PRIVATE_KEY | field::ACCESS_TOKEN | field::REFRESH_TOKEN
        ) {
            continue; // shown by size and fingerprint, or never
        }
        match state.vault.open_str(&secret.sealed, secret.aad()) {
            Ok(plain) => masked.push((secret.field.clone(), Some(mask(plain.expose_secret())))),
            Err(e) => {
                tracing::error!(connection_id = %c.id, field = %secret.field, error.message = %e, "stored secret does not decrypt");
                masked.push((secret.field.clone(), None));
                unreadable.push(secret.field.clone());
            }
        }
    }
    // Some(masked or null) for a secret the connection has.
    let secret = |name: &str| {
        masked
            .iter()
            .find(|(f, _)| f == name)
            .map(|(_, m)| m.clone())
    };
    let public = c.public_id.as_str();
    let link = |path: String| Some(state.settings.public_link(&path));
    let channel = Channel::of(c);
    let mut view = ConnectionView {
        id: c.id.as_str().to_owned(),
        tenant_id: c.tenant_id.as_str().to_owned(),
        channel: c.channel.clone(),
        bot_id: c.bot_id.clone(),
        client_id: c.client_id.clone(),
        client_secret: secret(field::CLIENT_SECRET),
        service_account: None,
        private_key: None,
        bot_secret: None,
        signing_secret: None,
        bot_token: None,
        workspace: None,
        command_ack_text: None,
        auth_header: (!c.auth_header_hash.is_empty()).then_some("****"),
        auth_networks: (!c.auth_networks.is_empty())
            .then(|| c.auth_networks.split(',').map(str::to_owned).collect()),
        scope: c.scope.clone(),
        rate_limit_per_minute: c.rate_limit_per_minute,
        auth_mode: None,
        authorization: None,
        authorize_url: None,
        webhook_url: None,
        auth_url: None,
        auth_refresh_url: None,
        events_url: None,
        commands_url: None,
        interactions_url: None,
        install_url: None,
        oauth_redirect_url: None,
        created_at: rfc3339(c.created_at),
        updated_at: rfc3339(c.updated_at),
        unreadable_secrets: unreadable,
    };
    match channel {
        Channel::NaverWorks => {
            // Always present for NAVER WORKS (null when unreadable).
            view.client_secret = Some(view.client_secret.flatten());
            let mode = AuthMode::of_details(&c.details);
            view.auth_mode = Some(mode.name());
            if mode == AuthMode::User {
                let meta = state.store.token_meta(&c.id).await?;
                view.authorization = Some(authorization(meta.as_ref()));
                view.authorize_url = link(format!("oauth/naverworks/{public}/authorize"));
                view.oauth_redirect_url = Some(oauth::naverworks_redirect_url(state));
            } else {
                view.service_account = Some(c.service_account.clone());
                view.private_key = Some(c.private_key_info.clone());
            }
            view.bot_secret = Some(secret(field::BOT_SECRET).flatten());
            view.webhook_url = link(format!("webhooks/naverworks/{public}"));
            view.auth_url = link(format!("auth/naverworks/{public}"));
            view.auth_refresh_url = link(format!("auth/naverworks/{public}/refresh"));
        }
        Channel::Slack => {
            let details = crate::channels::slack::Details::of(c);
            view.signing_secret = secret(field::SIGNING_SECRET);
            view.bot_token = secret(field::BOT_TOKEN);
            view.workspace = details.identity;
            view.command_ack_text = details.command_ack_text;
            view.events_url = link(format!("webhooks/slack/{public}/events"));
            view.commands_url = link(format!("webhooks/slack/{public}/commands"));
            view.interactions_url = link(format!("webhooks/slack/{public}/interactions"));
            // The token URLs answer only a header the connection has.
            if !c.auth_header_hash.is_empty() {
                view.auth_url = link(format!("auth/slack/{public}"));
                view.auth_refresh_url = link(format!("auth/slack/{public}/refresh"));
            }
            if !c.client_id.is_empty() {
                view.install_url = link(format!("oauth/slack/{public}/install"));
                view.oauth_redirect_url = Some(oauth::slack_redirect_url(state));
            }
        }
    }
    Ok(view)
}

/// A user-account connection's authorisation, from its token row.
pub fn authorization(meta: Option<&crate::store::TokenMeta>) -> &'static str {
    match meta {
        Some(m) if m.reauthorize_since.is_some() => "needs_reauthorization",
        Some(m) if m.token_id.is_some() => "authorized",
        _ => "not_authorized",
    }
}

/// The connection of a public URL (a webhook, an OAuth page), if it is one
/// of `channel`'s: the same 404 for an unknown id and another channel's.
pub async fn public_connection(
    state: &AppState,
    public_id: &str,
    channel: Channel,
) -> Result<ConnectionRecord, ApiError> {
    const UNKNOWN: ApiError = ApiError::NotFound("no such webhook");
    let public_id = PublicId::parse(public_id).ok_or(UNKNOWN)?;
    match state
        .store
        .connection_by_public_id(public_id.as_str())
        .await?
    {
        Some((connection, _)) if Channel::of(&connection) == channel => Ok(connection),
        _ => Err(UNKNOWN),
    }
}
