//! Connections: validate, seal and store a NAVER WORKS bot's credentials,
//! rotate them, remove them, and the public view of one (secrets masked,
//! the URLs to paste). The JSON API and the console both call these, so
//! they share every rule.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::ids::{ConnectionId, PublicId, TenantId};
use crate::domain::naverworks::{
    parse_rate_limit, parse_scope, parse_secret, parse_service_account, parse_text, BotId, Charset,
    PrivateKeyPem, DEFAULT_RATE_LIMIT_PER_MINUTE, DEFAULT_SCOPE,
};
use crate::domain::{now_millis, rfc3339, FieldError};
use crate::error::ApiError;
use crate::secrets::hashing::hash_salted;
use crate::secrets::mask::mask;
use crate::secrets::{Aad, Sealed};
use crate::state::AppState;
use crate::store::{field, ConnectionRecord, ConnectionUpdate, TenantRecord};

pub const CHANNEL_NAVERWORKS: &str = "naverworks";

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
    /// Space-separated OAuth scopes (default `bot`).
    #[schema(value_type = Option<String>, example = "bot")]
    pub scope: Option<Value>,
    #[schema(value_type = Option<i64>, example = 240)]
    pub rate_limit_per_minute: Option<Value>,
}

/// Collects field errors while parsing.
#[derive(Default)]
struct Fields {
    errors: Vec<FieldError>,
}

impl Fields {
    /// Parses a present, non-null value; `None` if absent or invalid.
    fn optional<T>(
        &mut self,
        value: &Option<Value>,
        parse: impl FnOnce(&Value) -> Result<T, FieldError>,
    ) -> Option<T> {
        match value {
            None | Some(Value::Null) => None,
            Some(v) => parse(v).map_err(|e| self.errors.push(e)).ok(),
        }
    }

    fn required<T>(
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

fn client_id(v: &Value) -> Result<String, FieldError> {
    parse_text("client_id", v, 1, 128, Charset::Id)
}
fn client_secret(v: &Value) -> Result<SecretString, FieldError> {
    parse_secret("client_secret", v, 1, 256)
}
fn bot_secret(v: &Value) -> Result<SecretString, FieldError> {
    parse_secret("bot_secret", v, 1, 256)
}
/// Chosen by people and checked on every token request: at least 16
/// characters, stored salted and hashed.
fn auth_header(v: &Value) -> Result<SecretString, FieldError> {
    parse_secret("auth_header", v, 16, 256)
}
fn private_key(v: &Value) -> Result<PrivateKeyPem, FieldError> {
    let Value::String(text) = v else {
        return Err(FieldError::new(
            "private_key",
            "must be a string holding the PEM key file",
        ));
    };
    if text.len() > 16 * 1024 {
        return Err(FieldError::new(
            "private_key",
            "is too long for an RSA private key",
        ));
    }
    PrivateKeyPem::parse(text).map_err(|m| FieldError::new("private_key", m))
}

/// The three secrets botgate can read back, sealed for one connection.
fn seal_secrets(
    state: &AppState,
    tenant: &TenantId,
    connection: &ConnectionId,
    values: [(&'static str, Option<&SecretString>); 3],
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

/// Validates a new connection (every problem at once), seals its secrets and
/// stores it.
pub async fn create(
    state: &AppState,
    tenant: &TenantRecord,
    body: &ConnectionBody,
) -> Result<ConnectionRecord, ApiError> {
    let mut f = Fields::default();
    f.optional(&body.channel, |v| match v {
        Value::String(s) if s == CHANNEL_NAVERWORKS => Ok(()),
        _ => Err(FieldError::new(
            "channel",
            "must be \"naverworks\" (the only channel so far)",
        )),
    });
    let bot_id = f.required("bot_id", &body.bot_id, |v| BotId::parse("bot_id", v));
    let client_id = f.required("client_id", &body.client_id, client_id);
    let client_secret = f.required("client_secret", &body.client_secret, client_secret);
    let service_account = f.required(
        "service_account",
        &body.service_account,
        parse_service_account,
    );
    let private_key = f.required("private_key", &body.private_key, private_key);
    let bot_secret = f.required("bot_secret", &body.bot_secret, bot_secret);
    let auth_header = f.required("auth_header", &body.auth_header, auth_header);
    let scope = f.optional(&body.scope, parse_scope);
    let rate_limit = f.optional(&body.rate_limit_per_minute, parse_rate_limit);
    let (
        Some(bot_id),
        Some(client_id),
        Some(client_secret),
        Some(service_account),
        Some(private_key),
        Some(bot_secret),
        Some(auth_header),
        true,
    ) = (
        bot_id,
        client_id,
        client_secret,
        service_account,
        private_key,
        bot_secret,
        auth_header,
        f.errors.is_empty(),
    )
    else {
        return Err(ApiError::Validation(f.errors));
    };

    let now = now_millis();
    let record = ConnectionRecord {
        id: ConnectionId::generate(),
        tenant_id: tenant.id.clone(),
        public_id: PublicId::generate(),
        channel: CHANNEL_NAVERWORKS.to_owned(),
        bot_id: bot_id.as_str().to_owned(),
        client_id,
        service_account,
        scope: scope.unwrap_or_else(|| DEFAULT_SCOPE.to_owned()),
        rate_limit_per_minute: i64::from(rate_limit.unwrap_or(DEFAULT_RATE_LIMIT_PER_MINUTE)),
        private_key_info: private_key.description(),
        auth_header_hash: hash_salted(&auth_header),
        created_at: now,
        updated_at: now,
    };
    let sealed = seal_secrets(
        state,
        &tenant.id,
        &record.id,
        [
            (field::CLIENT_SECRET, Some(&client_secret)),
            (field::PRIVATE_KEY, Some(private_key.pem())),
            (field::BOT_SECRET, Some(&bot_secret)),
        ],
    );
    state
        .store
        .create_connection(&record, &sealed)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict(_) => ApiError::Conflict(format!(
                "this tenant already has a connection for bot {}",
                record.bot_id
            )),
            other => other.into(),
        })?;
    tracing::info!(tenant_id = %tenant.id, connection_id = %record.id, "connection created");
    Ok(record)
}

/// Applies the fields present in `body` (credential rotation).
pub async fn update(
    state: &AppState,
    current: &ConnectionRecord,
    body: &ConnectionBody,
) -> Result<ConnectionRecord, ApiError> {
    let mut f = Fields::default();
    if body.channel.is_some() {
        f.errors.push(FieldError::new(
            "channel",
            "cannot be changed; create a new connection",
        ));
    }
    if body.bot_id.is_some() {
        f.errors.push(FieldError::new(
            "bot_id",
            "cannot be changed; create a new connection",
        ));
    }
    let client_id = f.optional(&body.client_id, client_id);
    let client_secret = f.optional(&body.client_secret, client_secret);
    let service_account = f.optional(&body.service_account, parse_service_account);
    let private_key = f.optional(&body.private_key, private_key);
    let bot_secret = f.optional(&body.bot_secret, bot_secret);
    let auth_header = f.optional(&body.auth_header, auth_header);
    let scope = f.optional(&body.scope, parse_scope);
    let rate_limit = f.optional(&body.rate_limit_per_minute, parse_rate_limit);
    if !f.errors.is_empty() {
        return Err(ApiError::Validation(f.errors));
    }
    let update = ConnectionUpdate {
        client_id,
        service_account,
        scope,
        rate_limit_per_minute: rate_limit.map(i64::from),
        private_key_info: private_key.as_ref().map(PrivateKeyPem::description),
        auth_header_hash: auth_header.as_ref().map(hash_salted),
    };
    let sealed = seal_secrets(
        state,
        &current.tenant_id,
        &current.id,
        [
            (field::CLIENT_SECRET, client_secret.as_ref()),
            (
                field::PRIVATE_KEY,
                private_key.as_ref().map(PrivateKeyPem::pem),
            ),
            (field::BOT_SECRET, bot_secret.as_ref()),
        ],
    );
    let nothing = sealed.is_empty()
        && update.client_id.is_none()
        && update.service_account.is_none()
        && update.scope.is_none()
        && update.rate_limit_per_minute.is_none()
        && update.auth_header_hash.is_none();
    if nothing {
        return Err(ApiError::validation("body", "names no field to change"));
    }
    // New credentials make the stored tokens stale: every replica drops them.
    let discard_tokens = update.client_id.is_some()
        || update.service_account.is_some()
        || update.scope.is_some()
        || client_secret.is_some()
        || private_key.is_some();
    let record = state
        .store
        .update_connection(
            &current.tenant_id,
            &current.id,
            &update,
            &sealed,
            discard_tokens,
            now_millis(),
        )
        .await?
        .ok_or(ApiError::NotFound("no such connection"))?;
    tracing::info!(tenant_id = %record.tenant_id, connection_id = %record.id, "connection updated");
    Ok(record)
}

/// Removes a connection with its secrets, tokens and queues.
pub async fn delete(state: &AppState, record: &ConnectionRecord) -> Result<(), ApiError> {
    if !state
        .store
        .delete_connection(&record.tenant_id, &record.id)
        .await?
    {
        return Err(ApiError::NotFound("no such connection"));
    }
    tracing::info!(tenant_id = %record.tenant_id, connection_id = %record.id, "connection deleted");
    Ok(())
}

/// The public view of a connection: plain ids, masked secrets, and the URLs
/// to paste.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConnectionView {
    pub id: String,
    pub tenant_id: String,
    /// `naverworks`.
    pub channel: String,
    pub bot_id: String,
    pub client_id: String,
    /// Masked (`…a1b2`); null if it does not decrypt.
    pub client_secret: Option<String>,
    pub service_account: String,
    /// The private key's size and public-key fingerprint; never the key.
    pub private_key: String,
    /// Masked; null if it does not decrypt.
    pub bot_secret: Option<String>,
    /// Always `****`: stored only as a salted hash.
    pub auth_header: &'static str,
    pub scope: String,
    pub rate_limit_per_minute: i64,
    /// The Callback URL to paste into the NAVER WORKS Developer Console.
    pub webhook_url: String,
    /// Where internal services read the bot's token (`DANBEE-NAVERWORKS-AUTH`).
    pub auth_url: String,
    pub auth_refresh_url: String,
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
    let mut client_secret = None;
    let mut bot_secret = None;
    let mut unreadable = Vec::new();
    for secret in state.store.secrets(c.id.as_str()).await? {
        if secret.field == field::PRIVATE_KEY {
            continue; // shown by size and fingerprint, never decrypted here
        }
        match state.vault.open_str(&secret.sealed, secret.aad()) {
            Ok(plain) => match secret.field.as_str() {
                field::CLIENT_SECRET => client_secret = Some(mask(plain.expose_secret())),
                field::BOT_SECRET => bot_secret = Some(mask(plain.expose_secret())),
                _ => {}
            },
            Err(e) => {
                tracing::error!(connection_id = %c.id, field = %secret.field, error.message = %e, "stored secret does not decrypt");
                unreadable.push(secret.field.clone());
            }
        }
    }
    let public = c.public_id.as_str();
    let link = |path: String| state.settings.public_link(&path);
    Ok(ConnectionView {
        id: c.id.as_str().to_owned(),
        tenant_id: c.tenant_id.as_str().to_owned(),
        channel: c.channel.clone(),
        bot_id: c.bot_id.clone(),
        client_id: c.client_id.clone(),
        client_secret,
        service_account: c.service_account.clone(),
        private_key: c.private_key_info.clone(),
        bot_secret,
        auth_header: "****",
        scope: c.scope.clone(),
        rate_limit_per_minute: c.rate_limit_per_minute,
        webhook_url: link(format!("webhooks/naverworks/{public}")),
        auth_url: link(format!("auth/naverworks/{public}")),
        auth_refresh_url: link(format!("auth/naverworks/{public}/refresh")),
        created_at: rfc3339(c.created_at),
        updated_at: rfc3339(c.updated_at),
        unreadable_secrets: unreadable,
    })
}
