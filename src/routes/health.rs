use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::startup::AppState;

/// Liveness: the process answers.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Readiness: the database answers.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.store.ping().await {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ready", "database": "ok"})),
        Err(e) => {
            tracing::warn!(error.message = %e, "readiness check failed");
            HttpResponse::ServiceUnavailable().json(json!({
                "error": {"code": "not_ready", "message": "the database is not reachable"}
            }))
        }
    }
}
