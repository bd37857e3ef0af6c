//! `/healthz` (the process answers), `/readyz` (the database answers, the
//! schema is current, the workers are going round) and `/metrics`.

use std::sync::atomic::Ordering;

use actix_web::{web, HttpRequest, HttpResponse, ResponseError as _};
use serde::Serialize;

use secrecy::ExposeSecret as _;
use subtle::ConstantTimeEq as _;

use crate::domain::now_millis;
use crate::error::{ApiError, ErrorEnvelope};
use crate::state::AppState;

/// `/healthz`'s answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Alive {
    /// `ok`.
    #[schema(example = "ok")]
    status: &'static str,
}

#[utoipa::path(get, path = "/healthz",
    summary = "Liveness: the process answers", tag = "operations",
    responses((status = 200, description = "Alive", body = Alive)), security(()))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Alive { status: "ok" })
}

/// What `/readyz` checked.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ReadyChecks {
    /// `ok` or `unreachable`.
    database: &'static str,
    /// `current` or `behind` (a migration is missing).
    schema: &'static str,
    /// `running`, `stalled`, or `off` (this process runs no workers).
    workers: &'static str,
}

/// `/readyz`'s answer when ready.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Ready {
    /// `ready`.
    #[schema(example = "ready")]
    status: &'static str,
    checks: ReadyChecks,
}

/// `/readyz`'s answer when not ready: the error envelope with the checks.
#[derive(Serialize, utoipa::ToSchema)]
pub struct NotReady {
    error: NotReadyError,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct NotReadyError {
    /// `not_ready`.
    code: &'static str,
    message: &'static str,
    checks: ReadyChecks,
}

/// A worker that has not gone round for this long is considered stuck.
const WORKER_STALE_MS: i64 = 10_000;

#[utoipa::path(get, path = "/readyz",
    summary = "Readiness: database reachable, schema current, workers running", tag = "operations",
    responses((status = 200, description = "Ready", body = Ready), (status = 503, description = "Not ready", body = NotReady)),
    security(()))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let database = state.store.ping().await;
    let schema = match &database {
        Ok(()) => state.store.schema_current().await.unwrap_or(false),
        Err(_) => false,
    };
    let now = now_millis();
    let workers = !state.settings.workers
        || state
            .worker_ticks
            .iter()
            .all(|t| now - t.load(Ordering::Relaxed) < WORKER_STALE_MS);
    let checks = ReadyChecks {
        database: if database.is_ok() {
            "ok"
        } else {
            "unreachable"
        },
        schema: if schema { "current" } else { "behind" },
        workers: match (state.settings.workers, workers) {
            (false, _) => "off",
            (true, true) => "running",
            (true, false) => "stalled",
        },
    };
    if database.is_ok() && schema && workers {
        HttpResponse::Ok().json(Ready {
            status: "ready",
            checks,
        })
    } else {
        if let Err(e) = &database {
            tracing::warn!(error.message = %e, "readiness check failed");
        }
        HttpResponse::ServiceUnavailable().json(NotReady {
            error: NotReadyError {
                code: "not_ready",
                message: "botgate is not ready",
                checks,
            },
        })
    }
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics",
    summary = "Prometheus metrics (text exposition)", tag = "operations",
    responses((status = 200, description = "Metrics", content_type = "text/plain", body = String),
        (status = 401, description = "metrics_token is set and was not presented", body = ErrorEnvelope<'static>),
        (status = 403, description = "No metrics_token set: served only to unproxied requests from this machine", body = ErrorEnvelope<'static>)),
    security(()))]
pub async fn metrics(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    if let Err(refused) = may_scrape(&state, &req) {
        return refused.error_response();
    }
    let queues = state
        .store
        .queue_depths(now_millis())
        .await
        .unwrap_or_default();
    let [inbox, outbox] = state.store.results_committed();
    let mut text = state.metrics.render(
        &queues,
        state.store.cache_stats(),
        &[
            ("callbacks", state.ingest.commits.load(Ordering::Relaxed)),
            ("inbox_results", inbox),
            ("outbox_results", outbox),
        ],
    );
    let gauges = [
        (
            "botgate_slack_installations_needing_reinstall",
            "Slack workspaces whose refresh token was refused.",
            state.store.installations_needing_reinstall().await,
        ),
        (
            "botgate_naverworks_connections_needing_reauthorization",
            "NAVER WORKS user-account connections whose refresh token was refused.",
            state.store.connections_needing_reauthorization().await,
        ),
    ];
    for (name, help, value) in gauges {
        if let Ok(n) = value {
            text.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {n}\n"
            ));
        }
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text)
}

/// Who may read `/metrics`: a bearer of `metrics_token` when one is set,
/// else a request from this machine that no proxy forwarded (behind the
/// README's reverse proxy every request comes from loopback, with a
/// forwarding header).
fn may_scrape(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    if let Some(token) = &state.settings.metrics_token {
        let presented = super::extract::bearer(req).unwrap_or_default();
        let expected = token.expose_secret().as_bytes();
        return if bool::from(presented.as_bytes().ct_eq(expected)) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        };
    }
    let local = req.peer_addr().is_some_and(|a| a.ip().is_loopback());
    let proxied = ["forwarded", "x-forwarded-for", "x-real-ip"]
        .iter()
        .any(|h| req.headers().contains_key(*h));
    if local && !proxied {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "metrics are served to this machine only; set metrics_token to scrape them from elsewhere",
        ))
    }
}
