//! `POST /api/v1/tenants`, `GET /api/v1/tenants/{tenant}`,
//! `PUT /api/v1/tenants/{tenant}/engine`, `POST …/api-key` and the rest of
//! a tenant's routes. The rules live in
//! `service::tenants`.

use super::extract::ApiActor;
use crate::service::activity::ActivityView;
use crate::service::engine::{EngineTest, EngineTestBody};
use actix_web::{web, HttpResponse};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::docs::{Denied, Invalid, TenantPath};
use super::extract::{Caller, Page, PathTenant};
use crate::error::{ApiError, ErrorEnvelope};
use crate::service::status_hook::{self, StatusHookBody, StatusHookTest, StatusHookView};
use crate::service::tenants::{self, ApiKeyBody, EngineBody, EngineView, QuotasBody, TenantView};
use crate::state::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantBody {
    #[schema(value_type = String, example = "lucky-draw")]
    name: Option<Value>,
}

/// The new tenant with its API key, shown this once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedTenant<'a> {
    #[serde(flatten)]
    pub tenant: TenantView,
    /// `bgk_…`: stored only as a hash, never shown again.
    pub api_key: &'a str,
}

#[utoipa::path(post, path = "/api/v1/tenants",
    summary = "Create a tenant (admin token); its API key is shown once", tag = "tenants",
    request_body = CreateTenantBody,
    responses((status = 201, description = "Created", body = CreatedTenant<'static>), (status = 401, description = "Missing or wrong credentials", body = ErrorEnvelope<'static>), (status = 403, description = "A tenant key may not create tenants", body = ErrorEnvelope<'static>), Invalid))]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    ApiActor(actor): ApiActor,
    body: web::Json<CreateTenantBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let name = tenants::parse_name(body.name.as_ref())?;
    let (tenant, api_key) = tenants::create(&state.store, &name, &actor).await?;
    let view = tenants::view(&state, &tenant).await?;
    Ok(HttpResponse::Created().json(CreatedTenant {
        tenant: view,
        api_key: api_key.expose_secret(),
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TenantsQuery {
    /// At most this many (1 to 1,000; 100 by default).
    #[param(value_type = Option<i64>)]
    limit: Option<String>,
    /// The tenants after this id (the previous page's `next_after`).
    after: Option<String>,
}

/// A page of tenants, by id.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TenantList {
    pub tenants: Vec<TenantView>,
    /// The `after` of the next page; null on the last.
    pub next_after: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/tenants",
    summary = "List the tenants (admin token), a page at a time by id", tag = "tenants",
    params(TenantsQuery),
    responses((status = 200, description = "A page of tenants", body = TenantList), (status = 401, description = "Missing or wrong credentials", body = ErrorEnvelope<'static>), (status = 403, description = "A tenant key may not list tenants", body = ErrorEnvelope<'static>), Invalid))]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<TenantsQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let asked = Page::parse(
        query.limit.as_deref(),
        query.after.as_deref(),
        crate::domain::ids::TenantId::parse,
        "must be a tenant id (ten_…)",
    )?;
    let page = state
        .store
        .tenants_after(asked.after.as_ref(), asked.limit)
        .await?;
    let next_after = asked.next(&page, |t| t.id.as_str());
    let mut tenants = Vec::with_capacity(page.len());
    for tenant in &page {
        tenants.push(tenants::view(&state, tenant).await?);
    }
    Ok(HttpResponse::Ok().json(TenantList {
        tenants,
        next_after,
    }))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant}",
    summary = "Read a tenant", tag = "tenants", params(TenantPath),
    responses((status = 200, description = "The tenant", body = TenantView), Denied))]
pub async fn get(
    state: web::Data<AppState>,
    PathTenant(tenant): PathTenant,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(tenants::view(&state, &tenant).await?))
}

#[utoipa::path(put, path = "/api/v1/tenants/{tenant}/engine",
    summary = "Set the dialogue engine (echo | http | rasa) and fallback text", tag = "tenants",
    params(TenantPath), request_body = EngineBody,
    responses((status = 200, description = "The engine, secret masked", body = EngineView), Denied, Invalid))]
pub async fn set_engine(
    state: web::Data<AppState>,
    PathTenant(tenant): PathTenant,
    ApiActor(actor): ApiActor,
    body: web::Json<EngineBody>,
) -> Result<HttpResponse, ApiError> {
    let updated = tenants::set_engine(&state, &tenant, &body, &actor).await?;
    Ok(HttpResponse::Ok().json(tenants::engine_view(&state, &updated).await?))
}

#[utoipa::path(put, path = "/api/v1/tenants/{tenant}/status-hook",
    summary = "Post each message's final status (delivered, failed, cancelled) to a URL, signed", tag = "tenants",
    params(TenantPath), request_body = StatusHookBody,
    responses((status = 200, description = "The status hook, secret masked", body = StatusHookView), Denied, Invalid))]
pub async fn set_status_hook(
    state: web::Data<AppState>,
    PathTenant(tenant): PathTenant,
    ApiActor(actor): ApiActor,
    body: web::Json<StatusHookBody>,
) -> Result<HttpResponse, ApiError> {
    let updated = status_hook::set(&state, &tenant, &body, &actor).await?;
    Ok(HttpResponse::Ok().json(status_hook::view(&state, &updated).await?))
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/status-hook/test",
    summary = "Post a sample status (\"test\": true) to the status hook and say what it answered", tag = "tenants",
    params(TenantPath),
    responses((status = 200, description = "What the hook answered", body = StatusHookTest), Denied,
        (status = 409, description = "No status hook is set", body = ErrorEnvelope<'static>)))]
pub async fn test_status_hook(
    state: web::Data<AppState>,
    PathTenant(tenant): PathTenant,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(status_hook::test(&state, &tenant).await?))
}

#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}/status-hook",
    summary = "Stop posting message statuses", tag = "tenants", params(TenantPath),
    responses((status = 204, description = "Removed (or there was none)"), Denied))]
pub async fn remove_status_hook(
    state: web::Data<AppState>,
    PathTenant(tenant): PathTenant,
    ApiActor(actor): ApiActor,
) -> Result<HttpResponse, ApiError> {
    status_hook::remove(&state, &tenant, &actor).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}",
    summary = "Delete a tenant (admin token) with its connections and every row of theirs", tag = "tenants",
    params(TenantPath),
    responses((status = 204, description = "Deleted"), Denied, (status = 403, description = "A tenant key may not delete tenants", body = ErrorEnvelope<'static>)))]
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let tenant = caller.tenant(&state, &path).await?;
    tenants::delete(&state, &tenant).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/export",
    summary = "Everything botgate keeps for a tenant, as JSON lines", tag = "tenants",
    description = "One JSON object per line, each with a `kind`: the `tenant`, its `connection`s (secrets masked), then its `event`s (with the callbacks as received), `message`s (with their contents) and token `audit` entries, oldest first. Streamed a page at a time; a line of kind `error` ends an export the database could not finish.",
    params(TenantPath),
    responses((status = 200, description = "The export", content_type = "application/x-ndjson", body = String), Denied))]
pub async fn export(
    state: web::Data<AppState>,
    PathTenant(tenant): PathTenant,
) -> Result<HttpResponse, ApiError> {
    let export = tenants::Export::new(tenant);
    let body = futures_util::stream::unfold(Some((state, export)), |at| async move {
        let (state, mut export) = at?;
        match export.next_page(&state).await {
            Ok(Some(page)) => Some((
                Ok::<_, std::io::Error>(web::Bytes::from(page)),
                Some((state, export)),
            )),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error.message = %e, "a tenant export failed");
                let line = b"{\"kind\":\"error\",\"message\":\"the export could not be finished; try again\"}\n";
                Some((Ok(web::Bytes::from_static(line)), None))
            }
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("application/x-ndjson")
        .insert_header((actix_web::http::header::CACHE_CONTROL, "private, no-store"))
        .streaming(body))
}

/// A tenant's new API key, shown this once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct NewApiKey<'a> {
    /// `bgk_…`: stored only as a hash, never shown again.
    pub api_key: &'a str,
    /// RFC 3339: until when the replaced key keeps working; null when it
    /// stopped at once.
    pub previous_key_valid_until: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/api-key",
    summary = "Replace the tenant's API key (the new one is shown once); the old one stops at once or after a grace", tag = "tenants",
    params(TenantPath), request_body(content = ApiKeyBody, description = "Optional: no body replaces the key at once"),
    responses((status = 200, description = "The new key", body = NewApiKey<'static>), Denied, (status = 403, description = "A replaced key (in its grace) may not replace the key", body = ErrorEnvelope<'static>), Invalid))]
pub async fn replace_api_key(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    caller: Caller,
    ApiActor(actor): ApiActor,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant(&state, &path).await?;
    if caller.holds_replaced_key(&super::extract::bearer(&req).unwrap_or_default()) {
        return Err(ApiError::Forbidden(
            "a replaced API key may not replace the key; use the current key or the admin token",
        ));
    }
    let body: ApiKeyBody = optional_json(&body)?;
    let grace = body.grace_seconds()?;
    let (api_key, until) = tenants::replace_api_key(&state.store, &tenant.id, grace, None, &actor)
        .await?
        .ok_or(ApiError::NotFound("no such tenant"))?;
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(NewApiKey {
            api_key: api_key.expose_secret(),
            previous_key_valid_until: until.map(crate::domain::rfc3339),
        }))
}

#[utoipa::path(put, path = "/api/v1/tenants/{tenant}/quotas",
    summary = "Set a tenant's own quotas (admin token): open rows, callbacks per second; null returns one to the default", tag = "tenants",
    params(TenantPath), request_body = QuotasBody,
    responses((status = 200, description = "The tenant, with its quotas in force", body = TenantView), Denied, (status = 403, description = "A tenant key may not set quotas", body = ErrorEnvelope<'static>), Invalid))]
pub async fn set_quotas(
    state: web::Data<AppState>,
    caller: Caller,
    ApiActor(actor): ApiActor,
    path: web::Path<String>,
    body: web::Json<QuotasBody>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let tenant = caller.tenant(&state, &path).await?;
    let updated = tenants::set_quotas(&state, &tenant, &body, &actor).await?;
    Ok(HttpResponse::Ok().json(tenants::view(&state, &updated).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ActivityQuery {
    /// At most this many (1 to 1,000; 100 by default).
    #[param(value_type = Option<i64>)]
    limit: Option<String>,
    /// The entries older than this one (the previous page's `next_before`).
    #[param(value_type = Option<i64>)]
    before: Option<String>,
    /// Only this connection's entries (`con_…`; a deleted one's too).
    connection: Option<String>,
}

/// A page of a tenant's activity, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ActivityList<'a> {
    pub activity: Vec<ActivityView<'a>>,
    /// The `before` of the next (older) page; null on the last.
    pub next_before: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/activity",
    summary = "Who changed what in the tenant, newest first (connections, credentials, engine, API key, quotas, installations, replays)",
    tag = "tenants", params(TenantPath, ActivityQuery),
    responses((status = 200, description = "A page of entries", body = ActivityList<'static>), Denied, Invalid))]
pub async fn activity(
    state: web::Data<AppState>,
    PathTenant(tenant): PathTenant,
    query: web::Query<ActivityQuery>,
) -> Result<HttpResponse, ApiError> {
    let asked = Page::parse_cursor(
        query.limit.as_deref(),
        ("before", query.before.as_deref()),
        |id| id.parse::<i64>().ok().filter(|n| *n > 0),
        "must be an entry's id (a positive number)",
    )?;
    let connection = match query.connection.as_deref() {
        None => None,
        Some(id) => Some(crate::domain::ids::ConnectionId::parse(id).ok_or_else(|| {
            ApiError::validation("connection", "must be a connection id (con_…)")
        })?),
    };
    let entries = state
        .store
        .activity(&tenant.id, connection.as_ref(), asked.after, asked.limit)
        .await?;
    let full = i64::try_from(entries.len()).is_ok_and(|n| n == asked.limit);
    Ok(HttpResponse::Ok().json(ActivityList {
        next_before: full.then(|| entries.last().map(|e| e.id)).flatten(),
        activity: entries.iter().map(ActivityView::from).collect(),
    }))
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/engine/test",
    summary = "Try the dialogue engine with a sample user message (nothing stored or sent)", tag = "tenants",
    params(TenantPath), request_body(content = Option<EngineTestBody>, description = "Optional: the sample's text and channel"),
    responses((status = 200, description = "What the engine answered, or why it could not", body = EngineTest), Denied, Invalid))]
pub async fn test_engine(
    state: web::Data<AppState>,
    PathTenant(tenant): PathTenant,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let body: EngineTestBody = optional_json(&body)?;
    let tested = crate::service::engine::test(&state, &tenant, &body).await?;
    Ok(HttpResponse::Ok().json(tested))
}

/// An optional JSON body, read as bytes and decoded as the JSON extractor
/// would (none: the defaults; a field of the wrong shape: a 422).
fn optional_json<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    match serde_json::from_slice(body) {
        _ if body.iter().all(u8::is_ascii_whitespace) => Ok(T::default()),
        Ok(body) => Ok(body),
        Err(e) if e.is_data() => Err(ApiError::validation("body", e.to_string())),
        Err(e) => Err(ApiError::InvalidJson(e.to_string())),
    }
}
