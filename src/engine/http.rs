//! botgate's JSON protocol (DESIGN.md, "Dialogue engine protocol"): POST with
//! `X-Botgate-Timestamp` and `X-Botgate-Signature: sha256=<hex
//! HMAC-SHA256(secret, timestamp + "." + body)>`; the answer is
//! `{"replies": [...]}`.

use std::time::Duration;

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use sha2::Sha256;

use super::{EngineError, EngineEvent};

/// `sha256=<hex>` over `timestamp.body`.
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "sha256={}",
        crate::secrets::hex(&mac.finalize().into_bytes())
    )
}

/// The request body for an event (DESIGN.md, "Dialogue engine protocol").
pub fn request_body(event: &EngineEvent<'_>) -> Value {
    let turn = event.turn;
    let mut body = json!({
        "event_id": event.event_id,
        "tenant_id": event.tenant_id,
        "connection_id": event.connection_id,
        "channel": turn.channel.name(),
        "type": turn.kind,
        "conversation": turn.conversation,
        "content": turn.content,
        "issued_time": turn.issued_time,
        "raw": turn.raw,
    });
    // Postbacks reach the engine as such, with their data.
    if let Some(postback) = &turn.postback {
        body["postback"] = postback.clone();
    }
    body
}

pub async fn answer(
    client: &crate::outbound::Client,
    timeout: Duration,
    url: &str,
    secret: &SecretString,
    event: &EngineEvent<'_>,
) -> Result<Vec<Value>, EngineError> {
    let body = serde_json::to_vec(&request_body(event))
        .map_err(|e| EngineError::Unreadable(e.to_string()))?;
    let timestamp = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
    let response = client
        .post(url)?
        .timeout(timeout)
        .header("Content-Type", "application/json")
        .header("X-Botgate-Timestamp", &timestamp)
        .header(
            "X-Botgate-Signature",
            signature(secret.expose_secret().as_bytes(), &timestamp, &body),
        )
        .body(body)
        .send()
        .await?;
    if !response.status().is_success() {
        return Err(EngineError::Status(response.status().as_u16()));
    }
    let answer: Value = serde_json::from_slice(&client.read(response).await?)
        .map_err(|_| EngineError::Unreadable("not JSON".into()))?;
    let replies = answer
        .get("replies")
        .and_then(Value::as_array)
        .ok_or(EngineError::Unreadable("no replies list".into()))?;
    event.render(replies)
}
