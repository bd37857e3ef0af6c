//! `/api/v1/tenants/{tenant}/connections[/{connection}]`: connect a NAVER WORKS
//! bot, read it back (secrets masked), rotate its credentials, remove it,
//! test it, read its audit. The rules live in `service::connections`.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::Caller;
use crate::domain::rfc3339;
use crate::error::ApiError;
use crate::service::checks::run_checks;
use crate::service::connections::{self, view, ConnectionBody};
use crate::state::AppState;

pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<ConnectionBody>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant(&state, &path).await?;
    let record = connections::create(&state, &tenant, &body).await?;
    Ok(HttpResponse::Created().json(view(&state, &record).await?))
}

pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant(&state, &path).await?;
    let mut views = Vec::new();
    for record in state.store.connections(&tenant.id).await? {
        views.push(view(&state, &record).await?);
    }
    Ok(HttpResponse::Ok().json(json!({ "connections": views })))
}

pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let record = caller.connection(&state, &path.0, &path.1).await?;
    Ok(HttpResponse::Ok().json(view(&state, &record).await?))
}

pub async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    body: web::Json<ConnectionBody>,
) -> Result<HttpResponse, ApiError> {
    let current = caller.connection(&state, &path.0, &path.1).await?;
    let record = connections::update(&state, &current, &body).await?;
    Ok(HttpResponse::Ok().json(view(&state, &record).await?))
}

pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let record = caller.connection(&state, &path.0, &path.1).await?;
    connections::delete(&state, &record).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/v1/tenants/{tenant}/connections/{id}/test`: tries the
/// credentials against NAVER WORKS now and reports each check in a sentence.
/// It mints a token of its own; the shared token is not touched.
pub async fn test(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let record = caller.connection(&state, &path.0, &path.1).await?;
    let checks = run_checks(&state, &record).await;
    let ok = checks.iter().all(|c| c.ok);
    Ok(HttpResponse::Ok().json(json!({"ok": ok, "checks": checks})))
}

#[derive(Deserialize)]
pub struct AuditQuery {
    limit: Option<i64>,
}

/// `GET /api/v1/tenants/{tenant}/connections/{id}/audit`: reads and refreshes
/// through the auth URLs, newest first.
pub async fn audit(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let record = caller.connection(&state, &path.0, &path.1).await?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let entries = state
        .store
        .audit(&record.tenant_id, &record.id, limit)
        .await?;
    let entries: Vec<Value> = entries
        .into_iter()
        .map(|e| json!({"at": rfc3339(e.at), "client_addr": e.client_addr, "action": e.action, "outcome": e.outcome}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "entries": entries })))
}
