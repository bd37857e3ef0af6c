//! `botgate db copy`: every row of one botgate database into another,
//! empty one, e.g. from the embedded SQLite a trial started on to the
//! PostgreSQL of production (or back).
//!
//! Rows are copied as stored: ids (so the webhook, auth and install URLs
//! handed out stay valid), `seq`s, times, and sealed values as ciphertext.
//! Nothing is opened or sealed again, so the copy needs no master key, and
//! the copied database opens with the same key as the source.
//!
//! - The source is read in one read transaction, a consistent snapshot
//!   (PostgreSQL: REPEATABLE READ), and is not written.
//! - The target is migrated first, must then have no row in any table, and
//!   is written in one transaction: all of it or nothing.
//! - Both must be at the same migration: the source is not migrated (run
//!   `botgate migrate` on it first).
//! - Every table of the schema must be one this module knows ([`TABLES`]),
//!   every column of a type it knows: a migration that adds either fails
//!   the copy (and its test) instead of leaving rows behind.

use futures_util::TryStreamExt as _;
use sqlx::any::AnyRow;
use sqlx::Row as _;

use super::sql::placeholders;
use super::{migrations, Backend, Store};

/// Every table botgate keeps, parents before children (foreign keys are
/// checked row by row).
pub const TABLES: &[&str] = &[
    "tenants",
    "connections",
    "secrets",
    "tokens",
    "token_audit",
    "inbound_events",
    "inbound_dedup",
    "outbound_messages",
    "console_sessions",
    "console_links",
    "slack_installations",
    "oauth_states",
    "activity",
];

/// Rows per INSERT: under both databases' limits on parameters (SQLite's
/// 32,766, PostgreSQL's 65,535) for the widest table.
const ROWS_PER_INSERT: usize = 200;

/// How a column's values are read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Integer,
    Text,
    Bytes,
}

/// What a copy wrote: rows per table, in [`TABLES`]' order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Copied {
    pub tables: Vec<(&'static str, u64)>,
}

impl Copied {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

impl Store {
    /// Copies every row of this database into `target` (see the module's
    /// documentation), telling `copied_table` each table's rows as it is
    /// done (written, not yet committed); an error leaves `target` as it
    /// was after its migrations.
    pub async fn copy_into(
        &self,
        target: &Store,
        mut copied_table: impl FnMut(&str, u64),
    ) -> anyhow::Result<Copied> {
        let source_version = self.migrated_to().await?.ok_or_else(|| {
            anyhow::anyhow!("the source database holds no botgate schema (no migrations applied)")
        })?;
        let latest = migrations::latest(self.backend);
        anyhow::ensure!(
            source_version == latest,
            "the source database is at migration {source_version} and this botgate's latest is \
             {latest}: run `botgate migrate` on the source with {}",
            if source_version < latest {
                "this botgate first"
            } else {
                "the botgate that made it, or copy with that botgate"
            }
        );
        target.migrate().await?;
        let known = target.table_names().await?;
        if let Some(unknown) = known
            .iter()
            .find(|t| *t != "_sqlx_migrations" && !TABLES.contains(&t.as_str()))
        {
            anyhow::bail!("the schema has a table the copy does not know: {unknown}");
        }
        for table in TABLES {
            let any = sqlx::query(&format!("SELECT 1 FROM {table} LIMIT 1"))
                .fetch_optional(&target.pool)
                .await?;
            anyhow::ensure!(
                any.is_none(),
                "the target database is not empty (table {table} has rows): copy only into a new database"
            );
        }

        let mut read = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *read)
                .await?;
        }
        let mut write = target.pool.begin().await?;
        let mut copied = Copied::default();
        for &table in TABLES {
            let columns = target.columns(table).await?;
            let names = columns
                .iter()
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let select = format!("SELECT {names} FROM {table}");
            // One statement for every full batch; the last, shorter one its own.
            let full = insert_sql(table, &names, columns.len(), ROWS_PER_INSERT);
            let mut rows = sqlx::query(&select).fetch(&mut *read);
            let mut batch: Vec<AnyRow> = Vec::with_capacity(ROWS_PER_INSERT);
            let mut count = 0;
            while let Some(row) = rows.try_next().await? {
                batch.push(row);
                if batch.len() == ROWS_PER_INSERT {
                    insert(&mut write, &full, table, &columns, &batch).await?;
                    count += batch.len() as u64;
                    batch.clear();
                }
            }
            if !batch.is_empty() {
                let last = insert_sql(table, &names, columns.len(), batch.len());
                insert(&mut write, &last, table, &columns, &batch).await?;
                count += batch.len() as u64;
            }
            drop(rows);
            if target.backend == Backend::Postgres {
                // Explicit `seq`s leave a serial's sequence where it was.
                for (name, kind) in &columns {
                    if *kind != Kind::Integer {
                        continue;
                    }
                    sqlx::query(&format!(
                        "SELECT setval(s::regclass, COALESCE((SELECT MAX({name}) FROM {table}), 0) + 1, false) \
                         FROM (SELECT pg_get_serial_sequence('{table}', '{name}') AS s) q WHERE s IS NOT NULL"
                    ))
                    .fetch_all(&mut *write)
                    .await?;
                }
            }
            copied_table(table, count);
            copied.tables.push((table, count));
        }
        write.commit().await?;
        read.rollback().await?;
        Ok(copied)
    }

    /// The latest migration applied, if any table of migrations exists.
    async fn migrated_to(&self) -> anyhow::Result<Option<i64>> {
        if !self
            .table_names()
            .await?
            .iter()
            .any(|t| t == "_sqlx_migrations")
        {
            return Ok(None);
        }
        let row = sqlx::query("SELECT MAX(version) AS v FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("v")?)
    }

    /// The tables of this database's schema (the migrations' own included).
    async fn table_names(&self) -> anyhow::Result<Vec<String>> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            }
            Backend::Postgres => {
                "SELECT table_name::text AS name FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name"
            }
        };
        let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
        let names = rows
            .iter()
            .map(|r| r.try_get::<String, _>("name"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(names)
    }

    /// A table's columns, in order, with how each is copied.
    async fn columns(&self, table: &str) -> anyhow::Result<Vec<(String, Kind)>> {
        let sql = match self.backend {
            Backend::Sqlite => "SELECT name, type FROM pragma_table_info($1) ORDER BY cid",
            Backend::Postgres => {
                "SELECT column_name::text AS name, data_type::text AS type FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position"
            }
        };
        let rows = sqlx::query(sql).bind(table).fetch_all(&self.pool).await?;
        anyhow::ensure!(!rows.is_empty(), "the target has no table {table}");
        rows.iter()
            .map(|r| {
                let name: String = r.try_get("name")?;
                let declared: String = r.try_get("type")?;
                let kind = match declared.to_ascii_lowercase().as_str() {
                    "integer" | "bigint" => Kind::Integer,
                    "text" => Kind::Text,
                    "blob" | "bytea" => Kind::Bytes,
                    other => anyhow::bail!(
                        "column {table}.{name} has type {other}, which the copy does not know"
                    ),
                };
                Ok((name, kind))
            })
            .collect()
    }
}

/// An INSERT of `rows` rows of `width` columns (`names`) into `table`.
fn insert_sql(table: &str, names: &str, width: usize, rows: usize) -> String {
    let values = (0..rows)
        .map(|r| format!("({})", placeholders(1 + r * width, width)))
        .collect::<Vec<_>>()
        .join(", ");
    format!("INSERT INTO {table} ({names}) VALUES {values}")
}

/// Writes `rows` (read with `columns`' names, in order) into `table` with
/// `sql`, an [`insert_sql`] of as many rows.
async fn insert(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    sql: &str,
    table: &str,
    columns: &[(String, Kind)],
    rows: &[AnyRow],
) -> anyhow::Result<()> {
    let mut query = sqlx::query(sql);
    for row in rows {
        for (i, (name, kind)) in columns.iter().enumerate() {
            let read = |e: sqlx::Error| anyhow::anyhow!("reading {table}.{name}: {e}");
            query = match kind {
                Kind::Integer => query.bind(row.try_get::<Option<i64>, _>(i).map_err(read)?),
                Kind::Text => query.bind(row.try_get::<Option<String>, _>(i).map_err(read)?),
                Kind::Bytes => query.bind(row.try_get::<Option<Vec<u8>>, _>(i).map_err(read)?),
            };
        }
    }
    query.execute(&mut **tx).await?;
    Ok(())
}
