//! The store's handle: connecting (pool options, SQLite's WAL and its
//! background checkpoint, the queue's writer connection), migrating, and
//! the write turn SQLite's single writer takes.

use std::str::FromStr as _;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor as _, Row as _};

use super::error::StoreResult;
use super::{cache, migrations, queue, Backend};
use crate::config::DatabaseUrl;
use crate::secrets::debug_fields;

#[derive(Clone)]
pub struct Store {
    pub(super) pool: AnyPool,
    /// The queue's writes: on SQLite one connection of its own (see
    /// `Store::connect`), on PostgreSQL the pool.
    pub(super) writer: AnyPool,
    pub(super) backend: Backend,
    /// Connections, tokens rows and tenants read on the hot paths (see
    /// [`cache`]); shared by every `Store` on this database in the process.
    pub(super) cache: std::sync::Arc<cache::Cache>,
    /// Where the cache's PostgreSQL listener connects.
    pub(super) listen_to: Option<sqlx::postgres::PgConnectOptions>,
    /// Wakes the SQLite checkpointer after a commit.
    pub(super) written: std::sync::Arc<tokio::sync::Notify>,
    /// The workers' results, group-committed (see [`queue`]): the inbox's
    /// and the outbox's, each in batches of its own on PostgreSQL; SQLite
    /// batches both in the first.
    pub(super) results: std::sync::Arc<[queue::ResultWriter; 2]>,
    /// This process's workers, which take rows claimed as they are written.
    pub(super) handoffs: std::sync::Arc<queue::Handoffs>,
    /// Seals and opens message bodies (see [`super::bodies`]).
    pub(super) bodies: super::bodies::Bodies,
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

debug_fields!(Store { backend });

impl Store {
    /// Connects (creating a SQLite file and its directory if missing); does
    /// not migrate.
    pub async fn connect(url: &DatabaseUrl, max_connections: u32) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        sqlx::any::install_default_drivers();
        let backend = url.backend().map_err(anyhow::Error::msg)?;
        let mut text = url.expose().to_owned();
        if backend == Backend::Sqlite {
            if let Some(path) = url.sqlite_file() {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).with_context(|| {
                        format!("cannot create the database directory {}", dir.display())
                    })?;
                }
                owner_only(&path)?;
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
            bodies: super::bodies::Bodies::default(),
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
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Whether every embedded migration has been applied (another replica
    /// may have migrated further, which is fine).
    pub async fn schema_current(&self) -> StoreResult<bool> {
        let row = sqlx::query("SELECT MAX(version) AS v FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.pool)
            .await?;
        let applied: Option<i64> = row.try_get("v")?;
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

    /// Tells the checkpointer that a commit added to the log.
    pub fn written(&self) {
        self.written.notify_one();
    }
}

/// The SQLite file (user messages, sealed secrets) and its log readable by
/// botgate's user alone: created 0600, tightened to it if it was looser.
/// SQLite creates the `-wal` and `-shm` files with the database's mode.
fn owner_only(path: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    if !path.exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot create the database file {}", path.display()))?;
    }
    let with = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        std::path::PathBuf::from(name)
    };
    for file in [path.to_path_buf(), with("-wal"), with("-shm")] {
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).with_context(
                || format!("cannot make {} readable by its owner only", file.display()),
            )?;
            tracing::warn!(file = %file.display(), "the database file was readable by others; now 0600");
        }
    }
    Ok(())
}
