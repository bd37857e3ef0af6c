//! Retry delays as data: a schedule of multiples of a base delay, with
//! jitter (the platforms' own rate-limit hints are read by their adapters).

use std::time::Duration;

use rand::Rng as _;

/// Multiples of the base delay for attempts 1, 2, 3, …; the last repeats.
const SCHEDULE: &[u64] = &[1, 2, 5, 10, 30, 60, 120, 300];

/// Delay before the next attempt, after `attempts` attempts (±20% jitter).
pub fn backoff(base: Duration, attempts: i64) -> Duration {
    let index = usize::try_from(attempts.max(1) - 1)
        .unwrap_or(0)
        .min(SCHEDULE.len() - 1);
    let factor = SCHEDULE.get(index).copied().unwrap_or(300);
    let millis = u64::try_from(base.as_millis())
        .unwrap_or(u64::MAX / 1000)
        .saturating_mul(factor);
    let jitter = rand::thread_rng().gen_range(0.8..1.2);
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    Duration::from_millis((millis as f64 * jitter) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_grows_and_stays_bounded() {
        let base = Duration::from_millis(100);
        let first = backoff(base, 1);
        assert!((80..=120).contains(&first.as_millis()), "{first:?}");
        let third = backoff(base, 3);
        assert!((400..=600).contains(&third.as_millis()), "{third:?}");
        assert!(backoff(base, 1000) <= Duration::from_millis(36_000));
    }
}
