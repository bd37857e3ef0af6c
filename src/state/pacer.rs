//! Per-connection pacing of sends under the connection's per-minute limit,
//! so that NAVER WORKS' 429s stay rare; after a 429, the connection waits out
//! `rateLimit-reset`. Each connection has its own slot, so one tenant's
//! backlog never holds another's sends. In-process: with several replicas,
//! each paces on its own (set the limit to a share of the plan's).

use std::collections::HashMap;
use std::sync::Mutex;

/// Keys kept before the idle ones are dropped.
const MAX_KEYS: usize = 100_000;

#[derive(Default)]
pub struct Pacer {
    /// Earliest time (Unix ms) of the next send, per pace key (the
    /// connection, or for Slack the connection's channel).
    next: Mutex<HashMap<String, i64>>,
}

impl Pacer {
    /// Takes a send slot now, or says when one will be free.
    pub fn try_acquire(&self, key: &str, per_minute: i64, now: i64) -> Result<(), i64> {
        let spacing = 60_000 / per_minute.max(1);
        let mut next = self
            .next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Keys are per connection, and for Slack per channel and workspace:
        // past a bound, the idle ones (free to send again) are forgotten.
        if next.len() >= MAX_KEYS && !next.contains_key(key) {
            next.retain(|_, at| *at > now);
        }
        // Allow a short burst (one second's worth) after idleness, then space.
        let slot = match next.get_mut(key) {
            Some(slot) => slot,
            None => next.entry(key.to_owned()).or_insert(now - 1000),
        };
        let earliest = (*slot).max(now - 1000);
        if earliest > now {
            return Err(earliest);
        }
        *slot = earliest + spacing;
        Ok(())
    }

    /// Holds the connection's sends until `until` (after a 429).
    /// When a paused key may send again, if it is paused past `now`.
    pub fn held(&self, key: &str, now: i64) -> Option<i64> {
        let next = self
            .next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        next.get(key).copied().filter(|until| *until > now)
    }

    pub fn pause(&self, key: &str, until: i64) {
        let mut next = self
            .next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = next.entry(key.to_owned()).or_insert(until);
        *slot = (*slot).max(until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_sends_per_connection() {
        let pacer = Pacer::default();
        let (a, b) = ("con_a", "con_b/C1");
        let now = 1_000_000;
        // 60 per minute: a one-second burst, then one a second.
        assert!(pacer.try_acquire(a, 60, now).is_ok());
        assert!(pacer.try_acquire(a, 60, now).is_ok());
        assert_eq!(pacer.try_acquire(a, 60, now), Err(now + 1000));
        assert!(
            pacer.try_acquire(b, 60, now).is_ok(),
            "another connection is not held"
        );
        assert!(pacer.try_acquire(a, 60, now + 1000).is_ok());
        pacer.pause(b, now + 30_000);
        assert_eq!(pacer.try_acquire(b, 60, now + 1000), Err(now + 30_000));
    }

    #[test]
    fn idle_keys_are_forgotten_past_the_bound() {
        let pacer = Pacer::default();
        let now = 1_000_000;
        for i in 0..MAX_KEYS {
            assert!(pacer.try_acquire(&format!("con/C{i}"), 60, now).is_ok());
        }
        pacer.pause("con#T1", now + 60_000);
        // Later, the idle keys go; the paused one stays.
        assert!(pacer.try_acquire("con/new", 60, now + 5_000).is_ok());
        let kept = pacer.next.lock().unwrap().len();
        assert_eq!(kept, 2, "the paused key and the new one");
        assert_eq!(pacer.held("con#T1", now + 5_000), Some(now + 60_000));
    }
}
