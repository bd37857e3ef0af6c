//! A per-process cache of the rows the hot paths read on every request:
//! connections (with their token row) and tenants. Every callback, every
//! auth-URL read and every reply sent needs them, and they change rarely; a
//! database round trip for each was most of the cost of those paths
//! (BENCHMARKS.md).
//!
//! Correctness rests on invalidation, not on expiry:
//! - every [`Store`](super::Store) method that changes a connection, its token
//!   row or a tenant forgets the entry right after its commit. Every `Store`
//!   on the same database in one process shares one cache, so a second
//!   instance in the process (tests, the bench) sees the change at once;
//! - on PostgreSQL, triggers (migration 0006) `NOTIFY botgate_cache` with the
//!   changed id when such a change commits, whoever makes it: another
//!   replica, the command line, hand-written SQL. A listener forgets the
//!   entry. Other replicas therefore see a change within the notification's
//!   delivery time (milliseconds), not at the very instant of the commit.
//!   Until the listener is listening, and from the moment its connection
//!   drops (notifications may have been missed) until it listens again, the
//!   cache is emptied and not used;
//! - a row read while an invalidation arrived is not kept (an epoch counter
//!   taken before the read and compared under the write lock);
//! - entries older than [`MAX_AGE`] are read again: a backstop for a change
//!   nobody announced (a second process on one SQLite file — not supported;
//!   replicas need PostgreSQL — or a hand edit of a SQLite file).
//!
//! Token rows change when a token is issued or refreshed (the trigger ignores
//! lease updates); a stale token row only ever makes a caller read the row
//! again under the refresh lock (see `token_cache`), never serve a token the
//! database no longer holds for a rotated connection, because rotation and
//! deletion change the connection row too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use super::{ConnectionRecord, TenantRecord, TokenMeta};

/// The PostgreSQL channel the triggers notify.
pub const CHANNEL: &str = "botgate_cache";

/// How long an entry is trusted without being read again.
pub const MAX_AGE: Duration = Duration::from_secs(60);

/// Bound on entries of each kind; past it the kind is emptied (a rare event:
/// each entry is one connection or tenant, and 10,000 connections take a few
/// MiB).
const MAX_ENTRIES: usize = 200_000;

/// A connection and its token row, as one query returns them.
pub type ConnectionEntry = (ConnectionRecord, Option<TokenMeta>);

struct Entry<T> {
    at: Instant,
    value: Arc<T>,
}

impl<T> Entry<T> {
    fn fresh(&self) -> Option<Arc<T>> {
        (self.at.elapsed() < MAX_AGE).then(|| Arc::clone(&self.value))
    }
}

#[derive(Default)]
struct Maps {
    /// By connection id.
    connections: HashMap<String, Entry<ConnectionEntry>>,
    /// Public id → connection id.
    public_ids: HashMap<String, String>,
    tenants: HashMap<String, Entry<TenantRecord>>,
}

#[derive(Default)]
pub struct Cache {
    maps: RwLock<Maps>,
    /// Bumped by every invalidation, under the write lock.
    epoch: AtomicU64,
    /// Whether invalidations reach this cache (always on SQLite; on
    /// PostgreSQL only while the listener listens).
    live: AtomicBool,
    listener: Mutex<Option<tokio::task::AbortHandle>>,
    hits: AtomicU64,
    misses: AtomicU64,
    /// SQLite's write turn (see `Store::write_turn`): kept here because this
    /// is the one object per database per process.
    pub(super) writes: tokio::sync::Mutex<()>,
}

/// What `/metrics` shows of the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from memory.
    pub hits: u64,
    /// Lookups that read the database (not cached, too old, or the cache
    /// was not in use).
    pub misses: u64,
    /// Whether the cache is in use (see the module comment).
    pub live: bool,
}

impl Drop for Cache {
    fn drop(&mut self) {
        if let Some(handle) = self
            .listener
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            handle.abort();
        }
    }
}

/// One cache per database per process, shared by every `Store` on it.
pub fn shared(database: &str, live: bool) -> Arc<Cache> {
    static CACHES: Mutex<Option<HashMap<String, Weak<Cache>>>> = Mutex::new(None);
    let mut caches = CACHES.lock().unwrap_or_else(PoisonError::into_inner);
    let caches = caches.get_or_insert_with(HashMap::new);
    if let Some(cache) = caches.get(database).and_then(Weak::upgrade) {
        return cache;
    }
    caches.retain(|_, c| c.strong_count() > 0);
    let cache = Arc::new(Cache::default());
    cache.live.store(live, Ordering::SeqCst);
    caches.insert(database.to_owned(), Arc::downgrade(&cache));
    cache
}

impl Cache {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Maps> {
        self.maps.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Maps> {
        self.maps.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    /// Taken before a read whose result may be kept with [`Cache::keep_connection`].
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            live: self.live(),
        }
    }

    /// A lookup in the maps while the cache is in use, counted as a hit or
    /// a miss.
    fn lookup<T>(&self, find: impl FnOnce(&Maps) -> Option<Arc<T>>) -> Option<Arc<T>> {
        let found = if self.live() {
            find(&self.read())
        } else {
            None
        };
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    pub fn connection(&self, id: &str) -> Option<Arc<ConnectionEntry>> {
        self.lookup(|maps| maps.connections.get(id)?.fresh())
    }

    pub fn connection_by_public_id(&self, public_id: &str) -> Option<Arc<ConnectionEntry>> {
        self.lookup(|maps| {
            let id = maps.public_ids.get(public_id)?;
            maps.connections.get(id)?.fresh()
        })
    }

    pub fn tenant(&self, id: &str) -> Option<Arc<TenantRecord>> {
        self.lookup(|maps| maps.tenants.get(id)?.fresh())
    }

    /// The maps, to keep a row read after `epoch` was taken — unless
    /// something was invalidated since (then the read may predate that
    /// change) or the cache is not in use.
    fn write_if_current(&self, epoch: u64) -> Option<std::sync::RwLockWriteGuard<'_, Maps>> {
        let maps = self.write();
        (self.live() && self.epoch() == epoch).then_some(maps)
    }

    pub fn keep_connection(&self, epoch: u64, entry: Arc<ConnectionEntry>) {
        let Some(mut maps) = self.write_if_current(epoch) else {
            return;
        };
        if maps.connections.len() >= MAX_ENTRIES {
            maps.connections.clear();
            maps.public_ids.clear();
        }
        let id = entry.0.id.as_str().to_owned();
        maps.public_ids
            .insert(entry.0.public_id.as_str().to_owned(), id.clone());
        maps.connections.insert(
            id,
            Entry {
                at: Instant::now(),
                value: entry,
            },
        );
    }

    pub fn keep_tenant(&self, epoch: u64, tenant: Arc<TenantRecord>) {
        let Some(mut maps) = self.write_if_current(epoch) else {
            return;
        };
        if maps.tenants.len() >= MAX_ENTRIES {
            maps.tenants.clear();
        }
        maps.tenants.insert(
            tenant.id.as_str().to_owned(),
            Entry {
                at: Instant::now(),
                value: tenant,
            },
        );
    }

    pub fn forget_connection(&self, id: &str) {
        let mut maps = self.write();
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if let Some(entry) = maps.connections.remove(id) {
            maps.public_ids.remove(entry.value.0.public_id.as_str());
        }
    }

    pub fn forget_tenant(&self, id: &str) {
        let mut maps = self.write();
        self.epoch.fetch_add(1, Ordering::SeqCst);
        maps.tenants.remove(id);
    }

    pub fn forget_all(&self) {
        let mut maps = self.write();
        self.epoch.fetch_add(1, Ordering::SeqCst);
        *maps = Maps::default();
    }

    /// Applies a notification's payload: `c:<connection id>` or `t:<tenant
    /// id>`; anything else empties the cache.
    fn forget_payload(&self, payload: &str) {
        match payload.split_once(':') {
            Some(("c", id)) => self.forget_connection(id),
            Some(("t", id)) => self.forget_tenant(id),
            _ => self.forget_all(),
        }
    }

    fn set_live(&self, live: bool) {
        // Going live: entries and reads from before the listener listened
        // are not trusted. Going dark: stop serving first, then empty.
        if live {
            self.forget_all();
            self.live.store(true, Ordering::SeqCst);
        } else {
            self.live.store(false, Ordering::SeqCst);
            self.forget_all();
        }
    }

    /// Starts the PostgreSQL listener on the current runtime, once per
    /// cache. Until it listens, the cache is not used.
    pub fn listen(self: &Arc<Self>, options: sqlx::postgres::PgConnectOptions) {
        let mut slot = self.listener.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let cache = Arc::downgrade(self);
        let task = tokio::spawn(listen(
            options.application_name("botgate cache listener"),
            cache,
        ));
        *slot = Some(task.abort_handle());
    }
}

impl Cache {
    /// Stops the listener, if any; the cache goes dark (not used).
    pub fn stop_listening(&self) {
        let handle = self
            .listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            handle.abort();
            self.set_live(false);
        }
    }
}

/// Marks the cache dark when the listener stops, however it stops (an
/// aborted task, a runtime shutting down).
struct DarkOnDrop(Weak<Cache>);

impl Drop for DarkOnDrop {
    fn drop(&mut self) {
        if let Some(cache) = self.0.upgrade() {
            cache.set_live(false);
        }
    }
}

async fn listen(options: sqlx::postgres::PgConnectOptions, cache: Weak<Cache>) {
    use sqlx::postgres::{PgListener, PgPoolOptions};
    let _dark = DarkOnDrop(cache.clone());
    let mut pause = Duration::from_millis(100);
    loop {
        // A pool of one, which PgListener needs; its connection is ours alone.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(options.clone());
        let listening = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        match listening {
            Ok(mut listener) => {
                let Some(c) = cache.upgrade() else { return };
                c.set_live(true);
                drop(c);
                pause = Duration::from_millis(100);
                let lost = loop {
                    match listener.try_recv().await {
                        Ok(Some(notification)) => {
                            let Some(c) = cache.upgrade() else { return };
                            c.forget_payload(notification.payload());
                        }
                        Ok(None) => break "the connection was lost".to_owned(),
                        Err(e) => break e.to_string(),
                    }
                };
                let Some(c) = cache.upgrade() else { return };
                c.set_live(false);
                tracing::warn!(error.message = %lost, "the cache listener stopped listening; reading every row from the database until it is back");
            }
            Err(e) => {
                tracing::warn!(error.message = %e, "the cache listener cannot listen yet; reading every row from the database");
            }
        }
        pool.close().await;
        if cache.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{ConnectionId, PublicId, TenantId};

    fn connection(id: &str, public: &str) -> Arc<ConnectionEntry> {
        Arc::new((
            ConnectionRecord {
                id: ConnectionId::from_trusted(id.into()),
                tenant_id: TenantId::from_trusted("ten_1".into()),
                public_id: PublicId::from_trusted(public.into()),
                channel: "naverworks".into(),
                bot_id: "1".into(),
                client_id: "c".into(),
                service_account: "s".into(),
                scope: "bot".into(),
                rate_limit_per_minute: 1,
                private_key_info: String::new(),
                auth_header_hash: String::new(),
                details: "{}".into(),
                created_at: 0,
                updated_at: 0,
                auth_networks: String::new(),
            },
            None,
        ))
    }

    #[test]
    fn a_read_overtaken_by_an_invalidation_is_not_kept() {
        let cache = Cache::default();
        cache.set_live(true);
        let before = cache.epoch();
        cache.forget_connection("con_other");
        cache.keep_connection(before, connection("con_1", "pub1"));
        assert!(cache.connection("con_1").is_none());

        let now = cache.epoch();
        cache.keep_connection(now, connection("con_1", "pub1"));
        assert!(cache.connection_by_public_id("pub1").is_some());
        cache.forget_payload("c:con_1");
        assert!(cache.connection_by_public_id("pub1").is_none());
    }

    #[test]
    fn a_dark_cache_neither_serves_nor_keeps() {
        let cache = Cache::default();
        cache.set_live(true);
        cache.keep_connection(cache.epoch(), connection("con_1", "pub1"));
        cache.set_live(false);
        assert!(cache.connection("con_1").is_none());
        cache.keep_connection(cache.epoch(), connection("con_1", "pub1"));
        cache.set_live(true);
        assert!(
            cache.connection("con_1").is_none(),
            "emptied when going live"
        );
    }
}
