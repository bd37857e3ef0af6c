//! Slack installations (one per connection and workspace) with their sealed
//! tokens (an install's OAuth `state` is in `one_time`).

use super::error::{classify, StoreResult};
use super::secrets::put_secret;
use super::sql::record;
use super::Store;
use crate::domain::ids::{ConnectionId, TenantId};
use crate::secrets::Sealed;

/// The sealed fields of an installation: its team names them, so that the
/// associated data binds each token to its workspace.
pub fn bot_token_field(team: &str) -> String {
    format!("slack_bot_token/{team}")
}

pub fn refresh_token_field(team: &str) -> String {
    format!("slack_refresh_token/{team}")
}

record! {
    #[derive(Debug, Clone)]
    pub struct Installation, columns COLUMNS {
        pub connection_id: ConnectionId,
        pub team_id: String,
        pub tenant_id: TenantId,
        pub enterprise_id: Option<String>,
        pub team_name: String,
        pub app_id: String,
        pub bot_user_id: String,
        pub scopes: String,
        /// `active` or `needs_reinstall`.
        pub status: String,
        /// With token rotation: when the bot token expires (Unix ms).
        pub expires_at: Option<i64>,
        pub generation: i64,
        pub lease_owner: Option<String>,
        pub lease_until: Option<i64>,
        pub installed_at: i64,
        pub updated_at: i64,
    }
}

/// The tokens of an install or a refresh, sealed for their fields.
pub struct SealedTokens {
    pub bot_token: Sealed,
    pub refresh_token: Option<Sealed>,
}

impl Store {
    /// Stores an install: a new installation, or a re-install replacing the
    /// workspace's tokens (a new generation), in one transaction.
    pub async fn put_installation(
        &self,
        i: &Installation,
        tokens: &SealedTokens,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let sql = format!(
            "INSERT INTO slack_installations ({COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active', $9, 0, NULL, NULL, $10, $10) \
             ON CONFLICT (connection_id, team_id) DO UPDATE SET enterprise_id = excluded.enterprise_id, \
               team_name = excluded.team_name, app_id = excluded.app_id, bot_user_id = excluded.bot_user_id, \
               scopes = excluded.scopes, status = 'active', expires_at = excluded.expires_at, \
               generation = slack_installations.generation + 1, lease_owner = NULL, lease_until = NULL, \
               installed_at = excluded.installed_at, updated_at = excluded.updated_at"
        );
        sqlx::query(&sql)
            .bind(i.connection_id.as_str())
            .bind(&i.team_id)
            .bind(i.tenant_id.as_str())
            .bind(i.enterprise_id.as_deref())
            .bind(&i.team_name)
            .bind(&i.app_id)
            .bind(&i.bot_user_id)
            .bind(&i.scopes)
            .bind(i.expires_at)
            .bind(i.installed_at)
            .execute(&mut *tx)
            .await?;
        self.put_tokens(&mut tx, i, tokens, i.installed_at).await?;
        tx.commit().await.map_err(classify)
    }

    async fn put_tokens(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        i: &Installation,
        tokens: &SealedTokens,
        now: i64,
    ) -> StoreResult<()> {
        let connection = Some(&i.connection_id);
        put_secret(
            tx,
            &i.tenant_id,
            connection,
            &bot_token_field(&i.team_id),
            &tokens.bot_token,
            now,
        )
        .await?;
        match &tokens.refresh_token {
            Some(sealed) => {
                put_secret(
                    tx,
                    &i.tenant_id,
                    connection,
                    &refresh_token_field(&i.team_id),
                    sealed,
                    now,
                )
                .await
            }
            None => {
                sqlx::query("DELETE FROM secrets WHERE owner_id = $1 AND field = $2")
                    .bind(i.connection_id.as_str())
                    .bind(refresh_token_field(&i.team_id))
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }
        }
    }

    pub async fn installation(
        &self,
        connection: &ConnectionId,
        team: &str,
    ) -> StoreResult<Option<Installation>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM slack_installations WHERE connection_id = $1 AND team_id = $2"
        );
        self.fetch_optional(sqlx::query(&sql).bind(connection.as_str()).bind(team))
            .await
    }

    pub async fn installations(&self, connection: &ConnectionId) -> StoreResult<Vec<Installation>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM slack_installations WHERE connection_id = $1 ORDER BY installed_at, team_id"
        );
        self.fetch_all(sqlx::query(&sql).bind(connection.as_str()))
            .await
    }

    /// Removes an installation and its tokens; false if there was none.
    pub async fn delete_installation(
        &self,
        connection: &ConnectionId,
        team: &str,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "DELETE FROM slack_installations WHERE connection_id = $1 AND team_id = $2",
        )
        .bind(connection.as_str())
        .bind(team)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM secrets WHERE owner_id = $1 AND field IN ($2, $3)")
            .bind(connection.as_str())
            .bind(bot_token_field(team))
            .bind(refresh_token_field(team))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Claims the refresh of an installation's token for `owner` until
    /// `until`, if nobody holds it and its generation is still `seen`.
    pub async fn lease_installation(
        &self,
        connection: &ConnectionId,
        team: &str,
        owner: &str,
        (now, until): (i64, i64),
        seen: i64,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE slack_installations SET lease_owner = $3, lease_until = $5 \
             WHERE connection_id = $1 AND team_id = $2 AND generation = $6 AND status = 'active' \
               AND (lease_until IS NULL OR lease_until < $4)",
        )
        .bind(connection.as_str())
        .bind(team)
        .bind(owner)
        .bind(now)
        .bind(until)
        .bind(seen)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Commits a refresh: the new tokens (the new refresh token with them)
    /// and expiry, a new generation, the lease released; only while `owner`
    /// holds the lease on generation `seen`.
    pub async fn rotate_installation(
        &self,
        i: &Installation,
        owner: &str,
        expires_at: Option<i64>,
        tokens: &SealedTokens,
        now: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE slack_installations SET expires_at = $4, generation = generation + 1, \
               lease_owner = NULL, lease_until = NULL, updated_at = $5 \
             WHERE connection_id = $1 AND team_id = $2 AND generation = $6 AND lease_owner = $3",
        )
        .bind(i.connection_id.as_str())
        .bind(&i.team_id)
        .bind(owner)
        .bind(expires_at)
        .bind(now)
        .bind(i.generation)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false); // the lease was lost: nothing written
        }
        self.put_tokens(&mut tx, i, tokens, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Gives a refresh lease back without a new token (a transient failure).
    pub async fn release_installation(&self, i: &Installation, owner: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE slack_installations SET lease_owner = NULL, lease_until = NULL \
             WHERE connection_id = $1 AND team_id = $2 AND lease_owner = $3",
        )
        .bind(i.connection_id.as_str())
        .bind(&i.team_id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Slack refused the refresh token: the workspace must install again.
    pub async fn needs_reinstall(&self, i: &Installation, now: i64) -> StoreResult<()> {
        sqlx::query(
            "UPDATE slack_installations SET status = 'needs_reinstall', lease_owner = NULL, \
               lease_until = NULL, updated_at = $3 WHERE connection_id = $1 AND team_id = $2",
        )
        .bind(i.connection_id.as_str())
        .bind(&i.team_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Installations that need a re-install, for the metrics.
    pub async fn installations_needing_reinstall(&self) -> StoreResult<i64> {
        self.count(sqlx::query(
            "SELECT COUNT(*) AS n FROM slack_installations WHERE status = 'needs_reinstall'",
        ))
        .await
    }
}
