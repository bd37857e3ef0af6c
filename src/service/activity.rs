//! A tenant's activity log: every change to the tenant or its connections
//! — who made it (the admin, the tenant's key or console session, the
//! operator's command line, a workspace admin installing, a platform's
//! events), through what, from which address, and what changed. It names
//! fields, never their values: a rotated secret shows as `client_secret`,
//! not as the secret.
//!
//! An entry is written after the change succeeded, outside its transaction:
//! a failure to write it is logged (error) and does not undo or fail the
//! change, which the caller has already been told about.

use serde::Serialize;

use crate::domain::ids::{ConnectionId, TenantId};
use crate::domain::{now_millis, rfc3339};
use crate::store::{ActivityEntry, Store};

/// Who made a change, and how it reached botgate.
#[derive(Debug, Clone)]
pub struct Actor {
    /// `admin` (the admin token), `tenant` (the tenant's API key, or a
    /// console session signed in with it), `operator` (the command line,
    /// which holds the database), `slack` (Slack's events), `workspace
    /// admin` (an "Add to Slack" install), `member` (a NAVER WORKS member's
    /// sign-in).
    pub who: &'static str,
    /// `api`, `console`, `cli`, `oauth` or `events`.
    pub via: &'static str,
    /// The client's address (as the rate limiter sees it); empty where
    /// there is none (the command line, a platform's events).
    pub addr: String,
}

impl Actor {
    pub fn new(who: &'static str, via: &'static str, addr: impl ToString) -> Self {
        Self {
            who,
            via,
            addr: addr.to_string(),
        }
    }

    /// The operator at the command line.
    pub fn operator() -> Self {
        Self::new("operator", "cli", "")
    }
}

/// Records `action` (dotted: `connection.updated`) by `actor` on `tenant`
/// (and `connection`), with `detail` naming what changed.
pub async fn record(
    store: &Store,
    actor: &Actor,
    tenant: &TenantId,
    connection: Option<&ConnectionId>,
    action: &'static str,
    detail: impl Into<String>,
) {
    let entry = ActivityEntry {
        id: 0,
        tenant_id: tenant.to_string(),
        connection_id: connection.map(ToString::to_string),
        at: now_millis(),
        action: action.to_owned(),
        actor: actor.who.to_owned(),
        via: actor.via.to_owned(),
        client_addr: actor.addr.clone(),
        detail: detail.into(),
    };
    if let Err(e) = store.record_activity(&entry).await {
        tracing::error!(tenant_id = %tenant, action, error.message = %e, "activity entry not written");
    }
}

/// One entry as the API, the console and the export show it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ActivityView<'a> {
    /// Increasing; `?before=` takes it to page back.
    pub id: i64,
    /// RFC 3339.
    pub at: String,
    /// `tenant.created`, `tenant.api_key_replaced`, `tenant.engine_set`,
    /// `tenant.quotas_set`, `connection.created`, `connection.updated`,
    /// `connection.deleted`, `connection.authorized`, `installation.added`,
    /// `installation.removed`, `events.replayed`, `messages.retried` or
    /// `messages.cancelled`.
    pub action: &'a str,
    pub connection_id: Option<&'a str>,
    /// Who: `admin`, `tenant`, `operator`, `slack`, `workspace admin` or
    /// `member`.
    pub actor: &'a str,
    /// Through what: `api`, `console`, `cli`, `oauth` or `events`.
    pub via: &'a str,
    /// The client's address; empty for the command line and platform events.
    pub client_addr: &'a str,
    /// What changed (field names, a workspace, a count), never a value.
    pub detail: &'a str,
}

impl<'a> From<&'a ActivityEntry> for ActivityView<'a> {
    fn from(e: &'a ActivityEntry) -> Self {
        Self {
            id: e.id,
            at: rfc3339(e.at),
            action: &e.action,
            connection_id: e.connection_id.as_deref(),
            actor: &e.actor,
            via: &e.via,
            client_addr: &e.client_addr,
            detail: &e.detail,
        }
    }
}
