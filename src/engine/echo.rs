//! The built-in echo engine: a text comes back as the same text; other
//! events get a short sentence, or nothing where no one could read it.

use serde_json::{json, Value};

use super::EngineEvent;

pub fn answer(event: &EngineEvent<'_>) -> Vec<Value> {
    let text = |t: String| vec![json!({"type": "text", "text": t})];
    match event.event_type() {
        "message" => {
            let content = event.content().cloned().unwrap_or(Value::Null);
            match content.get("type").and_then(Value::as_str) {
                Some("text") => {
                    let said = content.get("text").and_then(Value::as_str).unwrap_or("");
                    // NAVER WORKS refuses empty texts; keep within 2000 characters.
                    let echoed: String = said.chars().take(2000).collect();
                    if echoed.is_empty() {
                        text("(empty message)".into())
                    } else {
                        text(echoed)
                    }
                }
                Some("location") => {
                    let address = content
                        .get("address")
                        .and_then(Value::as_str)
                        .unwrap_or("somewhere");
                    text(
                        format!("You shared a location: {address}")
                            .chars()
                            .take(2000)
                            .collect(),
                    )
                }
                Some("sticker") => vec![json!({
                    "type": "sticker",
                    "packageId": content.get("packageId").cloned().unwrap_or(json!("1")),
                    "stickerId": content.get("stickerId").cloned().unwrap_or(json!("1")),
                })],
                Some(kind) => text(format!("I received your {kind}.")),
                None => text("I received your message.".into()),
            }
        }
        "postback" => {
            let data = event
                .callback
                .get("data")
                .and_then(Value::as_str)
                .unwrap_or("");
            text(format!("You chose: {data}").chars().take(2000).collect())
        }
        "join" => text("Hello! Thanks for adding me. Everything you say, I say back.".into()),
        "joined" => text("Welcome!".into()),
        "begin" => text("Hi! Send me a message and I will echo it.".into()),
        // The bot was removed, people left, the chat ended: no one to answer.
        _ => Vec::new(),
    }
}
