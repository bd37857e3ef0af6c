//! The built-in echo engine: a text comes back as the same text ("menu"
//! brings buttons to press), a button press and a slash command are named
//! back; other events get a short
//! sentence, or nothing where no one could read it. It answers in botgate's
//! reply forms, which each channel renders.

use serde_json::{json, Value};

use crate::channels::Turn;
use crate::domain::str_field;

/// The longest text echoed (NAVER WORKS' limit; Slack's is higher).
const LIMIT: usize = 2000;

fn text(t: String) -> Vec<Value> {
    vec![json!({"type": "text", "text": t.chars().take(LIMIT).collect::<String>()})]
}

/// What "menu" answers: buttons, to try postbacks with.
fn menu() -> Vec<Value> {
    vec![json!({"type": "buttons", "text": "Pick one:", "buttons": [
        {"label": "Yes", "postback": "yes"},
        {"label": "No", "postback": "no"},
    ]})]
}

pub fn answer(turn: &Turn) -> Vec<Value> {
    let content = &turn.content;
    match turn.kind.as_str() {
        "message" => match str_field(content, "type") {
            Some("text") => {
                let said = str_field(content, "text").unwrap_or("");
                // A message action's button (NAVER WORKS) carries a postback.
                if let Some(data) = str_field(content, "postback") {
                    return text(format!("You chose: {data}"));
                }
                match said.trim() {
                    // NAVER WORKS refuses empty texts.
                    "" => text("(empty message)".into()),
                    s if s.eq_ignore_ascii_case("menu") => menu(),
                    _ => text(said.to_owned()),
                }
            }
            Some("location") => {
                let address = str_field(content, "address").unwrap_or("somewhere");
                text(format!("You shared a location: {address}"))
            }
            // Only NAVER WORKS sends stickers; its own content comes back.
            Some("sticker") => {
                vec![json!({"type": "native", "content": {
                    "type": "sticker",
                    "packageId": content.get("packageId").cloned().unwrap_or(json!("1")),
                    "stickerId": content.get("stickerId").cloned().unwrap_or(json!("1")),
                }})]
            }
            Some(kind) => text(format!("I received your {kind}.")),
            None => text("I received your message.".into()),
        },
        "postback" => text(format!("You chose: {}", turn.postback_data().unwrap_or(""))),
        "command" => {
            let command = str_field(content, "command").unwrap_or("");
            match str_field(content, "text").unwrap_or("") {
                "" => text(format!("You ran {command}.")),
                said => text(format!("You ran {command} {said}")),
            }
        }
        "join" => text("Hello! Thanks for adding me. Everything you say, I say back.".into()),
        "joined" => text("Welcome!".into()),
        "begin" => text("Hi! Send me a message and I will echo it.".into()),
        // The bot was removed, people left, the chat ended: no one to answer.
        _ => Vec::new(),
    }
}
