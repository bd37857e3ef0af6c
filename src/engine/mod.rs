//! Dialogue engines: what answers users. `echo` (built in, the default),
//! `http` (botgate's signed JSON protocol, DESIGN.md) and `rasa` (Rasa's REST
//! channel). Each turns one callback into NAVER WORKS `content` objects to send.

mod echo;
mod http;
mod rasa;

use std::time::Duration;

use secrecy::SecretString;
use serde_json::{json, Value};

use crate::naverworks::content::validate_message;

/// A tenant's engine, ready to call.
pub enum Engine {
    Echo,
    Http { url: String, secret: SecretString },
    Rasa { url: String },
}

/// One callback as handed to an engine.
pub struct EngineEvent<'a> {
    pub event_id: &'a str,
    pub tenant_id: &'a str,
    pub connection_id: &'a str,
    /// The callback as NAVER WORKS sent it.
    pub callback: &'a Value,
}

impl EngineEvent<'_> {
    pub fn event_type(&self) -> &str {
        self.callback
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    fn source(&self, field: &str) -> Option<&str> {
        self.callback
            .get("source")
            .and_then(|s| s.get(field))
            .and_then(Value::as_str)
    }

    pub fn user_id(&self) -> Option<&str> {
        self.source("userId")
    }

    pub fn channel_id(&self) -> Option<&str> {
        self.source("channelId")
    }

    pub fn content(&self) -> Option<&Value> {
        self.callback.get("content")
    }

    pub fn text(&self) -> Option<&str> {
        self.content()
            .filter(|c| c.get("type").and_then(Value::as_str) == Some("text"))?
            .get("text")?
            .as_str()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the engine did not answer in time")]
    Timeout,
    #[error("the engine could not be reached")]
    Unreachable,
    #[error("the engine answered HTTP {0}")]
    Status(u16),
    #[error("the engine's answer could not be read: {0}")]
    Unreadable(String),
    #[error("the engine's URL was refused: {0}")]
    Refused(#[from] crate::outbound::Refused),
    #[error("the engine's answer is larger than {0} bytes")]
    TooLarge(usize),
}

impl From<crate::outbound::ReadError> for EngineError {
    fn from(e: crate::outbound::ReadError) -> Self {
        match e {
            crate::outbound::ReadError::TooLarge(cap) => Self::TooLarge(cap),
            crate::outbound::ReadError::Cut(e) => e.into(),
        }
    }
}

impl From<reqwest::Error> for EngineError {
    fn from(e: reqwest::Error) -> Self {
        if let Some(refused) = crate::outbound::refused(&e) {
            Self::Refused(refused)
        } else if e.is_timeout() {
            Self::Timeout
        } else {
            Self::Unreachable
        }
    }
}

impl Engine {
    /// The NAVER WORKS contents to send in answer, in order.
    pub async fn answer(
        &self,
        client: &crate::outbound::Client,
        timeout: Duration,
        event: &EngineEvent<'_>,
    ) -> Result<Vec<Value>, EngineError> {
        match self {
            Engine::Echo => Ok(echo::answer(event)),
            Engine::Http { url, secret } => http::answer(client, timeout, url, secret, event).await,
            Engine::Rasa { url } => rasa::answer(client, timeout, url, event).await,
        }
    }
}

/// Maps botgate's reply forms (DESIGN.md) to NAVER WORKS content, checked
/// against the documented limits.
pub fn reply_to_content(reply: &Value) -> Result<Value, String> {
    let kind = reply
        .get("type")
        .and_then(Value::as_str)
        .ok_or("a reply needs a type")?;
    let str_of = |name: &str| {
        reply
            .get(name)
            .and_then(Value::as_str)
            .ok_or(format!("{kind} reply needs {name}"))
    };
    let content = match kind {
        "text" => json!({"type": "text", "text": str_of("text")?}),
        "image" => {
            let url = str_of("url")?;
            json!({"type": "image", "previewImageUrl": url, "originalContentUrl": url})
        }
        "buttons" => {
            let buttons = reply
                .get("buttons")
                .and_then(Value::as_array)
                .ok_or("buttons reply needs buttons")?;
            let actions = buttons
                .iter()
                .map(button_action)
                .collect::<Result<Vec<_>, _>>()?;
            json!({"type": "button_template", "contentText": str_of("text")?, "actions": actions})
        }
        "native" => reply
            .get("content")
            .cloned()
            .ok_or("native reply needs content")?,
        // The engine's value is not repeated: the error is stored for the tenant.
        _ => return Err("unknown reply type".to_owned()),
    };
    validate_message(&json!({ "content": content }))
        .map_err(|e| format!("reply is not valid NAVER WORKS content: {e}"))?;
    Ok(content)
}

/// A button: `{label, postback}` → a message action carrying the postback,
/// `{label, url}` → a uri action.
pub fn button_action(button: &Value) -> Result<Value, String> {
    let label = button
        .get("label")
        .and_then(Value::as_str)
        .ok_or("a button needs a label")?;
    if let Some(url) = button.get("url").and_then(Value::as_str) {
        return Ok(json!({"type": "uri", "label": label, "uri": url}));
    }
    let postback = button
        .get("postback")
        .and_then(Value::as_str)
        .ok_or("a button needs postback or url")?;
    Ok(json!({"type": "message", "label": label, "text": label, "postback": postback}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_map_to_valid_content() {
        assert_eq!(
            reply_to_content(&json!({"type": "text", "text": "hi"})).unwrap(),
            json!({"type": "text", "text": "hi"})
        );
        let buttons = reply_to_content(&json!({"type": "buttons", "text": "Pick", "buttons": [
            {"label": "Yes", "postback": "yes"}, {"label": "Docs", "url": "https://e.example"}]}))
        .unwrap();
        assert_eq!(buttons["type"], "button_template");
        assert_eq!(
            buttons["actions"][0],
            json!({"type": "message", "label": "Yes", "text": "Yes", "postback": "yes"})
        );
        assert_eq!(buttons["actions"][1]["type"], "uri");
        assert!(reply_to_content(&json!({"type": "text", "text": "x".repeat(2001)})).is_err());
        assert!(reply_to_content(&json!({"type": "native", "content": {"type": "sticker", "packageId": "1", "stickerId": "2"}})).is_ok());
        assert!(reply_to_content(&json!({"type": "telepathy"})).is_err());
    }
}
