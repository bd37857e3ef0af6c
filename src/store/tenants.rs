//! Tenants: one chatbot each, with its API key's hash and its engine.

use super::error::{classify, StoreResult};
use super::queue::{Enqueue, NewOutbound};
use super::secrets::{field, put_secret};
use super::sql::{record, FromRow, Query};
use super::Store;
use crate::domain::ids::TenantId;
use crate::secrets::Sealed;

record! {
    #[derive(Debug, Clone)]
    pub struct TenantRecord, columns TENANT_COLUMNS {
        pub id: TenantId,
        pub name: String,
        pub api_key_hash: String,
        pub engine_kind: String,
        pub engine_url: Option<String>,
        /// Sent to the user when the engine stays down (dead-lettered event).
        pub fallback_text: Option<String>,
        /// Its own quotas (`None`: the configuration's).
        pub max_open_rows: Option<i64>,
        pub max_callbacks_per_second: Option<i64>,
        /// Where its messages' final statuses are posted (`None`: nowhere).
        pub status_url: Option<String>,
        pub created_at: i64,
        pub updated_at: i64,
    }
}

impl TenantRecord {
    /// `messages` to enqueue for this tenant: their final statuses posted
    /// to its status hook if it has one.
    pub fn enqueue<'a>(&self, messages: &'a [NewOutbound]) -> Enqueue<'a> {
        Enqueue {
            messages,
            notify: self.status_url.is_some(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewTenant {
    pub id: TenantId,
    pub name: String,
    pub api_key_hash: String,
    pub now: i64,
}

impl Store {
    pub async fn create_tenant(&self, tenant: &NewTenant) -> StoreResult<TenantRecord> {
        let sql = format!(
            "INSERT INTO tenants (id, name, api_key_hash, engine_kind, created_at, updated_at) \
             VALUES ($1, $2, $3, 'echo', $4, $4) RETURNING {TENANT_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(tenant.id.as_str())
            .bind(&tenant.name)
            .bind(&tenant.api_key_hash)
            .bind(tenant.now)
            .fetch_one(&self.pool)
            .await?;
        TenantRecord::from_row(&row).map_err(classify)
    }

    /// A tenant, from the cache when it holds it (see [`cache`]).
    pub async fn tenant(&self, id: &TenantId) -> StoreResult<Option<TenantRecord>> {
        if let Some(tenant) = self.cache.tenant(id.as_str()) {
            return Ok(Some(TenantRecord::clone(&tenant)));
        }
        let epoch = self.cache.epoch();
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1");
        let tenant: Option<TenantRecord> = self
            .fetch_optional(sqlx::query(&sql).bind(id.as_str()))
            .await?;
        if let Some(t) = &tenant {
            self.cache
                .keep_tenant(epoch, std::sync::Arc::new(t.clone()));
        }
        Ok(tenant)
    }

    /// Up to `limit` tenants by id, after `after` (from the first if `None`).
    pub async fn tenants_after(
        &self,
        after: Option<&TenantId>,
        limit: i64,
    ) -> StoreResult<Vec<TenantRecord>> {
        let sql =
            format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id > $1 ORDER BY id LIMIT $2");
        let after = after.map_or("", TenantId::as_str);
        self.fetch_all(sqlx::query(&sql).bind(after).bind(limit))
            .await
    }

    /// The tenant whose API key hashes to `hash`: its current key, or the
    /// key it replaced while that is still valid at `now`.
    pub async fn tenant_by_api_key_hash(
        &self,
        hash: &str,
        now: i64,
    ) -> StoreResult<Option<TenantRecord>> {
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE api_key_hash = $1");
        if let Some(tenant) = self.fetch_optional(sqlx::query(&sql).bind(hash)).await? {
            return Ok(Some(tenant));
        }
        let sql = format!(
            "SELECT {TENANT_COLUMNS} FROM tenants \
             WHERE previous_api_key_hash = $1 AND previous_api_key_until > $2"
        );
        self.fetch_optional(sqlx::query(&sql).bind(hash).bind(now))
            .await
    }

    /// Gives a tenant a new API key (its hash). The key it replaces stays
    /// valid until `previous_until` (never, if `None`), and a key replaced
    /// before is forgotten. The console sessions signed in with a key of
    /// the tenant's end, except `keep_session` (the one asking, if any).
    /// `None` if there is no such tenant.
    pub async fn replace_api_key(
        &self,
        tenant: &TenantId,
        new_hash: &str,
        previous_until: Option<i64>,
        keep_session: Option<&str>,
        now: i64,
    ) -> StoreResult<Option<TenantRecord>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM console_sessions WHERE tenant_id = $1 AND role = 'tenant' \
             AND token_hash <> $2",
        )
        .bind(tenant.as_str())
        .bind(keep_session.unwrap_or(""))
        .execute(&mut *tx)
        .await?;
        // The right-hand sides read the row as it was: the key replaced.
        let sql = format!(
            "UPDATE tenants SET \
               previous_api_key_hash = CASE WHEN $3 IS NULL THEN NULL ELSE api_key_hash END, \
               previous_api_key_until = $3, api_key_hash = $2, updated_at = $4 \
             WHERE id = $1 RETURNING {TENANT_COLUMNS}"
        );
        let query = sqlx::query(&sql).bind(tenant.as_str()).bind(new_hash);
        let row = query
            .bind(previous_until)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        self.updated(tenant, row)
    }

    /// A tenant's row as an update returned it (`None`: no such tenant),
    /// its cached copy forgotten.
    fn updated(
        &self,
        tenant: &TenantId,
        row: Option<sqlx::any::AnyRow>,
    ) -> StoreResult<Option<TenantRecord>> {
        self.cache.forget_tenant(tenant.as_str());
        row.as_ref()
            .map(TenantRecord::from_row)
            .transpose()
            .map_err(classify)
    }

    /// Sets the engine and replaces its sealed secret, in one transaction.
    /// Returns the updated tenant, or `None` if there is no such tenant.
    pub async fn set_engine(
        &self,
        tenant: &TenantId,
        kind: &str,
        url: Option<&str>,
        secret: Option<&Sealed>,
        fallback_text: Option<&str>,
        now: i64,
    ) -> StoreResult<Option<TenantRecord>> {
        let sql = format!(
            "UPDATE tenants SET engine_kind = $2, engine_url = $3, fallback_text = $5, updated_at = $4 \
             WHERE id = $1 RETURNING {TENANT_COLUMNS}"
        );
        let update = sqlx::query(&sql)
            .bind(tenant.as_str())
            .bind(kind)
            .bind(url)
            .bind(now)
            .bind(fallback_text);
        self.update_with_secret(tenant, update, field::ENGINE_SECRET, secret, now)
            .await
    }

    /// Sets (or with `None`, removes) a tenant's status hook: its URL, and
    /// the secret its posts are signed with.
    pub async fn set_status_hook(
        &self,
        tenant: &TenantId,
        url: Option<&str>,
        secret: Option<&Sealed>,
        now: i64,
    ) -> StoreResult<Option<TenantRecord>> {
        let sql = format!(
            "UPDATE tenants SET status_url = $2, updated_at = $3 WHERE id = $1 RETURNING {TENANT_COLUMNS}"
        );
        let update = sqlx::query(&sql).bind(tenant.as_str()).bind(url).bind(now);
        self.update_with_secret(tenant, update, field::STATUS_SECRET, secret, now)
            .await
    }

    /// Runs `update` (an UPDATE of the tenant's row RETURNING its columns)
    /// and replaces the tenant's sealed `field` with `secret` (removes it
    /// with `None`), in one transaction. `None` if there is no such tenant.
    async fn update_with_secret(
        &self,
        tenant: &TenantId,
        update: Query<'_>,
        field: &str,
        secret: Option<&Sealed>,
        now: i64,
    ) -> StoreResult<Option<TenantRecord>> {
        let mut tx = self.pool.begin().await?;
        let Some(row) = update.fetch_optional(&mut *tx).await? else {
            return Ok(None);
        };
        sqlx::query("DELETE FROM secrets WHERE owner_id = $1 AND field = $2")
            .bind(tenant.as_str())
            .bind(field)
            .execute(&mut *tx)
            .await?;
        if let Some(sealed) = secret {
            put_secret(&mut tx, tenant, None, field, sealed, now).await?;
        }
        tx.commit().await?;
        self.cache.forget_tenant(tenant.as_str());
        TenantRecord::from_row(&row).map(Some).map_err(classify)
    }

    /// Sets a tenant's own quotas (`None`: the configuration's). Returns
    /// the updated tenant, or `None` if there is no such tenant.
    pub async fn set_quotas(
        &self,
        tenant: &TenantId,
        max_open_rows: Option<i64>,
        max_callbacks_per_second: Option<i64>,
        now: i64,
    ) -> StoreResult<Option<TenantRecord>> {
        let sql = format!(
            "UPDATE tenants SET max_open_rows = $2, max_callbacks_per_second = $3, updated_at = $4 \
             WHERE id = $1 RETURNING {TENANT_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(tenant.as_str())
            .bind(max_open_rows)
            .bind(max_callbacks_per_second)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        self.updated(tenant, row)
    }

    /// Rows open (pending or in flight) in both queues of a tenant's
    /// connections, through the queues' partial indexes of open rows.
    pub async fn open_rows(&self, tenant: &TenantId) -> StoreResult<i64> {
        // SQLite's planner would rather walk the tenant's connections'
        // whole history (by connection) than the few open rows: told.
        let (inbox, outbox) = match self.backend {
            super::Backend::Sqlite => (
                " INDEXED BY inbound_open_conversation",
                " INDEXED BY outbound_open_conversation",
            ),
            super::Backend::Postgres => ("", ""),
        };
        let sql = format!(
            "SELECT (SELECT COUNT(*) FROM inbound_events{inbox} WHERE status IN ('pending', 'processing') \
               AND connection_id IN (SELECT id FROM connections WHERE tenant_id = $1)) + \
             (SELECT COUNT(*) FROM outbound_messages{outbox} WHERE status IN ('pending', 'sending') \
               AND connection_id IN (SELECT id FROM connections WHERE tenant_id = $1)) AS n"
        );
        self.count(sqlx::query(&sql).bind(tenant.as_str())).await
    }
}
