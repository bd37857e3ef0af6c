//! The NAVER WORKS adapter: callbacks into turns, replies into Bot API
//! content, and delivery with the connection's shared JWT-granted token.
//! The protocol itself (JWT grant, token client, signatures, content limits)
//! is `crate::naverworks`.
//!
//! Delivery outcomes (NAVERWORKS.md §4.4):
//! - 201: delivered.
//! - 401/403 `UNAUTHORIZED`: one forced token refresh, then one more try.
//! - 429: wait out `rateLimit-reset` (the connection pauses; not counted).
//! - 5xx, network errors, token endpoint down: backoff with jitter, counted.
//! - other 4xx (validation, unknown user): failed, with NAVER WORKS' error.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use super::{bounded_text, Outgoing, Reply, Sent, Turn};
use crate::domain::{str_field, FieldError};
use crate::naverworks::content::{split_text, validate_message, TEXT_LIMIT};
use crate::state::AppState;
use crate::store::queue::{NewOutbound, OutboundMessage};
use crate::store::{ConnectionRecord, TokenMeta};

/// The event type and conversation key of a callback: `c:<channelId>` for a
/// room, `u:<userId>` for a 1:1 chat (which has no channelId, §3.3). Unknown
/// types and fields are accepted: the platform adds them.
pub fn classify(callback: &Value) -> Result<(String, String), String> {
    let event_type = str_field(callback, "type").ok_or("the callback has no type")?;
    let source = callback
        .get("source")
        .and_then(Value::as_object)
        .ok_or("the callback has no source")?;
    let id = |name: &str| {
        source
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 256)
    };
    let conversation = match (id("channelId"), id("userId")) {
        (Some(channel), _) => format!("c:{channel}"),
        (None, Some(user)) => format!("u:{user}"),
        (None, None) => return Err("the callback's source has neither channelId nor userId".into()),
    };
    if event_type.is_empty() || event_type.len() > 64 {
        return Err("the callback's type is not a short string".into());
    }
    Ok((event_type.to_owned(), conversation))
}

/// The callback's `issuedTime` (`YYYY-MM-DDThh:mm:ss[.SSS]Z`, §3.3) in
/// Unix milliseconds; `None` if it has none or an unreadable one.
pub fn issued_millis(callback: &Value) -> Option<i64> {
    let text = str_field(callback, "issuedTime").filter(|s| s.len() <= 64)?;
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// A stored callback as the engines see it (DESIGN.md's example is this
/// shape): the source's ids, the content as sent, a postback's `data`.
pub fn turn(raw: &[u8], received_at: i64) -> Turn {
    let callback: Value = serde_json::from_slice(raw).unwrap_or(Value::Null);
    let source = |field: &str| {
        callback
            .get("source")
            .and_then(|s| s.get(field))
            .and_then(Value::as_str)
    };
    let domain = callback
        .get("source")
        .and_then(|s| s.get("domainId"))
        .cloned()
        .unwrap_or(Value::Null);
    Turn {
        channel: super::Channel::NaverWorks,
        kind: str_field(&callback, "type").unwrap_or("").to_owned(),
        conversation: json!({"user_id": source("userId"), "channel_id": source("channelId"), "domain_id": domain}),
        content: callback.get("content").cloned().unwrap_or(Value::Null),
        postback: callback.get("data").map(|data| json!({ "data": data })),
        issued_time: callback.get("issuedTime").cloned().unwrap_or(Value::Null),
        received_at,
        ignored: None,
        raw: callback,
    }
}

/// A sample 1:1 text callback (NAVERWORKS.md's message callback shape).
pub fn sample_turn(text: &str, now: i64) -> Turn {
    let callback = json!({
        "type": "message",
        "source": {"userId": "botgate-engine-test", "domainId": 0},
        "issuedTime": crate::domain::rfc3339(now),
        "content": {"type": "text", "text": text},
    });
    turn(callback.to_string().as_bytes(), now)
}

/// Maps botgate's reply forms (DESIGN.md) to NAVER WORKS content, checked
/// against the documented limits.
pub fn render(reply: &Value) -> Result<Value, String> {
    let reply = Reply::parse(reply)?;
    let content = match reply.kind {
        "text" => json!({"type": "text", "text": reply.text("text")?}),
        kind @ ("image" | "file" | "audio" | "video") => {
            if let Some(data) = reply.value.get("data_base64") {
                // Uploaded at delivery (create attachment → upload → fileId).
                return super::files::upload_request(kind, reply.value.get("name"), data);
            }
            let url = reply.text("url")?;
            if !super::files::platform_reachable(url) {
                return super::files::upload_from_url(kind, url);
            }
            if kind == "image" {
                json!({"type": "image", "previewImageUrl": url, "originalContentUrl": url})
            } else {
                json!({"type": kind, "originalContentUrl": url})
            }
        }
        "buttons" => {
            let actions = reply
                .buttons()?
                .iter()
                .map(button_action)
                .collect::<Result<Vec<_>, _>>()?;
            json!({"type": "button_template", "contentText": reply.text("text")?, "actions": actions})
        }
        "native" => reply.native()?,
        // The engine's value is not repeated: the error is stored for the tenant.
        _ => return Err("unknown reply type".to_owned()),
    };
    validate_message(&json!({ "content": content }))
        .map_err(|e| format!("reply is not valid NAVER WORKS content: {e}"))?;
    Ok(content)
}

/// A button: `{label, postback}` → a message action carrying the postback,
/// `{label, url}` → a uri action.
fn button_action(button: &Value) -> Result<Value, String> {
    let label = str_field(button, "label").ok_or("a button needs a label")?;
    if let Some(url) = str_field(button, "url") {
        return Ok(json!({"type": "uri", "label": label, "uri": url}));
    }
    let postback = str_field(button, "postback").ok_or("a button needs postback or url")?;
    Ok(json!({"type": "message", "label": label, "text": label, "postback": postback}))
}

/// Where replies to a callback go: its room, else its user (NAVERWORKS.md §4.1).
fn reply_target(callback: &Value) -> Option<(&'static str, String)> {
    let source = callback.get("source")?;
    if let Some(channel) = str_field(source, "channelId") {
        return Some(("channel", channel.to_owned()));
    }
    str_field(source, "userId").map(|u| ("user", u.to_owned()))
}

pub fn replies(turn: &Turn, rendered: Vec<Value>) -> Vec<NewOutbound> {
    let Some((kind, target)) = reply_target(&turn.raw) else {
        return Vec::new();
    };
    rendered
        .into_iter()
        .map(|content| NewOutbound {
            id: crate::domain::ids::new_message_id(),
            target_kind: kind,
            target_id: target.clone(),
            content: content.to_string(),
        })
        .collect()
}

/// The request's content; a text over the limit, when the request asks,
/// as several texts.
fn split_if_asked(request: &Outgoing<'_>) -> Vec<Value> {
    let content = request.content;
    let long_text = str_field(content, "type") == Some("text")
        && str_field(content, "text").is_some_and(|t| t.chars().count() > TEXT_LIMIT);
    if !(request.split_long_text && long_text) {
        return vec![content.clone()];
    }
    split_text(str_field(content, "text").unwrap_or_default())
        .into_iter()
        .map(|part| {
            let mut c = content.clone();
            c["text"] = json!(part);
            c
        })
        .collect()
}

/// A send-API message (a long text split when asked): each content checked
/// against the documented limits; the same conversation key as replies, so
/// both keep one order.
pub fn outgoing(request: &Outgoing<'_>) -> Result<(String, Vec<NewOutbound>), Vec<FieldError>> {
    for (set, name) in [
        (request.thread_ts.is_some(), "thread_ts"),
        (request.team_id.is_some(), "team_id"),
    ] {
        if set {
            return Err(vec![FieldError::new(name, "is for Slack connections")]);
        }
    }
    let contents = split_if_asked(request);
    for c in &contents {
        if let Err(message) = validate_message(&json!({ "content": c })) {
            let (field, reason) = message
                .split_once(": ")
                .unwrap_or(("content", message.as_str()));
            return Err(vec![FieldError::new(field, reason)]);
        }
    }
    let target = &request.target_id;
    let conversation = format!(
        "{}:{target}",
        if request.target_kind == "channel" {
            "c"
        } else {
            "u"
        }
    );
    let messages = contents
        .iter()
        .map(|c| NewOutbound {
            id: crate::domain::ids::new_message_id(),
            target_kind: request.target_kind,
            target_id: target.clone(),
            content: c.to_string(),
        })
        .collect();
    Ok((conversation, messages))
}

/// The connection's shared token, fetched on a task of its own: an attempt
/// that gives up at its deadline leaves the refresh running, so that it
/// completes (and releases its lease) for the next attempt and every other
/// caller, instead of being cut off in the middle.
pub(crate) async fn shared_token(
    state: &AppState,
    connection: &ConnectionRecord,
    meta: Option<TokenMeta>,
    force: bool,
) -> Result<crate::token_cache::ServedToken, String> {
    let (tokens, connection) = (state.tokens.clone(), connection.clone());
    tokio::spawn(async move { tokens.token(&connection, meta, force).await })
        .await
        .map_err(|e| format!("the token task failed: {e}"))?
        .map_err(|e| e.to_string())
}

/// The most of a Bot API answer read (its errors are short JSON).
const ANSWER_CAP: usize = 64 * 1024;

/// The token, one send, and on `UNAUTHORIZED` one refresh and one more send.
pub async fn deliver(
    state: &AppState,
    connection: &ConnectionRecord,
    meta: Option<TokenMeta>,
    message: &OutboundMessage,
) -> Result<Sent, String> {
    let token = match shared_token(state, connection, meta, false).await {
        Ok(t) => t,
        Err(e) => {
            state.metrics.sends.inc("token_error");
            return Err(format!("no token: {e}"));
        }
    };
    let outcome = send(state, connection, message, &token.access_token).await;
    if !matches!(outcome, Sent::Unauthorized(_)) {
        return Ok(outcome);
    }
    let meta = state
        .store
        .token_meta(&connection.id)
        .await
        .map_err(|e| format!("the token row could not be read: {e}"))?;
    match shared_token(state, connection, meta, true).await {
        Ok(fresh) => Ok(send(state, connection, message, &fresh.access_token).await),
        Err(e) => Err(format!("token refresh failed: {e}")),
    }
}

/// `send_once`, timed and counted.
async fn send(
    state: &AppState,
    connection: &ConnectionRecord,
    message: &OutboundMessage,
    token: &SecretString,
) -> Sent {
    let started = std::time::Instant::now();
    let sent = send_once(state, connection, message, token).await;
    state.metrics.send_endpoints.inc(endpoint(message));
    state.metrics.send_latency.observe(started.elapsed());
    state.metrics.sends.inc(sent.label());
    sent
}

fn endpoint(message: &OutboundMessage) -> &'static str {
    if message.target_kind == "channel" {
        "channels"
    } else {
        "users"
    }
}

async fn send_once(
    state: &AppState,
    connection: &ConnectionRecord,
    message: &OutboundMessage,
    token: &SecretString,
) -> Sent {
    let Ok(mut url) = url::Url::parse(state.settings.naverworks_api_url.as_str()) else {
        return Sent::Rejected("the API URL is invalid".into());
    };
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().extend([
            "bots",
            connection.bot_id.as_str(),
            endpoint(message),
            message.target_id.as_str(),
            "messages",
        ]);
    }
    // A file the engine gave as bytes is uploaded first, each attempt (an
    // upload URL works once), then sent by its fileId.
    let content = match super::files::upload_of(&message.content) {
        Some(upload) => match super::files::upload(state, connection, token, &upload).await {
            Ok(file_id) => json!({"type": upload.kind, "fileId": file_id}).to_string(),
            Err(sent) => return sent,
        },
        None => message.content.clone(),
    };
    let body = format!("{{\"content\":{content}}}");
    let response = state
        .http
        .post(url)
        .timeout(state.settings.send_timeout)
        .bearer_auth(token.expose_secret())
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await;
    let response = match response {
        Ok(r) => r,
        Err(e) => {
            return Sent::Unreachable(format!("NAVER WORKS {}", crate::outbound::no_answer(&e)))
        }
    };
    let status = response.status().as_u16();
    let reset = response
        .headers()
        .get("ratelimit-reset")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // NAVER WORKS' answers are small JSON errors; a longer one is cut.
    let body = crate::outbound::read_capped(response, ANSWER_CAP)
        .await
        .unwrap_or_default();
    let text = bounded_text(&String::from_utf8_lossy(&body), 500);
    match status {
        200..=299 => Sent::Delivered,
        // Expired token: 401 today, 403 in an older sample (NAVERWORKS.md §4.4).
        401 | 403 if text.contains("UNAUTHORIZED") => {
            Sent::Unauthorized("NAVER WORKS refused a fresh token (UNAUTHORIZED)".into())
        }
        429 => {
            let wait = rate_limit_wait(reset.as_deref());
            Sent::RateLimited {
                until: crate::domain::now_millis()
                    + i64::try_from(wait.as_millis()).unwrap_or(60_000),
                error: "HTTP 429: rate limited".into(),
            }
        }
        status if crate::outbound::retryable_status(status) => {
            Sent::ServerError(format!("HTTP {status}: {text}"))
        }
        _ => Sent::Rejected(format!("HTTP {status}: {text}")),
    }
}

/// The wait NAVER WORKS asks for with `rateLimit-reset` (seconds until the
/// window resets), clamped to 1..=60 s; 5 s when absent or unreadable.
pub fn rate_limit_wait(reset: Option<&str>) -> std::time::Duration {
    let seconds = reset
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(5);
    std::time::Duration::from_secs(seconds.clamp(1, 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_map_to_valid_content() {
        assert_eq!(
            render(&json!({"type": "text", "text": "hi"})).unwrap(),
            json!({"type": "text", "text": "hi"})
        );
        let buttons = render(&json!({"type": "buttons", "text": "Pick", "buttons": [
            {"label": "Yes", "postback": "yes"}, {"label": "Docs", "url": "https://e.example"}]}))
        .unwrap();
        assert_eq!(buttons["type"], "button_template");
        assert_eq!(
            buttons["actions"][0],
            json!({"type": "message", "label": "Yes", "text": "Yes", "postback": "yes"})
        );
        assert_eq!(buttons["actions"][1]["type"], "uri");
        assert!(render(&json!({"type": "text", "text": "x".repeat(2001)})).is_err());
        assert!(render(&json!({"type": "native", "content": {"type": "sticker", "packageId": "1", "stickerId": "2"}})).is_ok());
        assert!(render(&json!({"type": "telepathy"})).is_err());
    }

    #[test]
    fn rate_limit_wait_is_clamped() {
        assert_eq!(
            rate_limit_wait(Some("12")),
            std::time::Duration::from_secs(12)
        );
        assert_eq!(
            rate_limit_wait(Some("9999")),
            std::time::Duration::from_secs(60)
        );
        assert_eq!(rate_limit_wait(None), std::time::Duration::from_secs(5));
    }
}
