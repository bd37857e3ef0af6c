//! The inbox worker: claim events, ask the tenant's engine, enqueue the
//! replies (or retry with backoff, or dead-letter with an optional fallback
//! text) — each result written only while the claim's lease is held.

use std::sync::Arc;

use actix_web::web;
use secrecy::SecretString;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{lease_ms, retry::backoff, spawn_each, spawn_one, Kind, Outcome};
use crate::domain::now_millis;
use crate::engine::{Engine, EngineEvent};
use crate::state::AppState;
use crate::store::queue::{InboundEvent, NewOutbound};
use crate::store::{field, StoreResult, TenantRecord};

pub async fn step(
    state: &web::Data<AppState>,
    slots: &Arc<Semaphore>,
    free: usize,
) -> StoreResult<Outcome> {
    let now = now_millis();
    let limit = i64::try_from(free).unwrap_or(1);
    let events = state
        .store
        .claim_inbound(
            &state.worker_id,
            now,
            now + lease_ms(&state.settings),
            limit,
        )
        .await?;
    Ok(spawn_each(state, slots, events, start).await)
}

/// Processes one claimed event in a slot of its own.
pub(super) fn start(state: &web::Data<AppState>, slot: OwnedSemaphorePermit, event: InboundEvent) {
    spawn_one(
        state,
        slot,
        event,
        |event| &event.id,
        |state, event| async move { process(&state, &event).await },
        Kind::Inbox,
    );
}

/// Where replies to a callback go: its room, else its user (NAVERWORKS.md §4.1).
pub fn reply_target(callback: &Value) -> Option<(&'static str, String)> {
    let source = callback.get("source")?;
    if let Some(channel) = source.get("channelId").and_then(Value::as_str) {
        return Some(("channel", channel.to_owned()));
    }
    source
        .get("userId")
        .and_then(Value::as_str)
        .map(|u| ("user", u.to_owned()))
}

fn messages(callback: &Value, contents: Vec<Value>) -> Vec<NewOutbound> {
    let Some((kind, target)) = reply_target(callback) else {
        return Vec::new();
    };
    contents
        .into_iter()
        .map(|content| NewOutbound {
            id: crate::domain::ids::new_message_id(),
            target_kind: kind,
            target_id: target.clone(),
            content: content.to_string(),
        })
        .collect()
}

async fn engine_of(state: &AppState, tenant: &TenantRecord) -> Result<Engine, String> {
    let url = || {
        tenant
            .engine_url
            .clone()
            .ok_or("the engine has no URL".to_owned())
    };
    Ok(match tenant.engine_kind.as_str() {
        "http" => {
            let secrets = state
                .store
                .secrets(tenant.id.as_str())
                .await
                .map_err(|e| e.to_string())?;
            let sealed = secrets
                .iter()
                .find(|s| s.field == field::ENGINE_SECRET)
                .ok_or("the engine secret is missing")?;
            let secret: SecretString = state
                .vault
                .open_str(&sealed.sealed, sealed.aad())
                .map_err(|e| e.to_string())?;
            Engine::Http {
                url: url()?,
                secret,
            }
        }
        "rasa" => Engine::Rasa { url: url()? },
        _ => Engine::Echo,
    })
}

async fn process(state: &AppState, event: &InboundEvent) -> StoreResult<()> {
    let owner = &state.worker_id;
    let now = || now_millis();
    let callback: Value = serde_json::from_slice(&event.raw).unwrap_or(Value::Null);
    let Some(tenant) = state.store.tenant(&event.tenant_id).await? else {
        state
            .store
            .dead_inbound(event, owner, "the tenant no longer exists", &[], now())
            .await?;
        return Ok(());
    };
    let answer = match engine_of(state, &tenant).await {
        Ok(engine) => {
            let ev = EngineEvent {
                event_id: &event.id,
                tenant_id: tenant.id.as_str(),
                connection_id: event.connection_id.as_str(),
                callback: &callback,
            };
            let started = std::time::Instant::now();
            let answer = engine
                .answer(&state.outbound, state.settings.engine_timeout, &ev)
                .await;
            state.metrics.engine_latency.observe(started.elapsed());
            state
                .metrics
                .engine_call(tenant.id.as_str(), answer.is_ok());
            answer.map_err(|e| e.to_string())
        }
        Err(e) => Err(e),
    };
    match answer {
        Ok(contents) => {
            let replies = messages(&callback, contents);
            // Its replies are handed to the outbox worker, or it is woken
            // for them, by the result's write.
            state
                .store
                .finish_inbound(event, owner, &replies, now())
                .await?;
        }
        Err(error) => {
            let attempts = u32::try_from(event.attempts).unwrap_or(u32::MAX);
            if attempts >= state.settings.engine_max_attempts {
                tracing::warn!(event_id = %event.id, tenant_id = %tenant.id, attempts, error.message = %error, "engine kept failing; event dead-lettered");
                let fallback = tenant
                    .fallback_text
                    .as_ref()
                    .map(|t| {
                        messages(
                            &callback,
                            vec![serde_json::json!({"type": "text", "text": t})],
                        )
                    })
                    .unwrap_or_default();
                let dead = state
                    .store
                    .dead_inbound(event, owner, &error, &fallback, now())
                    .await?;
                if dead {
                    state.metrics.dead_letters.inc("dead");
                }
            } else {
                let delay = backoff(state.settings.retry_base, event.attempts);
                let next = now() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 4);
                tracing::info!(event_id = %event.id, attempts, error.message = %error, "engine call failed; will retry");
                state
                    .store
                    .retry_inbound(event, owner, &error, next, now())
                    .await?;
            }
        }
    }
    Ok(())
}
