//! The playground: for a connection whose platform is the emulator
//! (`playground_emulator_url`, which `botgate demo` sets), a chat page where
//! the builder types as a user. What they type goes to the emulator, which
//! sends botgate the signed request a real user's message would make (a
//! NAVER WORKS callback; a Slack event, slash command or button press); the
//! page polls a feed of the conversation (the stored callbacks and the
//! messages botgate sent, as the platform received them) and renders it
//! with `console.js`, each message's pipeline status one click away.
//!
//! The page keeps the console's rules: a session, the CSRF token on every
//! post, and a Content-Security-Policy that differs only in letting the
//! page's script call its own origin (`connect-src 'self'`) and show
//! images from https URLs.

use std::collections::HashMap;
use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use maud::html;
use serde_json::{json, Value};

use super::handlers::{
    connection, finish, html_page, posted_connection, session, text, Form, Page, Stop,
};
use super::i18n::T;
use super::pages::layout;
use super::session::Ctx;
use crate::channels::Channel;
use crate::error::ApiError;
use crate::service::connections;
use crate::state::AppState;
use crate::store::ConnectionRecord;

/// The page's policy: the console's, with its own origin to fetch from.
const PLAYGROUND_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' https:; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// The playground's user and room ids at the emulator: NAVER WORKS', and
/// Slack's (a `D…` channel is a direct message, a `C…` one a channel).
const USER: &str = "playground-user";
const ROOM: &str = "playground-room";
const SLACK_USER: &str = "U0PLAYGRND";
const SLACK_DM: &str = "D0PLAYGRND";
const SLACK_ROOM: &str = "C0PLAYGRND";

/// How many of the conversation's latest events and messages the feed holds.
const FEED_LIMIT: i64 = 60;

/// The built-in stickers (package, sticker) the page offers.
pub const STICKERS: &[(&str, &str)] = &[("1", "1"), ("1", "2"), ("2", "5")];

/// The emulator behind `connection`, if its platform is the emulator.
pub fn emulator_of(state: &AppState, connection: &ConnectionRecord) -> Option<String> {
    let emulator = state.settings.playground_emulator_url.as_ref()?;
    let base = emulator.as_str().trim_end_matches('/');
    let platform = match Channel::of(connection) {
        Channel::NaverWorks => &state.settings.naverworks_api_url,
        Channel::Slack => &state.settings.slack_api_url,
    };
    platform.as_str().starts_with(base).then(|| base.to_owned())
}

fn playground(ctx: &Ctx, c: &ConnectionRecord) -> Result<String, Stop> {
    emulator_of(&ctx.state, c)
        .ok_or_else(|| ApiError::NotFound("this connection's platform is not the emulator").into())
}

/// Whether a stored conversation key is the playground's 1:1 chat or room.
fn in_conversation(channel: Channel, key: &str, room: bool) -> bool {
    match channel {
        Channel::NaverWorks => {
            key == if room {
                "c:playground-room"
            } else {
                "u:playground-user"
            }
        }
        // `s:{team}:{channel}[:{thread}]`
        Channel::Slack => key.split(':').nth(2) == Some(if room { SLACK_ROOM } else { SLACK_DM }),
    }
}

pub async fn page(ctx: Ctx, path: web::Path<String>) -> HttpResponse {
    let page = async {
        let c = connection(&ctx, &path).await?;
        playground(&ctx, &c)?;
        let l = ctx.lang;
        let base = format!("/console/connections/{}/playground", c.id.as_str());
        let slack = Channel::of(&c) == Channel::Slack;
        let words = json!({
            "you": T::PlaygroundYou.get(l), "bot": T::PlaygroundBot.get(l),
            "status": T::PipelineStatus.get(l), "attempts": T::Attempts.get(l),
            "error": T::LastError.get(l), "stored": T::PipelineStored.get(l),
            "engine": T::PipelineEngine.get(l), "sent": T::PipelineSent.get(l),
            "sticker": T::Sticker.get(l), "image": T::Image.get(l),
            "failed": T::PlaygroundFailed.get(l),
        });
        let csrf = &session(&ctx)?.csrf;
        let body = html! {
            p { (T::PlaygroundIntro.get(l)) }
            section #playground data-feed={ (base) "/feed" } data-platform=(Channel::of(&c).name()) data-words=(words.to_string()) {
                nav.where {
                    label { input #where-user type="radio" name="where" value="user" checked; " " (T::OneToOne.get(l)) }
                    " "
                    label { input #where-room type="radio" name="where" value="room"; " " (T::InARoom.get(l)) }
                }
                ol #chat aria-live="polite" {}
                p #chat-error .alert role="alert" hidden {}
                form #say method="post" action={ (base) "/say" } {
                    input type="hidden" name="csrf" value=(csrf);
                    input #say-where type="hidden" name="where" value="user";
                    input #say-text type="text" name="text" maxlength="2000" autocomplete="off" placeholder=(T::TypeAMessage.get(l)) aria-label=(T::TypeAMessage.get(l));
                    " "
                    button #send type="submit" name="kind" value="text" { (T::Send.get(l)) }
                    " "
                    @if !slack {
                        @for (i, (package, sticker)) in STICKERS.iter().enumerate() {
                            button .sticker #{ "send-sticker-" (i) } type="submit" name="sticker" value={ (package) "-" (sticker) } { (T::Sticker.get(l)) " " (i + 1) }
                            " "
                        }
                        button #send-image type="submit" name="kind" value="image" { (T::Image.get(l)) }
                    }
                }
                @if slack { p.hint { (T::SlashHint.get(l)) } }
                noscript { p { (T::PlaygroundNeedsScript.get(l)) } }
            }
            p { a href={ "/console/connections/" (c.id.as_str()) } { (T::BackToConnection.get(l)) } }
        };
        let mut response = html_page(
            &ctx,
            StatusCode::OK,
            layout(
                &ctx,
                &format!("{} · {} {}", T::Playground.get(l), T::BotId.get(l), c.bot_id),
                body,
            ),
        );
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            header::HeaderValue::from_static(PLAYGROUND_POLICY),
        );
        Ok(response)
    }
    .await;
    finish(&ctx, page)
}

/// A JSON answer for the page's script.
fn json_error(status: StatusCode, code: &str, message: &str) -> Page {
    Ok(HttpResponse::build(status).json(json!({"error": {"code": code, "message": message}})))
}

/// What the user did, as the form says it.
enum Action {
    Text {
        text: String,
        /// A NAVER WORKS message action's postback.
        postback: Option<String>,
    },
    Postback(String),
    Sticker(&'static str, &'static str),
    Image,
    /// A Slack slash command: `/name` and the rest.
    Command(String, String),
}

/// The form's action and whether it is in the room, checked; or what is wrong.
fn action(
    form: &HashMap<String, String>,
    channel: Channel,
) -> Result<(bool, Action), &'static str> {
    let room = match text(form, "where").as_str() {
        "" | "user" => false,
        "room" => true,
        _ => return Err("where must be user or room"),
    };
    let bounded = |name: &str, max: usize| -> Result<Option<String>, &'static str> {
        let value = text(form, name);
        match value.chars().count() {
            0 => Ok(None),
            n if n > max => Err("too long"),
            _ => Ok(Some(value)),
        }
    };
    let sticker = text(form, "sticker");
    let kind = if sticker.is_empty() {
        text(form, "kind")
    } else {
        "sticker".to_owned()
    };
    let slack = channel == Channel::Slack;
    let action = match kind.as_str() {
        "" | "text" => {
            let said = bounded("text", 2000)?.ok_or("type a message first")?;
            match said.strip_prefix('/') {
                Some(command) if slack => {
                    let (name, rest) = command.split_once(' ').unwrap_or((command, ""));
                    if name.is_empty()
                        || name.len() > 32
                        || !name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    {
                        return Err("a slash command is / and a name of letters, digits, - or _");
                    }
                    Action::Command(format!("/{name}"), rest.trim().to_owned())
                }
                _ => Action::Text {
                    text: said,
                    postback: bounded("postback", 1000)?,
                },
            }
        }
        "postback" => Action::Postback(bounded("data", 1000)?.ok_or("a postback needs data")?),
        "sticker" | "image" if slack => return Err("Slack has no stickers or playground images"),
        "sticker" => {
            let (package, id) = STICKERS
                .iter()
                .find(|(p, s)| format!("{p}-{s}") == sticker)
                .ok_or("not one of the playground's stickers")?;
            Action::Sticker(package, id)
        }
        "image" => Action::Image,
        _ => return Err("kind must be text, postback, sticker or image"),
    };
    Ok((room, action))
}

/// Has the emulator send a NAVER WORKS callback; whether botgate took it.
async fn say_naverworks(
    state: &AppState,
    emulator: &str,
    c: &ConnectionRecord,
    webhook: Option<&str>,
    room: bool,
    action: Action,
) -> bool {
    let mut request = match action {
        Action::Text { text, postback } => {
            let mut content = json!({"type": "text", "text": text});
            if let Some(postback) = postback {
                content["postback"] = Value::String(postback);
            }
            json!({"type": "message", "content": content})
        }
        Action::Postback(data) => json!({"type": "postback", "data": data}),
        Action::Sticker(package, id) => {
            json!({"type": "message", "content": {"type": "sticker", "packageId": package, "stickerId": id}})
        }
        Action::Image => {
            // The built-in picture, as a file the user sent: the engine can
            // read it through its /files/ link.
            let Some(file_id) = user_file(state, emulator, &c.bot_id).await else {
                return false;
            };
            json!({"type": "message", "content": {"type": "image", "fileId": file_id}})
        }
        Action::Command(..) => return false,
    };
    request["bot_id"] = Value::String(c.bot_id.clone());
    request["user_id"] = Value::String(USER.to_owned());
    request["webhook_url"] = json!(webhook);
    if room {
        request["channel_id"] = Value::String(ROOM.to_owned());
    }
    let answer = post_json(state, &format!("{emulator}/emulator/callbacks"), &request).await;
    answer.is_some_and(|v| v["status"] == 200)
}

/// The playground's picture (a 16×16 PNG), sent as the user's file.
const PICTURE: &[u8] = include_bytes!("assets/playground.png");

/// Puts the picture at the emulator as a file the user sent; its fileId.
async fn user_file(state: &AppState, emulator: &str, bot_id: &str) -> Option<String> {
    let mut url = url::Url::parse(&format!("{emulator}/emulator/files")).ok()?;
    url.query_pairs_mut()
        .append_pair("bot_id", bot_id)
        .append_pair("name", "playground.png");
    let answer = emulator_answer(state.http.post(url).body(PICTURE)).await?;
    answer["fileId"].as_str().map(str::to_owned)
}

/// Has the emulator deliver a Slack event, command or button press.
async fn say_slack(
    state: &AppState,
    emulator: &str,
    c: &ConnectionRecord,
    view: &connections::ConnectionView,
    room: bool,
    action: Action,
) -> bool {
    // The emulator's app whose bot this connection's token is.
    let apps = state
        .http
        .get(format!("{emulator}/slack/emulator/apps"))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    let apps: Value = match apps {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(_) => return false,
    };
    let Some(app_id) = apps.as_array().and_then(|apps| {
        apps.iter()
            .find(|a| a["bot_id"].as_str() == Some(c.bot_id.as_str()))
            .and_then(|a| a["app_id"].as_str())
    }) else {
        return false;
    };
    let channel = if room { SLACK_ROOM } else { SLACK_DM };
    let (kind, url, extra) = match action {
        Action::Text { text, .. } => ("message", &view.events_url, json!({"text": text})),
        Action::Command(command, text) => (
            "command",
            &view.commands_url,
            json!({"command": command, "text": text}),
        ),
        Action::Postback(value) => ("action", &view.interactions_url, json!({"value": value})),
        Action::Sticker(..) | Action::Image => return false,
    };
    let mut request =
        json!({"app_id": app_id, "url": url, "kind": kind, "channel": channel, "user": SLACK_USER});
    if let (Some(request), Some(extra)) = (request.as_object_mut(), extra.as_object()) {
        request.extend(extra.clone());
    }
    let answer = post_json(
        state,
        &format!("{emulator}/slack/emulator/deliver"),
        &request,
    )
    .await;
    answer.is_some_and(|v| v["first"]["acked"] == true)
}

/// POSTs JSON to the emulator; its JSON answer if it was a success.
async fn post_json(state: &AppState, url: &str, body: &Value) -> Option<Value> {
    emulator_answer(state.http.post(url).json(body)).await
}

/// Sends a request to the emulator; its JSON answer if it was a success.
async fn emulator_answer(request: reqwest::RequestBuilder) -> Option<Value> {
    let response = request.timeout(Duration::from_secs(10)).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json::<Value>().await.ok()
}

/// `POST …/playground/say`: one thing the user does, sent by the emulator
/// as the platform's signed request to the connection's URLs.
pub async fn say(ctx: Ctx, req: HttpRequest, path: web::Path<String>, form: Form) -> HttpResponse {
    let page = async {
        let c = posted_connection(&ctx, &form, &path).await?;
        let emulator = playground(&ctx, &c)?;
        let fetch = req.headers().contains_key("x-botgate-fetch");
        let back = format!("/console/connections/{}/playground", c.id);
        let channel = Channel::of(&c);
        let (room, action) = match action(&form, channel) {
            Ok(parsed) => parsed,
            Err(problem) if fetch => {
                return json_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_message", problem)
            }
            Err(_) => return Ok(ctx.redirect(&back)),
        };
        let view = connections::view(&ctx.state, &c).await?;
        let delivered = match channel {
            Channel::NaverWorks => {
                say_naverworks(
                    &ctx.state,
                    &emulator,
                    &c,
                    view.webhook_url.as_deref(),
                    room,
                    action,
                )
                .await
            }
            Channel::Slack => say_slack(&ctx.state, &emulator, &c, &view, room, action).await,
        };
        if !fetch {
            return Ok(ctx.redirect(&back));
        }
        if delivered {
            Ok(HttpResponse::Ok().json(json!({"sent": true})))
        } else {
            json_error(
                StatusCode::BAD_GATEWAY,
                "emulator_failed",
                "the emulator did not deliver it, or botgate refused it",
            )
        }
    }
    .await;
    finish(&ctx, page)
}

/// `GET …/playground/feed?where=user|room`: the conversation, oldest first.
pub async fn feed(ctx: Ctx, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let page = async {
        let c = connection(&ctx, &path).await?;
        playground(&ctx, &c)?;
        let room = req.query_string().split('&').any(|p| p == "where=room");
        let channel = Channel::of(&c);
        let store = &ctx.state.store;
        let mut items: Vec<(i64, Value)> = Vec::new();
        for e in store.events(&c.tenant_id, &c.id, None, FEED_LIMIT).await? {
            if !in_conversation(channel, &e.conversation, room) {
                continue;
            }
            // As the engine sees it: a button's data, or the content.
            let turn = channel.turn(&e.event_type, &e.raw, e.received_at);
            let content = match turn.postback_data() {
                Some(data) if turn.kind == "postback" => json!({"type": "postback", "data": data}),
                _ => turn.content,
            };
            items.push((
                e.received_at,
                json!({"side": "user", "id": e.id, "kind": e.event_type, "content": content,
                       "status": e.status, "attempts": e.attempts, "error": e.last_error,
                       "at": e.received_at}),
            ));
        }
        for m in store
            .recent_messages(&c.tenant_id, &c.id, FEED_LIMIT)
            .await?
        {
            if !in_conversation(channel, &m.conversation, room) {
                continue;
            }
            let content: Value = serde_json::from_str(&m.content).unwrap_or(Value::Null);
            items.push((
                m.created_at,
                json!({"side": "bot", "id": m.id, "event": m.event_id, "content": content,
                       "status": m.status, "attempts": m.attempts, "error": m.last_error,
                       "at": m.created_at}),
            ));
        }
        items.sort_by_key(|(at, _)| *at);
        let items: Vec<Value> = items.into_iter().map(|(_, v)| v).collect();
        Ok(HttpResponse::Ok().json(json!({ "items": items })))
    }
    .await;
    finish(&ctx, page)
}
