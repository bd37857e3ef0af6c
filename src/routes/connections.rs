//! `/api/v1/tenants/{tenant}/connections[/{connection}]`: connect a NAVER WORKS
//! bot, read it back (secrets masked), rotate its credentials, remove it,
//! test it, read its audit. The rules live in `service::connections`.

use super::extract::ApiActor;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::docs::{ConnectionPath, Denied, Invalid, TenantPath};
use super::extract::{Page, PathConnection, PathTenant};
use crate::domain::rfc3339;
use crate::error::{ApiError, ErrorEnvelope};
use crate::service::checks::{run_checks, Check};
use crate::service::connections::{self, view, ConnectionBody, ConnectionView};
use crate::service::slack::{self, InstallationList};
use crate::state::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct ConnectionList {
    pub connections: Vec<ConnectionView>,
    /// When paging: the `after` of the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

/// Paging, for a tenant with many connections: with `limit` or `after`, a
/// page in the same order (oldest first); with neither, all of them.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// At most this many (1 to 1,000; 100 when paging without it).
    #[param(value_type = Option<i64>)]
    limit: Option<String>,
    /// The connections after this id (the previous page's `next_after`).
    after: Option<String>,
}

/// The test's answer: whether every check passed, and each check.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TestReport {
    pub ok: bool,
    pub checks: Vec<Check>,
}

/// One read or refresh through the auth URLs (never the token).
#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditView<'a> {
    /// RFC 3339.
    pub at: String,
    pub client_addr: &'a str,
    /// `read` or `refresh`.
    pub action: &'a str,
    /// `ok`, `wrong_header`, `blocked`, …
    pub outcome: &'a str,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditList<'a> {
    pub entries: Vec<AuditView<'a>>,
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/connections",
    summary = "Connect a NAVER WORKS bot", tag = "connections", params(TenantPath),
    request_body = ConnectionBody,
    responses((status = 201, description = "Created, with webhook_url, auth_url, auth_refresh_url and masked secrets", body = ConnectionView), Denied, (status = 409, description = "This tenant already connected this bot", body = ErrorEnvelope<'static>), Invalid))]
pub async fn create(
    state: web::Data<AppState>,
    PathTenant(tenant): PathTenant,
    ApiActor(actor): ApiActor,
    body: web::Json<ConnectionBody>,
) -> Result<HttpResponse, ApiError> {
    let record = connections::create(&state, &tenant, &body, &actor).await?;
    Ok(HttpResponse::Created().json(view(&state, &record).await?))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/connections",
    summary = "List connections (all, or a page with limit / after)", tag = "connections", params(TenantPath, ListQuery),
    responses((status = 200, description = "Connections", body = ConnectionList), Denied))]
pub async fn list(
    state: web::Data<AppState>,
    PathTenant(tenant): PathTenant,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let (records, next_after) = if query.limit.is_none() && query.after.is_none() {
        (state.store.connections(&tenant.id).await?, None)
    } else {
        let asked = Page::parse(
            query.limit.as_deref(),
            query.after.as_deref(),
            crate::domain::ids::ConnectionId::parse,
            "must be a connection id (con_…)",
        )?;
        let page = state
            .store
            .connections_after(&tenant.id, asked.after.as_ref(), asked.limit)
            .await?;
        let next = asked.next(&page, |c| c.id.as_str());
        (page, next)
    };
    let mut views = Vec::with_capacity(records.len());
    for record in &records {
        views.push(view(&state, record).await?);
    }
    Ok(HttpResponse::Ok().json(ConnectionList {
        connections: views,
        next_after,
    }))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/connections/{connection}",
    summary = "Read a connection (secrets masked)", tag = "connections", params(ConnectionPath),
    responses((status = 200, description = "The connection", body = ConnectionView), Denied))]
pub async fn get(
    state: web::Data<AppState>,
    PathConnection(record): PathConnection,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(view(&state, &record).await?))
}

#[utoipa::path(patch, path = "/api/v1/tenants/{tenant}/connections/{connection}",
    summary = "Rotate credentials or change settings", tag = "connections", params(ConnectionPath),
    request_body = ConnectionBody,
    responses((status = 200, description = "The connection", body = ConnectionView), Denied, Invalid))]
pub async fn update(
    state: web::Data<AppState>,
    PathConnection(current): PathConnection,
    ApiActor(actor): ApiActor,
    body: web::Json<ConnectionBody>,
) -> Result<HttpResponse, ApiError> {
    let record = connections::update(&state, &current, &body, &actor).await?;
    Ok(HttpResponse::Ok().json(view(&state, &record).await?))
}

#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}/connections/{connection}",
    summary = "Remove a connection and wipe its tokens", tag = "connections",
    params(ConnectionPath), responses((status = 204, description = "Removed"), Denied))]
pub async fn delete(
    state: web::Data<AppState>,
    PathConnection(record): PathConnection,
    ApiActor(actor): ApiActor,
) -> Result<HttpResponse, ApiError> {
    connections::delete(&state, &record, &actor).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/v1/tenants/{tenant}/connections/{id}/test`: tries the
/// credentials against NAVER WORKS now and reports each check in a sentence.
/// It mints a token of its own; the shared token is not touched.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/connections/{connection}/test",
    summary = "Try the credentials against NAVER WORKS now", tag = "connections",
    params(ConnectionPath),
    responses((status = 200, description = "Each check in a sentence", body = TestReport), Denied))]
pub async fn test(
    state: web::Data<AppState>,
    PathConnection(record): PathConnection,
) -> Result<HttpResponse, ApiError> {
    let checks = run_checks(&state, &record).await;
    let ok = checks.iter().all(|c| c.ok);
    Ok(HttpResponse::Ok().json(TestReport { ok, checks }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// At most this many (1 to 1,000; 100 by default).
    limit: Option<i64>,
}

/// `GET /api/v1/tenants/{tenant}/connections/{id}/audit`: reads and refreshes
/// through the auth URLs, newest first.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/connections/{connection}/audit",
    summary = "Token reads and refreshes through the auth URLs, newest first", tag = "connections",
    params(ConnectionPath, AuditQuery),
    responses((status = 200, description = "The entries", body = AuditList<'static>), Denied))]
pub async fn audit(
    state: web::Data<AppState>,
    PathConnection(record): PathConnection,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let entries = state
        .store
        .audit(&record.tenant_id, &record.id, limit)
        .await?;
    let entries = entries
        .iter()
        .map(|e| AuditView {
            at: rfc3339(e.at),
            client_addr: &e.client_addr,
            action: &e.action,
            outcome: &e.outcome,
        })
        .collect();
    Ok(HttpResponse::Ok().json(AuditList { entries }))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/connections/{connection}/installations",
    summary = "A Slack connection's installations (one per workspace; tokens masked)", tag = "slack", params(ConnectionPath),
    responses((status = 200, description = "The installations, oldest first", body = InstallationList), Denied))]
pub async fn installations(
    state: web::Data<AppState>,
    PathConnection(record): PathConnection,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(slack::installations(&state, &record).await?))
}

#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}/connections/{connection}/installations/{team}",
    summary = "Remove a workspace's installation and its tokens", tag = "slack",
    params(ConnectionPath, ("team" = String, Path, description = "The workspace (T…)")),
    responses((status = 204, description = "Removed"), Denied))]
pub async fn delete_installation(
    state: web::Data<AppState>,
    PathConnection(record): PathConnection,
    ApiActor(actor): ApiActor,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    slack::remove_installation(&state, &record, &path.2, &actor).await?;
    Ok(HttpResponse::NoContent().finish())
}
