//! Sealed values (credentials, engine secrets, tokens), each bound to its
//! tenant, connection and field by its associated data; and key rotation's
//! reads and compare-and-swap writes.

use sqlx::any::AnyRow;
use sqlx::Row as _;

use super::error::{classify, StoreResult};
use super::sql::FromRow;
use super::Store;
use crate::domain::ids::{ConnectionId, TenantId};
use crate::secrets::Sealed;

/// Field names of sealed values, bound into their ciphertext.
pub mod field {
    pub const CLIENT_SECRET: &str = "client_secret";
    pub const PRIVATE_KEY: &str = "private_key";
    pub const BOT_SECRET: &str = "bot_secret";
    /// Slack: the app's Signing Secret, its bot token (`xoxb-…`).
    pub const SIGNING_SECRET: &str = "signing_secret";
    pub const BOT_TOKEN: &str = "bot_token";
    pub const ENGINE_SECRET: &str = "engine_secret";
    /// What a tenant's status hook posts are signed with.
    pub const STATUS_SECRET: &str = "status_secret";
    pub const ACCESS_TOKEN: &str = "access_token";
    pub const REFRESH_TOKEN: &str = "refresh_token";
}

/// One sealed value and what it belongs to.
#[derive(Debug, Clone)]
pub struct SecretRecord {
    pub owner_id: String,
    pub field: String,
    pub tenant_id: String,
    pub connection_id: Option<String>,
    pub sealed: Sealed,
}

impl FromRow for SecretRecord {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            owner_id: row.try_get("owner_id")?,
            field: row.try_get("field")?,
            tenant_id: row.try_get("tenant_id")?,
            connection_id: row.try_get("connection_id")?,
            sealed: Sealed {
                key_id: row.try_get("key_id")?,
                nonce: row.try_get("nonce")?,
                ciphertext: row.try_get("ciphertext")?,
            },
        })
    }
}

impl SecretRecord {
    /// The associated data this value was sealed with.
    pub fn aad(&self) -> crate::secrets::Aad<'_> {
        crate::secrets::Aad {
            tenant: &self.tenant_id,
            connection: self.connection_id.as_deref(),
            field: &self.field,
        }
    }
}

const SECRET_COLUMNS: &str = "owner_id, field, tenant_id, connection_id, key_id, nonce, ciphertext";

impl Store {
    /// The sealed values of one owner (a connection id, or a tenant id for
    /// tenant-level secrets).
    pub async fn secrets(&self, owner_id: &str) -> StoreResult<Vec<SecretRecord>> {
        let sql =
            format!("SELECT {SECRET_COLUMNS} FROM secrets WHERE owner_id = $1 ORDER BY field");
        self.fetch_all(sqlx::query(&sql).bind(owner_id)).await
    }

    /// Up to `limit` values sealed under a key other than `key_id`, in
    /// (owner, field) order after `after` (keyset pagination).
    pub async fn secrets_not_under_key(
        &self,
        key_id: &str,
        after: Option<(&str, &str)>,
        limit: i64,
    ) -> StoreResult<Vec<SecretRecord>> {
        let (owner, field) = after.unwrap_or(("", ""));
        let sql = format!(
            "SELECT {SECRET_COLUMNS} FROM secrets WHERE key_id <> $1 \
               AND (owner_id > $2 OR (owner_id = $2 AND field > $3)) \
             ORDER BY owner_id, field LIMIT $4"
        );
        self.fetch_all(
            sqlx::query(&sql)
                .bind(key_id)
                .bind(owner)
                .bind(field)
                .bind(limit),
        )
        .await
    }

    /// Replaces a sealed value only if it is still the one that was read
    /// (compare-and-swap on the nonce), so a concurrent write wins.
    pub async fn replace_secret(
        &self,
        old: &SecretRecord,
        new: &Sealed,
        now: i64,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE secrets SET key_id = $3, nonce = $4, ciphertext = $5, updated_at = $6 \
             WHERE owner_id = $1 AND field = $2 AND nonce = $7",
        )
        .bind(&old.owner_id)
        .bind(&old.field)
        .bind(&new.key_id)
        .bind(&new.nonce)
        .bind(&new.ciphertext)
        .bind(now)
        .bind(&old.sealed.nonce)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// How many sealed values each key id holds.
    pub async fn secret_counts_by_key(&self) -> StoreResult<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT key_id, COUNT(*) AS n FROM secrets GROUP BY key_id ORDER BY key_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("key_id")?, r.try_get("n")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(classify)
    }
}

pub(crate) async fn put_secret(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: &TenantId,
    connection: Option<&ConnectionId>,
    name: &str,
    sealed: &Sealed,
    now: i64,
) -> StoreResult<()> {
    let owner = connection.map_or(tenant.as_str(), ConnectionId::as_str);
    sqlx::query(
        "INSERT INTO secrets (owner_id, field, tenant_id, connection_id, key_id, nonce, ciphertext, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (owner_id, field) DO UPDATE SET key_id = excluded.key_id, \
           nonce = excluded.nonce, ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
    )
    .bind(owner)
    .bind(name)
    .bind(tenant.as_str())
    .bind(connection.map(ConnectionId::as_str))
    .bind(&sealed.key_id)
    .bind(&sealed.nonce)
    .bind(&sealed.ciphertext)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
