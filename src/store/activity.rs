//! A tenant's activity log: who changed what, when, from where (see
//! `service::activity`). Entries name what changed, never a value.

use super::error::StoreResult;
use super::sql::record;
use super::Store;
use crate::domain::ids::{ConnectionId, TenantId};

record! {
    /// One change to a tenant or one of its connections.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ActivityEntry, columns ACTIVITY_COLUMNS {
        pub id: i64,
        pub tenant_id: String,
        pub connection_id: Option<String>,
        pub at: i64,
        pub action: String,
        pub actor: String,
        pub via: String,
        pub client_addr: String,
        pub detail: String,
    }
}

impl Store {
    /// Writes one entry (its `id` is the table's).
    pub async fn record_activity(&self, e: &ActivityEntry) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO activity (tenant_id, connection_id, at, action, actor, via, client_addr, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&e.tenant_id)
        .bind(e.connection_id.as_deref())
        .bind(e.at)
        .bind(&e.action)
        .bind(&e.actor)
        .bind(&e.via)
        .bind(&e.client_addr)
        .bind(&e.detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A tenant's entries (of `connection` alone, if named), newest first:
    /// `limit` of them older than the entry `before` (or the newest).
    pub async fn activity(
        &self,
        tenant: &TenantId,
        connection: Option<&ConnectionId>,
        before: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<ActivityEntry>> {
        let before = before.unwrap_or(i64::MAX);
        let order = match connection {
            Some(_) => "connection_id = $4 AND id < $2 ORDER BY id DESC",
            None => "id < $2 ORDER BY id DESC",
        };
        let sql = format!(
            "SELECT {ACTIVITY_COLUMNS} FROM activity WHERE tenant_id = $1 AND {order} LIMIT $3"
        );
        let mut query = sqlx::query(&sql)
            .bind(tenant.as_str())
            .bind(before)
            .bind(limit);
        if let Some(connection) = connection {
            query = query.bind(connection.as_str());
        }
        self.fetch_all(query).await
    }

    /// A tenant's entries after the entry `after`, oldest first (export).
    pub async fn activity_since(
        &self,
        tenant: &TenantId,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<ActivityEntry>> {
        let sql = format!(
            "SELECT {ACTIVITY_COLUMNS} FROM activity WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        );
        self.fetch_all(
            sqlx::query(&sql)
                .bind(tenant.as_str())
                .bind(after)
                .bind(limit),
        )
        .await
    }

    /// Deletes the entries made before `before`, `batch` at a time (the
    /// retention of `retain_audit_days`); returns how many.
    pub async fn prune_activity(&self, before: i64, batch: i64) -> StoreResult<u64> {
        let due = sqlx::query("SELECT 1 FROM activity WHERE at < $1 LIMIT 1").bind(before);
        let delete = || {
            sqlx::query(
                "DELETE FROM activity WHERE id IN (SELECT id FROM activity WHERE at < $1 ORDER BY at LIMIT $2)",
            )
            .bind(before)
            .bind(batch)
        };
        self.delete_due(due, delete, batch).await
    }
}
