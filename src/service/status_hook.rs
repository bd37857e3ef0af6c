//! A tenant's status hook: where the final status (delivered, failed,
//! cancelled) of each of its messages is posted, signed as engine requests
//! are. Set, removed, shown and tried here (`PUT`/`DELETE
//! /api/v1/tenants/{tenant}/status-hook`, the tenant's view, `POST
//! …/status-hook/test`); each post is made here for the worker that claims
//! them (`worker::status_hook`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::activity::{self, Actor};
use super::messages::{MessageView, Target};
use super::tenants::{allowed, masked_secret, open_secret, tenant_aad};
use crate::domain::tenant::StatusHook;
use crate::domain::{now_millis, rfc3339};
use crate::engine::http::signed_post;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::queue::{OutboundMessage, StatusNotice};
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

/// What botgate POSTs to a tenant's status hook when one of its messages
/// (written while the hook was set) reaches a final status, signed as
/// engine requests are (`X-Botgate-Timestamp`, `X-Botgate-Signature`, with
/// the hook's secret). At least once: answer 2xx (the body is not read);
/// anything else, or no answer within 10 s, is tried again with backoff
/// (`retry_base_ms` × 1, 2, 5, …, 300), 20 tries in all. Posts are not
/// ordered: `message.updated_at` tells which is newer (a message sent
/// again after it failed is posted again).
#[derive(Serialize, utoipa::ToSchema)]
pub struct StatusPost<'a> {
    /// `message.status`.
    #[schema(example = "message.status")]
    pub r#type: &'static str,
    pub tenant_id: &'a str,
    pub connection_id: &'a str,
    /// The message as `GET …/messages/{id}` shows it, without its
    /// content; its status `delivered`, `failed` or `cancelled`.
    pub message: MessageView<'a>,
    /// `true` on a test post (`POST …/status-hook/test`); absent otherwise.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub test: bool,
}

impl<'a> StatusPost<'a> {
    fn of(m: &'a OutboundMessage) -> Self {
        Self {
            r#type: "message.status",
            tenant_id: m.tenant_id.as_str(),
            connection_id: m.connection_id.as_str(),
            message: MessageView::without_content(m, &m.status),
            test: false,
        }
    }
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
    let Some(tenant) = tenant.filter(|t| t.status_url.is_some()) else {
        return Ok(false);
    };
    match send(state, &tenant, &StatusPost::of(&notice.message)).await? {
        s if (200..300).contains(&s) => Ok(true),
        s => Err(format!("the status hook answered HTTP {s}")),
    }
}

/// Posts `post` to the tenant's hook: the HTTP status it answered.
async fn send(
    state: &AppState,
    tenant: &TenantRecord,
    post: &StatusPost<'_>,
) -> Result<u16, String> {
    let url = tenant
        .status_url
        .as_deref()
        .ok_or("the tenant has no status hook")?;
    let secret = open_secret(state, tenant, field::STATUS_SECRET)
        .await?
        .ok_or("the status hook's secret is missing")?;
    let body = serde_json::to_vec(post).map_err(|e| e.to_string())?;
    let response = signed_post(&state.outbound, url, &secret, body, TIMEOUT)
        .map_err(|refused| format!("the status hook's URL was refused: {refused}"))?
        .send()
        .await
        .map_err(|e| format!("the status hook {}", crate::outbound::no_answer(&e)))?;
    Ok(response.status().as_u16())
}

/// What a test post got.
#[derive(Serialize, utoipa::ToSchema)]
pub struct StatusHookTest {
    /// Whether the hook answered 2xx.
    pub ok: bool,
    /// The HTTP status it answered, if it answered.
    pub status: Option<u16>,
    /// How long it took.
    pub elapsed_ms: u64,
    /// Why not, when `ok` is false.
    pub error: Option<String>,
}

/// Posts a sample final status to the tenant's hook as a real one is
/// posted (signed, the same timeout and outbound policy), with `"test":
/// true`, message `msg_test` delivered to user `test-user`; nothing is
/// stored and nothing is tried again. 409 without a hook.
pub async fn test(state: &AppState, tenant: &TenantRecord) -> Result<StatusHookTest, ApiError> {
    if tenant.status_url.is_none() {
        return Err(ApiError::Conflict(
            "the tenant has no status hook: set one first".into(),
        ));
    }
    let now = rfc3339(now_millis());
    let sample = StatusPost {
        r#type: "message.status",
        tenant_id: tenant.id.as_str(),
        connection_id: "con_test",
        message: MessageView {
            id: "msg_test",
            event_id: None,
            status: "delivered",
            target: Target {
                kind: "user",
                id: "test-user",
            },
            content: None,
            attempts: 1,
            last_error: None,
            created_at: now.clone(),
            updated_at: now.clone(),
            delivered_at: Some(now),
        },
        test: true,
    };
    let started = std::time::Instant::now();
    let sent = send(state, tenant, &sample).await;
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(match sent {
        Ok(status) if (200..300).contains(&status) => StatusHookTest {
            ok: true,
            status: Some(status),
            elapsed_ms,
            error: None,
        },
        Ok(status) => StatusHookTest {
            ok: false,
            status: Some(status),
            elapsed_ms,
            error: Some(format!("the status hook answered HTTP {status}")),
        },
        Err(error) => StatusHookTest {
            ok: false,
            status: None,
            elapsed_ms,
            error: Some(error),
        },
    })
}
