//! `POST /api/v1/tenants`, `GET /api/v1/tenants/{tenant}`,
//! `PUT /api/v1/tenants/{tenant}/engine`. The rules live in
//! `service::tenants`.

use actix_web::{web, HttpResponse};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::Caller;
use crate::error::ApiError;
use crate::service::tenants::{self, EngineBody};
use crate::state::AppState;

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
    let name = tenants::parse_name(body.name.as_ref())?;
    let (tenant, api_key) = tenants::create(&state.store, &name).await?;
    let mut view = tenants::view(&state, &tenant).await?;
    view["api_key"] = json!(api_key.expose_secret());
    Ok(HttpResponse::Created().json(view))
}

pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant(&state, &path).await?;
    Ok(HttpResponse::Ok().json(tenants::view(&state, &tenant).await?))
}

pub async fn set_engine(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<EngineBody>,
) -> Result<HttpResponse, ApiError> {
    let tenant = caller.tenant(&state, &path).await?;
    let updated = tenants::set_engine(&state, &tenant, &body).await?;
    Ok(HttpResponse::Ok().json(tenants::engine_view(&state, &updated).await?))
}
