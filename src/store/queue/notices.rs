//! The status hook's side of the outbox: messages whose final status
//! (delivered, failed, cancelled) is still to be posted to their tenant's
//! status hook (`notify_at`, migration 0021). Claimed under a lease as the
//! queues' rows are, but in no order: each post stands alone, and a
//! tenant's slow hook holds only its own posts.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::Row as _;

use super::rows::{OutboundMessage, OUTBOUND_COLUMNS};
use crate::store::error::StoreResult;
use crate::store::sql::{decode_all, placeholders, seq_params, FromRow};
use crate::store::Store;

/// A message whose final status is due to be posted: the message (its
/// content left sealed: a post never carries it), and its post's tries
/// and lease.
#[derive(Debug, Clone)]
pub struct StatusNotice {
    pub message: OutboundMessage,
    /// Posts tried, this one included.
    pub notify_attempts: i64,
    /// The lease this claim holds (see [`Store::settle_status_notice`]).
    pub notify_at: i64,
}

impl FromRow for StatusNotice {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            message: OutboundMessage::from_row(row)?,
            notify_attempts: row.try_get("notify_attempts")?,
            notify_at: row.try_get("notify_at")?,
        })
    }
}

/// Rows per statement of [`Store::settle_status_posted`].
const SETTLE_CHUNK: usize = 256;

/// The rows of the partial index `outbound_notify`, in its own words (so
/// that both databases use it).
const DUE: &str = "notify_at IS NOT NULL AND status IN ('delivered', 'failed', 'cancelled')";

impl Store {
    /// Claims up to `limit` messages whose final status is due to be posted
    /// at `now`, oldest due first, leased until `lease_until` (a post not
    /// settled by then is claimed again), each post counted.
    ///
    /// None of the tenants `busy` (those with posts enough in flight here)
    /// are claimed for: a tenant whose hook hangs holds a bounded share of
    /// the worker's slots.
    pub async fn claim_status_notices(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
        busy: &[&str],
    ) -> StoreResult<Vec<StatusNotice>> {
        let skip = match busy.len() {
            0 => String::new(),
            n => format!(" AND tenant_id NOT IN ({})", placeholders(3, n)),
        };
        let candidates = format!(
            "SELECT seq FROM outbound_messages WHERE {DUE} AND notify_at <= $1{skip} \
             ORDER BY notify_at LIMIT $2"
        );
        let query = sqlx::query(&candidates).bind(now).bind(limit);
        let query = busy.iter().fold(query, |q, tenant| q.bind(*tenant));
        let seqs = self.fetch_i64s(query).await?;
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        // The conditional update is the claim: of two replicas racing for a
        // row, the second finds it leased.
        let list = seq_params(&seqs, 3);
        let sql = format!(
            "UPDATE outbound_messages SET notify_at = $1, notify_attempts = notify_attempts + 1 \
             WHERE seq IN ({l}) AND {DUE} AND notify_at <= $2 \
             RETURNING {OUTBOUND_COLUMNS}, notify_attempts, notify_at",
            l = list.sql
        );
        let query = sqlx::query(&sql).bind(lease_until).bind(now);
        let _turn = self.write_turn().await;
        let rows = list.bind(query).fetch_all(&self.writer).await?;
        decode_all(&rows)
    }

    /// Ends posts the hooks took, in one transaction (one statement per
    /// claim, whose rows share its lease): each only while its claim's
    /// lease holds. Returns how many it ended.
    pub async fn settle_status_posted(&self, notices: &[StatusNotice]) -> StoreResult<u64> {
        let mut by_lease: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for n in notices {
            by_lease.entry(n.notify_at).or_default().push(n.message.seq);
        }
        let _turn = self.write_turn().await;
        let mut tx = self.writer.begin().await?;
        let mut ended = 0;
        for (lease, seqs) in by_lease {
            for chunk in seqs.chunks(SETTLE_CHUNK) {
                let list = seq_params(chunk, 2);
                let sql = format!(
                    "UPDATE outbound_messages SET notify_at = NULL WHERE notify_at = $1 AND seq IN ({})",
                    list.sql
                );
                let done = list
                    .bind(sqlx::query(&sql).bind(lease))
                    .execute(&mut *tx)
                    .await?;
                ended += done.rows_affected();
            }
        }
        tx.commit().await?;
        Ok(ended)
    }

    /// Ends a claimed post that failed: given up (`next_at` `None`), or due
    /// again at `next_at`; only while the claim's lease (`notice.notify_at`)
    /// holds. Returns whether it did. (Posts the hooks took are ended in
    /// batches by [`Store::settle_status_posted`].)
    pub async fn settle_status_notice(
        &self,
        notice: &StatusNotice,
        next_at: Option<i64>,
    ) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "UPDATE outbound_messages SET notify_at = $3 WHERE seq = $1 AND notify_at = $2",
        )
        .bind(notice.message.seq)
        .bind(notice.notify_at)
        .bind(next_at)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
