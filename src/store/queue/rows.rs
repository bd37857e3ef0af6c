//! The queue's rows: what is written (`NewInbound`, `NewOutbound`), what is
//! read back (`InboundEvent`, `OutboundMessage`), and the two tables a claim
//! works on (`INBOX`, `OUTBOX`). The lowest file of the queue: it imports
//! none of the others.

use crate::domain::ids::{ConnectionId, TenantId};
use crate::store::sql::record;

#[derive(Debug, Clone)]
pub struct NewInbound {
    pub id: String,
    pub tenant_id: TenantId,
    pub connection_id: ConnectionId,
    pub conversation: String,
    pub event_type: String,
    pub raw: Vec<u8>,
    /// When the platform says the request was made, as [`issued_key`]
    /// ('' for a NAVER WORKS body without an `issuedTime`): the first part
    /// of its dedup key, so that the hashes are written in about the order
    /// they arrive (migration 0010) and pruned as a range (0015).
    pub issued: String,
    pub body_hash: String,
    pub received_at: i64,
    /// The time the dedup entry counts from: `received_at`, or for a
    /// platform that retries with the same id (Slack) a time that keeps the
    /// entry past its retries (see `service::callbacks::slack`).
    pub dedup_at: i64,
    /// Stored as `refused` with this reason (over a quota): kept, and
    /// replayable, but not handled.
    pub refused: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    New,
    /// New, and already claimed for this process's inbox worker and handed
    /// to it (see [`super::handoff`]): nothing needs waking.
    Claimed,
    /// New, behind an open row of its conversation: the result that closes
    /// that row hands this one over or wakes a worker for it (see
    /// [`super::handoff`]; on PostgreSQL the store also looks again after
    /// commit, see [`crate::store::Store::wake_for_heads`]); nothing needs waking now.
    Queued,
    /// The same body arrived for this connection within the dedup window.
    Duplicate,
    /// New, and stored as refused (see [`NewInbound::refused`]).
    Refused,
}

record! {
    #[derive(Debug, Clone)]
    pub struct InboundEvent, columns INBOUND_COLUMNS {
        pub seq: i64,
        pub id: String,
        pub tenant_id: TenantId,
        pub connection_id: ConnectionId,
        pub conversation: String,
        pub event_type: String,
        pub raw: Vec<u8>,
        pub status: String,
        pub attempts: i64,
        pub last_error: Option<String>,
        pub received_at: i64,
        pub updated_at: i64,
    }
}

/// A dedup key's time part (`NewInbound::issued`): Unix milliseconds,
/// zero-padded to 16 digits so that text order is time order and a prune
/// is a range at the head of the key.
pub fn issued_key(millis: i64) -> String {
    format!("{:016}", millis.max(0))
}

/// Messages to enqueue, and whether their final statuses are to be posted
/// to the tenant's status hook (it has one).
#[derive(Debug, Clone, Copy)]
pub struct Enqueue<'a> {
    pub messages: &'a [NewOutbound],
    pub notify: bool,
}

impl<'a> Enqueue<'a> {
    pub const NONE: Enqueue<'static> = Enqueue::without_hook(&[]);

    /// `messages`, their statuses posted nowhere.
    pub const fn without_hook(messages: &'a [NewOutbound]) -> Self {
        Self {
            messages,
            notify: false,
        }
    }
}

/// A new message's `notify_at` (migration 0021): 0, its status to be
/// posted as soon as it is final, when its tenant has a status hook.
pub fn notify_at(notify: bool) -> Option<i64> {
    notify.then_some(0)
}

/// A message to enqueue.
#[derive(Debug, Clone)]
pub struct NewOutbound {
    pub id: String,
    pub target_kind: &'static str,
    pub target_id: String,
    /// NAVER WORKS `content` JSON.
    pub content: String,
}

record! {
    #[derive(Debug, Clone)]
    pub struct OutboundMessage, columns OUTBOUND_COLUMNS {
        pub seq: i64,
        pub id: String,
        pub tenant_id: TenantId,
        pub connection_id: ConnectionId,
        pub event_id: Option<String>,
        pub conversation: String,
        pub target_kind: String,
        pub target_id: String,
        pub content: String,
        pub status: String,
        pub attempts: i64,
        pub last_error: Option<String>,
        pub created_at: i64,
        pub updated_at: i64,
        pub delivered_at: Option<i64>,
    }
}

/// Which queue a claim works on: table, columns, and its in-flight status.
pub struct Queue {
    pub(crate) table: &'static str,
    pub(crate) columns: &'static str,
    pub(crate) working: &'static str,
}

impl Queue {
    /// The condition that the row `e` of this queue heads its conversation:
    /// no earlier open row (shared by the claims at write time and the look
    /// after commit, [`crate::store::Store::wake_for_heads`]).
    pub(crate) fn heads_sql(&self) -> String {
        format!(
            "NOT EXISTS (SELECT 1 FROM {t} p WHERE p.connection_id = e.connection_id \
               AND p.conversation = e.conversation AND p.status IN ('pending', '{w}') \
               AND p.seq < e.seq)",
            t = self.table,
            w = self.working
        )
    }
}

pub(crate) const INBOX: Queue = Queue {
    table: "inbound_events",
    columns: INBOUND_COLUMNS,
    working: "processing",
};
pub(crate) const OUTBOX: Queue = Queue {
    table: "outbound_messages",
    columns: OUTBOUND_COLUMNS,
    working: "sending",
};

/// (queue, status, count, oldest age in seconds) of one queue's open or
/// dead rows, for /metrics.
pub type QueueDepth = (&'static str, String, i64, f64);
