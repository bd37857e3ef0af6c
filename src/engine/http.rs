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

/// How far an engine lets `X-Botgate-Timestamp` be from its own clock
/// (either way) before it refuses the request as a replay.
pub const TIMESTAMP_TOLERANCE_SECONDS: i64 = 300;

/// Why an engine refuses a request ([`verify`]).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unverified {
    #[error("X-Botgate-Timestamp is not a whole number of seconds")]
    BadTimestamp,
    #[error("X-Botgate-Timestamp is more than 300 s from this clock (a replay?)")]
    Stale,
    #[error("X-Botgate-Signature does not match the body")]
    BadSignature,
}

/// What an engine checks on every request (and `examples/engine.rs`
/// does): the timestamp within [`TIMESTAMP_TOLERANCE_SECONDS`] of `now`
/// (Unix seconds), then the signature over `timestamp.body`, compared in
/// constant time.
pub fn verify(
    secret: &[u8],
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    now: i64,
) -> Result<(), Unverified> {
    use subtle::ConstantTimeEq as _;
    let sent: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| Unverified::BadTimestamp)?;
    if (now - sent).abs() > TIMESTAMP_TOLERANCE_SECONDS {
        return Err(Unverified::Stale);
    }
    let expected = signature(secret, timestamp.trim(), body);
    let given = signature_header.trim().as_bytes();
    if expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given)) {
        Ok(())
    } else {
        Err(Unverified::BadSignature)
    }
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
    if event.test {
        body["test"] = json!(true);
    }
    body
}

/// A POST of the JSON `body` to a tenant-given `url` (checked against the
/// outbound policy), signed with `secret` as this protocol says: what
/// botgate sends an engine, and a tenant's status hook.
pub fn signed_post(
    client: &crate::outbound::Client,
    url: &str,
    secret: &SecretString,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<reqwest::RequestBuilder, crate::outbound::Refused> {
    let timestamp = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
    let signed = signature(secret.expose_secret().as_bytes(), &timestamp, &body);
    Ok(client
        .post(url)?
        .timeout(timeout)
        .header("Content-Type", "application/json")
        .header("X-Botgate-Timestamp", timestamp)
        .header("X-Botgate-Signature", signed)
        .body(body))
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
    let response = signed_post(client, url, secret, body, timeout)?
        .send()
        .await?;
    let answer = super::json_answer(client, response).await?;
    let replies = answer
        .get("replies")
        .and_then(Value::as_array)
        .ok_or(EngineError::Unreadable("no replies list".into()))?;
    event.render(replies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_refuse_stale_timestamps_and_bad_signatures() {
        let body = br#"{"event_id":"e1"}"#;
        let now = 1_764_800_000;
        let sign = |t: i64| signature(b"an-engine-secret", &t.to_string(), body);
        for offset in [0, 300, -300] {
            let t = now + offset;
            assert_eq!(
                verify(b"an-engine-secret", &t.to_string(), &sign(t), body, now),
                Ok(())
            );
        }
        for offset in [301, -301, 3_600] {
            let t = now + offset;
            assert_eq!(
                verify(b"an-engine-secret", &t.to_string(), &sign(t), body, now),
                Err(Unverified::Stale)
            );
        }
        assert_eq!(
            verify(b"another-secret", &now.to_string(), &sign(now), body, now),
            Err(Unverified::BadSignature)
        );
        assert_eq!(
            verify(b"an-engine-secret", "soon", &sign(now), body, now),
            Err(Unverified::BadTimestamp)
        );
        let mut altered = body.to_vec();
        altered[3] = b'X';
        assert_eq!(
            verify(
                b"an-engine-secret",
                &now.to_string(),
                &sign(now),
                &altered,
                now
            ),
            Err(Unverified::BadSignature)
        );
    }
}
