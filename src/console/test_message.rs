//! "Send a test message" on a connection's page: a text to a user or a room
//! id through the send API's service, then its delivery status on the page,
//! updated as it changes (the page's script polls a small JSON status).

use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use maud::{html, Markup};
use serde_json::json;

use super::handlers::{connection, finish, posted_connection, text, Form};
use super::i18n::T;
use super::pages::{alert, csrf, status_badge, status_text};
use super::session::Ctx;
use crate::channels::{Channel, Outgoing};
use crate::domain::FieldError;
use crate::error::ApiError;
use crate::store::queue::OutboundMessage;
use crate::store::{ConnectionRecord, Installation};

/// What the section shows besides its form.
#[derive(Default)]
pub enum Shown {
    #[default]
    Form,
    /// The message just sent, with its status.
    Sent(Box<OutboundMessage>),
    /// A refused form: its errors, and its values kept.
    Refused(Vec<FieldError>, HashMap<String, String>),
}

/// The section: the form, and the message just sent with its status. A
/// Slack connection's form names the workspace to send through: the pasted
/// token's, then each active installation's (`workspaces`).
pub fn section(
    ctx: &Ctx,
    c: &ConnectionRecord,
    workspaces: &[Installation],
    shown: &Shown,
) -> Markup {
    let l = ctx.lang;
    let id = c.id.as_str();
    let none = HashMap::new();
    let (sent, errors, values) = match shown {
        Shown::Form => (None, &[][..], &none),
        Shown::Sent(m) => (Some(m), &[][..], &none),
        Shown::Refused(errors, values) => (None, &errors[..], values),
    };
    let value = |name: &str| values.get(name).map_or("", String::as_str);
    let room = value("target") == "channel";
    let room_label = match Channel::of(c) {
        Channel::NaverWorks => T::RoomId,
        Channel::Slack => T::SlackChannelId,
    };
    let error = |field: &str| {
        errors
            .iter()
            .find(|e| e.field == field)
            .map(|e| super::i18n::say(&e.message, l))
    };
    let teams = Channel::of(c).sending_workspaces(c, workspaces);
    html! {
        section #send-test {
            h2 { (T::SendTestMessage.get(l)) }
            p { (T::SendTestIntro.get(l)) }
            @if let Some(m) = sent {
                p #test-message-status data-status=(m.status)
                    data-poll={ "/console/connections/" (id) "/messages/" (m.id) } {
                    code { (m.id) } " " (status_badge(&m.status, l))
                    " " span.attempts { (T::Attempts.get(l)) ": " (m.attempts) }
                    " " span.error-text { (m.last_error.as_deref().unwrap_or("")) }
                }
            }
            @if !errors.is_empty() { (alert(T::FixErrors.get(l))) }
            form.card #send-test-form method="post" action={ "/console/connections/" (id) "/send" } novalidate {
                (csrf(ctx))
                @if !teams.is_empty() || error("team_id").is_some() {
                    div.field {
                        label for="test-team" { (T::Workspace.get(l)) }
                        @if !teams.is_empty() {
                            select #test-team name="team_id" {
                                @for (team, name) in &teams {
                                    option value=(team) selected[value("team_id") == team] { (name) " (" (team) ")" }
                                }
                            }
                        }
                        @if let Some(e) = error("team_id") { p.error #test-team-error { (e) } }
                    }
                }
                fieldset.where {
                    label { input #test-to-user type="radio" name="target" value="user" checked[!room]; " " (T::UserId.get(l)) }
                    " "
                    label { input #test-to-room type="radio" name="target" value="channel" checked[room]; " " (room_label.get(l)) }
                }
                div.field {
                    label for="test-target" { (T::SendTo.get(l)) }
                    input #test-target type="text" name="target_id" autocomplete="off" spellcheck="false"
                        value=(value("target_id"));
                    @if let Some(e) = error("target_id") { p.error #test-target-error { (e) } }
                }
                div.field {
                    label for="test-text" { (T::MessageText.get(l)) }
                    input #test-text type="text" name="text" maxlength="2000" autocomplete="off"
                        value=(value("text"));
                    @if let Some(e) = error("text") { p.error #test-text-error { (e) } }
                }
                button #send-test-message type="submit" { (T::Send.get(l)) }
            }
        }
    }
}

/// Why the form's target is refused (the console says them in Korean too).
pub const TARGET_REFUSALS: [&str; 2] = [
    "must be a user or a room",
    "must be a non-empty id of at most 256 characters",
];

/// The form's message, checked as the send API checks it.
fn outgoing_of(
    form: &HashMap<String, String>,
    channel: Channel,
) -> Result<(&'static str, String, serde_json::Value), Vec<FieldError>> {
    let mut errors = Vec::new();
    let kind = match text(form, "target").as_str() {
        "" | "user" => "user",
        "channel" => "channel",
        _ => {
            errors.push(FieldError::new("target_id", TARGET_REFUSALS[0]));
            "user"
        }
    };
    let target = text(form, "target_id");
    if target.is_empty() || target.len() > 256 || target.chars().any(char::is_control) {
        errors.push(FieldError::new("target_id", TARGET_REFUSALS[1]));
    }
    let said = text(form, "text");
    if said.is_empty() {
        errors.push(FieldError::new("text", "is required"));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // botgate's text reply, as the connection's channel writes it.
    let content = channel
        .render(&json!({"type": "text", "text": said}))
        .map_err(|e| vec![FieldError::new("text", e)])?;
    Ok((kind, target, content))
}

/// `POST /console/connections/{id}/send`.
pub async fn send(ctx: Ctx, path: web::Path<String>, form: Form) -> HttpResponse {
    let page = async {
        let c = posted_connection(&ctx, &form, &path).await?;
        let refused = |errors: Vec<FieldError>| {
            let shown = Shown::Refused(errors, form.clone());
            super::handlers::connection_view_with(&ctx, &c, shown)
        };
        let (kind, target, content) = match outgoing_of(&form, Channel::of(&c)) {
            Ok(message) => message,
            Err(errors) => return refused(errors).await,
        };
        let outgoing = Outgoing {
            target_kind: kind,
            target_id: target,
            thread_ts: None,
            team_id: Some(text(&form, "team_id")).filter(|t| !t.is_empty()),
            content: &content,
            split_long_text: false,
        };
        match crate::service::messages::send(&ctx.state, &c, &outgoing, None).await {
            Ok(stored) => Ok(ctx.redirect(&format!(
                "/console/connections/{}?sent={}#send-test",
                c.id, stored[0].id
            ))),
            Err(ApiError::Validation(errors)) => refused(errors).await,
            Err(e) => Err(e.into()),
        }
    }
    .await;
    finish(&ctx, page)
}

/// `GET /console/connections/{id}/messages/{message}`: the page's poll.
pub async fn status(ctx: Ctx, path: web::Path<(String, String)>) -> HttpResponse {
    let page = async {
        let c = connection(&ctx, &path.0).await?;
        let m = ctx
            .state
            .store
            .message(&c.id, &path.1)
            .await?
            .ok_or(ApiError::NotFound("no such message"))?;
        let label = status_text(&m.status).map_or(m.status.as_str(), |t| t.get(ctx.lang));
        Ok(HttpResponse::Ok().json(json!({
            "status": m.status, "label": label, "attempts": m.attempts, "last_error": m.last_error,
        })))
    }
    .await;
    finish(&ctx, page)
}
