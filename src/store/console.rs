//! Console sessions (signed-in browsers) and the tenant list operators see.

use sqlx::any::AnyRow;
use sqlx::Row as _;

use super::error::StoreResult;
use super::sql::FromRow;
use super::tenants::TENANT_COLUMNS;
use super::{Store, TenantRecord};
use crate::domain::ids::TenantId;

/// Who a browser session belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Signed in with a tenant's API key: that tenant only.
    Tenant,
    /// Signed in with the admin token: every tenant.
    Admin,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConsoleSession {
    pub token_hash: String,
    pub role: Role,
    /// The tenant signed in, or the one an operator is looking at.
    pub tenant_id: Option<TenantId>,
    pub created_at: i64,
    pub expires_at: i64,
}

impl FromRow for ConsoleSession {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let role: String = row.try_get("role")?;
        Ok(Self {
            token_hash: row.try_get("token_hash")?,
            role: if role == "admin" {
                Role::Admin
            } else {
                Role::Tenant
            },
            tenant_id: row.try_get("tenant_id")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
        })
    }
}

impl Store {
    pub async fn create_session(&self, session: &ConsoleSession) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO console_sessions (token_hash, role, tenant_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&session.token_hash)
        .bind(session.role.as_str())
        .bind(session.tenant_id.as_ref().map(TenantId::as_str))
        .bind(session.created_at)
        .bind(session.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The session with this token hash, if it has not expired at `now`.
    pub async fn session(&self, token_hash: &str, now: i64) -> StoreResult<Option<ConsoleSession>> {
        self.fetch_optional(
            sqlx::query(
                "SELECT token_hash, role, tenant_id, created_at, expires_at FROM console_sessions \
             WHERE token_hash = $1 AND expires_at > $2",
            )
            .bind(token_hash)
            .bind(now),
        )
        .await
    }

    /// Moves a session's expiry (sliding idle timeout).
    pub async fn extend_session(&self, token_hash: &str, expires_at: i64) -> StoreResult<()> {
        sqlx::query("UPDATE console_sessions SET expires_at = $2 WHERE token_hash = $1")
            .bind(token_hash)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The tenant an operator's session is looking at.
    pub async fn set_session_tenant(&self, token_hash: &str, tenant: &TenantId) -> StoreResult<()> {
        sqlx::query(
            "UPDATE console_sessions SET tenant_id = $2 WHERE token_hash = $1 AND role = 'admin'",
        )
        .bind(token_hash)
        .bind(tenant.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn delete_session(&self, token_hash: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM console_sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets expired sessions (housekeeping).
    pub async fn prune_sessions(&self, now: i64) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Every tenant, by name.
    pub async fn tenants(&self) -> StoreResult<Vec<TenantRecord>> {
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants ORDER BY name, id");
        self.fetch_all(sqlx::query(&sql)).await
    }
}
