//! NAVER WORKS connections: validate a bot's credentials (a service account
//! and its private key, or a member's consent for `auth_mode: "user"`), seal
//! the secrets and store them; rotate them. The same rules as Slack's
//! (`service::slack`): every problem at once, no value echoed, secrets
//! sealed with AAD naming the connection.

use secrecy::SecretString;
use serde_json::Value;

use super::connections::{
    apply, auth_header, auth_networks, client_id, client_secret, seal_secrets, store_new,
    ConnectionBody, Fields,
};
use crate::channels::Channel;
use crate::domain::ids::{ConnectionId, PublicId};
use crate::domain::naverworks::{
    parse_rate_limit, parse_scope, parse_secret, parse_service_account, AuthMode, BotId,
    PrivateKeyPem, DEFAULT_RATE_LIMIT_PER_MINUTE, DEFAULT_SCOPE,
};
use crate::domain::{now_millis, FieldError};
use crate::error::ApiError;
use crate::secrets::hashing::hash_salted;
use crate::state::AppState;
use crate::store::{field, ConnectionRecord, ConnectionUpdate, TenantRecord};

fn bot_secret(v: &Value) -> Result<SecretString, FieldError> {
    parse_secret("bot_secret", v, 1, 256)
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

/// Validates a new NAVER WORKS connection (every problem at once), seals
/// its secrets and stores it.
pub(super) async fn create(
    state: &AppState,
    tenant: &TenantRecord,
    body: &ConnectionBody,
) -> Result<ConnectionRecord, ApiError> {
    let mut f = Fields::for_channel(body, Channel::NaverWorks);
    let mode = f
        .optional(&body.auth_mode, AuthMode::parse)
        .unwrap_or_default();
    let bot_id = f.required("bot_id", &body.bot_id, |v| BotId::parse("bot_id", v));
    let client_id = f.required("client_id", &body.client_id, client_id);
    let client_secret = f.required("client_secret", &body.client_secret, client_secret);
    // A user-account connection's tokens come from a person's consent.
    let (service_account, private_key) = if mode == AuthMode::User {
        refuse_service_account(&mut f, body);
        (Some(String::new()), Some(None))
    } else {
        (
            f.required(
                "service_account",
                &body.service_account,
                parse_service_account,
            ),
            f.required("private_key", &body.private_key, private_key)
                .map(Some),
        )
    };
    let bot_secret = f.required("bot_secret", &body.bot_secret, bot_secret);
    let auth_header = f.required("auth_header", &body.auth_header, auth_header);
    let networks = f.optional(&body.auth_networks, auth_networks);
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
        channel: Channel::NaverWorks.name().to_owned(),
        bot_id: bot_id.as_str().to_owned(),
        client_id,
        service_account,
        scope: scope.unwrap_or_else(|| DEFAULT_SCOPE.to_owned()),
        rate_limit_per_minute: i64::from(rate_limit.unwrap_or(DEFAULT_RATE_LIMIT_PER_MINUTE)),
        private_key_info: private_key
            .as_ref()
            .map(PrivateKeyPem::description)
            .unwrap_or_default(),
        auth_header_hash: hash_salted(&auth_header),
        details: mode.details(),
        created_at: now,
        updated_at: now,
        auth_networks: networks.unwrap_or_default(),
    };
    let sealed = seal_secrets(
        state,
        &tenant.id,
        &record.id,
        [
            (field::CLIENT_SECRET, Some(&client_secret)),
            (
                field::PRIVATE_KEY,
                private_key.as_ref().map(PrivateKeyPem::pem),
            ),
            (field::BOT_SECRET, Some(&bot_secret)),
        ],
    );
    store_new(state, &record, &sealed).await?;
    Ok(record)
}

/// Applies the fields present in `body` to a NAVER WORKS connection
/// (credential rotation).
pub(super) async fn update(
    state: &AppState,
    current: &ConnectionRecord,
    body: &ConnectionBody,
) -> Result<ConnectionRecord, ApiError> {
    let mut f = Fields::for_channel(body, Channel::NaverWorks);
    f.refuse(
        &[
            ("bot_id", body.bot_id.is_some()),
            ("auth_mode", body.auth_mode.is_some()),
        ],
        "cannot be changed; create a new connection",
    );
    let mode = AuthMode::of_details(&current.details);
    if mode == AuthMode::User {
        refuse_service_account(&mut f, body);
    }
    let client_id = f.optional(&body.client_id, client_id);
    let client_secret = f.optional(&body.client_secret, client_secret);
    let service_account = f.optional(&body.service_account, parse_service_account);
    let private_key = f.optional(&body.private_key, private_key);
    let bot_secret = f.optional(&body.bot_secret, bot_secret);
    let auth_header = f.optional(&body.auth_header, auth_header);
    let networks = f.optional(&body.auth_networks, auth_networks);
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
        details: None,
        auth_networks: networks,
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
    // New credentials make the stored tokens stale: every replica drops them.
    // A person's tokens belong to the app and its scopes, not to the secret:
    // a new Client Secret keeps them (a new app or scope needs a new consent).
    let discard_tokens = update.client_id.is_some()
        || update.service_account.is_some()
        || update.scope.is_some()
        || (mode == AuthMode::ServiceAccount && client_secret.is_some())
        || private_key.is_some();
    apply(state, current, &update, &sealed, discard_tokens).await
}

/// A user-account connection has no service account or private key.
fn refuse_service_account(f: &mut Fields, body: &ConnectionBody) {
    f.refuse(
        &[
            ("service_account", body.service_account.is_some()),
            ("private_key", body.private_key.is_some()),
        ],
        "is not used when auth_mode is \"user\": a NAVER WORKS member authorises the bot instead",
    );
}
