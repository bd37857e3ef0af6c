//! Group commit of the workers' results.
//!
//! Every claimed row ends with one write: an event done (with its replies
//! enqueued) or dead, a message delivered or failed, or either put back for
//! a later attempt. Written one transaction each, a busy gateway spends a
//! flush per message on each queue (B2 and B5 in BENCHMARKS.md); here the
//! results that arrive while one batch commits are written together by the
//! next: one transaction, one flush, and one `UPDATE … WHERE seq IN (…)` per
//! kind of result (all the "done" events of a batch are one statement), one
//! multi-row `INSERT` for their replies.
//!
//! No task runs the batches: the first caller to find no batch in progress
//! leads — it takes every result waiting (its own included) and writes them;
//! the others wait for their answer, or to lead the next batch if theirs was
//! not taken (a caller whose result another leader wrote does not wait for
//! the batches after it). On PostgreSQL the inbox's and the outbox's results
//! are batched apart, so that one queue's batch does not wait for the
//! other's; SQLite writes both in one batch (one writer, one flush). A
//! result is applied only while its claim's lease is still held
//! (`locked_by` and the working status), exactly as when each was written
//! alone; a lost lease answers `false`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use sqlx::Row as _;
use tokio::sync::oneshot;

use super::handoff::{bind_claim, insert_chunk, insert_sql, Head};
use super::rows::{notify_at, NewOutbound, Queue, INBOX, OUTBOX};
use crate::domain::ids::{ConnectionId, TenantId};
use crate::store::error::{StoreError, StoreResult};
use crate::store::sql::seq_params;
use crate::store::{Backend, Store};

/// What a result does to its row.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Change {
    /// An event leaves the inbox: `done` (error cleared) or `dead`.
    Inbound {
        status: &'static str,
        error: Option<String>,
    },
    /// A message leaves the outbox: `delivered`, or `failed` with its error.
    Outbound {
        delivered: bool,
        error: Option<String>,
    },
    /// Back to `pending` until `next_at`; `count` false gives the attempt back.
    Retry {
        outbox: bool,
        error: Option<String>,
        next_at: i64,
        count: bool,
    },
}

impl Change {
    fn outbox(&self) -> bool {
        match self {
            Self::Inbound { .. } => false,
            Self::Outbound { .. } => true,
            Self::Retry { outbox, .. } => *outbox,
        }
    }
}

/// Replies to enqueue with an event's result, in the same transaction.
#[derive(Debug)]
pub(super) struct Replies {
    pub tenant_id: TenantId,
    pub connection_id: ConnectionId,
    pub event_id: String,
    pub conversation: String,
    pub messages: Vec<NewOutbound>,
    /// Whether their final statuses go to the tenant's status hook.
    pub notify: bool,
}

/// The next pending row of the conversation of each of the rows `seqs` just
/// closed in `tx` (the new heads), and the rows that have none.
async fn next_rows(
    tx: &mut sqlx::AnyConnection,
    q: &Queue,
    seqs: &[i64],
) -> StoreResult<(Vec<Next>, Vec<i64>)> {
    let (mut next, mut last) = (Vec::new(), Vec::new());
    if seqs.is_empty() {
        return Ok((next, last));
    }
    // The status repeated as the open-rows index's own condition lets SQLite
    // search that index (and, inside an UPDATE's RETURNING, it read every
    // later row of the table for each row closed: a SELECT of its own).
    let list = seq_params(seqs, 1);
    let sql = format!(
        "SELECT c.seq, c.connection_id, c.conversation, \
           (SELECT p.id FROM {t} p WHERE p.connection_id = c.connection_id \
              AND p.conversation = c.conversation AND p.status IN ('pending', '{w}') \
              AND p.status = 'pending' AND p.seq > c.seq ORDER BY p.seq LIMIT 1) AS next_id \
         FROM {t} c WHERE c.seq IN ({l})",
        t = q.table,
        w = q.working,
        l = list.sql
    );
    let rows = list.bind(sqlx::query(&sql)).fetch_all(&mut *tx).await?;
    for row in &rows {
        let seq: i64 = row.try_get("seq")?;
        match row.try_get::<Option<String>, _>("next_id")? {
            Some(id) => next.push(Next {
                id,
                connection_id: row.try_get("connection_id")?,
                conversation: row.try_get("conversation")?,
            }),
            None => last.push(seq),
        }
    }
    Ok((next, last))
}

/// The next row of a conversation whose head a result closed.
#[derive(Debug)]
struct Next {
    id: String,
    connection_id: String,
    conversation: String,
}

impl Next {
    fn conversation(&self) -> (&str, &str) {
        (&self.connection_id, &self.conversation)
    }
}

/// One claimed row's result.
#[derive(Debug)]
pub(super) struct RowResult {
    pub seq: i64,
    pub owner: String,
    pub change: Change,
    pub replies: Option<Replies>,
    pub now: i64,
}

type Answer = oneshot::Sender<StoreResult<bool>>;

/// Results waiting for the next batch, and the right to write it.
#[derive(Default)]
pub(crate) struct ResultWriter {
    waiting: Mutex<Vec<(RowResult, Answer)>>,
    leader: tokio::sync::Mutex<()>,
    commits: AtomicU64,
}

/// A batch's error, for each of its callers.
fn for_each_caller(error: &StoreError) -> StoreError {
    match error {
        StoreError::Busy => StoreError::Busy,
        StoreError::Conflict(what) => StoreError::Conflict(what),
        StoreError::Other(e) => StoreError::Other(anyhow::anyhow!("the batch was not stored: {e}")),
    }
}

impl Store {
    /// Ends a group commit: on success counts it in each of `commits` and
    /// wakes the checkpointer, on failure logs `failure`; then answers each caller —
    /// its own result, in order, or the batch's error.
    pub(crate) fn end_batch<T: Clone>(
        &self,
        answers: Vec<oneshot::Sender<StoreResult<T>>>,
        written: &StoreResult<Vec<T>>,
        commits: &[&AtomicU64],
        failure: &str,
    ) {
        match written {
            Ok(each) => {
                for counter in commits {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                self.written();
                for (answer, one) in answers.into_iter().zip(each) {
                    let _ = answer.send(Ok(one.clone()));
                }
            }
            Err(e) => {
                tracing::error!(error.message = %e, batch = answers.len(), "{failure}");
                for answer in answers {
                    let _ = answer.send(Err(for_each_caller(e)));
                }
            }
        }
    }

    /// Writes one result with the next batch; true if its lease was still
    /// held (the result applied), false if another owner has the row now.
    pub(super) async fn write_result(&self, result: RowResult) -> StoreResult<bool> {
        let (answer, answered) = oneshot::channel();
        // On PostgreSQL the inbox's and the outbox's results are batched
        // apart, and their transactions run side by side. SQLite has one
        // writer: two batches would only take turns, each with a flush of
        // its own, so both queues' results share one.
        let results = match self.backend {
            Backend::Postgres => &self.results[usize::from(result.change.outbox())],
            Backend::Sqlite => &self.results[0],
        };
        results
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((result, answer));
        // Wait for the answer, or for the right to write the next batch,
        // whichever comes first: a result written by another leader is
        // answered at once, not after every leader queued ahead of it.
        let mut answered = answered;
        let lead = tokio::select! {
            biased;
            answer = &mut answered => return answer.map_err(|_| StoreError::Busy)?,
            lead = results.leader.lock() => lead,
        };
        {
            let _lead = lead;
            // Taken after the write turn, so that results arriving while it
            // waits join this batch.
            let turn = self.write_turn().await;
            let batch = std::mem::take(
                &mut *results
                    .waiting
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            if !batch.is_empty() {
                let (batch, answers): (Vec<RowResult>, Vec<Answer>) = batch.into_iter().unzip();
                let written = self.write_results(&batch).await;
                drop(turn);
                // Counted for each queue with results in it.
                let commits: Vec<&AtomicU64> = self
                    .results
                    .iter()
                    .enumerate()
                    .filter(|&(outbox, _)| {
                        batch
                            .iter()
                            .any(|r| usize::from(r.change.outbox()) == outbox)
                    })
                    .map(|(_, writer)| &writer.commits)
                    .collect();
                self.end_batch(
                    answers,
                    &written,
                    &commits,
                    "a batch of worker results could not be written; their leases will expire and the rows are tried again",
                );
            }
        }
        answered.await.map_err(|_| StoreError::Busy)?
    }

    /// Transactions that wrote worker results.
    pub fn result_commits(&self) -> u64 {
        self.results_committed().iter().sum()
    }

    /// Transactions that wrote the inbox's results, and the outbox's.
    pub fn results_committed(&self) -> [u64; 2] {
        self.results
            .each_ref()
            .map(|r| r.commits.load(Ordering::Relaxed))
    }

    /// After commit, on PostgreSQL: whether a conversation of the rows
    /// `seqs` closed (in which `next_rows` saw no next row) has a pending row
    /// after them now. A next row committed by another transaction while
    /// this batch was writing was not seen by its statement, and the look
    /// that write takes after its own commit (`Store::wake_for_heads`, or
    /// its own wake's claim) may have come before this batch committed
    /// (finding the closed row still open); one of the two looks comes after
    /// both commits only if this one looks again. SQLite has one writer:
    /// nothing to look for.
    /// On error: true (a claim too many costs little).
    async fn next_after(&self, queue: &Queue, seqs: &[i64]) -> bool {
        if seqs.is_empty() || self.backend != Backend::Postgres {
            return false;
        }
        let list = seq_params(seqs, 1);
        let sql = format!(
            "SELECT COUNT(*) AS n FROM (SELECT 1 FROM {t} c JOIN {t} p \
               ON p.connection_id = c.connection_id AND p.conversation = c.conversation AND p.seq > c.seq \
             WHERE c.seq IN ({l}) AND p.status = 'pending' LIMIT 1) x",
            t = queue.table,
            l = list.sql
        );
        match list.bind(sqlx::query(&sql)).fetch_one(&self.pool).await {
            Ok(row) => row.try_get::<i64, _>("n").map_or(true, |n| n > 0),
            Err(e) => {
                tracing::warn!(error.message = %e, "could not look for the next rows of closed conversations; waking the worker");
                true
            }
        }
    }

    /// One transaction for a batch of results; which of them applied.
    async fn write_results(&self, batch: &[RowResult]) -> StoreResult<Vec<bool>> {
        // Results alike (same change, same owner) share one statement.
        let mut groups: HashMap<(&Change, &str), (Vec<i64>, i64)> = HashMap::new();
        for r in batch {
            let (seqs, now) = groups.entry((&r.change, r.owner.as_str())).or_default();
            seqs.push(r.seq);
            *now = (*now).max(r.now);
        }
        let mut tx = self.writer.begin().await?;
        let mut applied: HashSet<(bool, i64)> = HashSet::new();
        // Whether to wake the inbox's and the outbox's worker after commit,
        // and when rows put back for later come due.
        let mut wake = [false, false];
        let mut due: Vec<(bool, i64)> = Vec::new();
        // Rows that left their queue, per queue.
        let mut closed: [Vec<i64>; 2] = [Vec::new(), Vec::new()];
        for ((change, owner), (seqs, now)) in groups {
            let q = if change.outbox() { &OUTBOX } else { &INBOX };
            let (set, error, extra) = match change {
                Change::Inbound { status, error } => (
                    format!("status = '{status}', last_error = $3"),
                    error.as_deref(),
                    None,
                ),
                Change::Outbound { delivered, error } => (
                    if *delivered {
                        "status = 'delivered', delivered_at = $2, last_error = COALESCE($3, last_error)"
                            .to_owned()
                    } else {
                        "status = 'failed', last_error = COALESCE($3, last_error)".to_owned()
                    },
                    error.as_deref(),
                    None,
                ),
                Change::Retry {
                    error,
                    next_at,
                    count,
                    ..
                } => (
                    "status = 'pending', last_error = COALESCE($3, last_error), \
                     next_attempt_at = $4, attempts = attempts - $5"
                        .to_owned(),
                    error.as_deref(),
                    Some((*next_at, i64::from(!count))),
                ),
            };
            let list = seq_params(&seqs, if extra.is_some() { 6 } else { 4 });
            let sql = format!(
                "UPDATE {t} SET {set}, locked_by = NULL, locked_until = NULL, updated_at = $2 \
                 WHERE seq IN ({l}) AND locked_by = $1 AND status = '{w}' RETURNING seq",
                t = q.table,
                w = q.working,
                l = list.sql
            );
            let mut query = sqlx::query(&sql).bind(owner).bind(now).bind(error);
            if let Some((next_at, give_back)) = extra {
                query = query.bind(next_at).bind(give_back);
            }
            let rows = list.bind(query).fetch_all(&mut *tx).await?;
            for row in &rows {
                let seq: i64 = row.try_get("seq")?;
                applied.insert((change.outbox(), seq));
                if !matches!(change, Change::Retry { .. }) {
                    closed[usize::from(change.outbox())].push(seq);
                }
            }
            if let (Change::Retry { next_at, .. }, false) = (change, rows.is_empty()) {
                due.push((change.outbox(), *next_at));
            }
        }
        // A row that leaves its queue makes the next one of its conversation
        // the head: that one is claimed in this transaction and handed to
        // the worker (below), or the worker is woken for it. Rows closed
        // with no next row seen are looked at again after commit on
        // PostgreSQL (`next_after`).
        let mut next: [Vec<Next>; 2] = [Vec::new(), Vec::new()];
        let mut last: [Vec<i64>; 2] = [Vec::new(), Vec::new()];
        for (i, queue) in [&INBOX, &OUTBOX].into_iter().enumerate() {
            (next[i], last[i]) = next_rows(&mut tx, queue, &closed[i]).await?;
        }
        // The replies of the events whose result applied.
        let replies: Vec<(&Replies, &NewOutbound, i64)> = batch
            .iter()
            .filter(|r| applied.contains(&(r.change.outbox(), r.seq)))
            .filter_map(|r| r.replies.as_ref().map(|replies| (replies, r.now)))
            .flat_map(|(replies, now)| replies.messages.iter().map(move |m| (replies, m, now)))
            .collect();
        // The inbox's new heads, claimed for its worker (the inbox's
        // conversation locks before the outbox's, as in every transaction
        // that takes both).
        let [next_in, next_out] = &next;
        let reserved_in = self
            .reserve(
                self.handoffs.inbound.get(),
                &mut tx,
                INBOX.table,
                next_in.iter().map(Next::conversation),
            )
            .await?;
        let next_in_ids: Vec<&str> = next_in.iter().map(|n| n.id.as_str()).collect();
        let claimed_in =
            Self::claim_reserved(&mut tx, reserved_in.as_ref(), &INBOX, &next_in_ids).await?;
        let conversations: Vec<(&str, &str)> = replies
            .iter()
            .map(|(r, _, _)| (r.connection_id.as_str(), r.conversation.as_str()))
            .collect();
        let reserved = self
            .reserve(
                self.handoffs.outbound.get(),
                &mut tx,
                OUTBOX.table,
                conversations
                    .iter()
                    .copied()
                    .chain(next_out.iter().map(Next::conversation))
                    .collect::<Vec<_>>()
                    .into_iter(),
            )
            .await?;
        // The outbox's new heads, claimed for its worker; then the replies,
        // those that head their conversations written claimed for it (in
        // the slots left), the rest pending.
        let next_out_ids: Vec<&str> = next_out.iter().map(|n| n.id.as_str()).collect();
        let mut claimed =
            Self::claim_reserved(&mut tx, reserved.as_ref(), &OUTBOX, &next_out_ids).await?;
        let slots = reserved.as_ref().map_or(0, |r| r.count()) - claimed.len();
        let heads = Self::heads_to_claim(&mut tx, slots, &OUTBOX, &conversations).await?;
        let rows: Vec<(&(&Replies, &NewOutbound, i64), Head)> = replies.iter().zip(heads).collect();
        for chunk in self.chunks(&rows) {
            // As for callbacks (`insert_inbound_batch`): claim columns bound,
            // and the claimed rows returned, only in a chunk that claims.
            let claims = chunk.iter().any(|&(_, head)| head == Head::Claim);
            let sql = insert_sql(
                &OUTBOX,
                "id, tenant_id, connection_id, event_id, conversation, target_kind, target_id, \
                 content, next_attempt_at, created_at, updated_at, notify_at",
                10,
                "{1}, {2}, {3}, {4}, {5}, {6}, {7}, {8}, {9}, {9}, {9}, {10}",
                chunk.len(),
                claims,
            );
            let mut query = sqlx::query(&sql);
            for &((replies, m, now), head) in chunk {
                query = query
                    .bind(&m.id)
                    .bind(replies.tenant_id.as_str())
                    .bind(replies.connection_id.as_str())
                    .bind(&replies.event_id)
                    .bind(&replies.conversation)
                    .bind(m.target_kind)
                    .bind(&m.target_id)
                    .bind(&m.content)
                    .bind(*now)
                    .bind(notify_at(replies.notify));
                query = bind_claim(query, claims, reserved.as_ref(), &OUTBOX, head);
            }
            claimed.extend(insert_chunk(&mut tx, query, claims, &OUTBOX).await?);
        }
        claimed.sort_by_key(|r| r.try_get::<i64, _>("seq").unwrap_or_default());
        // Rows behind an open row of their conversation need no wake (see
        // `Head::Behind`); the others do, unless handed over.
        let ids: Vec<&str> = rows
            .iter()
            .filter(|(_, head)| !head.waits())
            .map(|((_, m, _), _)| m.id.as_str())
            .chain(next_out_ids.iter().copied())
            .collect();
        tx.commit().await?;
        let handed_in = self
            .hand_over(reserved_in, &INBOX, &claimed_in, |e| (e.seq, e.id.as_str()))
            .await;
        // New heads not handed over are the workers' to claim.
        wake[0] |= next_in_ids.iter().any(|id| !handed_in.contains(*id));
        let handed = self
            .hand_over(reserved, &OUTBOX, &claimed, |m| (m.seq, m.id.as_str()))
            .await;
        wake[1] |= ids.iter().any(|id| !handed.contains(*id));
        self.wake_for_heads(
            true,
            rows.iter()
                .filter(|(_, head)| *head == Head::BehindOpen)
                .map(|((_, m, _), _)| m.id.clone())
                .collect(),
        );
        // Index 0 the inbox, 1 the outbox, as in `wake` and `last`.
        for (i, queue) in [&INBOX, &OUTBOX].into_iter().enumerate() {
            if !wake[i] && self.next_after(queue, &last[i]).await {
                wake[i] = true;
            }
        }
        self.handoffs.wake(wake, &due);
        Ok(batch
            .iter()
            .map(|r| applied.contains(&(r.change.outbox(), r.seq)))
            .collect())
    }
}
