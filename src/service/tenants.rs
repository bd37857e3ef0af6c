//! Tenants: create one (its API key shown once, stored as a hash), set its
//! engine (validated, the HMAC secret sealed), and the public views. The
//! JSON API, the console and `botgate tenant create` call these.

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::ids::TenantId;
use crate::domain::tenant::{EngineConfig, TenantName};
use crate::domain::{now_millis, rfc3339};
use crate::error::ApiError;
use crate::secrets::hashing::{generate_token, hash_token, API_KEY_PREFIX};
use crate::secrets::mask::mask;
use crate::secrets::Aad;
use crate::state::AppState;
use crate::store::{field, NewTenant, Store, StoreError, TenantRecord};

/// The tenant name in a request body: required, a string, a valid name.
pub fn parse_name(name: Option<&Value>) -> Result<TenantName, ApiError> {
    match name {
        Some(Value::String(name)) => {
            TenantName::parse(name).map_err(|e| ApiError::Validation(vec![e]))
        }
        Some(_) => Err(ApiError::validation("name", "must be a string")),
        None => Err(ApiError::validation("name", "is required")),
    }
}

/// Creates a tenant; the API key is returned once and stored only as a hash.
/// Shared by the API, the console and `botgate tenant create`.
pub async fn create(
    store: &Store,
    name: &TenantName,
) -> Result<(TenantRecord, secrecy::SecretString), StoreError> {
    let api_key = generate_token(API_KEY_PREFIX);
    let record = store
        .create_tenant(&NewTenant {
            id: TenantId::generate(),
            name: name.as_str().to_owned(),
            api_key_hash: hash_token(api_key.expose_secret()),
            now: now_millis(),
        })
        .await?;
    Ok((record, api_key))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EngineBody {
    /// `echo`, `http` or `rasa`.
    #[schema(value_type = Option<String>, example = "http")]
    pub kind: Option<Value>,
    /// The engine's URL (http, rasa).
    #[schema(value_type = Option<String>, example = "https://engine.example.com/botgate")]
    pub url: Option<Value>,
    /// The http engine's HMAC secret.
    #[schema(value_type = Option<String>)]
    pub secret: Option<Value>,
    /// Sent to the user when an event is dead-lettered because the engine
    /// stayed down; absent or null for none.
    #[schema(value_type = Option<String>)]
    pub fallback_text: Option<Value>,
}

/// Validates and stores a tenant's engine settings.
pub async fn set_engine(
    state: &AppState,
    tenant: &TenantRecord,
    body: &EngineBody,
) -> Result<TenantRecord, ApiError> {
    let engine = EngineConfig::parse(body.kind.as_ref(), body.url.as_ref(), body.secret.as_ref())
        .map_err(ApiError::Validation)?;
    // An address the outbound policy refuses is refused now, with the
    // reason; a name is checked again at every call, where it resolves.
    if let Some(url) = engine.url() {
        state
            .outbound
            .policy()
            .check_url(url.as_str())
            .map_err(|refused| ApiError::validation("url", refused.to_string()))?;
    }
    let fallback = match &body.fallback_text {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if !t.trim().is_empty() && t.chars().count() <= 2000 => {
            Some(t.trim().to_owned())
        }
        Some(_) => {
            return Err(ApiError::validation(
                "fallback_text",
                "must be a text of 1 to 2000 characters",
            ))
        }
    };
    let sealed = engine
        .secret()
        .map(|secret| state.vault.seal(secret, engine_aad(&tenant.id)));
    let updated = state
        .store
        .set_engine(
            &tenant.id,
            engine.kind(),
            engine.url().map(|u| u.as_str()),
            sealed.as_ref(),
            fallback.as_deref(),
            now_millis(),
        )
        .await?
        .ok_or(ApiError::NotFound("no such tenant"))?;
    Ok(updated)
}

fn engine_aad(tenant: &TenantId) -> Aad<'_> {
    Aad {
        tenant: tenant.as_str(),
        connection: None,
        field: field::ENGINE_SECRET,
    }
}

/// A tenant's engine as the API shows it: the HMAC secret masked.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EngineView {
    /// `echo`, `http` or `rasa`.
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Sent to the user when an event is dead-lettered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_text: Option<String>,
    /// The http engine's HMAC secret, masked (`…a1b2`; `!unreadable` if it
    /// does not decrypt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TenantView {
    pub id: String,
    pub name: String,
    pub engine: EngineView,
    /// RFC 3339.
    pub created_at: String,
    pub updated_at: String,
}

pub async fn engine_view(state: &AppState, tenant: &TenantRecord) -> Result<EngineView, ApiError> {
    let secret = if tenant.engine_kind == "http" {
        let secrets = state.store.secrets(tenant.id.as_str()).await?;
        let masked = secrets
            .iter()
            .find(|s| s.field == field::ENGINE_SECRET)
            .and_then(|s| state.vault.open_str(&s.sealed, s.aad()).ok())
            .map_or_else(|| "!unreadable".to_owned(), |s| mask(s.expose_secret()));
        Some(masked)
    } else {
        None
    };
    Ok(EngineView {
        kind: tenant.engine_kind.clone(),
        url: tenant.engine_url.clone(),
        fallback_text: tenant.fallback_text.clone(),
        secret,
    })
}

pub async fn view(state: &AppState, tenant: &TenantRecord) -> Result<TenantView, ApiError> {
    Ok(TenantView {
        id: tenant.id.as_str().to_owned(),
        name: tenant.name.clone(),
        engine: engine_view(state, tenant).await?,
        created_at: rfc3339(tenant.created_at),
        updated_at: rfc3339(tenant.updated_at),
    })
}
