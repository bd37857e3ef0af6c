//! Connections: one bot of one tenant on one channel, its plaintext
//! columns (its secrets are in `secrets`), read on the hot paths through
//! the cache with its token row.

use sqlx::Row as _;

use super::error::{classify, is_unique_violation, StoreError, StoreResult};
use super::secrets::{field, put_secret};
use super::sql::{record, FromRow};
use super::tokens::TokenMeta;
use super::{cache, Store};
use crate::domain::ids::{ConnectionId, PublicId, TenantId};
use crate::secrets::Sealed;

record! {
    /// A connection's plaintext columns; its secrets are in the `secrets` table.
    #[derive(Debug, Clone)]
    pub struct ConnectionRecord, columns CONNECTION_COLUMNS {
        pub id: ConnectionId,
        pub tenant_id: TenantId,
        pub public_id: PublicId,
        pub channel: String,
        pub bot_id: String,
        pub client_id: String,
        pub service_account: String,
        pub scope: String,
        pub rate_limit_per_minute: i64,
        /// Size and public-key fingerprint of the private key (not secret).
        pub private_key_info: String,
        pub auth_header_hash: String,
        /// What the channel's adapter keeps that is neither secret nor common to
        /// every channel: a JSON object (`{}` for NAVER WORKS).
        pub details: String,
        pub created_at: i64,
        pub updated_at: i64,
        /// The networks the auth URLs answer (CIDR, comma-separated; empty:
        /// any address).
        pub auth_networks: String,
    }
}

/// Columns to change on a connection; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct ConnectionUpdate {
    pub client_id: Option<String>,
    pub service_account: Option<String>,
    pub scope: Option<String>,
    pub rate_limit_per_minute: Option<i64>,
    pub private_key_info: Option<String>,
    pub auth_header_hash: Option<String>,
    pub details: Option<String>,
    pub auth_networks: Option<String>,
}

impl ConnectionUpdate {
    /// Whether it changes no column.
    pub fn is_empty(&self) -> bool {
        self.client_id.is_none()
            && self.service_account.is_none()
            && self.scope.is_none()
            && self.rate_limit_per_minute.is_none()
            && self.private_key_info.is_none()
            && self.auth_header_hash.is_none()
            && self.details.is_none()
            && self.auth_networks.is_none()
    }
}

impl Store {
    /// Inserts a connection and its sealed secrets in one transaction.
    /// `Conflict` when the tenant already has a connection for this bot.
    pub async fn create_connection(
        &self,
        c: &ConnectionRecord,
        secrets: &[(&'static str, Sealed)],
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "INSERT INTO connections ({CONNECTION_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        );
        sqlx::query(&sql)
            .bind(c.id.as_str())
            .bind(c.tenant_id.as_str())
            .bind(c.public_id.as_str())
            .bind(&c.channel)
            .bind(&c.bot_id)
            .bind(&c.client_id)
            .bind(&c.service_account)
            .bind(&c.scope)
            .bind(c.rate_limit_per_minute)
            .bind(&c.private_key_info)
            .bind(&c.auth_header_hash)
            .bind(&c.details)
            .bind(c.created_at)
            .bind(c.updated_at)
            .bind(&c.auth_networks)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict("a connection for this bot")
                } else {
                    classify(e)
                }
            })?;
        for (name, sealed) in secrets {
            put_secret(
                &mut tx,
                &c.tenant_id,
                Some(&c.id),
                name,
                sealed,
                c.updated_at,
            )
            .await?;
        }
        tx.commit().await.map_err(classify)
    }

    pub async fn connection(
        &self,
        tenant: &TenantId,
        id: &ConnectionId,
    ) -> StoreResult<Option<ConnectionRecord>> {
        let sql = format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections WHERE tenant_id = $1 AND id = $2"
        );
        self.fetch_optional(sqlx::query(&sql).bind(tenant.as_str()).bind(id.as_str()))
            .await
    }

    /// A connection by id alone (for the admin token on the send API).
    pub async fn connection_by_id(
        &self,
        id: &ConnectionId,
    ) -> StoreResult<Option<ConnectionRecord>> {
        let sql = format!("SELECT {CONNECTION_COLUMNS} FROM connections WHERE id = $1");
        self.fetch_optional(sqlx::query(&sql).bind(id.as_str()))
            .await
    }

    pub async fn connections(&self, tenant: &TenantId) -> StoreResult<Vec<ConnectionRecord>> {
        let sql = format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections WHERE tenant_id = $1 ORDER BY created_at, id"
        );
        self.fetch_all(sqlx::query(&sql).bind(tenant.as_str()))
            .await
    }

    /// Up to `limit` of a tenant's connections in [`Store::connections`]'
    /// order, after the connection `after` (from the first if `None`; none
    /// if `after` is not the tenant's).
    pub async fn connections_after(
        &self,
        tenant: &TenantId,
        after: Option<&ConnectionId>,
        limit: i64,
    ) -> StoreResult<Vec<ConnectionRecord>> {
        let sql = format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections WHERE tenant_id = $1 \
               AND ($2 = '' OR (created_at, id) > \
                 (SELECT created_at, id FROM connections WHERE tenant_id = $1 AND id = $2)) \
             ORDER BY created_at, id LIMIT $3"
        );
        let after = after.map_or("", ConnectionId::as_str);
        let query = sqlx::query(&sql).bind(tenant.as_str()).bind(after);
        self.fetch_all(query.bind(limit)).await
    }

    /// Applies an update and replaces the given sealed secrets in one
    /// transaction. `None` when the tenant has no such connection.
    pub async fn update_connection(
        &self,
        tenant: &TenantId,
        id: &ConnectionId,
        update: &ConnectionUpdate,
        secrets: &[(&'static str, Sealed)],
        discard_tokens: bool,
        now: i64,
    ) -> StoreResult<Option<ConnectionRecord>> {
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "UPDATE connections SET \
               client_id = COALESCE($3, client_id), \
               service_account = COALESCE($4, service_account), \
               scope = COALESCE($5, scope), \
               rate_limit_per_minute = COALESCE($6, rate_limit_per_minute), \
               private_key_info = COALESCE($7, private_key_info), \
               auth_header_hash = COALESCE($8, auth_header_hash), \
               updated_at = $9, \
               details = COALESCE($10, details), \
               auth_networks = COALESCE($11, auth_networks) \
             WHERE tenant_id = $1 AND id = $2 RETURNING {CONNECTION_COLUMNS}"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(tenant.as_str())
            .bind(id.as_str())
            .bind(update.client_id.as_deref())
            .bind(update.service_account.as_deref())
            .bind(update.scope.as_deref())
            .bind(update.rate_limit_per_minute)
            .bind(update.private_key_info.as_deref())
            .bind(update.auth_header_hash.as_deref())
            .bind(now)
            .bind(update.details.as_deref())
            .bind(update.auth_networks.as_deref())
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        for (name, sealed) in secrets {
            put_secret(&mut tx, tenant, Some(id), name, sealed, now).await?;
        }
        if discard_tokens {
            // Tokens minted with the old credentials: gone for every replica,
            // which all read the token row before serving from memory.
            sqlx::query("DELETE FROM tokens WHERE connection_id = $1")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM secrets WHERE owner_id = $1 AND field IN ($2, $3)")
                .bind(id.as_str())
                .bind(field::ACCESS_TOKEN)
                .bind(field::REFRESH_TOKEN)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.cache.forget_connection(id.as_str());
        ConnectionRecord::from_row(&row).map(Some).map_err(classify)
    }

    /// The connection behind a public id, with its token row if any: the
    /// webhook's and the auth URLs' hot path, so from the cache when it holds
    /// it (see [`cache`]).
    pub async fn connection_by_public_id(
        &self,
        public_id: &str,
    ) -> StoreResult<Option<(ConnectionRecord, Option<TokenMeta>)>> {
        if let Some(entry) = self.cache.connection_by_public_id(public_id) {
            return Ok(Some(cache::ConnectionEntry::clone(&entry)));
        }
        self.connection_with_token_where("public_id", public_id)
            .await
    }

    /// A connection by id with its token row if any (the outbox's hot path),
    /// from the cache when it holds it.
    pub async fn connection_with_token(
        &self,
        id: &ConnectionId,
    ) -> StoreResult<Option<(ConnectionRecord, Option<TokenMeta>)>> {
        if let Some(entry) = self.cache.connection(id.as_str()) {
            return Ok(Some(cache::ConnectionEntry::clone(&entry)));
        }
        self.connection_with_token_where("id", id.as_str()).await
    }

    /// One query for a connection and its token row; kept in the cache.
    async fn connection_with_token_where(
        &self,
        column: &'static str,
        value: &str,
    ) -> StoreResult<Option<(ConnectionRecord, Option<TokenMeta>)>> {
        let epoch = self.cache.epoch();
        let columns: String = CONNECTION_COLUMNS
            .split(", ")
            .map(|c| format!("c.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {columns}, t.token_id, t.generation AS t_generation, t.issued_at, t.expires_at, \
               t.refresh_expires_at, t.scope AS t_scope, t.lease_owner, t.lease_until, t.reauthorize_since \
             FROM connections c LEFT JOIN tokens t ON t.connection_id = c.id WHERE c.{column} = $1"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(value)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let connection = ConnectionRecord::from_row(&row)?;
        let generation: Option<i64> = row.try_get("t_generation")?;
        let meta = match generation {
            None => None,
            Some(generation) => Some(TokenMeta {
                token_id: row.try_get("token_id")?,
                generation,
                issued_at: row.try_get("issued_at")?,
                expires_at: row.try_get("expires_at")?,
                refresh_expires_at: row.try_get("refresh_expires_at")?,
                scope: row.try_get("t_scope")?,
                lease_owner: row.try_get("lease_owner")?,
                lease_until: row.try_get("lease_until")?,
                reauthorize_since: row.try_get("reauthorize_since")?,
            }),
        };
        let entry = (connection, meta);
        self.cache
            .keep_connection(epoch, std::sync::Arc::new(entry.clone()));
        Ok(Some(entry))
    }
}
