//! A tenant's data over time: retention (finished queue rows and audit
//! entries deleted once older than the operator keeps them,
//! `retain_*_days`, by the housekeeping job), purging a connection or a
//! tenant with every row of theirs, and the pages of a tenant's export.
//!
//! Retention:
//! Each connection's rows are walked along an index the queue already keeps
//! (`inbound_by_connection` on (connection, seq), `outbound_by_connection` on
//! (connection, created_at), `token_audit_connection` on (connection, id)),
//! so no index is added to the write path for this. A walk reads up to
//! [`BATCH`] rows after a cursor and deletes those due in one short write of
//! their own (SQLite's write turn is taken per batch, and the queue's writes
//! come between two batches), then moves the cursor: each old row is read
//! once per pass, whatever its status. Open rows (pending, in flight) are
//! never deleted.

use sqlx::Row as _;

use super::bodies::Stored;
use super::error::{classify, StoreResult};
use super::sql::{seq_params, FromRow, Query};
use super::{AuditEntry, Store};
use crate::domain::ids::{ConnectionId, TenantId};

/// Rows read, and at most deleted, per write.
pub const BATCH: i64 = 500;

/// Rows finished before these times (Unix ms) are deleted.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Events done or ignored, messages delivered or cancelled.
    pub done_before: i64,
    /// Dead events, failed messages.
    pub dead_before: i64,
    /// Token audit entries.
    pub audit_before: i64,
}

/// What a pass deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub events: u64,
    pub messages: u64,
    pub audit: u64,
    pub activity: u64,
}

/// One queue's table for retention.
struct History {
    table: &'static str,
    /// The column the walk follows, second in the connection's index.
    key: &'static str,
    /// Finished successfully, and dead-lettered.
    done: &'static [&'static str],
    dead: &'static [&'static str],
}

const EVENTS: History = History {
    table: "inbound_events",
    key: "seq",
    done: &["done", "ignored"],
    // Callbacks refused over a quota are kept as long as the dead letters:
    // they are replayed the same way.
    dead: &["dead", "refused"],
};

const MESSAGES: History = History {
    table: "outbound_messages",
    key: "created_at",
    done: &["delivered", "cancelled"],
    dead: &["failed"],
};

impl Store {
    /// Deletes, connection by connection, what `retention` says is due
    /// (batches of `batch` rows).
    pub async fn prune_history(&self, retention: &Retention, batch: i64) -> StoreResult<Pruned> {
        let connections: Vec<String> = sqlx::query("SELECT id FROM connections ORDER BY id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()?;
        let mut pruned = Pruned::default();
        for connection in &connections {
            pruned.events += self
                .prune_queue(&EVENTS, connection, retention, batch)
                .await?;
            pruned.messages += self
                .prune_queue(&MESSAGES, connection, retention, batch)
                .await?;
            pruned.audit += self
                .prune_audit(connection, retention.audit_before, batch)
                .await?;
        }
        pruned.activity = self.prune_activity(retention.audit_before, batch).await?;
        Ok(pruned)
    }

    async fn prune_queue(
        &self,
        q: &History,
        connection: &str,
        retention: &Retention,
        batch: i64,
    ) -> StoreResult<u64> {
        let newest = retention.done_before.max(retention.dead_before);
        // Where the walk ends: rows are due by `updated_at`, which is never
        // before the row's arrival, so nothing at or after the first row
        // that arrived since the later cutoff can be due. For messages the
        // key is that time itself; for events, the first such `seq` (found
        // along the same index, past the old rows only).
        let end = if q.key == "seq" {
            let first = format!(
                "SELECT seq FROM {} WHERE connection_id = $1 AND received_at >= $2 ORDER BY seq LIMIT 1",
                q.table
            );
            let first = sqlx::query(&first).bind(connection).bind(newest);
            self.fetch_i64(first).await?.unwrap_or(i64::MAX)
        } else {
            newest
        };
        let read = format!(
            "SELECT seq, status, updated_at, {key} AS k FROM {table} \
             WHERE connection_id = $1 AND {key} > $2 AND {key} < $3 ORDER BY {key} LIMIT $4",
            key = q.key,
            table = q.table
        );
        let mut after = i64::MIN;
        let mut deleted = 0;
        loop {
            let rows = sqlx::query(&read)
                .bind(connection)
                .bind(after)
                .bind(end)
                .bind(batch)
                .fetch_all(&self.pool)
                .await?;
            let mut due = Vec::new();
            for row in &rows {
                let status: String = row.try_get("status")?;
                let updated: i64 = row.try_get("updated_at")?;
                let before = if q.done.contains(&status.as_str()) {
                    retention.done_before
                } else if q.dead.contains(&status.as_str()) {
                    retention.dead_before
                } else {
                    continue;
                };
                if updated < before {
                    due.push(row.try_get::<i64, _>("seq")?);
                }
            }
            if !due.is_empty() {
                deleted += self.delete_seqs(q.table, &due).await?;
            }
            let (Some(&first), Some(last)) = (
                rows.first()
                    .and_then(|r| r.try_get::<i64, _>("k").ok())
                    .as_ref(),
                rows.last().and_then(|r| r.try_get::<i64, _>("k").ok()),
            ) else {
                break;
            };
            if i64::try_from(rows.len()).unwrap_or(i64::MAX) < batch {
                break;
            }
            // A time key is not unique: the rows at the batch's last time
            // are read again (those kept), unless the whole batch is at one
            // time, which is then passed.
            after = if q.key == "seq" || first == last {
                last
            } else {
                last - 1
            };
        }
        Ok(deleted)
    }

    async fn delete_seqs(&self, table: &str, seqs: &[i64]) -> StoreResult<u64> {
        let mut deleted = 0;
        for chunk in self.chunks(seqs) {
            let params = seq_params(chunk, 1);
            let sql = format!("DELETE FROM {table} WHERE seq IN ({})", params.sql);
            let _turn = self.write_turn().await;
            let done = params.bind(sqlx::query(&sql)).execute(&self.writer).await?;
            deleted += done.rows_affected();
        }
        Ok(deleted)
    }

    async fn prune_audit(&self, connection: &str, before: i64, batch: i64) -> StoreResult<u64> {
        // Every entry before the first one since `before` is due.
        let first = sqlx::query(
            "SELECT id FROM token_audit WHERE connection_id = $1 AND at >= $2 ORDER BY id LIMIT 1",
        );
        let first = first.bind(connection).bind(before);
        let end = self.fetch_i64(first).await?.unwrap_or(i64::MAX);
        let due = sqlx::query(
            "SELECT 1 FROM token_audit WHERE connection_id = $1 AND id < $2 ORDER BY id LIMIT 1",
        )
        .bind(connection)
        .bind(end);
        let delete = || {
            sqlx::query(
                "DELETE FROM token_audit WHERE id IN (SELECT id FROM token_audit \
                 WHERE connection_id = $1 AND id < $2 ORDER BY id LIMIT $3)",
            )
            .bind(connection)
            .bind(end)
            .bind(batch)
        };
        self.delete_due(due, delete, batch).await
    }

    /// [`Store::write_in_batches`], once `due` (a query for a row) finds
    /// one: most passes find nothing due and take no write turn.
    pub(super) async fn delete_due<'q>(
        &self,
        due: Query<'q>,
        delete: impl Fn() -> Query<'q>,
        batch: i64,
    ) -> StoreResult<u64> {
        if due.fetch_optional(&self.pool).await?.is_none() {
            return Ok(0);
        }
        self.write_in_batches(delete, batch).await
    }

    /// Runs `write` (a statement that deletes or changes at most `batch`
    /// rows) on the writer, each time under the write turn, until it
    /// changes fewer; returns how many in all. Between two batches other
    /// writes go (SQLite's one writer is never held for long).
    pub(super) async fn write_in_batches<'q>(
        &self,
        write: impl Fn() -> Query<'q>,
        batch: i64,
    ) -> StoreResult<u64> {
        let mut written = 0;
        loop {
            let _turn = self.write_turn().await;
            let done = write().execute(&self.writer).await?.rows_affected();
            written += done;
            if done < u64::try_from(batch).unwrap_or(0) {
                return Ok(written);
            }
        }
    }
}

impl Store {
    /// Deletes a connection and every row of it, of every table: its queue
    /// rows and audit entries first, in batches (each a short write, so a
    /// connection with a long history does not hold SQLite's writer), then,
    /// in one transaction, its dedup hashes, the rest of its audit and the
    /// connection, whose secrets, tokens, installations and OAuth states go
    /// with it (foreign keys). False if it did not exist.
    pub async fn purge_connection(
        &self,
        tenant: &TenantId,
        id: &ConnectionId,
    ) -> StoreResult<bool> {
        let exists = sqlx::query("SELECT 1 FROM connections WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?
            .is_some();
        if !exists {
            return Ok(false);
        }
        for (table, key) in [
            ("inbound_events", "seq"),
            ("outbound_messages", "seq"),
            ("token_audit", "id"),
        ] {
            // Along the connection's index (by seq or id for the first and
            // last, by creation time for messages).
            let order = if table == "outbound_messages" {
                "created_at"
            } else {
                key
            };
            let sql = format!(
                "DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} \
                 WHERE connection_id = $1 ORDER BY {order} LIMIT $2)"
            );
            let delete = || sqlx::query(&sql).bind(id.as_str()).bind(BATCH);
            self.write_in_batches(delete, BATCH).await?;
        }
        let _turn = self.write_turn().await;
        let mut tx = self.writer.begin().await?;
        for sql in [
            "DELETE FROM inbound_dedup WHERE connection_id = $1",
            "DELETE FROM token_audit WHERE connection_id = $1",
            "DELETE FROM connections WHERE id = $1",
        ] {
            sqlx::query(sql).bind(id.as_str()).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.cache.forget_connection(id.as_str());
        Ok(true)
    }

    /// Deletes a tenant: each of its connections as [`Store::purge_connection`]
    /// does, then the tenant, whose secrets, console sessions, links and
    /// activity go with it (foreign keys). False if it did not exist.
    pub async fn purge_tenant(&self, tenant: &TenantId) -> StoreResult<bool> {
        if self.tenant(tenant).await?.is_none() {
            return Ok(false);
        }
        for connection in self.connections(tenant).await? {
            self.purge_connection(tenant, &connection.id).await?;
        }
        let _turn = self.write_turn().await;
        sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(tenant.as_str())
            .execute(&self.writer)
            .await?;
        self.cache.forget_tenant(tenant.as_str());
        Ok(true)
    }

    /// A page of a tenant's events or messages (`T`) after `after` (seq),
    /// in order, opened.
    pub async fn export_page<T: Stored>(
        &self,
        tenant: &TenantId,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<T>> {
        let q = T::QUEUE;
        let sql = format!(
            "SELECT {} FROM {} WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            q.columns, q.table
        );
        self.fetch_rows(
            sqlx::query(&sql)
                .bind(tenant.as_str())
                .bind(after)
                .bind(limit),
        )
        .await
    }

    /// A page of a tenant's audit entries after `after` (id), in order.
    pub async fn export_audit(
        &self,
        tenant: &TenantId,
        after: i64,
        limit: i64,
    ) -> StoreResult<Vec<(i64, AuditEntry)>> {
        let rows = sqlx::query(
            "SELECT id, connection_id, tenant_id, at, client_addr, action, outcome FROM token_audit \
             WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(tenant.as_str())
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, AuditEntry::from_row(r)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(classify)
    }
}
