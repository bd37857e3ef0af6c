//! Single-use, expiring tokens: the console's sign-in links and the OAuth
//! flows' `state`s. Only a token's hash is stored, with who it belongs to
//! and one detail; taking it deletes the row, so it works once, and every
//! new token first forgets the expired ones never used.

use sqlx::any::AnyRow;
use sqlx::Row as _;

use super::error::StoreResult;
use super::sql::FromRow;
use super::Store;
use crate::domain::ids::{ConnectionId, TenantId};

/// A table of single-use tokens and its columns' names.
struct OneTime {
    table: &'static str,
    hash: &'static str,
    owner: &'static str,
    detail: &'static str,
}

/// `botgate demo`'s link into a tenant's console: its target page.
const CONSOLE_LINKS: OneTime = OneTime {
    table: "console_links",
    hash: "token_hash",
    owner: "tenant_id",
    detail: "target",
};

/// A browser OAuth flow in progress for a connection: the hash of the
/// cookie of the browser that started it.
const OAUTH_STATES: OneTime = OneTime {
    table: "oauth_states",
    hash: "state_hash",
    owner: "connection_id",
    detail: "browser_hash",
};

/// A token as taken.
struct Taken {
    owner: String,
    detail: String,
    expires_at: i64,
}

impl FromRow for Taken {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            owner: row.try_get("owner")?,
            detail: row.try_get("detail")?,
            expires_at: row.try_get("expires_at")?,
        })
    }
}

impl Store {
    async fn put_one_time(
        &self,
        t: &OneTime,
        [hash, owner, detail]: [&str; 3],
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()> {
        let forget = format!("DELETE FROM {} WHERE expires_at < $1", t.table);
        sqlx::query(&forget).bind(now).execute(&self.pool).await?;
        let insert = format!(
            "INSERT INTO {} ({}, {}, {}, expires_at) VALUES ($1, $2, $3, $4)",
            t.table, t.hash, t.owner, t.detail
        );
        let query = sqlx::query(&insert).bind(hash).bind(owner).bind(detail);
        query.bind(expires_at).execute(&self.pool).await?;
        Ok(())
    }

    async fn take_one_time(&self, t: &OneTime, hash: &str) -> StoreResult<Option<Taken>> {
        let sql = format!(
            "DELETE FROM {} WHERE {} = $1 RETURNING {} AS owner, {} AS detail, expires_at",
            t.table, t.hash, t.owner, t.detail
        );
        self.fetch_optional(sqlx::query(&sql).bind(hash)).await
    }

    /// Stores a one-time sign-in link (its token's hash) into `tenant`'s
    /// console, opening `target`, valid until `expires_at`.
    pub async fn put_console_link(
        &self,
        token_hash: &str,
        tenant: &TenantId,
        target: &str,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()> {
        let values = [token_hash, tenant.as_str(), target];
        self.put_one_time(&CONSOLE_LINKS, values, expires_at, now)
            .await
    }

    /// Takes a sign-in link: deleted whatever follows (it works once), and
    /// its tenant and target returned unless it expired before `now`.
    pub async fn take_console_link(
        &self,
        token_hash: &str,
        now: i64,
    ) -> StoreResult<Option<(TenantId, String)>> {
        let taken = self.take_one_time(&CONSOLE_LINKS, token_hash).await?;
        Ok(taken
            .filter(|t| t.expires_at >= now)
            .map(|t| (TenantId::from_trusted(t.owner), t.detail)))
    }

    /// Stores an OAuth flow's state (its hash) for `connection` and the
    /// browser that started it (its cookie's hash), valid until `expires_at`.
    pub async fn put_oauth_state(
        &self,
        state_hash: &str,
        connection: &ConnectionId,
        browser_hash: &str,
        expires_at: i64,
        now: i64,
    ) -> StoreResult<()> {
        let values = [state_hash, connection.as_str(), browser_hash];
        self.put_one_time(&OAUTH_STATES, values, expires_at, now)
            .await
    }

    /// Takes a state (it can be used once): its connection, browser hash
    /// and expiry (the caller tells an expired state from an unknown one).
    pub async fn take_oauth_state(
        &self,
        state_hash: &str,
    ) -> StoreResult<Option<(ConnectionId, String, i64)>> {
        let taken = self.take_one_time(&OAUTH_STATES, state_hash).await?;
        Ok(taken.map(|t| {
            let connection = ConnectionId::from_trusted(t.owner);
            (connection, t.detail, t.expires_at)
        }))
    }

    /// Unexpired states of a connection (the install page is public: they
    /// are capped).
    pub async fn oauth_states_in_flight(
        &self,
        connection: &ConnectionId,
        now: i64,
    ) -> StoreResult<i64> {
        let sql =
            "SELECT COUNT(*) AS n FROM oauth_states WHERE connection_id = $1 AND expires_at >= $2";
        self.count(sqlx::query(sql).bind(connection.as_str()).bind(now))
            .await
    }
}
