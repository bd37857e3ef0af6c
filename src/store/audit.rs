//! The token audit: every read and refresh through the auth URLs.

use super::error::StoreResult;
use super::sql::record;
use super::Store;
use crate::domain::ids::{ConnectionId, TenantId};

record! {
    /// One read or refresh through the auth URLs.
    #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
    pub struct AuditEntry, columns AUDIT_COLUMNS {
        pub connection_id: String,
        pub tenant_id: String,
        pub at: i64,
        pub client_addr: String,
        pub action: String,
        pub outcome: String,
    }
}

impl Store {
    /// Writes a batch of audit entries with one statement.
    pub async fn record_audit(&self, entries: &[AuditEntry]) -> StoreResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let values = (0..entries.len())
            .map(|k| {
                let b = 6 * k;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO token_audit (connection_id, tenant_id, at, client_addr, action, outcome) VALUES {values}"
        );
        let mut query = sqlx::query(&sql);
        for e in entries {
            query = query
                .bind(&e.connection_id)
                .bind(&e.tenant_id)
                .bind(e.at)
                .bind(&e.client_addr)
                .bind(&e.action)
                .bind(&e.outcome);
        }
        query.execute(&self.pool).await?;
        Ok(())
    }

    /// The newest `limit` audit entries of a connection, newest first.
    pub async fn audit(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        limit: i64,
    ) -> StoreResult<Vec<AuditEntry>> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM token_audit \
             WHERE tenant_id = $1 AND connection_id = $2 ORDER BY id DESC LIMIT $3"
        );
        self.fetch_all(
            sqlx::query(&sql)
                .bind(tenant.as_str())
                .bind(connection.as_str())
                .bind(limit),
        )
        .await
    }
}
