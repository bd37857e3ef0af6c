//! A connection's shared token: the row with what is not secret and the
//! refresh lease (the token itself is sealed in `secrets`).

use sqlx::Row as _;

use super::error::StoreResult;
use super::secrets::{field, put_secret};
use super::sql::record;
use super::Store;
use crate::domain::ids::{ConnectionId, TenantId};
use crate::secrets::Sealed;

record! {
    /// A connection's token row: what is not secret, and the refresh lease.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct TokenMeta, columns TOKEN_COLUMNS {
        /// Random per stored token; `None` before the first.
        pub token_id: Option<String>,
        pub generation: i64,
        pub issued_at: Option<i64>,
        pub expires_at: Option<i64>,
        pub refresh_expires_at: Option<i64>,
        pub scope: Option<String>,
        pub lease_owner: Option<String>,
        pub lease_until: Option<i64>,
        /// A user-account connection whose refresh token was refused: since
        /// when (Unix ms) it needs a person to authorise it again.
        pub reauthorize_since: Option<i64>,
    }
}

/// A token to store; times are Unix milliseconds.
#[derive(Debug)]
pub struct NewToken {
    pub access: Sealed,
    /// `None` keeps the current refresh token (no rotation).
    pub refresh: Option<Sealed>,
    pub issued_at: i64,
    pub expires_at: i64,
    pub refresh_expires_at: Option<i64>,
    pub scope: String,
}

impl Store {
    pub async fn token_meta(&self, connection: &ConnectionId) -> StoreResult<Option<TokenMeta>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE connection_id = $1");
        self.fetch_optional(sqlx::query(&sql).bind(connection.as_str()))
            .await
    }

    /// Takes the connection's refresh lease for `owner` until `until` if it is
    /// free, expired or already `owner`'s, and the token row is still at
    /// `seen_generation` (0 before the first token): the generation the
    /// caller read before deciding to refresh. Committed before any network
    /// call, so no transaction is held while NAVER WORKS answers.
    ///
    /// The generation is what makes a refresh single-flight across
    /// processes: without it, a replica that read the row before another's
    /// refresh committed took the lease that refresh had just released and
    /// minted a second token (issue 20: two tokens 19 ms apart). A lease taken
    /// after a newer token was stored is refused; the caller reads the row
    /// again and serves that token.
    pub async fn acquire_token_lease(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        owner: &str,
        (now, until): (i64, i64),
        seen_generation: i64,
    ) -> StoreResult<bool> {
        let created = sqlx::query(
            "INSERT INTO tokens (connection_id, tenant_id, generation, updated_at) VALUES ($1, $2, 0, $3) \
             ON CONFLICT (connection_id) DO NOTHING",
        )
        .bind(connection.as_str())
        .bind(tenant.as_str())
        .bind(now)
        .execute(&self.pool)
        .await?;
        if created.rows_affected() > 0 {
            self.cache.forget_connection(connection.as_str());
        }
        let done = sqlx::query(
            "UPDATE tokens SET lease_owner = $2, lease_until = $3 WHERE connection_id = $1 \
             AND generation = $5 AND (lease_owner IS NULL OR lease_until < $4 OR lease_owner = $2)",
        )
        .bind(connection.as_str())
        .bind(owner)
        .bind(until)
        .bind(now)
        .bind(seen_generation)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn release_token_lease(
        &self,
        connection: &ConnectionId,
        owner: &str,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE tokens SET lease_owner = NULL, lease_until = NULL WHERE connection_id = $1 AND lease_owner = $2")
            .bind(connection.as_str())
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores a new token if `owner` still holds the lease (credentials may
    /// have been rotated meanwhile, which drops the row), releasing the lease.
    /// Returns the new (token id, generation), or `None` if the lease was lost.
    pub async fn store_token(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        owner: &str,
        token: &NewToken,
    ) -> StoreResult<Option<(String, i64)>> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE tokens SET generation = generation + 1, token_id = $7, issued_at = $3, expires_at = $4, \
               refresh_expires_at = COALESCE($5, refresh_expires_at), scope = $6, \
               lease_owner = NULL, lease_until = NULL, updated_at = $3 \
             WHERE connection_id = $1 AND lease_owner = $2 RETURNING token_id, generation",
        )
        .bind(connection.as_str())
        .bind(owner)
        .bind(token.issued_at)
        .bind(token.expires_at)
        .bind(token.refresh_expires_at)
        .bind(&token.scope)
        .bind(crate::secrets::hex(&crate::secrets::random_bytes(16)))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let generation: i64 = row.try_get("generation")?;
        let token_id: String = row.try_get("token_id")?;
        self.commit_token(tx, tenant, connection, token).await?;
        Ok(Some((token_id, generation)))
    }

    /// Seals the token's secrets in `tx` (the refresh token only when
    /// there is one: a JWT-minted token may have none) and commits it, then
    /// forgets the cached copy.
    async fn commit_token(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Any>,
        tenant: &TenantId,
        connection: &ConnectionId,
        token: &NewToken,
    ) -> StoreResult<()> {
        let secrets = [
            (field::ACCESS_TOKEN, Some(&token.access)),
            (field::REFRESH_TOKEN, token.refresh.as_ref()),
        ];
        for (name, sealed) in secrets {
            if let Some(sealed) = sealed {
                put_secret(
                    &mut tx,
                    tenant,
                    Some(connection),
                    name,
                    sealed,
                    token.issued_at,
                )
                .await?;
            }
        }
        tx.commit().await?;
        self.cache.forget_connection(connection.as_str());
        Ok(())
    }

    /// Stores a token a person just authorised (the OAuth callback): the
    /// row is created or replaced whatever its lease (an authorisation
    /// overrides a refresh in flight, whose store then finds its lease gone),
    /// the generation moves on, and a re-authorisation mark is cleared.
    pub async fn put_authorized_token(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        token: &NewToken,
    ) -> StoreResult<(String, i64)> {
        let mut tx = self.pool.begin().await?;
        let token_id = crate::secrets::hex(&crate::secrets::random_bytes(16));
        let row = sqlx::query(
            "INSERT INTO tokens (connection_id, tenant_id, token_id, generation, issued_at, expires_at, \
               refresh_expires_at, scope, updated_at) VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $4) \
             ON CONFLICT (connection_id) DO UPDATE SET generation = tokens.generation + 1, \
               token_id = excluded.token_id, issued_at = excluded.issued_at, expires_at = excluded.expires_at, \
               refresh_expires_at = excluded.refresh_expires_at, scope = excluded.scope, \
               lease_owner = NULL, lease_until = NULL, reauthorize_since = NULL, updated_at = excluded.updated_at \
             RETURNING generation",
        )
        .bind(connection.as_str())
        .bind(tenant.as_str())
        .bind(&token_id)
        .bind(token.issued_at)
        .bind(token.expires_at)
        .bind(token.refresh_expires_at)
        .bind(&token.scope)
        .fetch_one(&mut *tx)
        .await?;
        let generation: i64 = row.try_get("generation")?;
        self.commit_token(tx, tenant, connection, token).await?;
        Ok((token_id, generation))
    }

    /// Marks a user-account connection as needing a person's authorisation
    /// again (its refresh token was refused), releasing `owner`'s lease.
    /// The generation moves on so that every waiter re-reads the row.
    pub async fn mark_reauthorize(
        &self,
        connection: &ConnectionId,
        owner: &str,
        now: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE tokens SET reauthorize_since = COALESCE(reauthorize_since, $3), generation = generation + 1, \
               lease_owner = NULL, lease_until = NULL, updated_at = $3 \
             WHERE connection_id = $1 AND lease_owner = $2",
        )
        .bind(connection.as_str())
        .bind(owner)
        .bind(now)
        .execute(&self.pool)
        .await?;
        self.cache.forget_connection(connection.as_str());
        Ok(())
    }

    /// User-account connections waiting for a person to authorise them
    /// again (the `botgate_naverworks_connections_needing_reauthorization`
    /// gauge).
    pub async fn connections_needing_reauthorization(&self) -> StoreResult<i64> {
        self.count(sqlx::query(
            "SELECT COUNT(*) AS n FROM tokens WHERE reauthorize_since IS NOT NULL",
        ))
        .await
    }
}
