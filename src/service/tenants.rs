//! Tenants: create one (its API key shown once, stored as a hash), replace
//! its API key, set its engine (validated, the HMAC secret sealed), and the
//! public views. The JSON API, the console and `botgate tenant create` call
//! these.

use super::activity::{self, Actor};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::ids::TenantId;
use crate::domain::tenant::{EngineConfig, EngineUrl, TenantName};
use crate::domain::{now_millis, rfc3339};
use crate::error::ApiError;
use crate::secrets::hashing::{generate_token, hash_token, API_KEY_PREFIX};
use crate::secrets::mask::mask;
use crate::secrets::Aad;
use crate::state::AppState;
use crate::store::queue::{InboundEvent, OutboundMessage};
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
    actor: &Actor,
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
    activity::record(
        store,
        actor,
        &record.id,
        None,
        "tenant.created",
        &record.name,
    )
    .await;
    Ok((record, api_key))
}

/// The longest a replaced API key may keep working: a week.
pub const MAX_PREVIOUS_KEY_SECONDS: i64 = 7 * 24 * 60 * 60;

/// `POST …/api-key`'s body (optional: no body replaces the key at once).
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyBody {
    /// How long the replaced key keeps working, in seconds (0 to 604,800,
    /// a week): time to move its callers over. 0 by default: it stops at
    /// once, as it should when it leaked.
    #[schema(value_type = Option<i64>, example = 3600)]
    pub previous_key_valid_seconds: Option<Value>,
}

impl ApiKeyBody {
    /// The grace, in seconds, or the field's error.
    pub fn grace_seconds(&self) -> Result<i64, ApiError> {
        match &self.previous_key_valid_seconds {
            None | Some(Value::Null) => Ok(0),
            Some(v) => v
                .as_i64()
                .filter(|n| (0..=MAX_PREVIOUS_KEY_SECONDS).contains(n))
                .ok_or_else(|| {
                    ApiError::validation(
                        "previous_key_valid_seconds",
                        "must be a whole number of seconds from 0 to 604800 (a week)",
                    )
                }),
        }
    }
}

/// A new API key for `tenant`, shown once and stored as a hash; the key it
/// replaces keeps working for `grace_seconds` (0: not at all). The console
/// sessions signed in with a key of the tenant's end, except
/// `keep_session`. Shared by the API, the console and `botgate tenant
/// rotate-key`.
pub async fn replace_api_key(
    store: &Store,
    tenant: &TenantId,
    grace_seconds: i64,
    keep_session: Option<&str>,
    actor: &Actor,
) -> Result<Option<(secrecy::SecretString, Option<i64>)>, StoreError> {
    let api_key = generate_token(API_KEY_PREFIX);
    let now = now_millis();
    let until = (grace_seconds > 0).then(|| now + grace_seconds * 1000);
    let hash = hash_token(api_key.expose_secret());
    let replaced = store
        .replace_api_key(tenant, &hash, until, keep_session, now)
        .await?;
    if replaced.is_some() {
        tracing::info!(
            tenant_id = %tenant,
            previous_key_valid_until = until.map(rfc3339),
            "tenant API key replaced"
        );
        let detail = match until {
            Some(_) => format!("the previous key works for {grace_seconds} s more"),
            None => "the previous key stopped at once".to_owned(),
        };
        activity::record(
            store,
            actor,
            tenant,
            None,
            "tenant.api_key_replaced",
            detail,
        )
        .await;
    }
    Ok(replaced.map(|_| (api_key, until)))
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
    actor: &Actor,
) -> Result<TenantRecord, ApiError> {
    let engine = EngineConfig::parse(body.kind.as_ref(), body.url.as_ref(), body.secret.as_ref())
        .map_err(ApiError::Validation)?;
    if let Some(url) = engine.url() {
        allowed(state, url)?;
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
    // The kind, and which settings came with it (a URL may carry a
    // credential in its query: named, not shown).
    let given: Vec<&str> = [
        ("url", &body.url),
        ("secret", &body.secret),
        ("fallback_text", &body.fallback_text),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.is_some().then_some(name))
    .collect();
    let detail = match given.is_empty() {
        true => engine.kind().to_owned(),
        false => format!("{}: {}", engine.kind(), given.join(", ")),
    };
    activity::record(
        &state.store,
        actor,
        &tenant.id,
        None,
        "tenant.engine_set",
        detail,
    )
    .await;
    Ok(updated)
}

/// A tenant-given URL botgate will call: an address the outbound policy
/// refuses is refused now, with the reason; a name is checked again at
/// every call, where it resolves.
pub(super) fn allowed(state: &AppState, url: &EngineUrl) -> Result<(), ApiError> {
    state
        .outbound
        .policy()
        .check_url(url.as_str())
        .map(drop)
        .map_err(|refused| ApiError::validation("url", refused.to_string()))
}

fn engine_aad(tenant: &TenantId) -> Aad<'_> {
    tenant_aad(tenant, field::ENGINE_SECRET)
}

/// A tenant's own sealed value's associated data (no connection).
pub fn tenant_aad<'a>(tenant: &'a TenantId, field: &'a str) -> Aad<'a> {
    Aad {
        tenant: tenant.as_str(),
        connection: None,
        field,
    }
}

/// The tenant's sealed `field` (its engine's or status hook's secret),
/// opened, or why it cannot be; `None` if it has none.
async fn sealed(
    state: &AppState,
    tenant: &TenantRecord,
    field: &str,
) -> Result<Option<Result<SecretString, String>>, StoreError> {
    let secrets = state.store.secrets(tenant.id.as_str()).await?;
    Ok(secrets.iter().find(|s| s.field == field).map(|s| {
        state
            .vault
            .open_str(&s.sealed, s.aad())
            .map_err(|e| e.to_string())
    }))
}

/// The tenant's sealed `field`, opened; `None` if it has none. `Err` says
/// why it cannot be read.
pub async fn open_secret(
    state: &AppState,
    tenant: &TenantRecord,
    field: &str,
) -> Result<Option<SecretString>, String> {
    sealed(state, tenant, field)
        .await
        .map_err(|e| e.to_string())?
        .transpose()
}

/// The tenant's sealed `field`, masked (`!unreadable` if it is missing or
/// does not decrypt).
pub(super) async fn masked_secret(
    state: &AppState,
    tenant: &TenantRecord,
    field: &str,
) -> Result<String, ApiError> {
    Ok(match sealed(state, tenant, field).await? {
        Some(Ok(secret)) => mask(secret.expose_secret()),
        _ => "!unreadable".to_owned(),
    })
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
    /// The http engine's HMAC secret, masked (`****a1b2`; `!unreadable` if it
    /// does not decrypt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TenantView {
    pub id: String,
    pub name: String,
    pub engine: EngineView,
    pub quotas: QuotasView,
    /// Where its messages' final statuses are posted, if anywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_hook: Option<super::status_hook::StatusHookView>,
    /// RFC 3339.
    pub created_at: String,
    pub updated_at: String,
}

/// A tenant's quotas in force, and whether each is its own or the
/// configuration's default.
#[derive(Serialize, utoipa::ToSchema)]
pub struct QuotasView {
    /// Rows open in its queues (pending or in flight, both queues); past
    /// it the send API answers 429 and callbacks are stored as refused.
    pub max_open_rows: i64,
    /// Callbacks accepted per second across its connections (per replica);
    /// past it callbacks are stored as refused.
    pub max_callbacks_per_second: i64,
    /// Which of the two the admin set for this tenant (the rest are the
    /// configuration's defaults).
    pub own: Vec<&'static str>,
}

/// `PUT /api/v1/tenants/{id}/quotas`: each field absent keeps the tenant's
/// quota, a number sets it, null returns it to the configuration's default.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotasBody {
    #[schema(value_type = Option<i64>, example = 200000)]
    #[serde(default, deserialize_with = "present")]
    pub max_open_rows: Option<Value>,
    #[schema(value_type = Option<i64>, example = 2000)]
    #[serde(default, deserialize_with = "present")]
    pub max_callbacks_per_second: Option<Value>,
}

/// A field that is present, `null` included (absent: `None`, by `default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

fn quota_field(
    name: &str,
    value: Option<&Value>,
    current: Option<i64>,
    max: i64,
) -> Result<Option<i64>, crate::domain::FieldError> {
    match value {
        None => Ok(current),
        Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .filter(|n| (1..=max).contains(n))
            .map(Some)
            .ok_or_else(|| {
                crate::domain::FieldError::new(
                    name,
                    format!("must be a whole number from 1 to {max}, or null for the default"),
                )
            }),
    }
}

/// Validates and stores a tenant's own quotas (the admin's call).
pub async fn set_quotas(
    state: &AppState,
    tenant: &TenantRecord,
    body: &QuotasBody,
    actor: &Actor,
) -> Result<TenantRecord, ApiError> {
    let open = quota_field(
        "max_open_rows",
        body.max_open_rows.as_ref(),
        tenant.max_open_rows,
        100_000_000,
    );
    let rate = quota_field(
        "max_callbacks_per_second",
        body.max_callbacks_per_second.as_ref(),
        tenant.max_callbacks_per_second,
        1_000_000,
    );
    let (open, rate) = match (open, rate) {
        (Ok(open), Ok(rate)) => (open, rate),
        (open, rate) => {
            return Err(ApiError::Validation(
                [open.err(), rate.err()].into_iter().flatten().collect(),
            ))
        }
    };
    let updated = state
        .store
        .set_quotas(&tenant.id, open, rate, now_millis())
        .await?
        .ok_or(ApiError::NotFound("no such tenant"))?;
    state.quotas.forget(tenant.id.as_str());
    tracing::info!(tenant_id = %tenant.id, max_open_rows = ?open, max_callbacks_per_second = ?rate, "tenant quotas set");
    let own = |q: Option<i64>| q.map_or_else(|| "default".to_owned(), |n| n.to_string());
    let detail = format!(
        "max_open_rows {}, max_callbacks_per_second {}",
        own(open),
        own(rate)
    );
    activity::record(
        &state.store,
        actor,
        &tenant.id,
        None,
        "tenant.quotas_set",
        detail,
    )
    .await;
    Ok(updated)
}

pub async fn engine_view(state: &AppState, tenant: &TenantRecord) -> Result<EngineView, ApiError> {
    let secret = if tenant.engine_kind == "http" {
        Some(masked_secret(state, tenant, field::ENGINE_SECRET).await?)
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
        quotas: {
            let limits = crate::state::quotas::Limits::of(&state.settings, tenant);
            QuotasView {
                max_open_rows: limits.max_open_rows,
                max_callbacks_per_second: limits.max_callbacks_per_second,
                own: [
                    ("max_open_rows", tenant.max_open_rows),
                    ("max_callbacks_per_second", tenant.max_callbacks_per_second),
                ]
                .into_iter()
                .filter_map(|(name, own)| own.map(|_| name))
                .collect(),
            }
        },
        status_hook: super::status_hook::view(state, tenant).await?,
        created_at: rfc3339(tenant.created_at),
        updated_at: rfc3339(tenant.updated_at),
    })
}

/// Deletes a tenant with every row of it, of every table.
pub async fn delete(state: &AppState, tenant: &TenantRecord) -> Result<(), ApiError> {
    if !state.store.purge_tenant(&tenant.id).await? {
        return Err(ApiError::NotFound("no such tenant"));
    }
    state.quotas.forget(tenant.id.as_str());
    tracing::info!(tenant_id = %tenant.id, "tenant deleted");
    Ok(())
}

/// A tenant's export as JSON lines, page by page: the tenant, its
/// connections (secrets masked, as the API shows them), then its events
/// (with the callbacks as received), messages (with their contents) and
/// token audit entries, each oldest first. A cursor, so that an export of
/// any size is read from the database a page at a time.
pub struct Export {
    tenant: TenantRecord,
    phase: ExportPhase,
}

#[derive(Clone, Copy)]
enum ExportPhase {
    Head,
    Events(i64),
    Messages(i64),
    Audit(i64),
    Activity(i64),
    Done,
}

/// Rows per page of an export.
const EXPORT_PAGE: i64 = 500;

fn line(out: &mut Vec<u8>, value: &Value) {
    // A Value always serializes.
    let _ = serde_json::to_writer(&mut *out, value);
    out.push(b'\n');
}

impl Export {
    pub fn new(tenant: TenantRecord) -> Self {
        Self {
            tenant,
            phase: ExportPhase::Head,
        }
    }

    /// The next page of lines; `None` after the last.
    pub async fn next_page(&mut self, state: &AppState) -> Result<Option<Vec<u8>>, ApiError> {
        use serde_json::json;
        let store = &state.store;
        let id = &self.tenant.id;
        let mut out = Vec::new();
        self.phase = match self.phase {
            ExportPhase::Head => {
                let mut tenant = serde_json::to_value(view(state, &self.tenant).await?)
                    .map_err(|e| ApiError::Internal(e.into()))?;
                tenant["kind"] = json!("tenant");
                line(&mut out, &tenant);
                for c in store.connections(id).await? {
                    let mut c = serde_json::to_value(super::connections::view(state, &c).await?)
                        .map_err(|e| ApiError::Internal(e.into()))?;
                    c["kind"] = json!("connection");
                    line(&mut out, &c);
                }
                ExportPhase::Events(0)
            }
            ExportPhase::Events(after) => {
                let page: Vec<InboundEvent> = store.export_page(id, after, EXPORT_PAGE).await?;
                for e in &page {
                    let body = serde_json::from_slice::<Value>(&e.raw)
                        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&e.raw).into()));
                    line(
                        &mut out,
                        &json!({"kind": "event", "id": e.id, "connection_id": e.connection_id.as_str(),
                            "type": e.event_type, "conversation": e.conversation, "status": e.status,
                            "attempts": e.attempts, "last_error": e.last_error,
                            "received_at": rfc3339(e.received_at), "updated_at": rfc3339(e.updated_at),
                            "callback": body}),
                    );
                }
                match page.last() {
                    Some(last) if page.len() as i64 == EXPORT_PAGE => ExportPhase::Events(last.seq),
                    _ => ExportPhase::Messages(0),
                }
            }
            ExportPhase::Messages(after) => {
                let page: Vec<OutboundMessage> = store.export_page(id, after, EXPORT_PAGE).await?;
                for m in &page {
                    let content = serde_json::from_str::<Value>(&m.content).unwrap_or(Value::Null);
                    line(
                        &mut out,
                        &json!({"kind": "message", "id": m.id, "connection_id": m.connection_id.as_str(),
                            "event_id": m.event_id, "conversation": m.conversation,
                            "target": {"kind": m.target_kind, "id": m.target_id}, "content": content,
                            "status": m.status, "attempts": m.attempts, "last_error": m.last_error,
                            "created_at": rfc3339(m.created_at), "delivered_at": m.delivered_at.map(rfc3339)}),
                    );
                }
                match page.last() {
                    Some(last) if page.len() as i64 == EXPORT_PAGE => {
                        ExportPhase::Messages(last.seq)
                    }
                    _ => ExportPhase::Audit(0),
                }
            }
            ExportPhase::Audit(after) => {
                let page = store.export_audit(id, after, EXPORT_PAGE).await?;
                for (_, a) in &page {
                    line(
                        &mut out,
                        &json!({"kind": "audit", "connection_id": a.connection_id, "at": rfc3339(a.at),
                            "client": a.client_addr, "action": a.action, "outcome": a.outcome}),
                    );
                }
                match page.last() {
                    Some((last, _)) if page.len() as i64 == EXPORT_PAGE => {
                        ExportPhase::Audit(*last)
                    }
                    _ => ExportPhase::Activity(0),
                }
            }
            ExportPhase::Activity(after) => {
                let page = store.activity_since(id, after, EXPORT_PAGE).await?;
                for e in &page {
                    let mut entry = serde_json::to_value(activity::ActivityView::from(e))
                        .map_err(|e| ApiError::Internal(e.into()))?;
                    entry["kind"] = json!("activity");
                    line(&mut out, &entry);
                }
                match page.last() {
                    Some(last) if page.len() as i64 == EXPORT_PAGE => {
                        ExportPhase::Activity(last.id)
                    }
                    _ => ExportPhase::Done,
                }
            }
            ExportPhase::Done => return Ok(None),
        };
        Ok(Some(out))
    }
}
