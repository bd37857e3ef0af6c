//! Rows claimed in the transaction that wrote them.
//!
//! A callback's event, once committed, would wait for the inbox worker to
//! find it with a claim (a query and a conditional update, a transaction of
//! its own); an event's replies would wait the same way for the outbox
//! worker. When a worker has a free slot, the write that creates the row
//! claims it instead — in the same transaction, for the head of its
//! conversation only (no earlier open row) — and hands it to the worker in
//! memory once committed. The claim is the same lease the worker's own claim
//! takes (`locked_by`, `locked_until`, one attempt counted): if the process
//! dies before the row is processed, the lease expires and any worker claims
//! it again. A row that is not its conversation's head when written becomes
//! it when a worker's result closes the row before it: that result's
//! transaction claims it the same way (see `results`), so a busy
//! conversation's rows move from one to the next without the worker's claim
//! query. Rows that arrive while the worker is full stay `pending` and are
//! claimed as before. (On PostgreSQL the result and the write of the row
//! behind may run side by side, each unseen by the other: both look again
//! after their commit, see [`Head::BehindOpen`].)
//!
//! On PostgreSQL, replicas may write rows of one conversation at the same
//! moment; each such transaction first takes a transaction-level advisory
//! lock per conversation (always in key order, so two such transactions
//! cannot deadlock), so that the second waits for the first, sees its row
//! and leaves its own `pending`. A write that claims nothing takes no lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError};

use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};

use std::collections::HashSet;

use sqlx::any::AnyRow;
use sqlx::Row as _;

use super::rows::{InboundEvent, OutboundMessage, Queue, INBOX, OUTBOX};
use crate::store::bodies::Stored;
use crate::store::error::StoreResult;
use crate::store::sql::{padded, placeholders, seq_params, values_rows, Query};
use crate::store::{Backend, Store};

/// Where a worker takes rows claimed for it, and how many it can take.
pub struct Handoff<T> {
    /// The worker's slots; a row handed over holds one until it is processed.
    slots: Arc<Semaphore>,
    owner: String,
    lease_ms: i64,
    to: mpsc::UnboundedSender<(T, OwnedSemaphorePermit)>,
    /// Wakes the worker to claim rows itself (those a write could not hand
    /// over, and those a result made the head of their conversation).
    wake: Arc<Notify>,
    /// When rows put back for later (retries, pacing) come due, in ms.
    due: std::sync::Mutex<std::collections::BTreeSet<i64>>,
    /// Rows handed over so far (for tests).
    given: AtomicU64,
}

/// A worker's end: each row comes with the slot it holds.
pub type Taken<T> = mpsc::UnboundedReceiver<(T, OwnedSemaphorePermit)>;

impl<T> Handoff<T> {
    pub fn new(
        slots: Arc<Semaphore>,
        owner: String,
        lease_ms: i64,
        wake: Arc<Notify>,
    ) -> (Self, Taken<T>) {
        let (to, taken) = mpsc::unbounded_channel();
        (
            Self {
                slots,
                owner,
                lease_ms,
                to,
                wake,
                due: std::sync::Mutex::default(),
                given: AtomicU64::new(0),
            },
            taken,
        )
    }

    /// Up to `most` free slots of the worker (none once it has stopped).
    fn reserve(&self, most: usize) -> Reserved<'_, T> {
        let permits = if self.to.is_closed() {
            Vec::new()
        } else {
            std::iter::from_fn(|| self.slots.clone().try_acquire_owned().ok())
                .take(most)
                .collect()
        };
        Reserved {
            owner: &self.owner,
            lease_ms: self.lease_ms,
            permits,
            to: &self.to,
            given: &self.given,
        }
    }

    /// Asks the worker to claim.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Asks the worker to claim at `at` (ms), when a row put back for later
    /// comes due; woken now if that is sooner than it would wake otherwise.
    ///
    /// The worker forgets a time once a claim that started after it ran (see
    /// `next_due`); a row written after that claim read is therefore woken
    /// for at once if it is already due, never left to a forgotten time.
    pub fn wake_at(&self, at: i64) {
        if at <= crate::domain::now_millis() {
            self.wake.notify_one();
            return;
        }
        let mut due = self.due.lock().unwrap_or_else(PoisonError::into_inner);
        let sooner = due.first().is_none_or(|first| at < *first);
        due.insert(at);
        drop(due);
        if sooner {
            self.wake.notify_one();
        }
    }

    /// The next time a row comes due after `now`, forgetting those up to
    /// `now`: the caller's claim, started at `now`, took their rows.
    pub fn next_due(&self, now: i64) -> Option<i64> {
        let mut due = self.due.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(first) = due.first().copied() {
            if first > now {
                return Some(first);
            }
            due.pop_first();
        }
        None
    }

    /// Rows handed over so far.
    pub fn given(&self) -> u64 {
        self.given.load(Ordering::Relaxed)
    }
}

/// What becomes of a row about to be written (see
/// [`Store::heads_to_claim`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Head {
    /// It heads its conversation and is written claimed for the worker.
    Claim,
    /// It heads its conversation but the worker has no slot for it: it is
    /// written pending and the worker is woken to claim it.
    NoSlot,
    /// An earlier row of the same write comes before it: written pending;
    /// the result that closes that row hands it over or wakes the worker
    /// (see `results`), so nothing needs waking now.
    Behind,
    /// The first of its conversation in the write, behind an open row
    /// written before: as [`Head::Behind`], except that on PostgreSQL the
    /// result that closes that row may commit while this write is open, and
    /// neither its statement nor its look after commit (`next_after`) need
    /// see this row. The write looks again after its own commit
    /// ([`Store::wake_for_heads`]): one of the two looks comes after
    /// both commits.
    BehindOpen,
}

impl Head {
    /// Written pending behind another row (nothing to wake for now).
    pub(super) fn waits(self) -> bool {
        matches!(self, Self::Behind | Self::BehindOpen)
    }
}

/// The claim columns (status, attempts, locked_by, locked_until) of a row
/// written to `queue`: claimed for `reserved`'s worker if it is to be
/// ([`Head::Claim`]), else pending.
fn claim_columns<'a, T>(
    reserved: Option<&Reserved<'a, T>>,
    queue: &Queue,
    head: Head,
) -> (&'static str, i64, Option<&'a str>, Option<i64>) {
    match reserved {
        Some(r) if head == Head::Claim => (
            queue.working,
            1,
            Some(r.owner),
            Some(crate::domain::now_millis() + r.lease_ms),
        ),
        _ => ("pending", 0, None, None),
    }
}

/// Binds a row's claim columns ([`claim_columns`]) after its other values,
/// in a chunk of rows that claims (`claims`; see [`insert_sql`]); a chunk
/// that does not writes them pending in its text.
pub(super) fn bind_claim<'q, T>(
    query: Query<'q>,
    claims: bool,
    reserved: Option<&Reserved<'q, T>>,
    queue: &Queue,
    head: Head,
) -> Query<'q> {
    if !claims {
        return query;
    }
    let (status, attempts, locked_by, locked_until) = claim_columns(reserved, queue, head);
    query
        .bind(status)
        .bind(attempts)
        .bind(locked_by)
        .bind(locked_until)
}

/// The INSERT of a chunk of `rows` rows into `queue`: `columns` with their
/// values' `shape` (`{1}` … `{width}` per row, see `super::values_rows`),
/// then the claim columns — bound per row ([`bind_claim`]), with the rows
/// returned whole, in a chunk that claims; written pending in one that does
/// not.
pub(super) fn insert_sql(
    queue: &Queue,
    columns: &str,
    width: usize,
    shape: &str,
    rows: usize,
    claims: bool,
) -> String {
    let (t, c) = (queue.table, queue.columns);
    if claims {
        let shape = format!(
            "({shape}, {{{}}}, {{{}}}, {{{}}}, {{{}}})",
            width + 1,
            width + 2,
            width + 3,
            width + 4
        );
        let values = values_rows(1, rows, width + 4, &shape);
        format!(
            "INSERT INTO {t} ({columns}, status, attempts, locked_by, locked_until) \
             VALUES {values} RETURNING {c}"
        )
    } else {
        let values = values_rows(1, rows, width, &format!("({shape}, 'pending', 0)"));
        format!("INSERT INTO {t} ({columns}, status, attempts) VALUES {values}")
    }
}

/// Runs a chunk's INSERT; if it claims (and so returns its rows), the rows
/// written claimed, for the worker.
pub(super) async fn insert_chunk(
    tx: &mut sqlx::AnyConnection,
    query: Query<'_>,
    claims: bool,
    queue: &Queue,
) -> StoreResult<Vec<AnyRow>> {
    if !claims {
        query.execute(&mut *tx).await?;
        return Ok(Vec::new());
    }
    let written = query.fetch_all(&mut *tx).await?;
    Ok(written
        .into_iter()
        .filter(|r| sqlx::Row::try_get::<String, _>(r, "status").is_ok_and(|s| s == queue.working))
        .collect())
}

/// Slots reserved for one write; those not used are freed when dropped.
pub(super) struct Reserved<'a, T> {
    pub owner: &'a str,
    pub lease_ms: i64,
    permits: Vec<OwnedSemaphorePermit>,
    to: &'a mpsc::UnboundedSender<(T, OwnedSemaphorePermit)>,
    given: &'a AtomicU64,
}

impl<T> Reserved<'_, T> {
    /// How many rows the write may claim.
    pub fn count(&self) -> usize {
        self.permits.len()
    }

    /// Hands the rows claimed to the worker, once their write is committed;
    /// returns the `seq` of those it did not take (it has stopped), whose
    /// claim the caller gives back.
    pub fn give(mut self, rows: Vec<T>, seq: impl Fn(&T) -> i64) -> Vec<i64> {
        let mut left = Vec::new();
        for row in rows {
            // Never more rows than slots (the claim's LIMIT).
            let Some(permit) = self.permits.pop() else {
                left.push(seq(&row));
                continue;
            };
            match self.to.send((row, permit)) {
                Ok(()) => {
                    self.given.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::SendError((row, _))) => left.push(seq(&row)),
            }
        }
        left
    }
}

/// The workers of this process that take rows claimed at write time; unset
/// (nothing claimed early) when workers are off.
#[derive(Default)]
pub struct Handoffs {
    pub inbound: OnceLock<Handoff<InboundEvent>>,
    pub outbound: OnceLock<Handoff<OutboundMessage>>,
}

impl Handoffs {
    /// Wakes the inbox's worker (`now[0]`) and the outbox's (`now[1]`), and
    /// each when its rows put back for later come due (`due`: the outbox's
    /// or not, when).
    pub(super) fn wake(&self, now: [bool; 2], due: &[(bool, i64)]) {
        let (inbound, outbound) = (self.inbound.get(), self.outbound.get());
        if let (true, Some(worker)) = (now[0], inbound) {
            worker.wake();
        }
        if let (true, Some(worker)) = (now[1], outbound) {
            worker.wake();
        }
        for &(outbox, at) in due {
            match (outbox, inbound, outbound) {
                (false, Some(worker), _) => worker.wake_at(at),
                (true, _, Some(worker)) => worker.wake_at(at),
                _ => {}
            }
        }
    }
}

/// One advisory lock key per conversation of a queue, sorted and without
/// repeats (the order every transaction takes them in). A stable hash, so
/// replicas of different builds agree.
fn conversation_keys<'a>(
    queue: &str,
    conversations: impl Iterator<Item = (&'a str, &'a str)>,
) -> Vec<i64> {
    use sha2::{Digest as _, Sha256};
    let mut keys: Vec<i64> = conversations
        .map(|(connection, conversation)| {
            let digest = Sha256::new()
                .chain_update(queue)
                .chain_update([0])
                .chain_update(connection)
                .chain_update([0])
                .chain_update(conversation)
                .finalize();
            let mut first = [0u8; 8];
            first.copy_from_slice(&digest[..8]);
            i64::from_be_bytes(first)
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

impl Store {
    /// Slots of `worker` (if any, and free) for the rows of `conversations`
    /// that the transaction `tx` writes to `queue`; on PostgreSQL, with the
    /// conversations' advisory locks taken. None: claim nothing.
    pub(super) async fn reserve<'w, 'c, T>(
        &self,
        worker: Option<&'w Handoff<T>>,
        tx: &mut sqlx::AnyConnection,
        queue: &str,
        conversations: impl ExactSizeIterator<Item = (&'c str, &'c str)>,
    ) -> StoreResult<Option<Reserved<'w, T>>> {
        let Some(reserved) = worker
            .map(|w| w.reserve(conversations.len()))
            .filter(|r| r.count() > 0)
        else {
            return Ok(None);
        };
        if self.backend == Backend::Postgres {
            let keys = conversation_keys(queue, conversations);
            lock_conversations(tx, &keys).await?;
        }
        Ok(Some(reserved))
    }

    /// Before commit: claims for `reserved`'s worker the heads among the rows
    /// just written to `queue` (`ids`); nothing without a reservation.
    pub(super) async fn claim_reserved<T>(
        tx: &mut sqlx::AnyConnection,
        reserved: Option<&Reserved<'_, T>>,
        queue: &Queue,
        ids: &[&str],
    ) -> StoreResult<Vec<AnyRow>> {
        match reserved {
            Some(r) => {
                let lease_until = crate::domain::now_millis() + r.lease_ms;
                claim_written(tx, queue, ids, r.owner, lease_until, r.count()).await
            }
            None => Ok(Vec::new()),
        }
    }

    /// Before the rows of `conversations` (in the order they are about to be
    /// written to `queue` in `tx`) are written: which of them are written
    /// claimed for the worker whose slots the write reserved — the first row
    /// of each conversation that has no open row yet, oldest first, at most
    /// `limit`. A row written claimed needs no claim of its own (an UPDATE:
    /// on PostgreSQL a second version of the row and of its index entries).
    pub(super) async fn heads_to_claim(
        tx: &mut sqlx::AnyConnection,
        limit: usize,
        queue: &Queue,
        conversations: &[(&str, &str)],
    ) -> StoreResult<Vec<Head>> {
        // No slot (or no worker here): nothing to look up; the worker is
        // woken for every row, as for rows written while it is full.
        let mut heads = vec![Head::NoSlot; conversations.len()];
        if limit == 0 {
            return Ok(heads);
        }
        let mut distinct: Vec<(&str, &str)> = Vec::new();
        let mut seen = HashSet::new();
        for &c in conversations {
            if seen.insert(c) {
                distinct.push(c);
            }
        }
        let open = open_conversations(tx, queue, &distinct).await?;
        let mut taken = 0;
        let mut first = HashSet::new();
        for (head, c) in heads.iter_mut().zip(conversations) {
            *head = if !first.insert(*c) {
                Head::Behind
            } else if open.contains(c) {
                Head::BehindOpen
            } else if taken < limit {
                taken += 1;
                Head::Claim
            } else {
                Head::NoSlot
            };
        }
        Ok(heads)
    }

    /// After commit: hands the `claimed` rows to `reserved`'s worker and
    /// gives back those it did not take (it stopped meanwhile). Returns the
    /// ids of the rows handed over — none without a reservation, none if any
    /// had to be given back. A row that cannot be read back keeps its lease
    /// until it expires (the write is committed; nothing fails because of it).
    pub(super) async fn hand_over<T: Stored>(
        &self,
        reserved: Option<Reserved<'_, T>>,
        queue: &Queue,
        claimed: &[AnyRow],
        key: fn(&T) -> (i64, &str),
    ) -> HashSet<String> {
        let Some(reserved) = reserved else {
            return HashSet::new();
        };
        let owner = reserved.owner.to_owned();
        // Decoded only: the worker opens their bodies as it takes them
        // (`Stored::opened`), not here, where SQLite's write turn is held.
        let rows = crate::store::sql::decode_all(claimed).unwrap_or_else(|e| {
            tracing::warn!(error.message = %e, queue = queue.table, "claimed rows could not be read back; their leases will expire");
            Vec::new()
        });
        let mut handed: HashSet<String> = rows.iter().map(|r| key(r).1.to_owned()).collect();
        let left = reserved.give(rows, |r| key(r).0);
        if !left.is_empty() {
            handed.clear();
            self.release_claimed(queue, &owner, &left).await;
        }
        handed
    }

    /// After the commit of a write, on PostgreSQL: wakes the inbox's worker,
    /// or the outbox's if `outbox`, if any of `ids` — rows the write left
    /// behind an open row ([`Head::BehindOpen`]) — is now pending at the
    /// head of its conversation: the row before it was closed by a result
    /// that ran beside the write and saw nothing after it. The look runs in
    /// a task of its own, so that the write's callers are not held. SQLite
    /// has one writer: that result came before the write or sees its rows.
    pub(super) fn wake_for_heads(&self, outbox: bool, ids: Vec<String>) {
        if ids.is_empty() || self.backend != Backend::Postgres {
            return;
        }
        let queue = if outbox { &OUTBOX } else { &INBOX };
        let store = self.clone();
        tokio::spawn(async move {
            let heads = store.heads_now(queue, &ids).await.unwrap_or_else(|e| {
                tracing::warn!(error.message = %e, queue = queue.table, "could not look for rows left behind closed ones; waking the worker");
                true
            });
            if heads {
                store.handoffs.wake([!outbox, outbox], &[]);
            }
        });
    }

    /// Whether any of the rows `ids` of `queue` is pending with no open row
    /// before it in its conversation.
    async fn heads_now(&self, queue: &Queue, ids: &[String]) -> StoreResult<bool> {
        for chunk in ids.chunks(256) {
            // Padded, so that the statement's text recurs.
            let chunk = padded(chunk);
            let sql = format!(
                "SELECT COUNT(*) AS n FROM (SELECT 1 FROM {t} e WHERE e.id IN ({list}) \
                   AND e.status = 'pending' AND {heads} LIMIT 1) x",
                t = queue.table,
                list = placeholders(1, chunk.len()),
                heads = queue.heads_sql()
            );
            let mut query = sqlx::query(&sql);
            for id in &chunk {
                query = query.bind(id.as_str());
            }
            let row = query.fetch_one(&self.pool).await?;
            if sqlx::Row::try_get::<i64, _>(&row, "n")? > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Those of `conversations` (distinct) with an open row in `queue`, as `tx`
/// sees them.
async fn open_conversations<'c>(
    tx: &mut sqlx::AnyConnection,
    queue: &Queue,
    conversations: &[(&'c str, &'c str)],
) -> StoreResult<HashSet<(&'c str, &'c str)>> {
    let mut open = HashSet::new();
    for chunk in conversations.chunks(64) {
        // Padded, so that the statement's text recurs (see `padded`).
        let chunk = padded(chunk);
        // One index search per pair (VALUES columns are column1, … in both
        // databases); `i` says which pair.
        let values = (0..chunk.len())
            .map(|i| format!("(${}, ${}, {i})", 2 * i + 1, 2 * i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT v.column3 AS i FROM (VALUES {values}) v WHERE EXISTS (SELECT 1 FROM {t} p \
               WHERE p.connection_id = v.column1 AND p.conversation = v.column2 \
               AND p.status IN ('pending', '{w}'))",
            t = queue.table,
            w = queue.working
        );
        let mut query = sqlx::query(&sql);
        for (connection, conversation) in &chunk {
            query = query.bind(*connection).bind(*conversation);
        }
        for row in query.fetch_all(&mut *tx).await? {
            let i: i64 = sqlx::Row::try_get(&row, "i")?;
            if let Some(c) = usize::try_from(i).ok().and_then(|i| chunk.get(i)) {
                open.insert(*c);
            }
        }
    }
    Ok(open)
}

/// Takes the advisory locks of `keys` (PostgreSQL), in order, until the
/// transaction ends.
async fn lock_conversations(tx: &mut sqlx::AnyConnection, keys: &[i64]) -> sqlx::Result<()> {
    // A VALUES list is scanned in its order: the locks are taken in the keys'.
    for chunk in keys.chunks(1024) {
        // Repeating a key takes its lock again, which is harmless: the
        // padded list's text recurs (see `padded`).
        let chunk = padded(chunk);
        let sql = format!(
            "SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock(k) FROM (VALUES {}) v(k)) l",
            (1..=chunk.len())
                .map(|k| format!("(${k}::bigint)"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut query = sqlx::query(&sql);
        for key in chunk {
            query = query.bind(key);
        }
        query.fetch_one(&mut *tx).await?;
    }
    Ok(())
}

/// Claims for `owner` those of the rows `ids` that are pending and due, and
/// head their conversation (no earlier open row), oldest first, at most
/// `limit` (see the module comment): rows just written in `tx`, or rows that
/// `tx` made heads by closing the one before them.
pub(super) async fn claim_written(
    tx: &mut sqlx::AnyConnection,
    q: &Queue,
    ids: &[&str],
    owner: &str,
    lease_until: i64,
    limit: usize,
) -> StoreResult<Vec<AnyRow>> {
    if ids.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let ids = padded(ids);
    let list = placeholders(5, ids.len());
    let sql = format!(
        "UPDATE {t} SET status = '{w}', locked_by = $1, locked_until = $2, attempts = attempts + 1, updated_at = $3 \
         WHERE seq IN (SELECT e.seq FROM {t} e WHERE e.id IN ({list}) AND e.status = 'pending' \
           AND e.next_attempt_at <= $3 AND {heads} \
           ORDER BY e.seq LIMIT $4) \
         RETURNING {c}",
        t = q.table,
        w = q.working,
        c = q.columns,
        heads = q.heads_sql()
    );
    let mut query = sqlx::query(&sql)
        .bind(owner)
        .bind(lease_until)
        .bind(crate::domain::now_millis())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX));
    for id in ids {
        query = query.bind(id);
    }
    let mut rows = query.fetch_all(&mut *tx).await?;
    rows.sort_by_key(|r| r.try_get::<i64, _>("seq").unwrap_or_default());
    Ok(rows)
}

impl Store {
    /// From now on, events written by this process's ingest are claimed for
    /// `worker` as they are written, while it has free slots (see
    /// [this module](self)). Once per Store; a second call is ignored.
    pub fn hand_off_inbound(&self, worker: Handoff<InboundEvent>) {
        let _ = self.handoffs.inbound.set(worker);
    }

    /// The same for replies enqueued by the inbox worker's results.
    pub fn hand_off_outbound(&self, worker: Handoff<OutboundMessage>) {
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
            self.handoffs.inbound.get().map_or(0, Handoff::given),
            self.handoffs.outbound.get().map_or(0, Handoff::given),
        )
    }

    /// Gives back claims taken at write time that no worker took (it
    /// stopped meanwhile): pending again, the attempt not counted. The caller
    /// holds the write turn. The rows' write is committed, so a failure here
    /// is only logged: their leases expire and they are claimed again.
    pub(super) async fn release_claimed(&self, q: &Queue, owner: &str, seqs: &[i64]) {
        if seqs.is_empty() {
            return;
        }
        let list = seq_params(seqs, 2);
        let sql = format!(
            "UPDATE {t} SET status = 'pending', locked_by = NULL, locked_until = NULL, attempts = attempts - 1 \
             WHERE seq IN ({l}) AND locked_by = $1 AND status = '{w}'",
            t = q.table,
            w = q.working,
            l = list.sql
        );
        let query = list.bind(sqlx::query(&sql).bind(owner));
        if let Err(e) = query.execute(&self.writer).await {
            tracing::warn!(error.message = %e, rows = seqs.len(), "claims no worker took could not be given back; their leases will expire");
        }
    }
}
