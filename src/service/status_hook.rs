//! A tenant's status hook: where the final status (delivered, failed,
//! cancelled) of each of its messages is posted, signed as engine requests
//! are. Set, removed and shown here (`PUT`/`DELETE
//! /api/v1/tenants/{tenant}/status-hook`, the tenant's view); each post is
//! made here for the worker that claims them (`worker::status_hook`).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::activity::{self, Actor};
use super::tenants::{allowed, masked_secret, open_secret, tenant_aad};
use crate::domain::tenant::StatusHook;
use crate::domain::{now_millis, rfc3339};
use crate::engine::http::signed_post;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::queue::StatusNotice;
use crate::store::{field, TenantRecord};

/// How long a hook may take to answer.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `PUT …/status-hook`'s body.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusHookBody {
    /// Where each message's final status is posted: http or https (the
    /// outbound policy applies, as to engine URLs).
    #[schema(value_type = String, example = "https://jobs.example.com/botgate/status")]
    pub url: Option<Value>,
    /// The HMAC key of each post's `X-Botgate-Signature` (16 to 512
    /// characters).
    #[schema(value_type = String)]
    pub secret: Option<Value>,
}

/// Validates and stores a tenant's status hook. Messages written from now
/// on have their final status posted to it (those already written keep
/// the choice made when they were).
pub async fn set(
    state: &AppState,
    tenant: &TenantRecord,
    body: &StatusHookBody,
    actor: &Actor,
) -> Result<TenantRecord, ApiError> {
    let hook =
        StatusHook::parse(body.url.as_ref(), body.secret.as_ref()).map_err(ApiError::Validation)?;
    allowed(state, &hook.url)?;
    let sealed = state
        .vault
        .seal(&hook.secret, tenant_aad(&tenant.id, field::STATUS_SECRET));
    let url = Some(hook.url.as_str());
    set_to(state, tenant, url, Some(&sealed), actor).await
}

/// Removes a tenant's status hook: nothing more is posted, not even for
/// messages written while it was set.
pub async fn remove(
    state: &AppState,
    tenant: &TenantRecord,
    actor: &Actor,
) -> Result<TenantRecord, ApiError> {
    set_to(state, tenant, None, None, actor).await
}

async fn set_to(
    state: &AppState,
    tenant: &TenantRecord,
    url: Option<&str>,
    sealed: Option<&crate::secrets::Sealed>,
    actor: &Actor,
) -> Result<TenantRecord, ApiError> {
    let updated = state
        .store
        .set_status_hook(&tenant.id, url, sealed, now_millis())
        .await?
        .ok_or(ApiError::NotFound("no such tenant"))?;
    // The URL may carry a credential in its query: named, not shown.
    let (action, detail) = match url {
        Some(_) => ("tenant.status_hook_set", "url, secret"),
        None => ("tenant.status_hook_removed", ""),
    };
    activity::record(
        &state.store,
        actor,
        &tenant.id,
        None,
        action,
        detail.to_owned(),
    )
    .await;
    Ok(updated)
}

/// A tenant's status hook as the API shows it: the secret masked.
#[derive(Serialize, utoipa::ToSchema)]
pub struct StatusHookView {
    pub url: String,
    /// The HMAC key, masked (`****a1b2`; `!unreadable` if it does not
    /// decrypt).
    pub secret: String,
}

pub async fn view(
    state: &AppState,
    tenant: &TenantRecord,
) -> Result<Option<StatusHookView>, ApiError> {
    let Some(url) = &tenant.status_url else {
        return Ok(None);
    };
    Ok(Some(StatusHookView {
        url: url.clone(),
        secret: masked_secret(state, tenant, field::STATUS_SECRET).await?,
    }))
}

/// The body of a post: the message's final status, never its content.
fn body(notice: &StatusNotice) -> Value {
    let m = &notice.message;
    json!({
        "type": "message.status",
        "tenant_id": m.tenant_id.as_str(),
        "connection_id": m.connection_id.as_str(),
        "message": {
            "id": m.id,
            "event_id": m.event_id,
            "status": m.status,
            "target": {"kind": m.target_kind, "id": m.target_id},
            "attempts": m.attempts,
            "last_error": m.last_error,
            "created_at": rfc3339(m.created_at),
            "updated_at": rfc3339(m.updated_at),
            "delivered_at": m.delivered_at.map(rfc3339),
        },
    })
}

/// One post to the tenant's hook: `Ok(true)` when the hook took it,
/// `Ok(false)` when there is nothing to post to any more (the tenant, or
/// its hook, removed since).
pub async fn post(state: &AppState, notice: &StatusNotice) -> Result<bool, String> {
    let tenant = state
        .store
        .tenant(&notice.message.tenant_id)
        .await
        .map_err(|e| e.to_string())?;
    let Some((tenant, url)) = tenant.and_then(|t| t.status_url.clone().map(|url| (t, url))) else {
        return Ok(false);
    };
    let secret = open_secret(state, &tenant, field::STATUS_SECRET)
        .await?
        .ok_or("the status hook's secret is missing")?;
    let body = serde_json::to_vec(&body(notice)).map_err(|e| e.to_string())?;
    let response = signed_post(&state.outbound, &url, &secret, body, TIMEOUT)
        .map_err(|refused| format!("the status hook's URL was refused: {refused}"))?
        .send()
        .await
        .map_err(|e| format!("the status hook {}", crate::outbound::no_answer(&e)))?;
    match response.status() {
        s if s.is_success() => Ok(true),
        s => Err(format!("the status hook answered HTTP {}", s.as_u16())),
    }
}
