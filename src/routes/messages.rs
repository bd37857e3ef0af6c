//! The send API: internal services message a user or a room through a
//! connection, without knowing anything about JWTs, tokens or rate limits.
//!
//! - `POST /api/v1/connections/{connection}/messages`
//!   `{"user_id" | "channel_id", "content": {NAVER WORKS content}, "split_long_text"?}`
//!   → 202 `{"id", "status": "queued"}` once durably queued. The content is
//!   checked against the documented limits first (422 naming the field path).
//!   `split_long_text: true` sends a text over 2,000 characters as several
//!   messages (`ids` lists them) instead of refusing it. An `Idempotency-Key`
//!   header makes a retried request return the same message.
//! - `GET …/messages/{id}`: queued / sending / delivered / failed, attempts,
//!   last error, times; `GET …/messages?status=&since=&limit=` lists them.

use super::extract::ApiActor;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::docs::{Denied, SendPath};
use super::extract::PathConnection;
use crate::channels::Outgoing;
use crate::domain::FieldError;
use crate::error::{ApiError, ErrorEnvelope};
use crate::service::messages::status_name;
pub use crate::service::messages::MessageView;
use crate::state::AppState;

/// One of `user_id` and `channel_id`, and the NAVER WORKS `content`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    #[schema(value_type = Option<String>)]
    user_id: Option<Value>,
    #[schema(value_type = Option<String>)]
    channel_id: Option<Value>,
    /// The channel's message: NAVER WORKS content, e.g. `{"type": "text",
    /// "text": "…"}`; for Slack a message body, e.g. `{"text": "…",
    /// "blocks": […]}`.
    #[schema(value_type = Object)]
    content: Option<Value>,
    /// Slack: the thread to post in.
    #[schema(value_type = Option<String>)]
    thread_ts: Option<Value>,
    /// Slack: the workspace (team id) to send through: the pasted token's
    /// when left out; required for a connection that sends through its
    /// installations, and refused (422) unless the app is installed there.
    #[schema(value_type = Option<String>)]
    team_id: Option<Value>,
    /// NAVER WORKS: split a text longer than 2,000 characters into several
    /// messages.
    split_long_text: Option<bool>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct MessageList<'a> {
    pub messages: Vec<MessageView<'a>>,
}

/// A message durably queued.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Queued<'a> {
    /// The (first) message's id.
    pub id: &'a str,
    /// `queued` (or, for a repeated Idempotency-Key, the first message's
    /// status now).
    pub status: &'a str,
    /// With `split_long_text`, every message's id, in order (when more than
    /// one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<&'a str>>,
}

fn target_id(field: &str, value: &Value) -> Result<String, FieldError> {
    match value {
        // User ids may be login e-mails; channel ids are opaque strings.
        Value::String(s)
            if !s.trim().is_empty() && s.len() <= 256 && !s.chars().any(char::is_control) =>
        {
            Ok(s.trim().to_owned())
        }
        Value::Number(n) if n.is_u64() => Ok(n.to_string()),
        _ => Err(FieldError::new(
            field,
            "must be a non-empty id of at most 256 characters",
        )),
    }
}

#[utoipa::path(post, path = "/api/v1/connections/{connection}/messages",
    summary = "Send a message to a user or a room (Idempotency-Key honoured)", tag = "messages",
    params(SendPath, ("Idempotency-Key" = Option<String>, Header, description = "Repeats with the same key answer the first message")),
    request_body = SendBody,
    responses((status = 202, description = "Durably queued", body = Queued<'static>), (status = 400, description = "Bad Idempotency-Key", body = ErrorEnvelope<'static>), Denied, (status = 422, description = "Invalid message; the field path and limit are named", body = ErrorEnvelope<'static>)))]
pub async fn send(
    req: HttpRequest,
    state: web::Data<AppState>,
    PathConnection(record): PathConnection,
    body: web::Json<SendBody>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = Vec::new();
    let target = match (&body.user_id, &body.channel_id) {
        (Some(u), None) => target_id("user_id", u)
            .map(|id| ("user", id))
            .map_err(|e| errors.push(e))
            .ok(),
        (None, Some(c)) => target_id("channel_id", c)
            .map(|id| ("channel", id))
            .map_err(|e| errors.push(e))
            .ok(),
        _ => {
            errors.push(FieldError::new(
                "user_id",
                "give exactly one of user_id and channel_id",
            ));
            None
        }
    };
    let key = match req.headers().get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(k)) if !k.trim().is_empty() && k.len() <= 255 => Some(k.trim().to_owned()),
        Some(_) => {
            return Err(ApiError::BadRequest(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 visible characters".into(),
            ))
        }
    };
    let Some(content) = body.content.as_ref() else {
        errors.push(FieldError::new(
            "content",
            "is required: the channel's message object",
        ));
        return Err(ApiError::Validation(errors));
    };
    let mut text_field = |name: &str, value: &Option<Value>| match value {
        None | Some(Value::Null) => None,
        Some(Value::String(v)) => Some(v.clone()),
        Some(_) => {
            errors.push(FieldError::new(name, "must be a string"));
            None
        }
    };
    let thread_ts = text_field("thread_ts", &body.thread_ts);
    let team_id = text_field("team_id", &body.team_id);
    let (Some((kind, target)), true) = (target, errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let stored = crate::service::messages::send(
        &state,
        &record,
        &Outgoing {
            target_kind: kind,
            target_id: target,
            thread_ts,
            team_id,
            content,
            split_long_text: body.split_long_text == Some(true),
        },
        key.as_deref(),
    )
    .await?;
    let first = &stored[0];
    Ok(HttpResponse::Accepted().json(Queued {
        id: &first.id,
        status: status_name(&first.status),
        ids: (stored.len() > 1).then(|| stored.iter().map(|m| m.id.as_str()).collect()),
    }))
}

#[utoipa::path(get, path = "/api/v1/connections/{connection}/messages/{id}",
    summary = "A message's delivery status", tag = "messages",
    params(SendPath, ("id" = String, Path, description = "Message id (`msg_…`)")),
    responses((status = 200, description = "Its status (queued | sending | delivered | failed | cancelled), attempts and last error", body = MessageView<'static>), Denied))]
pub async fn get(
    state: web::Data<AppState>,
    PathConnection(record): PathConnection,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let message = state
        .store
        .message(&record.id, &path.1)
        .await?
        .ok_or(ApiError::NotFound("no such message"))?;
    Ok(HttpResponse::Ok().json(MessageView::of(&message, status_name(&message.status))))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// queued | sending | delivered | failed | cancelled.
    status: Option<String>,
    /// RFC 3339; messages created at or after it.
    since: Option<String>,
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/connections/{connection}/messages",
    summary = "List messages by status and time", tag = "messages", params(SendPath, ListQuery),
    responses((status = 200, description = "The messages", body = MessageList<'static>), Denied, (status = 422, description = "Bad filter", body = ErrorEnvelope<'static>)))]
pub async fn list(
    state: web::Data<AppState>,
    PathConnection(record): PathConnection,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let status = match query.status.as_deref() {
        None => None,
        Some("queued") => Some("pending"),
        Some(s @ ("sending" | "delivered" | "failed" | "cancelled")) => Some(s),
        Some(_) => {
            return Err(ApiError::validation(
                "status",
                "must be queued, sending, delivered, failed or cancelled",
            ))
        }
    };
    let since = match &query.since {
        None => 0,
        Some(text) => {
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .map(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0))
                .map_err(|_| {
                    ApiError::validation(
                        "since",
                        "must be an RFC 3339 time, e.g. 2026-11-23T00:00:00Z",
                    )
                })?
        }
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let messages = state
        .store
        .list_messages(&record.id, status, since, limit)
        .await?;
    Ok(HttpResponse::Ok().json(MessageList {
        messages: messages
            .iter()
            .map(|m| MessageView::of(m, status_name(&m.status)))
            .collect(),
    }))
}

/// Failed messages put back in the outbox.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RetriedView<'a> {
    /// How many were put back (at most 1,000 a request, oldest first).
    pub retried: usize,
    /// Their ids, in the order they were put back.
    pub ids: Vec<&'a str>,
    /// Failed messages left: call again while this is above zero.
    pub remaining: i64,
}

#[utoipa::path(post, path = "/api/v1/connections/{connection}/messages/retry",
    summary = "Send the connection's failed messages again (the oldest 1,000)", tag = "messages",
    params(SendPath),
    responses((status = 202, description = "Put back in the outbox, each at the back of its conversation's queue", body = RetriedView<'static>), Denied, (status = 429, description = "Over the tenant's open-rows quota", body = ErrorEnvelope<'static>)))]
pub async fn retry_all(
    state: web::Data<AppState>,
    PathConnection(record): PathConnection,
    ApiActor(actor): ApiActor,
) -> Result<HttpResponse, ApiError> {
    let retried = crate::service::messages::retry(&state, &record, None, &actor).await?;
    Ok(HttpResponse::Accepted().json(RetriedView {
        retried: retried.messages.len(),
        ids: retried.messages.iter().map(|m| m.id.as_str()).collect(),
        remaining: retried.remaining,
    }))
}

#[utoipa::path(post, path = "/api/v1/connections/{connection}/messages/{id}/retry",
    summary = "Send a failed message again", tag = "messages",
    params(SendPath, ("id" = String, Path, description = "Message id (`msg_…`)")),
    responses((status = 202, description = "Queued again: same id, content and target, no attempts", body = MessageView<'static>), Denied, (status = 409, description = "The message has not failed", body = ErrorEnvelope<'static>), (status = 429, description = "Over the tenant's open-rows quota", body = ErrorEnvelope<'static>)))]
pub async fn retry_one(
    state: web::Data<AppState>,
    PathConnection(record): PathConnection,
    ApiActor(actor): ApiActor,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let retried = crate::service::messages::retry(&state, &record, Some(&path.1), &actor).await?;
    let message = retried
        .messages
        .first()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no message put back")))?;
    Ok(HttpResponse::Accepted().json(MessageView::of(message, status_name(&message.status))))
}

/// Queued messages cancelled.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CancelledView {
    /// How many were cancelled (none were sent or will be).
    pub cancelled: u64,
}

#[utoipa::path(post, path = "/api/v1/connections/{connection}/messages/cancel",
    summary = "Cancel every queued message of the connection (not those being sent)", tag = "messages",
    params(SendPath),
    responses((status = 200, description = "How many were cancelled", body = CancelledView), Denied))]
pub async fn cancel_all(
    state: web::Data<AppState>,
    PathConnection(record): PathConnection,
    ApiActor(actor): ApiActor,
) -> Result<HttpResponse, ApiError> {
    let (cancelled, _) = crate::service::messages::cancel(&state, &record, None, &actor).await?;
    Ok(HttpResponse::Ok().json(CancelledView { cancelled }))
}

#[utoipa::path(post, path = "/api/v1/connections/{connection}/messages/{id}/cancel",
    summary = "Cancel a queued message", tag = "messages",
    params(SendPath, ("id" = String, Path, description = "Message id (`msg_…`)")),
    responses((status = 200, description = "Cancelled: it will not be sent", body = MessageView<'static>), Denied, (status = 409, description = "The message is not queued (being sent, or done)", body = ErrorEnvelope<'static>)))]
pub async fn cancel_one(
    state: web::Data<AppState>,
    PathConnection(record): PathConnection,
    ApiActor(actor): ApiActor,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (_, message) =
        crate::service::messages::cancel(&state, &record, Some(&path.1), &actor).await?;
    let message =
        message.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no message cancelled")))?;
    Ok(HttpResponse::Ok().json(MessageView::of(&message, status_name(&message.status))))
}
