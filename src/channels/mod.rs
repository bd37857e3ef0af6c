//! Channels: one adapter per messaging platform, behind the functions of
//! [`Channel`]. The core — inbox, outbox, engines, workers, dedup, replay,
//! the send API, the console — asks the adapter of an event's or message's
//! connection to:
//! - normalise a stored event for the engines ([`Channel::turn`]);
//! - turn an engine's replies into the platform's messages and say where
//!   they go ([`Channel::render`], [`Channel::replies`]);
//! - shape a send-API request ([`Channel::outgoing`]);
//! - deliver one message with the platform's auth, rate limits and error
//!   rules ([`Channel::deliver`]), paced per [`Channel::pace_key`].
//!
//! Verifying and storing inbound requests is each platform's own function
//! of `service::callbacks` (its routes read the body and the headers and
//! answer), because each platform's requests have their own shape and
//! timing; both end in the same durable inbox (the `ingest` group commit).
//!
//! Adding a platform: a module here, one arm in each `match` of this file
//! (the registration point), its routes, and its tile on the console's
//! connect screen. Nothing else names a platform.

pub mod files;
pub mod naverworks;
pub mod slack;

use secrecy::SecretString;
use serde_json::Value;

use crate::domain::str_field;
use crate::state::AppState;
use crate::store::queue::{NewOutbound, OutboundMessage};
use crate::store::{ConnectionRecord, TokenMeta};

/// A platform botgate connects to (the `channel` of a connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    NaverWorks,
    Slack,
}

impl Channel {
    pub const ALL: [Channel; 2] = [Channel::NaverWorks, Channel::Slack];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The name stored with a connection and sent to engines as `channel`.
    pub fn name(self) -> &'static str {
        match self {
            Channel::NaverWorks => "naverworks",
            Channel::Slack => "slack",
        }
    }

    /// The channel of a stored connection (NAVER WORKS for rows written
    /// before there were others).
    pub fn of(connection: &ConnectionRecord) -> Self {
        Self::parse(&connection.channel).unwrap_or(Channel::NaverWorks)
    }

    /// The secret (a `secrets` field) inbound requests are signed with.
    pub fn webhook_secret_field(self) -> &'static str {
        match self {
            Channel::NaverWorks => crate::store::field::BOT_SECRET,
            Channel::Slack => crate::store::field::SIGNING_SECRET,
        }
    }

    /// A stored event, as the engines see it.
    pub fn turn(self, event_type: &str, raw: &[u8], received_at: i64) -> Turn {
        match self {
            Channel::NaverWorks => naverworks::turn(raw, received_at),
            Channel::Slack => slack::turn(event_type, raw, received_at),
        }
    }

    /// A user's text message as this platform would send it, for trying a
    /// tenant's engine: a sample user, room and ids, never a real one's.
    pub fn sample_turn(self, text: &str, now: i64) -> Turn {
        match self {
            Channel::NaverWorks => naverworks::sample_turn(text, now),
            Channel::Slack => slack::sample_turn(text, now),
        }
    }

    /// One engine reply (DESIGN.md's reply forms) as the platform's message
    /// body, checked against the platform's limits.
    pub fn render(self, reply: &Value) -> Result<Value, String> {
        match self {
            Channel::NaverWorks => naverworks::render(reply),
            Channel::Slack => slack::render(reply),
        }
    }

    /// Why an event is not to be answered at all, beyond [`Turn::ignored`]:
    /// Slack's workspaces that have no installation.
    pub async fn admit(
        self,
        state: &AppState,
        connection: &ConnectionRecord,
        turn: &Turn,
    ) -> Result<Option<&'static str>, crate::store::StoreError> {
        match self {
            Channel::NaverWorks => Ok(None),
            Channel::Slack => slack::admit(state, connection, turn).await,
        }
    }

    /// What sends of this message are held by when the platform refuses the
    /// credentials: the connection, or for Slack the workspace's
    /// installation.
    pub fn hold_key(self, message: &OutboundMessage) -> std::borrow::Cow<'_, str> {
        match self {
            Channel::NaverWorks => message.connection_id.as_str().into(),
            Channel::Slack => {
                let team = serde_json::from_str::<Value>(&message.content)
                    .ok()
                    .and_then(|d| str_field(&d, "team").map(str::to_owned))
                    .unwrap_or_default();
                format!("{}#{team}", message.connection_id).into()
            }
        }
    }

    /// The outbox rows for an event's rendered replies: where each goes.
    pub fn replies(self, turn: &Turn, rendered: Vec<Value>) -> Vec<NewOutbound> {
        match self {
            Channel::NaverWorks => naverworks::replies(turn, rendered),
            Channel::Slack => slack::replies(turn, rendered),
        }
    }

    /// A send-API message: its conversation key and outbox rows, or why
    /// it is refused (checked now, so that nothing is queued only to fail).
    pub async fn outgoing(
        self,
        state: &AppState,
        connection: &ConnectionRecord,
        request: &Outgoing<'_>,
    ) -> Result<(String, Vec<NewOutbound>), Refused> {
        match self {
            Channel::NaverWorks => Ok(naverworks::outgoing(request)?),
            Channel::Slack => slack::outgoing(state, connection, request).await,
        }
    }

    /// The workspaces a send can name (id, name), in the order offered:
    /// Slack's pasted token's and installations'; none for a platform with
    /// one workspace per connection.
    pub fn sending_workspaces(
        self,
        connection: &ConnectionRecord,
        installations: &[crate::store::Installation],
    ) -> Vec<(String, String)> {
        match self {
            Channel::NaverWorks => Vec::new(),
            Channel::Slack => slack::sending_workspaces(connection, installations),
        }
    }

    /// What sends of this message share a rate limit with: the connection
    /// (NAVER WORKS: per bot), or the connection's channel (Slack: about
    /// one message per second per channel, SLACK.md §5).
    pub fn pace_key(self, message: &OutboundMessage) -> std::borrow::Cow<'_, str> {
        match self {
            Channel::NaverWorks => message.connection_id.as_str().into(),
            Channel::Slack => format!("{}/{}", message.connection_id, message.target_id).into(),
        }
    }

    /// One attempt to deliver a message; `Err` when no attempt could be
    /// made (no token), to be retried like a network error.
    pub async fn deliver(
        self,
        state: &AppState,
        connection: &ConnectionRecord,
        meta: Option<TokenMeta>,
        message: &OutboundMessage,
    ) -> Result<Sent, String> {
        match self {
            Channel::NaverWorks => naverworks::deliver(state, connection, meta, message).await,
            Channel::Slack => slack::deliver(state, connection, message).await,
        }
    }
}

/// One inbound event as every engine sees it, whatever the platform.
#[derive(Debug, Clone)]
pub struct Turn {
    pub channel: Channel,
    /// `message`, `postback`, `command`, or a platform's own event type
    /// (NAVER WORKS `join`, `leave`, …).
    pub kind: String,
    /// The engine protocol's `conversation` object.
    pub conversation: Value,
    /// The engine protocol's `content`: `{"type":"text","text"}`,
    /// `{"type":"command","command","text"}`, or the platform's own.
    pub content: Value,
    /// `{"data": …}` for a button press.
    pub postback: Option<Value>,
    pub issued_time: Value,
    /// When botgate stored it (Unix ms).
    pub received_at: i64,
    /// The request as the platform sent it (JSON; form fields as an object).
    pub raw: Value,
    /// Why no engine is asked (a bot's own message, an event no one answers).
    pub ignored: Option<&'static str>,
}

impl Turn {
    fn conversation_field(&self, name: &str) -> Option<&str> {
        self.conversation.get(name).and_then(Value::as_str)
    }

    pub fn user_id(&self) -> Option<&str> {
        self.conversation_field("user_id")
    }

    pub fn channel_id(&self) -> Option<&str> {
        self.conversation_field("channel_id")
    }

    /// The text of a text message.
    pub fn text(&self) -> Option<&str> {
        str_field(&self.content, "type").filter(|t| *t == "text")?;
        self.content.get("text")?.as_str()
    }

    /// A button's data, for a postback.
    pub fn postback_data(&self) -> Option<&str> {
        self.postback.as_ref()?.get("data")?.as_str()
    }
}

/// A send-API request, parsed but not yet checked by the channel.
pub struct Outgoing<'a> {
    /// `user` or `channel`.
    pub target_kind: &'static str,
    pub target_id: String,
    /// Slack: the thread to answer in.
    pub thread_ts: Option<String>,
    /// Slack: the workspace (for a connection installed in several).
    pub team_id: Option<String>,
    /// The platform's message body.
    pub content: &'a Value,
    /// NAVER WORKS: a text over its limit is sent as several messages
    /// instead of being refused.
    pub split_long_text: bool,
}

/// Why a send-API request is refused.
#[derive(Debug)]
pub enum Refused {
    /// The request's fields, each with what is wrong with it.
    Invalid(Vec<crate::domain::FieldError>),
    Store(crate::store::StoreError),
}

impl From<Vec<crate::domain::FieldError>> for Refused {
    fn from(errors: Vec<crate::domain::FieldError>) -> Self {
        Self::Invalid(errors)
    }
}

impl From<crate::store::StoreError> for Refused {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Store(e)
    }
}

/// What one delivery attempt came to.
pub enum Sent {
    Delivered,
    /// The platform refused a fresh token as well.
    Unauthorized(String),
    /// Rate limited: nothing sent; the pace key waits until this time (Unix
    /// ms) and the message is tried again, not counted.
    RateLimited {
        until: i64,
        error: String,
    },
    /// The platform's side failed ([`crate::outbound::retryable_status`]):
    /// retried with backoff.
    ServerError(String),
    /// No answer (timeout, connection refused): retried with backoff.
    Unreachable(String),
    /// The connection's credentials were refused (Slack `invalid_auth`,
    /// `token_revoked`, …): its sends pause and the message is retried
    /// with backoff until fixed or out of attempts.
    CredentialsRefused(String),
    /// The platform refused this message: failed with the reason.
    Rejected(String),
}

impl Sent {
    /// The `botgate_sends_total` label.
    pub fn label(&self) -> &'static str {
        match self {
            Sent::Delivered => "delivered",
            Sent::Unauthorized(_) => "unauthorized",
            Sent::RateLimited { .. } => "rate_limited",
            Sent::Rejected(_) => "client_error",
            Sent::ServerError(_) => "server_error",
            Sent::Unreachable(_) => "network_error",
            Sent::CredentialsRefused(_) => "credentials_refused",
        }
    }
}

/// One engine reply being rendered: its `type` and its string fields, with
/// the errors every channel reports alike.
pub(crate) struct Reply<'a> {
    pub kind: &'a str,
    value: &'a Value,
}

impl<'a> Reply<'a> {
    pub fn parse(value: &'a Value) -> Result<Self, String> {
        let kind = str_field(value, "type").ok_or("a reply needs a type")?;
        Ok(Self { kind, value })
    }

    /// A required string field.
    pub fn text(&self, name: &str) -> Result<&'a str, String> {
        self.value
            .get(name)
            .and_then(Value::as_str)
            .ok_or(format!("{} reply needs {name}", self.kind))
    }

    /// The `buttons` list.
    pub fn buttons(&self) -> Result<&'a [Value], String> {
        self.value
            .get("buttons")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .ok_or("buttons reply needs buttons".to_owned())
    }

    /// A `native` reply's platform message, as is.
    pub fn native(&self) -> Result<Value, String> {
        self.value
            .get("content")
            .cloned()
            .ok_or("native reply needs content".to_owned())
    }
}

/// A platform's text, bounded for storage and display: at most `max`
/// characters, control characters dropped. Platform and engine answers are
/// never stored or shown raw.
pub fn bounded_text(text: &str, max: usize) -> String {
    text.chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .take(max)
        .collect()
}

/// Why a connection's secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("the connection's {0} does not decrypt")]
    Unreadable(&'static str),
}

/// One of a connection's sealed secrets, decrypted once per connection
/// version (`updated_at`) and kept in memory: the webhooks' signing secrets
/// and Slack's bot tokens are read on every request or send. `None` when
/// the connection has no such secret.
pub async fn connection_secret(
    state: &AppState,
    connection: &ConnectionRecord,
    field: &'static str,
) -> Result<Option<SecretString>, SecretError> {
    let cached = {
        let cache = state
            .connection_secrets
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache
            .get(&connection.id)
            .filter(|(version, _)| *version == connection.updated_at)
            .and_then(|(_, fields)| fields.iter().find(|(f, _)| *f == field))
            .map(|(_, s)| s.clone())
    };
    if let Some(secret) = cached {
        return Ok(Some(secret));
    }
    let secrets = state.store.secrets(connection.id.as_str()).await?;
    let Some(sealed) = secrets.iter().find(|s| s.field == field) else {
        return Ok(None);
    };
    let secret = state
        .vault
        .open_str(&sealed.sealed, sealed.aad())
        .map_err(|_| SecretError::Unreadable(field))?;
    let mut cache = state
        .connection_secrets
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let entry = cache
        .entry(connection.id.clone())
        .or_insert_with(|| (connection.updated_at, Vec::new()));
    if entry.0 != connection.updated_at {
        *entry = (connection.updated_at, Vec::new());
    }
    entry.1.retain(|(f, _)| *f != field);
    entry.1.push((field, secret.clone()));
    Ok(Some(secret))
}
