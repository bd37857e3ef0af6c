//! The playground: for a connection whose platform is the emulator
//! (`playground_emulator_url`, which `botgate demo` sets), a chat page where
//! the builder types as a user. What they type goes to the emulator, which
//! sends botgate the signed callback a real user's message would make; the
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
    connection, finish, genuine, html_page, session, tenant, text, Form, Page, Stop,
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

/// The playground's user and room ids at the emulator.
const USER: &str = "playground-user";
const ROOM: &str = "playground-room";

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
        Channel::Slack => return None,
    };
    platform.as_str().starts_with(base).then(|| base.to_owned())
}

fn playground(ctx: &Ctx, c: &ConnectionRecord) -> Result<String, Stop> {
    emulator_of(&ctx.state, c)
        .ok_or_else(|| ApiError::NotFound("this connection's platform is not the emulator").into())
}

fn conversation_key(room: bool) -> String {
    if room {
        format!("c:{ROOM}")
    } else {
        format!("u:{USER}")
    }
}

pub async fn page(ctx: Ctx, path: web::Path<String>) -> HttpResponse {
    let page = async {
        let t = tenant(&ctx)?;
        let c = connection(&ctx, t, &path).await?;
        playground(&ctx, &c)?;
        let l = ctx.lang;
        let base = format!("/console/connections/{}/playground", c.id.as_str());
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
            section #playground data-feed={ (base) "/feed" } data-words=(words.to_string()) {
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
                    @for (i, (package, sticker)) in STICKERS.iter().enumerate() {
                        button .sticker #{ "send-sticker-" (i) } type="submit" name="sticker" value={ (package) "-" (sticker) } { (T::Sticker.get(l)) " " (i + 1) }
                        " "
                    }
                    button #send-image type="submit" name="kind" value="image" { (T::Image.get(l)) }
                }
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

/// What the form asks the emulator to send, checked; or what is wrong.
fn callback(form: &HashMap<String, String>) -> Result<(bool, Value), &'static str> {
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
    let request = match kind.as_str() {
        "" | "text" => {
            let said = bounded("text", 2000)?.ok_or("type a message first")?;
            let mut content = json!({"type": "text", "text": said});
            if let Some(postback) = bounded("postback", 1000)? {
                content["postback"] = Value::String(postback);
            }
            json!({"type": "message", "content": content})
        }
        "postback" => {
            let data = bounded("data", 1000)?.ok_or("a postback needs data")?;
            json!({"type": "postback", "data": data})
        }
        "sticker" => {
            let (package, id) = STICKERS
                .iter()
                .find(|(p, s)| format!("{p}-{s}") == sticker)
                .ok_or("not one of the playground's stickers")?;
            json!({"type": "message", "content": {"type": "sticker", "packageId": package, "stickerId": id}})
        }
        "image" => {
            json!({"type": "message", "content": {"type": "image", "fileId": "playground-image-1"}})
        }
        _ => return Err("kind must be text, postback, sticker or image"),
    };
    Ok((room, request))
}

/// `POST …/playground/say`: one thing the user does, sent by the emulator
/// as a signed callback to the connection's webhook.
pub async fn say(ctx: Ctx, req: HttpRequest, path: web::Path<String>, form: Form) -> HttpResponse {
    let page = async {
        genuine(&ctx, &form)?;
        let t = tenant(&ctx)?;
        let c = connection(&ctx, t, &path).await?;
        let emulator = playground(&ctx, &c)?;
        let fetch = req.headers().contains_key("x-botgate-fetch");
        let (room, mut request) = match callback(&form) {
            Ok(parsed) => parsed,
            Err(problem) if fetch => {
                return json_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_message", problem)
            }
            Err(_) => return Ok(ctx.redirect(&format!("/console/connections/{}/playground", c.id))),
        };
        let view = connections::view(&ctx.state, &c).await?;
        request["bot_id"] = Value::String(c.bot_id.clone());
        request["user_id"] = Value::String(USER.to_owned());
        request["webhook_url"] = json!(view.webhook_url);
        if room {
            request["channel_id"] = Value::String(ROOM.to_owned());
        }
        let sent = ctx
            .state
            .http
            .post(format!("{emulator}/emulator/callbacks"))
            .timeout(Duration::from_secs(10))
            .json(&request)
            .send()
            .await;
        let delivered = match sent {
            Ok(response) if response.status().is_success() => response
                .json::<Value>()
                .await
                .ok()
                .is_some_and(|v| v["status"] == 200),
            _ => false,
        };
        if !fetch {
            return Ok(ctx.redirect(&format!("/console/connections/{}/playground", c.id)));
        }
        if delivered {
            Ok(HttpResponse::Ok().json(json!({"sent": true})))
        } else {
            json_error(
                StatusCode::BAD_GATEWAY,
                "emulator_failed",
                "the emulator did not deliver the callback, or botgate refused it",
            )
        }
    }
    .await;
    finish(&ctx, page)
}

/// `GET …/playground/feed?where=user|room`: the conversation, oldest first.
pub async fn feed(ctx: Ctx, req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    let page = async {
        let t = tenant(&ctx)?;
        let c = connection(&ctx, t, &path).await?;
        playground(&ctx, &c)?;
        let room = req.query_string().split('&').any(|p| p == "where=room");
        let key = conversation_key(room);
        let store = &ctx.state.store;
        let mut items: Vec<(i64, Value)> = Vec::new();
        for e in store.events(&t.id, &c.id, None, FEED_LIMIT).await? {
            if e.conversation != key {
                continue;
            }
            let raw: Value = serde_json::from_slice(&e.raw).unwrap_or(Value::Null);
            let content = match raw["type"].as_str() {
                Some("postback") => json!({"type": "postback", "data": raw["data"]}),
                _ => raw["content"].clone(),
            };
            items.push((
                e.received_at,
                json!({"side": "user", "id": e.id, "kind": e.event_type, "content": content,
                       "status": e.status, "attempts": e.attempts, "error": e.last_error,
                       "at": e.received_at}),
            ));
        }
        for m in store.recent_messages(&t.id, &c.id, FEED_LIMIT).await? {
            if m.conversation != key {
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
