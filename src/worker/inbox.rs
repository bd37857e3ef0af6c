//! The inbox worker: claim events, ask the tenant's engine, enqueue the
//! replies (or retry with backoff, or dead-letter with an optional fallback
//! text) — each result written only while the claim's lease is held.

use actix_web::web;

use super::{retry::backoff, Kind, Work};
use crate::channels::Channel;
use crate::domain::now_millis;
use crate::engine::EngineEvent;
use crate::state::AppState;
use crate::store::queue::{Enqueue, InboundEvent};
use crate::store::StoreResult;

impl Work for InboundEvent {
    const KIND: Kind = Kind::Inbox;

    async fn process(state: web::Data<AppState>, event: Self) -> StoreResult<()> {
        process(&state, &event).await
    }
}

async fn process(state: &AppState, event: &InboundEvent) -> StoreResult<()> {
    let owner = &state.worker_id;
    let now = || now_millis();
    let Some((connection, _)) = state
        .store
        .connection_with_token(&event.connection_id)
        .await?
    else {
        return Ok(()); // deleted: its events went with it
    };
    let channel = Channel::of(&connection);
    let mut turn = channel.turn(&event.event_type, &event.raw, event.received_at);
    // A user's file reaches the engine as a botgate link.
    crate::channels::files::annotate(state, &connection, &mut turn, now());
    let ignored = match turn.ignored {
        Some(reason) => Some(reason),
        None => channel.admit(state, &connection, &turn).await?,
    };
    if let Some(reason) = ignored {
        state
            .store
            .ignore_inbound(event, owner, reason, now())
            .await?;
        return Ok(());
    }
    let Some(tenant) = state.store.tenant(&event.tenant_id).await? else {
        state
            .store
            .dead_inbound(
                event,
                owner,
                "the tenant no longer exists",
                Enqueue::NONE,
                now(),
            )
            .await?;
        return Ok(());
    };
    let answer = match crate::service::engine::of(state, &tenant).await {
        Ok(engine) => {
            let ev = EngineEvent {
                event_id: &event.id,
                tenant_id: tenant.id.as_str(),
                connection_id: event.connection_id.as_str(),
                turn: &turn,
                test: false,
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
            let replies = channel.replies(&turn, contents);
            // Its replies are handed to the outbox worker, or it is woken
            // for them, by the result's write.
            state
                .store
                .finish_inbound(event, owner, tenant.enqueue(&replies), now())
                .await?;
        }
        Err(error) => {
            let attempts = u32::try_from(event.attempts).unwrap_or(u32::MAX);
            if attempts >= state.settings.engine_max_attempts {
                tracing::warn!(event_id = %event.id, tenant_id = %tenant.id, attempts, error.message = %error, "engine kept failing; event dead-lettered");
                let fallback = tenant
                    .fallback_text
                    .as_ref()
                    .and_then(|t| {
                        channel
                            .render(&serde_json::json!({"type": "text", "text": t}))
                            .ok()
                    })
                    .map(|content| channel.replies(&turn, vec![content]))
                    .unwrap_or_default();
                let dead = state
                    .store
                    .dead_inbound(event, owner, &error, tenant.enqueue(&fallback), now())
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
