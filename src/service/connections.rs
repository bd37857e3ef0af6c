//! Connections: validate, seal and store a NAVER WORKS bot's credentials,
//! rotate them, remove them, and the public view of one (secrets masked,
//! the URLs to paste). The JSON API and the console both call these, so
//! they share every rule.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};

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
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConnectionBody {
    pub channel: Option<Value>,
    pub bot_id: Option<Value>,
    pub client_id: Option<Value>,
    pub client_secret: Option<Value>,
    pub service_account: Option<Value>,
    pub private_key: Option<Value>,
    pub bot_secret: Option<Value>,
    pub auth_header: Option<Value>,
    pub scope: Option<Value>,
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

/// The public view: plain ids, masked secrets, and the URLs to paste.
pub async fn view(state: &AppState, c: &ConnectionRecord) -> Result<Value, ApiError> {
    let mut masked = json!({});
    let mut unreadable = Vec::new();
    for secret in state.store.secrets(c.id.as_str()).await? {
        if secret.field == field::PRIVATE_KEY {
            continue; // shown by size and fingerprint, never decrypted here
        }
        match state.vault.open_str(&secret.sealed, secret.aad()) {
            Ok(plain) => masked[&secret.field] = json!(mask(plain.expose_secret())),
            Err(e) => {
                tracing::error!(connection_id = %c.id, field = %secret.field, error.message = %e, "stored secret does not decrypt");
                unreadable.push(secret.field.clone());
            }
        }
    }
    let public = c.public_id.as_str();
    let mut view = json!({
        "id": c.id.as_str(),
        "tenant_id": c.tenant_id.as_str(),
        "channel": c.channel,
        "bot_id": c.bot_id,
        "client_id": c.client_id,
        "client_secret": masked.get(field::CLIENT_SECRET),
        "service_account": c.service_account,
        "private_key": c.private_key_info,
        "bot_secret": masked.get(field::BOT_SECRET),
        "auth_header": "****",
        "scope": c.scope,
        "rate_limit_per_minute": c.rate_limit_per_minute,
        "webhook_url": state.settings.public_link(&format!("webhooks/naverworks/{public}")),
        "auth_url": state.settings.public_link(&format!("auth/naverworks/{public}")),
        "auth_refresh_url": state.settings.public_link(&format!("auth/naverworks/{public}/refresh")),
        "created_at": rfc3339(c.created_at),
        "updated_at": rfc3339(c.updated_at),
    });
    if !unreadable.is_empty() {
        // Re-entering the value with PATCH repairs it.
        view["unreadable_secrets"] = json!(unreadable);
    }
    Ok(view)
}
