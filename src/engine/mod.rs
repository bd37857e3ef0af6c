//! Dialogue engines: what answers users. `echo` (built in, the default),
//! `http` (botgate's signed JSON protocol, DESIGN.md) and `rasa` (Rasa's REST
//! channel). Each answers one [`Turn`] (an event, whatever its channel) with
//! botgate's reply forms, rendered as the channel's messages.

mod echo;
pub mod http;
mod rasa;

use std::time::Duration;

use secrecy::SecretString;
use serde_json::Value;

use crate::channels::Turn;

/// A tenant's engine, ready to call.
pub enum Engine {
    Echo,
    Http { url: String, secret: SecretString },
    Rasa { url: String },
}

/// One event as handed to an engine: the channel's [`Turn`] and its ids.
pub struct EngineEvent<'a> {
    pub event_id: &'a str,
    pub tenant_id: &'a str,
    pub connection_id: &'a str,
    pub turn: &'a Turn,
    /// A sample from an engine test, not a user's (an http engine's
    /// request says `"test": true`).
    pub test: bool,
}

impl EngineEvent<'_> {
    pub fn event_type(&self) -> &str {
        &self.turn.kind
    }

    /// Botgate's reply forms (DESIGN.md) as the channel's messages.
    fn render(&self, replies: &[Value]) -> Result<Vec<Value>, EngineError> {
        replies
            .iter()
            .map(|r| self.turn.channel.render(r).map_err(EngineError::Unreadable))
            .collect()
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

/// An engine's answer as JSON: a 2xx, its body read under the client's cap.
async fn json_answer(
    client: &crate::outbound::Client,
    response: reqwest::Response,
) -> Result<Value, EngineError> {
    if !response.status().is_success() {
        return Err(EngineError::Status(response.status().as_u16()));
    }
    serde_json::from_slice(&client.read(response).await?)
        .map_err(|_| EngineError::Unreadable("not JSON".into()))
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
    /// The channel's messages to send in answer, in order.
    pub async fn answer(
        &self,
        client: &crate::outbound::Client,
        timeout: Duration,
        event: &EngineEvent<'_>,
    ) -> Result<Vec<Value>, EngineError> {
        match self {
            Engine::Echo => event.render(&echo::answer(event.turn)),
            Engine::Http { url, secret } => http::answer(client, timeout, url, secret, event).await,
            Engine::Rasa { url } => rasa::answer(client, timeout, url, event).await,
        }
    }
}
