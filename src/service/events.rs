//! Dead-lettered events: back into the queue, and the inbox worker woken.

use super::activity::{self, Actor};
use crate::domain::now_millis;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::ConnectionRecord;

/// Puts the connection's dead events (or the one named `event`) back in the
/// queue; returns how many.
pub async fn replay(
    state: &AppState,
    connection: &ConnectionRecord,
    event: Option<&str>,
    actor: &Actor,
) -> Result<u64, ApiError> {
    let count = state
        .store
        .replay_dead(&connection.tenant_id, &connection.id, event, now_millis())
        .await?;
    if count > 0 {
        state.signals.inbox.notify_one();
        let detail = match event {
            Some(id) => format!("event {id}"),
            None => format!("{count} events"),
        };
        activity::record(
            &state.store,
            actor,
            &connection.tenant_id,
            Some(&connection.id),
            "events.replayed",
            detail,
        )
        .await;
    }
    Ok(count)
}
