//! A connection's inbox and outbox through the API: events by status with
//! attempts and last error, replay of dead-lettered events, and the messages
//! sent or waiting.

use super::extract::ApiActor;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::docs::{ConnectionPath, Denied};
use super::extract::PathConnection;
use super::messages::{MessageList, MessageView};
use crate::domain::rfc3339;
use crate::error::{ApiError, ErrorEnvelope};
use crate::service::events;
use crate::state::AppState;
use crate::store::queue::InboundEvent;

const STATUSES: &[&str] = &[
    "pending",
    "processing",
    "done",
    "ignored",
    "dead",
    "refused",
];

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// pending | processing | done | ignored | dead | refused.
    status: Option<String>,
    limit: Option<i64>,
}

/// One inbound event as the API shows it (not its body).
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventView<'a> {
    pub id: &'a str,
    /// The callback's type: `message`, `postback`, `join`, …
    #[serde(rename = "type")]
    pub event_type: &'a str,
    /// `user:…` or `channel:…`: events of one conversation are handled in order.
    pub conversation: &'a str,
    /// pending | processing | done | ignored | dead | refused (over a tenant quota; replayable).
    pub status: &'a str,
    pub attempts: i64,
    pub last_error: Option<&'a str>,
    /// RFC 3339.
    pub received_at: String,
    pub updated_at: String,
}

impl<'a> From<&'a InboundEvent> for EventView<'a> {
    fn from(e: &'a InboundEvent) -> Self {
        Self {
            id: &e.id,
            event_type: &e.event_type,
            conversation: &e.conversation,
            status: &e.status,
            attempts: e.attempts,
            last_error: e.last_error.as_deref(),
            received_at: rfc3339(e.received_at),
            updated_at: rfc3339(e.updated_at),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct EventList<'a> {
    pub events: Vec<EventView<'a>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Replayed {
    /// How many dead events went back into the queue.
    pub replayed: u64,
}

/// `GET …/events?status=dead&limit=100`, newest first.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/connections/{connection}/events",
    summary = "Inbound events by status (pending, processing, done, ignored, dead, refused), newest first",
    tag = "events", params(ConnectionPath, ListQuery),
    responses((status = 200, description = "The events", body = EventList<'static>), Denied, (status = 422, description = "Unknown status", body = ErrorEnvelope<'static>)))]
pub async fn list(
    state: web::Data<AppState>,
    PathConnection(connection): PathConnection,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
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
    Ok(HttpResponse::Ok().json(EventList {
        events: events.iter().map(EventView::from).collect(),
    }))
}

/// `POST …/events/replay`: every dead event of the connection, back in the queue.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/connections/{connection}/events/replay",
    summary = "Replay every dead event and every callback refused over a quota", tag = "events", params(ConnectionPath),
    responses((status = 200, description = "How many", body = Replayed), Denied))]
pub async fn replay_all(
    state: web::Data<AppState>,
    PathConnection(connection): PathConnection,
    ApiActor(actor): ApiActor,
) -> Result<HttpResponse, ApiError> {
    let count = events::replay(&state, &connection, None, &actor).await?;
    Ok(HttpResponse::Ok().json(Replayed { replayed: count }))
}

/// `POST …/events/{event}/replay`: one dead event.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/connections/{connection}/events/{event}/replay",
    summary = "Replay one dead or refused event", tag = "events",
    params(ConnectionPath, ("event" = String, Path, description = "Event id (`evt_…`)")),
    responses((status = 200, description = "How many", body = Replayed), Denied))]
pub async fn replay_one(
    state: web::Data<AppState>,
    PathConnection(connection): PathConnection,
    ApiActor(actor): ApiActor,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let count = events::replay(&state, &connection, Some(&path.2), &actor).await?;
    if count == 0 {
        return Err(ApiError::NotFound("no dead event with this id"));
    }
    Ok(HttpResponse::Ok().json(Replayed { replayed: count }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct OutboxQuery {
    /// At most this many (1 to 10,000; 1,000 by default).
    limit: Option<i64>,
}

/// `GET …/outbox`: messages to this connection's users and rooms, oldest first.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/connections/{connection}/outbox",
    summary = "Messages to this connection's users and rooms, oldest first", tag = "events",
    params(ConnectionPath, OutboxQuery),
    responses((status = 200, description = "The messages (a queued one's status is `pending` here)", body = MessageList<'static>), Denied))]
pub async fn outbox(
    state: web::Data<AppState>,
    PathConnection(connection): PathConnection,
    query: web::Query<OutboxQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(1000).clamp(1, 10_000);
    let messages = state
        .store
        .messages(&connection.tenant_id, &connection.id, limit)
        .await?;
    Ok(HttpResponse::Ok().json(MessageList {
        messages: messages
            .iter()
            .map(|m| MessageView::of(m, &m.status))
            .collect(),
    }))
}
