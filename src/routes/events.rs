//! A connection's inbox and outbox through the API: events by status with
//! attempts and last error, replay of dead-lettered events, and the messages
//! sent or waiting.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::Caller;
use crate::domain::rfc3339;
use crate::error::ApiError;
use crate::service::events;
use crate::state::AppState;
use crate::store::queue::{InboundEvent, OutboundMessage};

const STATUSES: &[&str] = &["pending", "processing", "done", "dead"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<i64>,
}

fn event_view(e: &InboundEvent) -> Value {
    json!({
        "id": e.id,
        "type": e.event_type,
        "conversation": e.conversation,
        "status": e.status,
        "attempts": e.attempts,
        "last_error": e.last_error,
        "received_at": rfc3339(e.received_at),
        "updated_at": rfc3339(e.updated_at),
    })
}

fn message_view(m: &OutboundMessage) -> Value {
    json!({
        "id": m.id,
        "event_id": m.event_id,
        "target": {"kind": m.target_kind, "id": m.target_id},
        "content": serde_json::from_str::<Value>(&m.content).unwrap_or(Value::Null),
        "status": m.status,
        "attempts": m.attempts,
        "last_error": m.last_error,
        "created_at": rfc3339(m.created_at),
        "delivered_at": m.delivered_at.map(rfc3339),
    })
}

/// `GET …/events?status=dead&limit=100`, newest first.
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let connection = caller.connection(&state, &path.0, &path.1).await?;
    let status = query.status.as_deref();
    if status.is_some_and(|s| !STATUSES.contains(&s)) {
        return Err(ApiError::validation(
            "status",
            format!("must be one of {}", STATUSES.join(", ")),
        ));
    }
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let events = state
        .store
        .events(&connection.tenant_id, &connection.id, status, limit)
        .await?;
    Ok(HttpResponse::Ok()
        .json(json!({"events": events.iter().map(event_view).collect::<Vec<_>>()})))
}

/// `POST …/events/replay`: every dead event of the connection, back in the queue.
pub async fn replay_all(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let connection = caller.connection(&state, &path.0, &path.1).await?;
    let count = events::replay(&state, &connection, None).await?;
    Ok(HttpResponse::Ok().json(json!({ "replayed": count })))
}

/// `POST …/events/{event}/replay`: one dead event.
pub async fn replay_one(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let connection = caller.connection(&state, &path.0, &path.1).await?;
    let count = events::replay(&state, &connection, Some(&path.2)).await?;
    if count == 0 {
        return Err(ApiError::NotFound("no dead event with this id"));
    }
    Ok(HttpResponse::Ok().json(json!({ "replayed": count })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxQuery {
    limit: Option<i64>,
}

/// `GET …/outbox`: messages to this connection's users and rooms, oldest first.
pub async fn outbox(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
    query: web::Query<OutboxQuery>,
) -> Result<HttpResponse, ApiError> {
    let connection = caller.connection(&state, &path.0, &path.1).await?;
    let limit = query.limit.unwrap_or(1000).clamp(1, 10_000);
    let messages = state
        .store
        .messages(&connection.tenant_id, &connection.id, limit)
        .await?;
    Ok(HttpResponse::Ok()
        .json(json!({"messages": messages.iter().map(message_view).collect::<Vec<_>>()})))
}
