//! Slack's three Request URLs (DESIGN.md "Slack", SLACK.md §1–4):
//! `POST /webhooks/slack/{connection}/events` (Events API, JSON),
//! `…/commands` (slash commands, form-encoded) and `…/interactions`
//! (`payload=` JSON of block actions, form-encoded).
//!
//! Each request: the body read under a size limit; the connection found
//! (404 otherwise, also for another channel's); the `v0=` signature over the
//! raw bytes checked in constant time with the timestamp within five minutes
//! (401 otherwise: nothing stored); the content type checked (415); the body
//! parsed (400); a new event committed to the inbox before the 200, a retry
//! of a stored one (the same `event_id`, or the same body) answered 200 and
//! not stored again. No engine and no Slack call happens here, so the answer
//! comes well within Slack's 3 seconds whatever the engine does.

use actix_web::{web, HttpRequest, HttpResponse};
use secrecy::ExposeSecret;
use serde::Serialize;

use super::docs::{CallbackRefused, PublicPath};
use super::webhooks::{read_body, store_event, webhook_connection, webhook_secret, Received};
use crate::channels::slack::{inbound, signature, Details};
use crate::channels::Channel;
use crate::domain::now_millis;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::queue::{Inserted, NewInbound};

/// How long a Slack event's dedup entry is kept after its `event_time`:
/// Slack retries at once, after about a minute and after about five
/// (SLACK.md §2 [S]); an hour covers them with room.
const RETRY_HORIZON_MS: i64 = 60 * 60 * 1000;

#[derive(Clone, Copy)]
enum Kind {
    Events,
    Commands,
    Interactions,
}

impl Kind {
    fn form(self) -> bool {
        !matches!(self, Kind::Events)
    }
}

enum Answer {
    Challenge(String),
    Skipped,
    Stored(Inserted),
}

/// The answer to Slack's `url_verification` (SLACK.md §2): its challenge,
/// echoed.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Challenge {
    challenge: String,
}

/// What the Events API Request URL answers.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum EventAnswer {
    Challenge(Challenge),
    Received(Received),
}

#[utoipa::path(post, path = "/webhooks/slack/{connection}/events",
    summary = "Slack Events API (X-Slack-Signature v0, X-Slack-Request-Timestamp)", tag = "slack",
    params(PublicPath),
    request_body(content = Object, description = "url_verification or event_callback, as Slack sends it"),
    responses((status = 200, description = "The challenge for url_verification, else what the event came to", body = EventAnswer), CallbackRefused),
    security(()))]
pub async fn events(request: Request) -> Result<HttpResponse, ApiError> {
    let answer = match handle(request, Kind::Events).await?.0 {
        Answer::Challenge(challenge) => EventAnswer::Challenge(Challenge { challenge }),
        Answer::Skipped => EventAnswer::Received(Received { status: "ignored" }),
        Answer::Stored(inserted) => EventAnswer::Received(Received {
            status: match inserted {
                Inserted::Duplicate => "duplicate",
                Inserted::Refused => "refused",
                _ => "accepted",
            },
        }),
    };
    Ok(HttpResponse::Ok().json(answer))
}

/// A slash command's immediate answer, seen only by the user who ran it
/// (SLACK.md §3).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Ephemeral {
    /// `ephemeral`.
    response_type: &'static str,
    text: String,
}

#[utoipa::path(post, path = "/webhooks/slack/{connection}/commands",
    summary = "Slack slash command (form-encoded, signed)", tag = "slack",
    params(PublicPath),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "command, text, team_id, channel_id, user_id, response_url, …"),
    responses((status = 200, description = "Empty, or the connection's command_ack_text as an ephemeral message", body = Ephemeral), CallbackRefused),
    security(()))]
pub async fn commands(request: Request) -> Result<HttpResponse, ApiError> {
    let (_, ack) = handle(request, Kind::Commands).await?;
    Ok(match ack {
        Some(text) => HttpResponse::Ok().json(Ephemeral {
            response_type: "ephemeral",
            text,
        }),
        None => HttpResponse::Ok().finish(),
    })
}

#[utoipa::path(post, path = "/webhooks/slack/{connection}/interactions",
    summary = "Slack interactivity: block actions (payload=, form-encoded, signed)", tag = "slack",
    params(PublicPath),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "payload = the interaction's JSON"),
    responses((status = 200, description = "Acknowledged (empty)"), CallbackRefused),
    security(()))]
pub async fn interactions(request: Request) -> Result<HttpResponse, ApiError> {
    handle(request, Kind::Interactions).await?;
    Ok(HttpResponse::Ok().finish())
}

/// What each Request URL's handler takes: the request, its `{connection}`,
/// the body still unread, and the app.
type Request = (
    HttpRequest,
    web::Path<String>,
    web::Payload,
    web::Data<AppState>,
);

/// `receive`, counted; the command acknowledgement text when one is set.
async fn handle(
    (req, path, payload, state): Request,
    kind: Kind,
) -> Result<(Answer, Option<String>), ApiError> {
    let result = receive(&req, &path, payload, &state, kind).await;
    let outcome = match &result {
        Ok((Answer::Stored(Inserted::Duplicate), _)) => "duplicate",
        Ok((Answer::Stored(Inserted::Refused), _)) => "refused",
        Ok((Answer::Stored(_), _)) => "accepted",
        Ok((Answer::Challenge(_), _)) => "challenge",
        Ok((Answer::Skipped, _)) => "ignored",
        Err(ApiError::Signature(_)) => "bad_signature",
        Err(ApiError::NotFound(_)) => "unknown_connection",
        Err(ApiError::PayloadTooLarge(_)) => "too_large",
        Err(_) => "invalid",
    };
    state.metrics.webhooks.inc(outcome);
    result
}

async fn receive(
    req: &HttpRequest,
    path: &str,
    payload: web::Payload,
    state: &AppState,
    kind: Kind,
) -> Result<(Answer, Option<String>), ApiError> {
    let body = read_body(payload).await?;
    let connection = webhook_connection(state, path, Channel::Slack).await?;
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let secret = webhook_secret(state, &connection).await?;
    let now = now_millis();
    if let Err(refusal) = signature::verify(
        secret.expose_secret().as_bytes(),
        header("x-slack-request-timestamp"),
        header("x-slack-signature"),
        &body,
        now / 1000,
    ) {
        tracing::warn!(connection_id = %connection.id, reason = refusal.message(), "Slack request refused");
        return Err(ApiError::Signature(refusal.message()));
    }
    let content_type = header("content-type").unwrap_or("").to_ascii_lowercase();
    let essence = content_type.split(';').next().unwrap_or("").trim();
    match (kind.form(), essence) {
        (false, "application/json") | (true, "application/x-www-form-urlencoded") => {}
        (false, _) => return Err(ApiError::MediaType("Slack's events are JSON (Content-Type: application/json)")),
        (true, _) => {
            return Err(ApiError::MediaType(
                "Slack's commands and interactions are form-encoded (application/x-www-form-urlencoded)",
            ))
        }
    }
    let parsed = match kind {
        Kind::Events => inbound::event_body(&body),
        Kind::Commands => inbound::command_body(&body),
        Kind::Interactions => inbound::interaction_body(&body),
    }
    .map_err(|m| ApiError::BadRequest("invalid_request", m))?;
    let ack = match kind {
        Kind::Commands => Details::of(&connection).command_ack_text,
        _ => None,
    };
    let event = match parsed {
        inbound::Parsed::Challenge(c) => return Ok((Answer::Challenge(c), None)),
        inbound::Parsed::Skipped(_) => return Ok((Answer::Skipped, None)),
        inbound::Parsed::Store(event) => event,
    };
    // A retry carries the same event_time: its entry counts from a time
    // that keeps it past Slack's retries (bounded, should a clock be off).
    let window = i64::try_from(state.settings.dedup_window.as_millis()).unwrap_or(i64::MAX / 4);
    let dedup_at = event
        .event_time
        .map(|s| s.saturating_mul(1000).clamp(now - RETRY_HORIZON_MS, now))
        .map_or(now, |t| (t + RETRY_HORIZON_MS - window).max(t));
    let (team, uninstalls) = (event.team.clone(), event.uninstalls);
    let stored = store_event(
        state,
        NewInbound {
            id: crate::domain::ids::queue_id("evt"),
            tenant_id: connection.tenant_id.clone(),
            connection_id: connection.id.clone(),
            conversation: event.conversation,
            event_type: event.event_type,
            // Commands and button presses are not retried: keyed by arrival.
            issued: if event.issued.is_empty() {
                crate::store::queue::issued_key(dedup_at)
            } else {
                event.issued
            },
            raw: body.to_vec(),
            body_hash: event.key_hash,
            received_at: now,
            dedup_at,
            refused: None,
        },
    )
    .await?;
    if uninstalls
        && state
            .store
            .delete_installation(&connection.id, &team)
            .await?
    {
        // Every replica reads installations from the database: gone for all.
        tracing::info!(connection_id = %connection.id, team_id = %team, "Slack workspace uninstalled; its tokens are deleted");
    }
    if stored == Inserted::Duplicate {
        let retry = header("x-slack-retry-num").unwrap_or("");
        tracing::info!(connection_id = %connection.id, retry = %retry.chars().take(4).collect::<String>(), "Slack delivery already stored; not processed again");
    }
    Ok((Answer::Stored(stored), ack))
}
