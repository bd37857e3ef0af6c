//! Retry delays as data: a schedule of multiples of a base delay, with
//! jitter, and a clamp for the server's own hint (`rateLimit-reset`).

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

/// The wait NAVER WORKS asks for with `rateLimit-reset` (seconds until the
/// window resets), clamped to 1..=60 s; 5 s when absent or unreadable.
pub fn rate_limit_wait(reset: Option<&str>) -> Duration {
    let seconds = reset
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(5);
    Duration::from_secs(seconds.clamp(1, 60))
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
        assert_eq!(rate_limit_wait(Some("12")), Duration::from_secs(12));
        assert_eq!(rate_limit_wait(Some("0")), Duration::from_secs(1));
        assert_eq!(rate_limit_wait(Some("9999")), Duration::from_secs(60));
        assert_eq!(rate_limit_wait(None), Duration::from_secs(5));
    }
}
