//! The durable inbox (inbound callbacks) and outbox (messages to send).
//!
//! Claims are leases committed before any network call: a claimed row is
//! `processing`/`sending` with `locked_by` and `locked_until`; a crashed
//! process's leases expire and the rows are claimed again. Only the oldest
//! open row of a conversation is claimable, so each conversation is handled
//! one row at a time in arrival order, while different conversations run in
//! parallel. Candidates are ranked per tenant (the oldest of every tenant
//! first), so one tenant's backlog does not starve the others. Results are
//! written only while the lease is still held.

mod handoff;
mod notices;
mod results;
mod rows;

pub use handoff::{Handoff, Handoffs, Taken};
pub use notices::StatusNotice;
pub(crate) use results::ResultWriter;
pub use rows::{
    issued_key, Enqueue, InboundEvent, Inserted, NewInbound, NewOutbound, OutboundMessage,
    QueueDepth,
};

use sqlx::any::AnyRow;
use sqlx::Row as _;

use super::bodies::Stored;
use super::error::{classify, is_unique_violation, StoreResult};
use super::sql::{seq_params, values_rows};
use super::{Store, WriteTurn};
use crate::domain::ids::{ConnectionId, TenantId};
use handoff::{bind_claim, insert_chunk, insert_sql, Head};
use results::{Change, Replies, RowResult};
use rows::{notify_at, INBOUND_COLUMNS, OUTBOUND_COLUMNS};
pub(crate) use rows::{Queue, INBOX, OUTBOX};

/// Rows a cancel changes per write.
const CANCEL_BATCH: i64 = 500;

/// An outbound row's stored `status`, as a condition a partial index
/// serves: `failed` rows along `outbound_failed`, the open ones along
/// `outbound_open_conversation` (whose condition SQLite uses only when the
/// query repeats it).
fn status_is(status: &'static str) -> String {
    match status {
        "pending" | "sending" => {
            format!("status IN ('pending', 'sending') AND status = '{status}'")
        }
        other => format!("status = '{other}'"),
    }
}

/// Binds a callback's columns, in the order both of its inserts name them
/// (id, tenant, connection, conversation, type, raw, received).
fn bind_inbound<'q>(query: super::sql::Query<'q>, e: &'q NewInbound) -> super::sql::Query<'q> {
    query
        .bind(&e.id)
        .bind(e.tenant_id.as_str())
        .bind(e.connection_id.as_str())
        .bind(&e.conversation)
        .bind(&e.event_type)
        .bind(&e.raw)
        .bind(e.received_at)
}

/// When and why a claimed row goes back to the queue.
struct Again<'a> {
    error: Option<&'a str>,
    next_at: i64,
    /// Whether this attempt counts towards the retry budget.
    count: bool,
    now: i64,
}

impl Store {
    /// Stores a batch of verified callbacks in one transaction (group
    /// commit): each is new, or a duplicate of a body seen for its connection
    /// within `dedup_window_ms` (earlier in the batch included). All or none
    /// are stored; the callers answer 200 only after this returns `Ok`. The
    /// caller has taken the write turn (`turn`), so that the callbacks that
    /// arrived while it waited for it are in this batch.
    pub async fn insert_inbound_batch(
        &self,
        events: &[NewInbound],
        dedup_window_ms: i64,
        turn: WriteTurn<'_>,
    ) -> StoreResult<Vec<Inserted>> {
        // Two multi-row statements (per chunk of up to 64, see
        // `Store::chunks`): an upsert of the body hashes (RETURNING those that
        // are new, or seen longer ago than the window), an insert of the new
        // events.
        let mut results = vec![Inserted::Duplicate; events.len()];
        let mut seen = std::collections::HashSet::new();
        let firsts: Vec<usize> = (0..events.len())
            .filter(|&i| {
                let e = &events[i];
                seen.insert((e.connection_id.as_str(), e.body_hash.as_str()))
            })
            .collect();
        if firsts.is_empty() {
            return Ok(results);
        }
        let _turn = turn;
        let mut tx = self.writer.begin().await?;
        let reserved = self
            .reserve(
                self.handoffs.inbound.get(),
                &mut tx,
                INBOX.table,
                firsts.iter().map(|&i| {
                    (
                        events[i].connection_id.as_str(),
                        events[i].conversation.as_str(),
                    )
                }),
            )
            .await?;
        let mut fresh: std::collections::HashSet<(String, String)> = Default::default();
        for chunk in self.chunks(&firsts) {
            // Parameters from $2 on: $1 is the window.
            let values = values_rows(2, chunk.len(), 4, "({1}, {2}, {3}, {4})");
            let sql = format!(
                "INSERT INTO inbound_dedup (issued, connection_id, body_hash, seen_at) VALUES {values} \
                 ON CONFLICT (issued, connection_id, body_hash) DO UPDATE SET seen_at = excluded.seen_at \
                 WHERE inbound_dedup.seen_at < excluded.seen_at - $1 \
                 RETURNING connection_id, body_hash"
            );
            let mut query = sqlx::query(&sql).bind(dedup_window_ms);
            for &i in chunk {
                let e = &events[i];
                query = query
                    .bind(&e.issued)
                    .bind(e.connection_id.as_str())
                    .bind(&e.body_hash)
                    .bind(e.dedup_at);
            }
            for r in query.fetch_all(&mut *tx).await? {
                fresh.insert((r.try_get("connection_id")?, r.try_get("body_hash")?));
            }
        }
        let (refused, new): (Vec<usize>, Vec<usize>) = firsts
            .into_iter()
            .filter(|&i| {
                fresh.contains(&(
                    events[i].connection_id.to_string(),
                    events[i].body_hash.clone(),
                ))
            })
            .partition(|&i| events[i].refused.is_some());
        // Refused ones (over a quota) are kept, not queued.
        for chunk in self.chunks(&refused) {
            let values = values_rows(
                1,
                chunk.len(),
                8,
                "({1}, {2}, {3}, {4}, {5}, {6}, 'refused', 0, {7}, {7}, {7}, {8})",
            );
            let sql = format!(
                "INSERT INTO inbound_events (id, tenant_id, connection_id, conversation, event_type, raw, \
                   status, attempts, next_attempt_at, received_at, updated_at, last_error) VALUES {values}"
            );
            let mut query = sqlx::query(&sql);
            for &i in chunk {
                query = bind_inbound(query, &events[i]).bind(events[i].refused);
            }
            query.execute(&mut *tx).await?;
        }
        // The heads among them are written claimed for the worker (if it has
        // free slots), the rest pending.
        let conversations: Vec<(&str, &str)> = new
            .iter()
            .map(|&i| {
                (
                    events[i].connection_id.as_str(),
                    events[i].conversation.as_str(),
                )
            })
            .collect();
        let slots = reserved.as_ref().map_or(0, |r| r.count());
        let heads = Self::heads_to_claim(&mut tx, slots, &INBOX, &conversations).await?;
        let rows: Vec<(usize, Head)> = new.iter().copied().zip(heads).collect();
        let mut claimed = Vec::new();
        for chunk in self.chunks(&rows) {
            // A chunk with a row to claim binds each row's claim columns and
            // gets the claimed rows back whole, for the worker; one without
            // (every chunk when no worker has a slot) writes them pending.
            let claims = chunk.iter().any(|&(_, head)| head == Head::Claim);
            let sql = insert_sql(
                &INBOX,
                "id, tenant_id, connection_id, conversation, event_type, raw, \
                 next_attempt_at, received_at, updated_at",
                7,
                "{1}, {2}, {3}, {4}, {5}, {6}, {7}, {7}, {7}",
                chunk.len(),
                claims,
            );
            let mut query = sqlx::query(&sql);
            for &(i, head) in chunk {
                query = bind_inbound(query, &events[i]);
                query = bind_claim(query, claims, reserved.as_ref(), &INBOX, head);
            }
            claimed.extend(insert_chunk(&mut tx, query, claims, &INBOX).await?);
        }
        claimed.sort_by_key(|r| r.try_get::<i64, _>("seq").unwrap_or_default());
        tx.commit().await?;
        let handed = self
            .hand_over(reserved, &INBOX, &claimed, |e: &InboundEvent| {
                (e.seq, e.id.as_str())
            })
            .await;
        self.wake_for_heads(
            false,
            rows.iter()
                .filter(|&&(_, head)| head == Head::BehindOpen)
                .map(|&(i, _)| events[i].id.clone())
                .collect(),
        );
        for (i, head) in rows {
            results[i] = if handed.contains(&events[i].id) {
                Inserted::Claimed
            } else if head.waits() {
                Inserted::Queued
            } else {
                Inserted::New
            };
        }
        for i in refused {
            results[i] = Inserted::Refused;
        }
        Ok(results)
    }

    /// Claims up to `limit` rows of `T`'s queue that are due at `now`,
    /// leased to `owner` until `lease_until` (see the module comment).
    pub async fn claim<T: Stored>(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<T>> {
        let rows = self
            .claim_rows(T::QUEUE, owner, now, lease_until, limit)
            .await?;
        self.read_rows(&rows)
    }

    async fn claim_rows(
        &self,
        q: &Queue,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<AnyRow>> {
        // The head of every open conversation (the first entry of each group
        // of the open-rows index), if it may be claimed now; ranked per
        // tenant, so every tenant's oldest comes before anyone's second.
        let candidates = format!(
            "SELECT seq FROM ( \
               SELECT e.seq, ROW_NUMBER() OVER (PARTITION BY e.tenant_id ORDER BY e.seq) AS rn \
               FROM (SELECT MIN(seq) AS head FROM {t} WHERE status IN ('pending', '{w}') \
                     GROUP BY connection_id, conversation) h \
               JOIN {t} e ON e.seq = h.head \
               WHERE e.next_attempt_at <= $1 AND (e.status = 'pending' OR e.locked_until < $1) \
             ) c ORDER BY rn, seq LIMIT $2",
            t = q.table,
            w = q.working
        );
        let seqs = self
            .fetch_i64s(sqlx::query(&candidates).bind(now).bind(limit))
            .await?;
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        // The conditional update is the claim: of two replicas racing for a
        // row, the second finds it no longer claimable.
        let list = seq_params(&seqs, 4);
        let sql = format!(
            "UPDATE {t} SET status = '{w}', locked_by = $1, locked_until = $2, attempts = attempts + 1, updated_at = $3 \
             WHERE seq IN ({l}) AND (status = 'pending' OR (status = '{w}' AND locked_until < $3)) \
             RETURNING {c}",
            t = q.table,
            w = q.working,
            c = q.columns,
            l = list.sql
        );
        let query = sqlx::query(&sql).bind(owner).bind(lease_until).bind(now);
        let _turn = self.write_turn().await;
        let mut rows = list.bind(query).fetch_all(&self.writer).await?;
        rows.sort_by_key(|r| r.try_get::<i64, _>("seq").unwrap_or_default());
        Ok(rows)
    }

    /// Marks an event done and enqueues its replies, in one transaction, if
    /// `owner` still holds its lease. Returns false if the lease was lost.
    pub async fn finish_inbound(
        &self,
        event: &InboundEvent,
        owner: &str,
        replies: Enqueue<'_>,
        now: i64,
    ) -> StoreResult<bool> {
        self.close_inbound(event, owner, "done", None, replies, now)
            .await
    }

    /// Closes an event no engine is asked about (a bot's own message, an
    /// event type botgate does not answer), with the reason, if `owner`
    /// still holds its lease.
    pub async fn ignore_inbound(
        &self,
        event: &InboundEvent,
        owner: &str,
        reason: &str,
        now: i64,
    ) -> StoreResult<bool> {
        self.close_inbound(event, owner, "ignored", Some(reason), Enqueue::NONE, now)
            .await
    }

    /// Dead-letters an event with its last error (and optionally a fallback
    /// message to the user), if `owner` still holds its lease.
    pub async fn dead_inbound(
        &self,
        event: &InboundEvent,
        owner: &str,
        error: &str,
        fallback: Enqueue<'_>,
        now: i64,
    ) -> StoreResult<bool> {
        self.close_inbound(event, owner, "dead", Some(error), fallback, now)
            .await
    }

    async fn close_inbound(
        &self,
        event: &InboundEvent,
        owner: &str,
        status: &'static str,
        error: Option<&str>,
        Enqueue { messages, notify }: Enqueue<'_>,
        now: i64,
    ) -> StoreResult<bool> {
        self.write_result(RowResult {
            seq: event.seq,
            owner: owner.to_owned(),
            change: Change::Inbound {
                status,
                error: error.map(str::to_owned),
            },
            replies: (!messages.is_empty()).then(|| Replies {
                tenant_id: event.tenant_id.clone(),
                connection_id: event.connection_id.clone(),
                event_id: event.id.clone(),
                conversation: event.conversation.clone(),
                messages: self.seal_outbound(&event.tenant_id, &event.connection_id, messages),
                notify,
            }),
            now,
        })
        .await
    }

    /// Puts a claimed row back for a later attempt (`count` false: the
    /// attempt is not counted, e.g. when pacing deferred it).
    async fn retry(
        &self,
        outbox: bool,
        seq: i64,
        owner: &str,
        again: Again<'_>,
    ) -> StoreResult<bool> {
        let Again {
            error,
            next_at,
            count,
            now,
        } = again;
        self.write_result(RowResult {
            seq,
            owner: owner.to_owned(),
            change: Change::Retry {
                outbox,
                error: error.map(str::to_owned),
                next_at,
                count,
            },
            replies: None,
            now,
        })
        .await
    }

    pub async fn retry_inbound(
        &self,
        event: &InboundEvent,
        owner: &str,
        error: &str,
        next_at: i64,
        now: i64,
    ) -> StoreResult<bool> {
        let again = Again {
            error: Some(error),
            next_at,
            count: true,
            now,
        };
        self.retry(false, event.seq, owner, again).await
    }

    pub async fn retry_outbound(
        &self,
        m: &OutboundMessage,
        owner: &str,
        error: Option<&str>,
        next_at: i64,
        count: bool,
        now: i64,
    ) -> StoreResult<bool> {
        self.retry(
            true,
            m.seq,
            owner,
            Again {
                error,
                next_at,
                count,
                now,
            },
        )
        .await
    }

    /// Final state of a message: `delivered`, or `failed` with its error.
    pub async fn close_outbound(
        &self,
        m: &OutboundMessage,
        owner: &str,
        delivered: bool,
        error: Option<&str>,
        now: i64,
    ) -> StoreResult<bool> {
        self.write_result(RowResult {
            seq: m.seq,
            owner: owner.to_owned(),
            change: Change::Outbound {
                delivered,
                error: error.map(str::to_owned),
            },
            replies: None,
            now,
        })
        .await
    }

    /// A connection's events, newest first, optionally of one status.
    pub async fn events(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        status: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<InboundEvent>> {
        // Read through the connection's index, newest first; the dead events
        // through their own (migration 0009), which the planner takes only
        // for the literal status.
        let (filter, bound) = match status {
            None => ("", None),
            Some("dead") => ("AND status = 'dead'", None),
            Some("refused") => ("AND status = 'refused'", None),
            Some(other) => ("AND status = $4", Some(other)),
        };
        let sql = format!(
            "SELECT {INBOUND_COLUMNS} FROM inbound_events WHERE tenant_id = $1 AND connection_id = $2 \
             {filter} ORDER BY seq DESC LIMIT $3"
        );
        let mut query = sqlx::query(&sql)
            .bind(tenant.as_str())
            .bind(connection.as_str())
            .bind(limit);
        if let Some(status) = bound {
            query = query.bind(status);
        }
        self.fetch_rows(query).await
    }

    /// A connection's messages, oldest first (for the status API and tests).
    pub async fn messages(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        limit: i64,
    ) -> StoreResult<Vec<OutboundMessage>> {
        self.messages_in_order(tenant, connection, limit, "ASC")
            .await
    }

    /// A connection's latest messages, newest first (the console).
    pub async fn recent_messages(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        limit: i64,
    ) -> StoreResult<Vec<OutboundMessage>> {
        self.messages_in_order(tenant, connection, limit, "DESC")
            .await
    }

    async fn messages_in_order(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        limit: i64,
        order: &'static str,
    ) -> StoreResult<Vec<OutboundMessage>> {
        let sql = format!(
            "SELECT {OUTBOUND_COLUMNS} FROM outbound_messages WHERE tenant_id = $1 AND connection_id = $2 \
             ORDER BY seq {order} LIMIT $3"
        );
        self.fetch_rows(
            sqlx::query(&sql)
                .bind(tenant.as_str())
                .bind(connection.as_str())
                .bind(limit),
        )
        .await
    }

    /// Puts dead events, and callbacks refused over a quota, back in the
    /// queue: one (by id) or all of a connection. Each status through its
    /// own partial index (the literal status in each statement).
    pub async fn replay_dead(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        event_id: Option<&str>,
        now: i64,
    ) -> StoreResult<u64> {
        let _turn = self.write_turn().await;
        let mut tx = self.writer.begin().await?;
        let mut replayed = 0;
        for status in ["dead", "refused"] {
            let sql = format!(
                "UPDATE inbound_events SET status = 'pending', attempts = 0, next_attempt_at = $4, last_error = NULL, updated_at = $4 \
                 WHERE tenant_id = $1 AND connection_id = $2 AND status = '{status}' AND ($3 = '' OR id = $3)"
            );
            let done = sqlx::query(&sql)
                .bind(tenant.as_str())
                .bind(connection.as_str())
                .bind(event_id.unwrap_or(""))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            replayed += done.rows_affected();
        }
        tx.commit().await?;
        Ok(replayed)
    }

    /// How many of a connection's messages have the stored `status` (and
    /// are still kept), along a partial index where there is one.
    pub async fn count_messages(
        &self,
        connection: &ConnectionId,
        status: &'static str,
    ) -> StoreResult<i64> {
        let sql = format!(
            "SELECT COUNT(*) AS n FROM outbound_messages WHERE connection_id = $1 AND {}",
            status_is(status)
        );
        let row = sqlx::query(&sql)
            .bind(connection.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Puts failed messages back in the outbox, in one transaction: the one
    /// named `id`, or the connection's oldest `limit` failed ones. Each
    /// keeps its id, event, target, content (sealed as it is: the seal is
    /// bound to the id), idempotency key and creation time, starts again
    /// with no attempts and no error, and goes to the back of its
    /// conversation's queue: it is deleted and written again under a new
    /// `seq`, because the outbox's order is `seq` (an old `seq` made
    /// pending again would jump ahead of messages queued since, or be sent
    /// beside one already in flight). With `notify` (the tenant has a
    /// status hook now), each one's new final status is posted to it.
    /// Returns the messages, oldest first.
    pub async fn retry_failed(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        id: Option<&str>,
        limit: i64,
        notify: bool,
        now: i64,
    ) -> StoreResult<Vec<OutboundMessage>> {
        let _turn = self.write_turn().await;
        let mut tx = self.writer.begin().await?;
        // The partial index `outbound_failed` (connection_id, seq) finds them.
        let taken = sqlx::query(
            "DELETE FROM outbound_messages WHERE seq IN (SELECT seq FROM outbound_messages \
               WHERE connection_id = $1 AND status = 'failed' AND tenant_id = $2 AND ($3 = '' OR id = $3) \
               ORDER BY seq LIMIT $4) \
             RETURNING seq, id, event_id, conversation, target_kind, target_id, content, created_at, \
               idempotency_key, idempotency_group",
        )
        .bind(connection.as_str())
        .bind(tenant.as_str())
        .bind(id.unwrap_or(""))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let mut taken = taken
            .iter()
            .map(|row| Ok((row.try_get::<i64, _>("seq")?, row)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        // RETURNING promises no order.
        taken.sort_by_key(|(seq, _)| *seq);
        let sql = format!(
            "INSERT INTO outbound_messages (id, tenant_id, connection_id, event_id, conversation, target_kind, \
               target_id, content, status, attempts, next_attempt_at, created_at, updated_at, \
               idempotency_key, idempotency_group, notify_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 0, $9, $10, $9, $11, $12, $13) \
             RETURNING {OUTBOUND_COLUMNS}"
        );
        let mut stored = Vec::with_capacity(taken.len());
        for (_, row) in taken {
            let text = |name: &str| row.try_get::<String, _>(name);
            let maybe = |name: &str| row.try_get::<Option<String>, _>(name);
            let again = sqlx::query(&sql)
                .bind(text("id")?)
                .bind(tenant.as_str())
                .bind(connection.as_str())
                .bind(maybe("event_id")?)
                .bind(text("conversation")?)
                .bind(text("target_kind")?)
                .bind(text("target_id")?)
                .bind(text("content")?)
                .bind(now)
                .bind(row.try_get::<i64, _>("created_at")?)
                .bind(maybe("idempotency_key")?)
                .bind(maybe("idempotency_group")?)
                .bind(notify_at(notify))
                .fetch_one(&mut *tx)
                .await?;
            stored.push(again);
        }
        tx.commit().await?;
        self.read_rows(&stored)
    }

    /// Cancels queued messages: the one named `id`, or every one of the
    /// connection still queued, in batches (a broadcast of many thousands
    /// never holds SQLite's writer for long). Only `pending` rows change:
    /// a row a worker holds (`sending`, claimed in the transaction that
    /// handed it over) is past cancelling. Returns how many.
    pub async fn cancel_queued(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        id: Option<&str>,
        now: i64,
    ) -> StoreResult<u64> {
        let sql = format!(
            "UPDATE outbound_messages SET status = 'cancelled', updated_at = $4 WHERE seq IN \
               (SELECT seq FROM outbound_messages WHERE connection_id = $1 AND {} \
                AND tenant_id = $2 AND ($3 = '' OR id = $3) LIMIT $5)",
            status_is("pending")
        );
        let update = || {
            sqlx::query(&sql)
                .bind(connection.as_str())
                .bind(tenant.as_str())
                .bind(id.unwrap_or(""))
                .bind(now)
                .bind(CANCEL_BATCH)
        };
        self.write_in_batches(update, CANCEL_BATCH).await
    }

    /// Enqueues messages of the send API in one transaction. With an
    /// idempotency key (unique on the first part, the group of every part), a
    /// key already used returns the messages stored under it instead.
    pub async fn enqueue_messages(
        &self,
        tenant: &TenantId,
        connection: &ConnectionId,
        conversation: &str,
        Enqueue { messages, notify }: Enqueue<'_>,
        idempotency_key: Option<&str>,
        now: i64,
    ) -> StoreResult<Vec<OutboundMessage>> {
        let key_of = |i: usize| idempotency_key.filter(|_| i == 0);
        let messages = &self.seal_outbound(tenant, connection, messages);
        let turn = self.write_turn().await;
        let mut tx = self.writer.begin().await?;
        let mut stored = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            let sql = format!(
                "INSERT INTO outbound_messages (id, tenant_id, connection_id, conversation, target_kind, target_id, \
                   content, status, attempts, next_attempt_at, created_at, updated_at, idempotency_key, idempotency_group, \
                   notify_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8, $8, $9, $10, $11) RETURNING {OUTBOUND_COLUMNS}"
            );
            let row = sqlx::query(&sql)
                .bind(&m.id)
                .bind(tenant.as_str())
                .bind(connection.as_str())
                .bind(conversation)
                .bind(m.target_kind)
                .bind(&m.target_id)
                .bind(&m.content)
                .bind(now)
                .bind(key_of(i))
                .bind(idempotency_key)
                .bind(notify_at(notify))
                .fetch_one(&mut *tx)
                .await;
            match row {
                Ok(row) => stored.push(row),
                Err(e) if is_unique_violation(&e) && idempotency_key.is_some() => {
                    drop(tx);
                    return self
                        .messages_by_key(connection, idempotency_key.unwrap_or_default())
                        .await;
                }
                Err(e) => return Err(classify(e)),
            }
        }
        tx.commit().await?;
        drop(turn);
        self.read_rows(&stored)
    }

    /// The messages stored under an idempotency key, in order.
    pub async fn messages_by_key(
        &self,
        connection: &ConnectionId,
        key: &str,
    ) -> StoreResult<Vec<OutboundMessage>> {
        let sql = format!(
            "SELECT {OUTBOUND_COLUMNS} FROM outbound_messages WHERE connection_id = $1 \
             AND idempotency_group = $2 ORDER BY seq"
        );
        self.fetch_rows(sqlx::query(&sql).bind(connection.as_str()).bind(key))
            .await
    }

    /// One message of a connection.
    pub async fn message(
        &self,
        connection: &ConnectionId,
        id: &str,
    ) -> StoreResult<Option<OutboundMessage>> {
        let sql = format!(
            "SELECT {OUTBOUND_COLUMNS} FROM outbound_messages WHERE connection_id = $1 AND id = $2"
        );
        let mut found = self
            .fetch_rows(sqlx::query(&sql).bind(connection.as_str()).bind(id))
            .await?;
        Ok(found.pop())
    }

    /// A connection's messages, newest first, filtered by status and creation time.
    pub async fn list_messages(
        &self,
        connection: &ConnectionId,
        status: Option<&str>,
        since: i64,
        limit: i64,
    ) -> StoreResult<Vec<OutboundMessage>> {
        let sql = format!(
            "SELECT {OUTBOUND_COLUMNS} FROM outbound_messages WHERE connection_id = $1 \
             AND ($2 = '' OR status = $2) AND created_at >= $3 ORDER BY seq DESC LIMIT $4"
        );
        self.fetch_rows(
            sqlx::query(&sql)
                .bind(connection.as_str())
                .bind(status.unwrap_or(""))
                .bind(since)
                .bind(limit),
        )
        .await
    }

    /// (queue, status, count, oldest age in seconds) for the open and dead
    /// rows of both queues, for /metrics.
    pub async fn queue_depths(&self, now: i64) -> StoreResult<Vec<QueueDepth>> {
        let mut out = Vec::new();
        // Each read through a partial index of its rows (the open ones, the
        // dead letters), never the whole table: a scrape costs the queue's
        // depth, not its history (migration 0016).
        for (queue, table, time, statuses) in [
            (
                "inbox",
                "inbound_events",
                "received_at",
                "IN ('pending', 'processing')",
            ),
            ("inbox", "inbound_events", "received_at", "= 'dead'"),
            (
                "outbox",
                "outbound_messages",
                "created_at",
                "IN ('pending', 'sending')",
            ),
            ("outbox", "outbound_messages", "created_at", "= 'failed'"),
        ] {
            let sql = format!(
                "SELECT status, COUNT(*) AS n, MIN({time}) AS oldest FROM {table} \
                 WHERE status {statuses} GROUP BY status ORDER BY status"
            );
            for row in sqlx::query(&sql).fetch_all(&self.pool).await? {
                let status: String = row.try_get("status")?;
                let n: i64 = row.try_get("n")?;
                let oldest: Option<i64> = row.try_get("oldest")?;
                #[allow(clippy::cast_precision_loss)]
                let age = oldest.map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0);
                out.push((queue, status, n, age));
            }
        }
        Ok(out)
    }

    /// Forgets dedup hashes issued before `before` (housekeeping): a range
    /// at the head of the table's key (migration 0015), and the hashes of
    /// undated bodies (`issued` '', a few if any) last seen before it.
    pub async fn prune_dedup(&self, before: i64) -> StoreResult<u64> {
        let _turn = self.write_turn().await;
        let dated = sqlx::query("DELETE FROM inbound_dedup WHERE issued > '' AND issued < $1")
            .bind(issued_key(before))
            .execute(&self.writer)
            .await?;
        let undated = sqlx::query("DELETE FROM inbound_dedup WHERE issued = '' AND seen_at < $1")
            .bind(before)
            .execute(&self.writer)
            .await?;
        Ok(dated.rows_affected() + undated.rows_affected())
    }
}
