//! Tenant quotas, per process: rows open in a tenant's queues (pending or in
//! flight, both queues) and callbacks accepted per second across its
//! connections. Each tenant's limits are its own (set by the admin) or the
//! configuration's (`tenant_max_open_rows`,
//! `tenant_max_callbacks_per_second`).
//!
//! - The callback rate is a token bucket per tenant holding one second of
//!   its rate, refilled continuously: a burst of up to the rate passes, a
//!   steady flow above it is refused. Each replica keeps its own buckets, so
//!   with N replicas behind a balancer a tenant gets up to N times the rate.
//! - Open rows are counted in the database (through the queues' partial
//!   indexes of open rows) by the request that finds the count stale:
//!   every 5 seconds, or after a second when the estimate reaches the
//!   limit. Between counts each row this process admits is added to the
//!   estimate, so a burst cannot run past the limit; rows leave it only at
//!   a count (so a tenant near its limit is counted every second, one far
//!   below it every 5, which keeps the count off the hot path).
//!
//! Memory: one entry per tenant that sent something (tenants are created by
//! the operator, so this is bounded).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::Settings;
use crate::store::{Store, StoreResult, TenantRecord};

/// Why a tenant's callback or message was refused (the metric's label and
/// the refused row's reason).
pub const OVER_OPEN_ROWS: &str = "open_rows";
pub const OVER_RATE: &str = "callbacks_per_second";

/// How long a tenant's count of open rows is used before it is counted
/// again: at the limit, and anyway.
const RECOUNT_AT_LIMIT: Duration = Duration::from_secs(1);
const RECOUNT: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct Quotas {
    tenants: Mutex<HashMap<String, Usage>>,
}

struct Usage {
    tokens: f64,
    refilled: Instant,
    open: i64,
    counted: Option<Instant>,
}

/// A tenant's limits in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_open_rows: i64,
    pub max_callbacks_per_second: i64,
}

impl Limits {
    pub fn of(settings: &Settings, tenant: &TenantRecord) -> Self {
        Self {
            max_open_rows: tenant
                .max_open_rows
                .unwrap_or_else(|| i64::from(settings.tenant_max_open_rows)),
            max_callbacks_per_second: tenant
                .max_callbacks_per_second
                .unwrap_or_else(|| i64::from(settings.tenant_max_callbacks_per_second)),
        }
    }
}

impl Quotas {
    fn with<T>(&self, tenant: &str, f: impl FnOnce(&mut Usage) -> T) -> T {
        let mut tenants = self
            .tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let usage = tenants.entry(tenant.to_owned()).or_insert_with(|| Usage {
            tokens: f64::INFINITY,
            refilled: Instant::now(),
            open: 0,
            counted: None,
        });
        f(usage)
    }

    /// Counts the tenant's open rows again if its count is stale (this
    /// caller alone; the others use the stale count meanwhile).
    async fn recount(&self, store: &Store, tenant: &TenantRecord, limit: i64) -> StoreResult<()> {
        let now = Instant::now();
        let stale = self.with(tenant.id.as_str(), |u| {
            let stale = u.counted.is_none_or(|at| {
                let age = now.duration_since(at);
                age >= RECOUNT || (u.open >= limit && age >= RECOUNT_AT_LIMIT)
            });
            if stale {
                u.counted = Some(now);
            }
            stale
        });
        if !stale {
            return Ok(());
        }
        match store.open_rows(&tenant.id).await {
            Ok(n) => {
                self.with(tenant.id.as_str(), |u| u.open = n);
                Ok(())
            }
            Err(e) => {
                // Counted again by the next caller.
                self.with(tenant.id.as_str(), |u| u.counted = None);
                Err(e)
            }
        }
    }

    /// Whether a callback of `tenant` may be queued: `None`, and it counts
    /// as open and takes from the rate; or the quota it is over.
    pub async fn admit_callback(
        &self,
        store: &Store,
        settings: &Settings,
        tenant: &TenantRecord,
    ) -> StoreResult<Option<&'static str>> {
        let limits = Limits::of(settings, tenant);
        self.recount(store, tenant, limits.max_open_rows).await?;
        let now = Instant::now();
        Ok(self.with(tenant.id.as_str(), |u| {
            #[allow(clippy::cast_precision_loss)]
            let rate = limits.max_callbacks_per_second as f64;
            let elapsed = now.duration_since(u.refilled).as_secs_f64();
            u.tokens = (u.tokens + elapsed * rate).min(rate);
            u.refilled = now;
            if u.open >= limits.max_open_rows {
                Some(OVER_OPEN_ROWS)
            } else if u.tokens < 1.0 {
                Some(OVER_RATE)
            } else {
                u.tokens -= 1.0;
                u.open += 1;
                None
            }
        }))
    }

    /// Whether `n` messages of `tenant` may be queued (the send API): `None`,
    /// and they count as open; or the quota they are over.
    pub async fn admit_messages(
        &self,
        store: &Store,
        settings: &Settings,
        tenant: &TenantRecord,
        n: usize,
    ) -> StoreResult<Option<&'static str>> {
        let limits = Limits::of(settings, tenant);
        self.recount(store, tenant, limits.max_open_rows).await?;
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        Ok(self.with(tenant.id.as_str(), |u| {
            if u.open.saturating_add(n) > limits.max_open_rows {
                Some(OVER_OPEN_ROWS)
            } else {
                u.open += n;
                None
            }
        }))
    }

    /// Forgets a tenant's usage (its quotas changed, or it was deleted).
    pub fn forget(&self, tenant: &str) {
        self.tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(tenant);
    }
}
