//! The store: every table botgate keeps, behind one interface, on SQLite (the
//! embedded default) or PostgreSQL (for production and several replicas),
//! chosen by the URL scheme at run time.
//!
//! Design choice: one implementation over sqlx's `Any` driver rather than one
//! copy per backend. The two dialects agree on almost all of botgate's SQL
//! (`$N` parameters, `RETURNING`, `ON CONFLICT`), ids are text and times are
//! Unix milliseconds in both, so one copy of each query serves both; where the
//! dialects differ (claims, locks) a method matches on [`Backend`]. Every
//! multi-statement operation is one method whose transaction stays inside it.
//! The same contract suite (`tests/store`) runs on both backends.

pub mod cache;
pub mod console;
pub mod handoff;
mod migrations;
pub mod queue;
mod results;

use std::str::FromStr as _;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor as _, Row as _};

pub use crate::config::Backend;
use crate::config::DatabaseUrl;
use crate::domain::ids::{ConnectionId, PublicId, TenantId};
use crate::secrets::Sealed;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken; the string names what already exists.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The database is overloaded or locked; the caller may retry soon.
    #[error("the database is busy")]
    Busy,
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

fn classify(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::PoolTimedOut => StoreError::Busy,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // SQLite BUSY/LOCKED (5, 6 and extended codes), Postgres lock timeouts.
            let busy = matches!(
                code.as_ref(),
                "5" | "6" | "261" | "262" | "517" | "55P03" | "57014"
            );
            if busy {
                StoreError::Busy
            } else {
                StoreError::Other(anyhow::Error::new(error).context("database error"))
            }
        }
        _ => StoreError::Other(anyhow::Error::new(error).context("database error")),
    }
}

/// The most rows one multi-row statement writes.
const MAX_CHUNK: usize = 64;

/// Rows of a multi-row statement in chunks whose sizes are powers of two, at
/// most [`MAX_CHUNK`], in order (13 rows: 8, 4, 1). Each size is one
/// statement text, so the prepared statements each connection keeps (100 at
/// most) recur instead of churning with every batch size; and SQLite's cost
/// per statement, which grows with the square of its parameters (it finds
/// each by scanning their names), stays bounded.
fn pow2_chunks<T>(rows: &[T]) -> Vec<&[T]> {
    let mut chunks = Vec::new();
    let mut rest = rows;
    while !rest.is_empty() {
        let size = MAX_CHUNK.min(1 << rest.len().ilog2());
        let (chunk, tail) = rest.split_at(size);
        chunks.push(chunk);
        rest = tail;
    }
    chunks
}

impl Store {
    /// Rows of a multi-row statement in chunks of at most [`MAX_CHUNK`], in
    /// order. On PostgreSQL, a chunk of each size is one round trip and each
    /// text a prepared statement its connection keeps (room for 500). On
    /// SQLite, in this process, a statement is no round trip, but the
    /// connection keeps 100 at most: power-of-two chunks ([`pow2_chunks`]).
    fn chunks<'r, T>(&self, rows: &'r [T]) -> Vec<&'r [T]> {
        match self.backend {
            Backend::Postgres => rows.chunks(MAX_CHUNK).collect(),
            Backend::Sqlite => pow2_chunks(rows),
        }
    }
}

/// `values` padded to the next power of two by repeating the last, for an
/// `IN (…)` list whose statement text should recur (see [`pow2_chunks`]).
fn padded<T: Clone>(values: &[T]) -> Vec<T> {
    let n = values.len().max(1).next_power_of_two();
    match values.last() {
        Some(last) => values
            .iter()
            .cloned()
            .chain(std::iter::repeat(last.clone()))
            .take(n)
            .collect(),
        None => Vec::new(),
    }
}

/// The `VALUES` rows of a multi-row insert: `shape` is one row with `{1}` …
/// `{9}` for its parameters, numbered on as `$first`, `$first + 1` … across
/// `rows` rows of `width` parameters each.
fn values_rows(first: usize, rows: usize, width: usize, shape: &str) -> String {
    (0..rows)
        .map(|k| {
            (1..=width).fold(shape.to_owned(), |row, i| {
                row.replace(
                    &format!("{{{i}}}"),
                    &format!("${}", first - 1 + k * width + i),
                )
            })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Row numbers for `seq IN (…)`, as the parameters `$first`, `$first + 1`,
/// …: as many as the next power of two (the last number repeated), so that a
/// statement's text — and the prepared statement each connection keeps for
/// it — recurs from batch to batch, instead of being parsed and planned anew
/// for every batch with its numbers written in.
struct SeqParams {
    sql: String,
    values: Vec<i64>,
}

fn seq_params(seqs: &[i64], first: usize) -> SeqParams {
    let values = padded(seqs);
    let sql = placeholders(first, values.len());
    SeqParams { sql, values }
}

/// `n` parameters from `$first` on, as a list: `$4, $5, $6`.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|k| format!("${k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl SeqParams {
    /// Binds the numbers (after the statement's other parameters).
    fn bind<'q>(
        self,
        query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        self.values.into_iter().fold(query, |q, v| q.bind(v))
    }
}

/// Decodes an optional row, classifying a failure.
fn decode_one<T>(
    row: Option<&AnyRow>,
    decode: fn(&AnyRow) -> Result<T, sqlx::Error>,
) -> StoreResult<Option<T>> {
    row.map(decode).transpose().map_err(classify)
}

/// Decodes every row, classifying the first failure.
fn decode_all<T>(
    rows: &[AnyRow],
    decode: fn(&AnyRow) -> Result<T, sqlx::Error>,
) -> StoreResult<Vec<T>> {
    rows.iter()
        .map(decode)
        .collect::<Result<_, _>>()
        .map_err(classify)
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Field names of sealed values, bound into their ciphertext.
pub mod field {
    pub const CLIENT_SECRET: &str = "client_secret";
    pub const PRIVATE_KEY: &str = "private_key";
    pub const BOT_SECRET: &str = "bot_secret";
    pub const ENGINE_SECRET: &str = "engine_secret";
    pub const ACCESS_TOKEN: &str = "access_token";
    pub const REFRESH_TOKEN: &str = "refresh_token";
}

/// A connection's token row: what is not secret, and the refresh lease.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenMeta {
    /// Random per stored token; `None` before the first.
    pub token_id: Option<String>,
    pub generation: i64,
    pub issued_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub refresh_expires_at: Option<i64>,
    pub scope: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
}

const TOKEN_COLUMNS: &str = "token_id, generation, issued_at, expires_at, refresh_expires_at, scope, lease_owner, lease_until";

impl TokenMeta {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            token_id: row.try_get("token_id")?,
            generation: row.try_get("generation")?,
            issued_at: row.try_get("issued_at")?,
            expires_at: row.try_get("expires_at")?,
            refresh_expires_at: row.try_get("refresh_expires_at")?,
            scope: row.try_get("scope")?,
            lease_owner: row.try_get("lease_owner")?,
            lease_until: row.try_get("lease_until")?,
        })
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

/// One read or refresh through the auth URLs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    pub connection_id: String,
    pub tenant_id: String,
    pub at: i64,
    pub client_addr: String,
    pub action: String,
    pub outcome: String,
}

#[derive(Debug, Clone)]
pub struct TenantRecord {
    pub id: TenantId,
    pub name: String,
    pub api_key_hash: String,
    pub engine_kind: String,
    pub engine_url: Option<String>,
    /// Sent to the user when the engine stays down (dead-lettered event).
    pub fallback_text: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TenantRecord {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: TenantId::from_trusted(row.try_get("id")?),
            name: row.try_get("name")?,
            api_key_hash: row.try_get("api_key_hash")?,
            engine_kind: row.try_get("engine_kind")?,
            engine_url: row.try_get("engine_url")?,
            fallback_text: row.try_get("fallback_text")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

pub(super) const TENANT_COLUMNS: &str =
    "id, name, api_key_hash, engine_kind, engine_url, fallback_text, created_at, updated_at";

#[derive(Debug, Clone)]
pub struct NewTenant {
    pub id: TenantId,
    pub name: String,
    pub api_key_hash: String,
    pub now: i64,
}

/// A connection's plaintext columns; its secrets are in the `secrets` table.
#[derive(Debug, Clone)]
pub struct ConnectionRecord {
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
    pub created_at: i64,
    pub updated_at: i64,
}

const CONNECTION_COLUMNS: &str = "id, tenant_id, public_id, channel, bot_id, client_id, \
     service_account, scope, rate_limit_per_minute, private_key_info, auth_header_hash, \
     created_at, updated_at";

impl ConnectionRecord {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: ConnectionId::from_trusted(row.try_get("id")?),
            tenant_id: TenantId::from_trusted(row.try_get("tenant_id")?),
            public_id: PublicId::from_trusted(row.try_get("public_id")?),
            channel: row.try_get("channel")?,
            bot_id: row.try_get("bot_id")?,
            client_id: row.try_get("client_id")?,
            service_account: row.try_get("service_account")?,
            scope: row.try_get("scope")?,
            rate_limit_per_minute: row.try_get("rate_limit_per_minute")?,
            private_key_info: row.try_get("private_key_info")?,
            auth_header_hash: row.try_get("auth_header_hash")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
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

impl SecretRecord {
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

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// The queue's writes: on SQLite one connection of its own (see
    /// `Store::connect`), on PostgreSQL the pool.
    writer: AnyPool,
    backend: Backend,
    /// Connections, tokens rows and tenants read on the hot paths (see
    /// [`cache`]); shared by every `Store` on this database in the process.
    cache: std::sync::Arc<cache::Cache>,
    /// Where the cache's PostgreSQL listener connects.
    listen_to: Option<sqlx::postgres::PgConnectOptions>,
    /// Wakes the SQLite checkpointer after a commit.
    written: std::sync::Arc<tokio::sync::Notify>,
    /// The workers' results, group-committed (see [`results`]): the inbox's
    /// and the outbox's, each in batches of its own on PostgreSQL; SQLite
    /// batches both in the first.
    results: std::sync::Arc<[results::ResultWriter; 2]>,
    /// This process's workers, which take rows claimed as they are written.
    handoffs: std::sync::Arc<handoff::Handoffs>,
}

/// A turn at writing the queue (SQLite; PostgreSQL takes none), held until
/// dropped: see [`Store::write_turn`].
pub type WriteTurn<'a> = Option<tokio::sync::MutexGuard<'a, ()>>;

/// Log size (pages of 4 KiB) past which the checkpointer takes the write
/// turn to restart the log: 64 MiB.
const WAL_RESTART_PAGES: i64 = 16_384;

impl Store {
    /// One PASSIVE checkpoint; a RESTART one if the log has grown too long.
    ///
    /// The RESTART waits for the writer: taken in SQLite's busy handler, it
    /// polled (1, 2, 5 … 100 ms) between batches that followed each other
    /// without a gap, and lost to them for seconds (B1 at its maximum: one
    /// RESTART of 3.5 s, callbacks timing out behind it). It takes the write
    /// turn instead, as the queue's writers do, and runs on their
    /// connection: the batches wait for it in turn, about as long as the
    /// PASSIVE checkpoint just before it left to copy.
    async fn checkpoint(&self) -> sqlx::Result<()> {
        let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&self.pool)
            .await?;
        let log: i64 = row.try_get(1)?;
        if log > WAL_RESTART_PAGES {
            let _turn = self.write_turn().await;
            sqlx::query("PRAGMA wal_checkpoint(RESTART)")
                .fetch_all(&self.writer)
                .await?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Connects (creating a SQLite file and its directory if missing); does
    /// not migrate.
    pub async fn connect(url: &DatabaseUrl, max_connections: u32) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        sqlx::any::install_default_drivers();
        let backend = url.backend().map_err(anyhow::Error::msg)?;
        let mut text = url.expose().to_owned();
        if backend == Backend::Sqlite {
            let path = text
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let path = path.split('?').next().unwrap_or_default();
            if let Some(dir) = std::path::Path::new(path)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir).with_context(|| {
                    format!("cannot create the database directory {}", dir.display())
                })?;
            }
            if !text.contains('?') {
                text.push_str("?mode=rwc");
            }
        } else if !text.contains("statement-cache-capacity") {
            // Room for every statement text the batches use (multi-row
            // statements of 1 to 64 rows, see `Store::chunks`), so that none
            // is parsed and planned again for want of a place (100 by default).
            text.push_str(if text.contains('?') { "&" } else { "?" });
            text.push_str("statement-cache-capacity=500");
        }
        let options = AnyConnectOptions::from_str(&text)
            .with_context(|| format!("invalid database URL {url}"))?;
        let pool_options = |size: u32| {
            AnyPoolOptions::new()
                .max_connections(size)
                .acquire_timeout(std::time::Duration::from_secs(10))
                // A ping before each use catches a PostgreSQL connection the
                // server dropped (a restart) before a real query fails on it. A
                // SQLite connection is a file handle in this process, which no
                // server can drop: the ping would only add a round trip to its
                // thread per statement batch.
                .test_before_acquire(backend == Backend::Postgres)
                .after_connect(move |conn, _meta| {
                    Box::pin(async move {
                        let setup = match backend {
                            // WAL lets readers run beside the one writer; FULL sync so a
                            // committed callback survives power loss, not just a crash.
                            // No checkpoint inside a commit: `checkpoint_in_background`
                            // copies the log into the database off the write path.
                            // Temporary storage in memory: a multi-row statement keeps
                            // the pages it changes in a statement journal, which past
                            // 64 KiB spilled to a file of its own, created and deleted
                            // for each statement (open, unlink, close on the writer's
                            // thread, `strace`; BENCHMARKS.md, session 8).
                            Backend::Sqlite => {
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; \
                                 PRAGMA wal_autocheckpoint = 0; PRAGMA temp_store = MEMORY;"
                            }
                            Backend::Postgres => {
                                "SET application_name = 'botgate'; SET statement_timeout = '30s';"
                            }
                        };
                        conn.execute(setup).await.map(|_| ())
                    })
                })
        };
        let pool = pool_options(max_connections)
            .connect_with(options.clone())
            .await
            .with_context(|| format!("cannot connect to the database at {url}"))?;
        // SQLite: the queue's writes, which take turns (`write_turn`), go
        // through one connection of their own. A connection that finds the
        // log changed by another since its last transaction empties its page
        // cache and reads every page again; with the writes spread over the
        // pool, each batch re-read the index pages it wrote into — one per
        // callback with many connections (B4 in BENCHMARKS.md, session 6).
        // Kept for the pool's life: its cache is the point.
        let writer = match backend {
            Backend::Sqlite => pool_options(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options)
                .await
                .with_context(|| format!("cannot connect to the database at {url}"))?,
            Backend::Postgres => pool.clone(),
        };
        let listen_to = match backend {
            Backend::Postgres => Some(
                sqlx::postgres::PgConnectOptions::from_str(&text)
                    .with_context(|| format!("invalid database URL {url}"))?,
            ),
            Backend::Sqlite => None,
        };
        // SQLite is one process: every change goes through a Store here.
        let cache = cache::shared(&text, backend == Backend::Sqlite);
        Ok(Self {
            pool,
            writer,
            backend,
            cache,
            listen_to,
            written: std::sync::Arc::default(),
            results: std::sync::Arc::default(),
            handoffs: std::sync::Arc::default(),
        })
    }

    /// SQLite has one writer: the queue's writes take turns here, first come
    /// first served, instead of meeting in SQLite's busy handler, which
    /// sleeps 1, 2, 5 … 100 ms between tries (the tail of B2 in
    /// BENCHMARKS.md). Every `Store` on the file in this process shares the
    /// turn. PostgreSQL takes no turn.
    pub(crate) async fn write_turn(&self) -> WriteTurn<'_> {
        match self.backend {
            Backend::Sqlite => Some(self.cache.writes.lock().await),
            Backend::Postgres => None,
        }
    }

    /// Hits, misses and whether the hot-path cache is in use.
    pub fn cache_stats(&self) -> cache::CacheStats {
        self.cache.stats()
    }

    /// Lets the hot-path cache be used on PostgreSQL: listens for the
    /// changes other replicas make (on SQLite the cache is always in use).
    /// Needs a Tokio runtime; servers call it, one-shot commands need not.
    pub fn listen_for_changes(&self) {
        if let Some(options) = &self.listen_to {
            self.cache.listen(options.clone());
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs the embedded migrations of this backend (idempotent; on Postgres
    /// serialised across replicas by an advisory lock).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        use anyhow::Context as _;
        migrations::migrator(self.backend)
            .run(&self.pool)
            .await
            .context("database migration failed")
    }

    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// Whether every embedded migration has been applied (another replica
    /// may have migrated further, which is fine).
    pub async fn schema_current(&self) -> StoreResult<bool> {
        let row = sqlx::query("SELECT MAX(version) AS v FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        let applied: Option<i64> = row.try_get("v").map_err(classify)?;
        Ok(applied.unwrap_or(0) >= migrations::latest(self.backend))
    }

    /// Closes the pool and stops the cache's listener (another `Store` on
    /// this database in the process then reads every row from the database).
    pub async fn close(&self) {
        self.cache.stop_listening();
        self.writer.close().await;
        self.pool.close().await;
    }

    /// SQLite: copies the write-ahead log into the database on a task of
    /// the current runtime, until the pool closes: after every batch of
    /// callbacks ([`Store::written`]) and at least every 200 ms. SQLite
    /// would otherwise do it inside whichever commit crosses 1,000 pages of
    /// log, and that batch of callbacks would wait for it (BENCHMARKS.md).
    /// PASSIVE never blocks the writer; run between two batches it usually
    /// catches up, and the log then starts again from its beginning. If it
    /// does not and the log passes [`WAL_RESTART_PAGES`], a RESTART
    /// checkpoint takes the write turn once and bounds the file. Commands
    /// that run a few statements need not call this: the last connection to
    /// close checkpoints.
    pub fn checkpoint_in_background(&self) {
        if self.backend != Backend::Sqlite {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            let pool = &store.pool;
            loop {
                let _ = tokio::time::timeout(
                    std::time::Duration::from_millis(200),
                    store.written.notified(),
                )
                .await;
                if pool.is_closed() {
                    return;
                }
                if let Err(e) = store.checkpoint().await {
                    if pool.is_closed() {
                        return;
                    }
                    tracing::warn!(error.message = %e, "the SQLite checkpoint failed; trying again");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
        });
    }

    /// From now on, events written by this process's ingest are claimed for
    /// `worker` as they are written, while it has free slots (see
    /// [`handoff`]). Once per Store; a second call is ignored.
    pub fn hand_off_inbound(&self, worker: handoff::Handoff<queue::InboundEvent>) {
        let _ = self.handoffs.inbound.set(worker);
    }

    /// The same for replies enqueued by the inbox worker's results.
    pub fn hand_off_outbound(&self, worker: handoff::Handoff<queue::OutboundMessage>) {
        let _ = self.handoffs.outbound.set(worker);
    }

    /// When the next row the inbox's worker (or the outbox's, `outbox`)
    /// put back for later comes due after `now`, if any.
    pub fn next_due(&self, outbox: bool, now: i64) -> Option<i64> {
        if outbox {
            self.handoffs.outbound.get()?.next_due(now)
        } else {
            self.handoffs.inbound.get()?.next_due(now)
        }
    }

    /// Events and messages claimed as they were written and handed to this
    /// process's workers so far.
    pub fn handed_off(&self) -> (u64, u64) {
        (
            self.handoffs
                .inbound
                .get()
                .map_or(0, handoff::Handoff::given),
            self.handoffs
                .outbound
                .get()
                .map_or(0, handoff::Handoff::given),
        )
    }

    /// Tells the checkpointer that a commit added to the log.
    pub fn written(&self) {
        self.written.notify_one();
    }

    // ---- tenants ---------------------------------------------------------

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
            .await
            .map_err(classify)?;
        TenantRecord::from_row(&row).map_err(classify)
    }

    /// A tenant, from the cache when it holds it (see [`cache`]).
    pub async fn tenant(&self, id: &TenantId) -> StoreResult<Option<TenantRecord>> {
        if let Some(tenant) = self.cache.tenant(id.as_str()) {
            return Ok(Some(TenantRecord::clone(&tenant)));
        }
        let epoch = self.cache.epoch();
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        let tenant = decode_one(row.as_ref(), TenantRecord::from_row)?;
        if let Some(t) = &tenant {
            self.cache
                .keep_tenant(epoch, std::sync::Arc::new(t.clone()));
        }
        Ok(tenant)
    }

    pub async fn tenant_by_api_key_hash(&self, hash: &str) -> StoreResult<Option<TenantRecord>> {
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE api_key_hash = $1");
        let row = sqlx::query(&sql)
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        decode_one(row.as_ref(), TenantRecord::from_row)
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
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let sql = format!(
            "UPDATE tenants SET engine_kind = $2, engine_url = $3, fallback_text = $5, updated_at = $4 \
             WHERE id = $1 RETURNING {TENANT_COLUMNS}"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(tenant.as_str())
            .bind(kind)
            .bind(url)
            .bind(now)
            .bind(fallback_text)
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?
        else {
            return Ok(None);
        };
        sqlx::query("DELETE FROM secrets WHERE owner_id = $1 AND field = $2")
            .bind(tenant.as_str())
            .bind(field::ENGINE_SECRET)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        if let Some(sealed) = secret {
            put_secret(&mut tx, tenant, None, field::ENGINE_SECRET, sealed, now).await?;
        }
        tx.commit().await.map_err(classify)?;
        self.cache.forget_tenant(tenant.as_str());
        TenantRecord::from_row(&row).map(Some).map_err(classify)
    }

    // ---- connections -----------------------------------------------------

    /// Inserts a connection and its sealed secrets in one transaction.
    /// `Conflict` when the tenant already has a connection for this bot.
    pub async fn create_connection(
        &self,
        c: &ConnectionRecord,
        secrets: &[(&'static str, Sealed)],
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let sql = format!(
            "INSERT INTO connections ({CONNECTION_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
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
            .bind(c.created_at)
            .bind(c.updated_at)
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
        let row = sqlx::query(&sql)
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        decode_one(row.as_ref(), ConnectionRecord::from_row)
    }

    /// A connection by id alone (for the admin token on the send API).
    pub async fn connection_by_id(
        &self,
        id: &ConnectionId,
    ) -> StoreResult<Option<ConnectionRecord>> {
        let sql = format!("SELECT {CONNECTION_COLUMNS} FROM connections WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        decode_one(row.as_ref(), ConnectionRecord::from_row)
    }

    pub async fn connections(&self, tenant: &TenantId) -> StoreResult<Vec<ConnectionRecord>> {
        let sql = format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections WHERE tenant_id = $1 ORDER BY created_at, id"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        decode_all(&rows, ConnectionRecord::from_row)
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
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let sql = format!(
            "UPDATE connections SET \
               client_id = COALESCE($3, client_id), \
               service_account = COALESCE($4, service_account), \
               scope = COALESCE($5, scope), \
               rate_limit_per_minute = COALESCE($6, rate_limit_per_minute), \
               private_key_info = COALESCE($7, private_key_info), \
               auth_header_hash = COALESCE($8, auth_header_hash), \
               updated_at = $9 \
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
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?
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
                .await
                .map_err(classify)?;
            sqlx::query("DELETE FROM secrets WHERE owner_id = $1 AND field IN ($2, $3)")
                .bind(id.as_str())
                .bind(field::ACCESS_TOKEN)
                .bind(field::REFRESH_TOKEN)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)?;
        self.cache.forget_connection(id.as_str());
        ConnectionRecord::from_row(&row).map(Some).map_err(classify)
    }

    /// Deletes a connection; its secrets go with it (foreign-key cascade).
    pub async fn delete_connection(
        &self,
        tenant: &TenantId,
        id: &ConnectionId,
    ) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM connections WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        self.cache.forget_connection(id.as_str());
        Ok(done.rows_affected() > 0)
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
               t.refresh_expires_at, t.scope AS t_scope, t.lease_owner, t.lease_until \
             FROM connections c LEFT JOIN tokens t ON t.connection_id = c.id WHERE c.{column} = $1"
        );
        let Some(row) = sqlx::query(&sql)
            .bind(value)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?
        else {
            return Ok(None);
        };
        let connection = ConnectionRecord::from_row(&row).map_err(classify)?;
        let generation: Option<i64> = row.try_get("t_generation").map_err(classify)?;
        let meta = match generation {
            None => None,
            Some(generation) => Some(TokenMeta {
                token_id: row.try_get("token_id").map_err(classify)?,
                generation,
                issued_at: row.try_get("issued_at").map_err(classify)?,
                expires_at: row.try_get("expires_at").map_err(classify)?,
                refresh_expires_at: row.try_get("refresh_expires_at").map_err(classify)?,
                scope: row.try_get("t_scope").map_err(classify)?,
                lease_owner: row.try_get("lease_owner").map_err(classify)?,
                lease_until: row.try_get("lease_until").map_err(classify)?,
            }),
        };
        let entry = (connection, meta);
        self.cache
            .keep_connection(epoch, std::sync::Arc::new(entry.clone()));
        Ok(Some(entry))
    }

    // ---- tokens ------------------------------------------------------------

    pub async fn token_meta(&self, connection: &ConnectionId) -> StoreResult<Option<TokenMeta>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE connection_id = $1");
        let row = sqlx::query(&sql)
            .bind(connection.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        decode_one(row.as_ref(), TokenMeta::from_row)
    }

    /// Takes the connection's refresh lease for `owner` until `until` if it is
    /// free, expired or already `owner`'s. Committed before any network call,
    /// so no transaction is held while NAVER WORKS answers.
    pub async fn acquire_token_lease(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        owner: &str,
        now: i64,
        until: i64,
    ) -> StoreResult<bool> {
        let created = sqlx::query(
            "INSERT INTO tokens (connection_id, tenant_id, generation, updated_at) VALUES ($1, $2, 0, $3) \
             ON CONFLICT (connection_id) DO NOTHING",
        )
        .bind(connection.as_str())
        .bind(tenant.as_str())
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        if created.rows_affected() > 0 {
            self.cache.forget_connection(connection.as_str());
        }
        let done = sqlx::query(
            "UPDATE tokens SET lease_owner = $2, lease_until = $3 WHERE connection_id = $1 \
             AND (lease_owner IS NULL OR lease_until < $4 OR lease_owner = $2)",
        )
        .bind(connection.as_str())
        .bind(owner)
        .bind(until)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(classify)?;
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
            .await
            .map_err(classify)?;
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
        let mut tx = self.pool.begin().await.map_err(classify)?;
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
        .await
        .map_err(classify)?;
        let Some(row) = row else { return Ok(None) };
        let generation: i64 = row.try_get("generation").map_err(classify)?;
        let token_id: String = row.try_get("token_id").map_err(classify)?;
        put_secret(
            &mut tx,
            tenant,
            Some(connection),
            field::ACCESS_TOKEN,
            &token.access,
            token.issued_at,
        )
        .await?;
        if let Some(refresh) = &token.refresh {
            put_secret(
                &mut tx,
                tenant,
                Some(connection),
                field::REFRESH_TOKEN,
                refresh,
                token.issued_at,
            )
            .await?;
        }
        tx.commit().await.map_err(classify)?;
        self.cache.forget_connection(connection.as_str());
        Ok(Some((token_id, generation)))
    }

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
        query.execute(&self.pool).await.map_err(classify)?;
        Ok(())
    }

    /// The newest `limit` audit entries of a connection, newest first.
    pub async fn audit(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        limit: i64,
    ) -> StoreResult<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT connection_id, tenant_id, at, client_addr, action, outcome FROM token_audit \
             WHERE tenant_id = $1 AND connection_id = $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(tenant.as_str())
        .bind(connection.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    connection_id: r.try_get("connection_id")?,
                    tenant_id: r.try_get("tenant_id")?,
                    at: r.try_get("at")?,
                    client_addr: r.try_get("client_addr")?,
                    action: r.try_get("action")?,
                    outcome: r.try_get("outcome")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(classify)
    }

    // ---- sealed values ---------------------------------------------------

    /// The sealed values of one owner (a connection id, or a tenant id for
    /// tenant-level secrets).
    pub async fn secrets(&self, owner_id: &str) -> StoreResult<Vec<SecretRecord>> {
        let sql =
            format!("SELECT {SECRET_COLUMNS} FROM secrets WHERE owner_id = $1 ORDER BY field");
        let rows = sqlx::query(&sql)
            .bind(owner_id)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        decode_all(&rows, SecretRecord::from_row)
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
        let rows = sqlx::query(&sql)
            .bind(key_id)
            .bind(owner)
            .bind(field)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        decode_all(&rows, SecretRecord::from_row)
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
        .await
        .map_err(classify)?;
        Ok(done.rows_affected() > 0)
    }

    /// How many sealed values each key id holds.
    pub async fn secret_counts_by_key(&self) -> StoreResult<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT key_id, COUNT(*) AS n FROM secrets GROUP BY key_id ORDER BY key_id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter()
            .map(|r| Ok((r.try_get("key_id")?, r.try_get("n")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(classify)
    }
}

async fn put_secret(
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
    .await
    .map_err(classify)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{padded, placeholders, pow2_chunks, values_rows};

    #[test]
    fn rows_go_in_power_of_two_chunks_in_order() {
        let rows: Vec<usize> = (0..200).collect();
        let chunks = pow2_chunks(&rows);
        let sizes: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [64, 64, 64, 8]);
        assert_eq!(chunks.concat(), rows, "every row once, in order");
        let sizes: Vec<usize> = pow2_chunks(&rows[..13]).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [8, 4, 1]);
        assert!(pow2_chunks::<usize>(&[]).is_empty());
    }

    #[test]
    fn lists_are_padded_with_their_last_value() {
        assert_eq!(padded(&[1, 2, 3]), [1, 2, 3, 3]);
        assert_eq!(padded(&[7]), [7]);
        assert_eq!(padded(&[1, 2, 3, 4]), [1, 2, 3, 4]);
        assert!(padded::<i64>(&[]).is_empty());
    }

    #[test]
    fn placeholders_number_from_first() {
        assert_eq!(placeholders(4, 3), "$4, $5, $6");
    }

    #[test]
    fn values_rows_number_parameters_from_first() {
        assert_eq!(
            values_rows(2, 2, 3, "({1}, {2}, {3}, {3})"),
            "($2, $3, $4, $4), ($5, $6, $7, $7)"
        );
    }
}
