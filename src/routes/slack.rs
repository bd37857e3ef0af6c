//! Slack's three Request URLs (DESIGN.md "Slack", SLACK.md §1–4):
//! `POST /webhooks/slack/{connection}/events` (Events API, JSON),
//! `…/commands` (slash commands, form-encoded) and `…/interactions`
//! (`payload=` JSON of block actions, form-encoded).
//!
//! Each request: the body read under a size limit and handed with its
//! headers to [`callbacks::slack`], which checks and stores it; the answer
//! comes well within Slack's 3 seconds whatever the engine does.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::docs::{CallbackRefused, PublicPath};
use super::webhooks::{header, read_body, Received};
use crate::error::ApiError;
use crate::service::callbacks::{self, SlackAnswer as Answer, SlackHeaders, SlackKind as Kind};
use crate::state::AppState;
use crate::store::queue::Inserted;

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
        Answer::Skipped | Answer::AppRateLimited => {
            EventAnswer::Received(Received { status: "ignored" })
        }
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
        Ok((Answer::AppRateLimited, _)) => "app_rate_limited",
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
    let headers = SlackHeaders {
        timestamp: header(req, "x-slack-request-timestamp"),
        signature: header(req, "x-slack-signature"),
        content_type: header(req, "content-type"),
        retry_num: header(req, "x-slack-retry-num"),
    };
    callbacks::slack(state, path, kind, headers, &body).await
}
