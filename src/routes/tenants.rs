//! `POST /api/v1/tenants`, `GET /api/v1/tenants/{tenant}`,
//! `PUT /api/v1/tenants/{tenant}/engine`.

use actix_web::{web, HttpResponse};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::Caller;
use crate::domain::ids::TenantId;
use crate::domain::tenant::{EngineConfig, TenantName};
use crate::domain::{now_millis, rfc3339};
use crate::error::ApiError;
use crate::secrets::hashing::{generate_token, hash_token, API_KEY_PREFIX};
use crate::secrets::mask::mask;
use crate::secrets::Aad;
use crate::startup::AppState;
use crate::store::{field, NewTenant, Store, StoreError, TenantRecord};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantBody {
    name: Option<Value>,
}

pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<CreateTenantBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let name = match &body.name {
        Some(Value::String(name)) => {
            TenantName::parse(name).map_err(|e| ApiError::Validation(vec![e]))?
        }
        Some(_) => return Err(ApiError::validation("name", "must be a string")),
        None => return Err(ApiError::validation("name", "is required")),
    };
    let (tenant, api_key) = create_tenant(&state.store, &name).await?;
    let mut view = tenant_view(&state, &tenant).await?;
    view["api_key"] = json!(api_key.expose_secret());
    Ok(HttpResponse::Created().json(view))
}

/// Creates a tenant; the API key is returned once and stored only as a hash.
/// Shared by the API and `botgate tenant create`.
pub async fn create_tenant(
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

pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant(&state, &path).await?;
    Ok(HttpResponse::Ok().json(tenant_view(&state, &tenant).await?))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EngineBody {
    pub kind: Option<Value>,
    pub url: Option<Value>,
    pub secret: Option<Value>,
    /// Sent to the user when an event is dead-lettered because the engine
    /// stayed down; absent or null for none.
    pub fallback_text: Option<Value>,
}

pub async fn set_engine(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<EngineBody>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant(&state, &path).await?;
    let updated = apply_engine(&state, &tenant, &body).await?;
    Ok(HttpResponse::Ok().json(engine_view(&state, &updated).await?))
}

/// Validates and stores a tenant's engine settings. Shared by the API and
/// the console.
pub async fn apply_engine(
    state: &AppState,
    tenant: &TenantRecord,
    body: &EngineBody,
) -> Result<TenantRecord, ApiError> {
    let engine = EngineConfig::parse(body.kind.as_ref(), body.url.as_ref(), body.secret.as_ref())
        .map_err(ApiError::Validation)?;
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

pub async fn engine_view(state: &AppState, tenant: &TenantRecord) -> Result<Value, ApiError> {
    let mut view = json!({"kind": tenant.engine_kind});
    if let Some(url) = &tenant.engine_url {
        view["url"] = json!(url);
    }
    if let Some(text) = &tenant.fallback_text {
        view["fallback_text"] = json!(text);
    }
    if tenant.engine_kind == "http" {
        let secrets = state.store.secrets(tenant.id.as_str()).await?;
        let masked = secrets
            .iter()
            .find(|s| s.field == field::ENGINE_SECRET)
            .and_then(|s| state.vault.open_str(&s.sealed, s.aad()).ok())
            .map_or_else(|| "!unreadable".to_owned(), |s| mask(s.expose_secret()));
        view["secret"] = json!(masked);
    }
    Ok(view)
}

async fn tenant_view(state: &AppState, tenant: &TenantRecord) -> Result<Value, ApiError> {
    Ok(json!({
        "id": tenant.id.as_str(),
        "name": tenant.name,
        "engine": engine_view(state, tenant).await?,
        "created_at": rfc3339(tenant.created_at),
        "updated_at": rfc3339(tenant.updated_at),
    }))
}
