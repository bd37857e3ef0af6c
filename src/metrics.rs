//! Prometheus metrics, hand-rolled with atomics (a handful of counters and two
//! histograms do not need a registry crate). Labels are bounded: outcomes and
//! status classes, never tenant, user or connection ids or raw paths. Queue
//! depths and ages are read from the database at scrape time.

use crate::store::cache::CacheStats;
use crate::store::queue::QueueDepth;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Counters keyed by a fixed set of label values.
pub struct Counters<const N: usize> {
    labels: [&'static str; N],
    values: [AtomicU64; N],
}

impl<const N: usize> Counters<N> {
    const fn new(labels: [&'static str; N]) -> Self {
        Self {
            labels,
            values: [const { AtomicU64::new(0) }; N],
        }
    }

    /// Counts one for `label` (an unknown label is a bug; it counts nowhere).
    pub fn inc(&self, label: &str) {
        if let Some(i) = self.labels.iter().position(|l| *l == label) {
            if let Some(v) = self.values.get(i) {
                v.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn render(&self, out: &mut String, name: &str, label: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (l, v) in self.labels.iter().zip(&self.values) {
            let _ = writeln!(
                out,
                "{name}{{{label}=\"{l}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        }
    }
}

const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

pub struct Histogram {
    buckets: [AtomicU64; 10],
    count: AtomicU64,
    /// Sum in microseconds.
    sum_us: AtomicU64,
}

impl Histogram {
    const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; 10],
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        #[allow(clippy::cast_precision_loss)]
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Every counter botgate keeps; one per process, in `AppState`.
pub struct Metrics {
    pub webhooks: Counters<11>,
    /// Callbacks stored as refused, by the quota they were over.
    pub callbacks_refused: Counters<2>,
    pub auth_urls: Counters<4>,
    pub tokens: Counters<3>,
    pub engine_calls: Counters<2>,
    pub engine_latency: Histogram,
    pub sends: Counters<9>,
    pub send_latency: Histogram,
    pub pacing_delays: Counters<2>,
    pub dead_letters: Counters<1>,
    /// Posts to tenants' status hooks, by result.
    pub status_posts: Counters<3>,
    /// Bot API sends by endpoint (users | channels).
    pub send_endpoints: Counters<2>,
    /// Slack sends by method (chat.postMessage | response_url).
    pub slack_sends: Counters<2>,
    /// Engine calls by tenant: (ok, error). Tenants are created by the
    /// operator, so this label stays bounded; user and connection ids never
    /// appear.
    pub engine_by_tenant: std::sync::Mutex<std::collections::BTreeMap<String, (u64, u64)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            webhooks: Counters::new([
                "accepted",
                "duplicate",
                "bad_signature",
                "bot_mismatch",
                "unknown_connection",
                "too_large",
                "invalid",
                "challenge",
                "ignored",
                "refused",
                "app_rate_limited",
            ]),
            callbacks_refused: Counters::new(["open_rows", "callbacks_per_second"]),
            auth_urls: Counters::new(["ok", "denied", "limited", "error"]),
            tokens: Counters::new(["issued", "refreshed", "failed"]),
            engine_calls: Counters::new(["ok", "error"]),
            engine_latency: Histogram::new(),
            sends: Counters::new([
                "delivered",
                "unauthorized",
                "rate_limited",
                "client_error",
                "server_error",
                "network_error",
                "token_error",
                "deadline",
                "credentials_refused",
            ]),
            send_latency: Histogram::new(),
            pacing_delays: Counters::new(["deferred", "held"]),
            dead_letters: Counters::new(["dead"]),
            status_posts: Counters::new(["posted", "retried", "dropped"]),
            send_endpoints: Counters::new(["users", "channels"]),
            slack_sends: Counters::new(["chat.postMessage", "response_url"]),
            engine_by_tenant: std::sync::Mutex::default(),
        }
    }
}

impl Metrics {
    /// Counts an engine call of a tenant.
    pub fn engine_call(&self, tenant: &str, ok: bool) {
        self.engine_calls.inc(if ok { "ok" } else { "error" });
        let mut by_tenant = self
            .engine_by_tenant
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = by_tenant.entry(tenant.to_owned()).or_default();
        if ok {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }

    /// The metrics as Prometheus text; `commits` are the group-commit
    /// writers' transactions so far (label, count).
    pub fn render(
        &self,
        queues: &[QueueDepth],
        cache: CacheStats,
        commits: &[(&str, u64)],
    ) -> String {
        let mut out = String::with_capacity(4096);
        let _ = writeln!(out, "# HELP botgate_group_commits_total Transactions of the group-commit writers: callbacks stored, the inbox's and the outbox's results (on SQLite one transaction may hold both, and counts for each).\n# TYPE botgate_group_commits_total counter");
        for (writer, n) in commits {
            let _ = writeln!(
                out,
                "botgate_group_commits_total{{writer=\"{writer}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP botgate_cache_lookups_total Connection and tenant lookups on the hot paths, by result.\n\
             # TYPE botgate_cache_lookups_total counter\n\
             botgate_cache_lookups_total{{result=\"hit\"}} {}\n\
             botgate_cache_lookups_total{{result=\"miss\"}} {}\n\
             # HELP botgate_cache_live Whether the hot-path cache is in use (on PostgreSQL: its change listener is listening).\n\
             # TYPE botgate_cache_live gauge\n\
             botgate_cache_live {}",
            cache.hits,
            cache.misses,
            u8::from(cache.live)
        );
        self.webhooks.render(
            &mut out,
            "botgate_webhook_requests_total",
            "outcome",
            "Callbacks received, by outcome.",
        );
        self.callbacks_refused.render(
            &mut out,
            "botgate_callbacks_refused_total",
            "reason",
            "Callbacks stored as refused (not handled; replayable), by the tenant quota they were over.",
        );
        self.auth_urls.render(
            &mut out,
            "botgate_auth_url_requests_total",
            "outcome",
            "Auth-URL requests, by outcome.",
        );
        self.tokens.render(
            &mut out,
            "botgate_naverworks_tokens_total",
            "kind",
            "NAVER WORKS token requests, by kind.",
        );
        self.engine_calls.render(
            &mut out,
            "botgate_engine_calls_total",
            "outcome",
            "Dialogue engine calls, by outcome.",
        );
        self.engine_latency.render(
            &mut out,
            "botgate_engine_call_seconds",
            "Dialogue engine call latency.",
        );
        self.sends.render(
            &mut out,
            "botgate_naverworks_sends_total",
            "outcome",
            "Message sends of every channel (the name is kept from when NAVER WORKS was the only one), by outcome.",
        );
        self.send_latency.render(
            &mut out,
            "botgate_naverworks_send_seconds",
            "Message send latency, every channel.",
        );
        self.send_endpoints.render(
            &mut out,
            "botgate_naverworks_sends_by_endpoint_total",
            "endpoint",
            "Bot API message sends, by endpoint.",
        );
        self.slack_sends.render(
            &mut out,
            "botgate_slack_sends_by_method_total",
            "method",
            "Slack message sends, by Web API method or response_url.",
        );
        let _ = writeln!(out, "# HELP botgate_engine_calls_by_tenant_total Dialogue engine calls, by tenant and outcome.\n# TYPE botgate_engine_calls_by_tenant_total counter");
        for (tenant, (ok, err)) in self
            .engine_by_tenant
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "botgate_engine_calls_by_tenant_total{{tenant=\"{tenant}\",outcome=\"ok\"}} {ok}"
            );
            let _ = writeln!(out, "botgate_engine_calls_by_tenant_total{{tenant=\"{tenant}\",outcome=\"error\"}} {err}");
        }
        self.pacing_delays.render(
            &mut out,
            "botgate_pacing_delays_total",
            "kind",
            "Sends deferred by pacing.",
        );
        self.dead_letters.render(
            &mut out,
            "botgate_dead_letters_total",
            "kind",
            "Events dead-lettered.",
        );
        self.status_posts.render(
            &mut out,
            "botgate_status_posts_total",
            "result",
            "Posts of final message statuses to tenants' status hooks (dropped: given up).",
        );
        let _ = writeln!(out, "# HELP botgate_queue_items Items in the inbox and outbox, by status.\n# TYPE botgate_queue_items gauge");
        for (queue, status, count, _) in queues {
            let _ = writeln!(
                out,
                "botgate_queue_items{{queue=\"{queue}\",status=\"{status}\"}} {count}"
            );
        }
        let _ = writeln!(out, "# HELP botgate_queue_oldest_seconds Age of the oldest item, by queue and status.\n# TYPE botgate_queue_oldest_seconds gauge");
        for (queue, status, _, age) in queues {
            let _ = writeln!(
                out,
                "botgate_queue_oldest_seconds{{queue=\"{queue}\",status=\"{status}\"}} {age}"
            );
        }
        out
    }
}
