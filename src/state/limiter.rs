//! Failed-attempt accounting for the header-guarded auth URLs and the
//! console's sign-in: slowed down after a few failures, refused for a while
//! after `auth_failure_limit`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures before each further failure is delayed.
const SLOW_AFTER: u32 = 5;
const WINDOW: Duration = Duration::from_secs(60);

struct Entry {
    window_start: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
}

/// Failed-attempt accounting per client address, built once per process.
pub struct FailureLimiter {
    limit: u32,
    block: Duration,
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

impl FailureLimiter {
    pub fn new(limit: u32, block: Duration) -> Self {
        Self {
            limit,
            block,
            entries: Mutex::default(),
        }
    }

    /// `Some(seconds)` while the address is refused.
    pub(crate) fn blocked(&self, ip: IpAddr) -> Option<u64> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let until = entries.get(&ip)?.blocked_until?;
        let left = until.checked_duration_since(Instant::now())?;
        Some(left.as_secs().max(1))
    }

    /// Counts a failure; returns how long to delay the answer.
    pub(crate) fn failure(&self, ip: IpAddr) -> Duration {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if entries.len() > 100_000 {
            // Bounded memory: forget quiet addresses.
            entries.retain(|_, e| {
                now.duration_since(e.window_start) < WINDOW
                    || e.blocked_until.is_some_and(|u| u > now)
            });
        }
        let entry = entries.entry(ip).or_insert(Entry {
            window_start: now,
            failures: 0,
            blocked_until: None,
        });
        if now.duration_since(entry.window_start) >= WINDOW {
            entry.window_start = now;
            entry.failures = 0;
        }
        entry.failures += 1;
        if entry.failures >= self.limit {
            entry.blocked_until = Some(now + self.block);
            entry.failures = 0;
            entry.window_start = now;
        }
        let over = entry.failures.saturating_sub(SLOW_AFTER);
        Duration::from_millis(u64::from(over.min(10)) * 100)
    }
}
