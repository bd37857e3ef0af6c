//! A tenant's dialogue engine: built from its settings (the inbox worker
//! asks it for every event), and tried on request with a sample message
//! (`POST …/engine/test`, the console's "Test the engine").

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::channels::{bounded_text, Channel};
use crate::domain::now_millis;
use crate::engine::{Engine, EngineEvent};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{field, TenantRecord};

/// The tenant's engine, ready to call; `Err` says why it cannot be (no
/// URL, its secret missing or unreadable).
pub async fn of(state: &AppState, tenant: &TenantRecord) -> Result<Engine, String> {
    let url = || {
        tenant
            .engine_url
            .clone()
            .ok_or("the engine has no URL".to_owned())
    };
    Ok(match tenant.engine_kind.as_str() {
        "http" => {
            let secret = super::tenants::open_secret(state, tenant, field::ENGINE_SECRET)
                .await?
                .ok_or("the engine secret is missing")?;
            Engine::Http {
                url: url()?,
                secret,
            }
        }
        "rasa" => Engine::Rasa { url: url()? },
        _ => Engine::Echo,
    })
}

/// `POST …/engine/test`'s body (optional).
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EngineTestBody {
    /// What the sample user says (1 to 2,000 characters; "Hello from
    /// botgate's engine test" by default).
    #[schema(value_type = Option<String>)]
    pub text: Option<Value>,
    /// Whose message it is: `naverworks` (the default) or `slack`.
    #[schema(value_type = Option<String>)]
    pub channel: Option<Value>,
}

/// What the engine made of the sample message.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EngineTest {
    /// Whether it answered with replies botgate can send.
    pub ok: bool,
    /// `echo`, `http` or `rasa`.
    pub kind: String,
    /// How long the engine took.
    pub elapsed_ms: u64,
    /// Its replies as the channel's messages (at most 10), not sent.
    #[schema(value_type = Vec<Object>)]
    pub replies: Vec<Value>,
    /// How many replies there were in all.
    pub reply_count: usize,
    /// Why not, when `ok` is false.
    pub error: Option<String>,
}

/// The most replies an engine test shows.
const SHOWN_REPLIES: usize = 10;

/// Asks the tenant's engine to answer a sample user's text message, as the
/// inbox worker would (same request, signature, timeout and outbound
/// policy), with `"test": true` in an http engine's request. Nothing is
/// stored and no reply is sent.
pub async fn test(
    state: &AppState,
    tenant: &TenantRecord,
    body: &EngineTestBody,
) -> Result<EngineTest, ApiError> {
    let mut errors = Vec::new();
    let text = match &body.text {
        None | Some(Value::Null) => "Hello from botgate's engine test".to_owned(),
        Some(Value::String(t)) if (1..=2000).contains(&t.chars().count()) => t.clone(),
        Some(_) => {
            errors.push(crate::domain::FieldError::new(
                "text",
                "must be a text of 1 to 2000 characters",
            ));
            String::new()
        }
    };
    let channel = match &body.channel {
        None | Some(Value::Null) => Some(Channel::NaverWorks),
        Some(Value::String(name)) => Channel::parse(name),
        Some(_) => None,
    };
    let Some(channel) = channel.filter(|_| errors.is_empty()) else {
        if channel.is_none() {
            errors.push(crate::domain::FieldError::new(
                "channel",
                "must be \"naverworks\" or \"slack\"",
            ));
        }
        return Err(ApiError::Validation(errors));
    };
    let now = now_millis();
    let turn = channel.sample_turn(&text, now);
    let event_id = format!("evt_engine_test_{now}");
    let event = EngineEvent {
        event_id: &event_id,
        tenant_id: tenant.id.as_str(),
        connection_id: "",
        turn: &turn,
        test: true,
    };
    let started = std::time::Instant::now();
    let answer = match of(state, tenant).await {
        Ok(engine) => engine
            .answer(&state.outbound, state.settings.engine_timeout, &event)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(match answer {
        Ok(replies) => EngineTest {
            ok: true,
            kind: tenant.engine_kind.clone(),
            elapsed_ms,
            reply_count: replies.len(),
            replies: replies.into_iter().take(SHOWN_REPLIES).collect(),
            error: None,
        },
        // The error may quote the engine (a reply it could not read):
        // bounded, and shown escaped.
        Err(error) => EngineTest {
            ok: false,
            kind: tenant.engine_kind.clone(),
            elapsed_ms,
            replies: Vec::new(),
            reply_count: 0,
            error: Some(bounded_text(&error, 300)),
        },
    })
}
