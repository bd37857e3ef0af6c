//! Rasa's REST channel: POST `{"sender", "message", "metadata"}`, answered by
//! a list of `{"recipient_id", "text" | "image" | "buttons" | "custom"}`.
//! Texts map to text, images to image, text with buttons to a button
//! template (each button a message action carrying its payload as postback),
//! `custom` to the channel's own message as is. A postback reaches Rasa as its
//! payload, the way Rasa's own channels send button payloads.

use std::time::Duration;

use serde_json::{json, Value};

use super::{EngineError, EngineEvent};
use crate::domain::str_field;

pub fn request_body(event: &EngineEvent<'_>) -> Option<Value> {
    let turn = event.turn;
    let message = match event.event_type() {
        "message" => turn.text().unwrap_or("").to_owned(),
        "postback" => turn.postback_data().unwrap_or("").to_owned(),
        // A slash command reaches Rasa as what was typed.
        "command" => format!(
            "{} {}",
            str_field(&turn.content, "command").unwrap_or(""),
            str_field(&turn.content, "text").unwrap_or("")
        )
        .trim()
        .to_owned(),
        // Rasa has no notion of the other events; nothing to ask.
        _ => return None,
    };
    // A room is one conversation for Rasa; a 1:1 chat is the user's.
    let sender = turn.channel_id().or(turn.user_id()).unwrap_or("unknown");
    Some(json!({
        "sender": sender,
        "message": message,
        "metadata": {
            "event_id": event.event_id,
            "user_id": turn.user_id(),
            "channel_id": turn.channel_id(),
            "type": event.event_type(),
            "content": turn.content,
        },
    }))
}

/// One Rasa answer item → botgate's reply forms.
pub fn map_item(item: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let text = str_field(item, "text");
    match (text, item.get("buttons").and_then(Value::as_array)) {
        (Some(text), Some(buttons)) if !buttons.is_empty() => {
            let buttons: Vec<Value> = buttons
                .iter()
                .map(|b| {
                    let label = b.get("title").cloned().unwrap_or(Value::Null);
                    let payload = str_field(b, "payload").unwrap_or("");
                    if payload.starts_with("https://") {
                        json!({"label": label, "url": payload})
                    } else {
                        json!({"label": label, "postback": payload})
                    }
                })
                .collect();
            out.push(json!({"type": "buttons", "text": text, "buttons": buttons}));
        }
        (Some(text), _) => out.push(json!({"type": "text", "text": text})),
        (None, _) => {}
    }
    if let Some(url) = str_field(item, "image") {
        out.push(json!({"type": "image", "url": url}));
    }
    if let Some(custom) = item.get("custom") {
        out.push(json!({"type": "native", "content": custom}));
    }
    out
}

pub async fn answer(
    client: &crate::outbound::Client,
    timeout: Duration,
    url: &str,
    event: &EngineEvent<'_>,
) -> Result<Vec<Value>, EngineError> {
    let Some(body) = request_body(event) else {
        return Ok(Vec::new());
    };
    let response = client
        .post(url)?
        .timeout(timeout)
        .json(&body)
        .send()
        .await?;
    let items = super::json_answer(client, response).await?;
    let items = items
        .as_array()
        .ok_or(EngineError::Unreadable("not a list".into()))?;
    let replies: Vec<Value> = items.iter().flat_map(map_item).collect();
    event.render(&replies)
}
