//! When a failed job runs again: jittered exponential backoff that honours
//! what the provider said (`Retry-After`, rate-limit reset), and when it stops
//! trying and becomes a dead letter.
//!
//! A transient failure (the provider down or restarting, the network away)
//! is retried for a horizon of time, not a number of attempts: an upgrade or
//! an outage of an hour must heal without an operator. The horizon is a day
//! unless the worker is told otherwise (`[sync] retry_for`).

use std::time::Duration;

use time::OffsetDateTime;

/// How long a key that keeps failing transiently is retried, from its first
/// failure, before it becomes a dead letter.
pub const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(24 * 3600);

const BASE: Duration = Duration::from_secs(2);
/// The longest wait between two attempts: an outage's end is noticed within
/// this long.
const CAP: Duration = Duration::from_secs(5 * 60);

/// How long to wait before attempt `attempt + 1` (`attempt` ≥ 1 failures so
/// far): 2 s doubling up to 5 minutes, with "equal jitter" (half fixed, half
/// random) so failed jobs of one outage do not come back in lockstep.
pub fn backoff(attempt: i32) -> Duration {
    let exponent = attempt.clamp(1, 20) as u32 - 1;
    let ceiling = BASE.saturating_mul(1u32 << exponent.min(16)).min(CAP);
    let half = ceiling / 2;
    half + Duration::from_millis(fastrand::u64(0..=half.as_millis() as u64))
}

/// When the job may run again: after the backoff, and never before the
/// provider's own "not before".
pub fn next_attempt(now: OffsetDateTime, attempt: i32, not_before: Option<OffsetDateTime>) -> OffsetDateTime {
    let after_backoff = now + backoff(attempt);
    match not_before {
        Some(at) if at > after_backoff => at,
        _ => after_backoff,
    }
}

/// A span in the largest whole unit that fits: `45s`, `30m`, `24h`, `3d`.
pub fn span_text(span: Duration) -> String {
    let seconds = span.as_secs();
    match seconds {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s >= 3600 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Parses `Retry-After`: delay seconds, or an HTTP date.
pub fn parse_retry_after(value: &str, now: OffsetDateTime) -> Option<OffsetDateTime> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(now + Duration::from_secs(seconds.min(24 * 3600)));
    }
    let format = time::format_description::well_known::Rfc2822;
    OffsetDateTime::parse(value, &format).ok().map(|at| at.min(now + Duration::from_secs(24 * 3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        for attempt in 1..=30 {
            let wait = backoff(attempt);
            let ceiling = (BASE * 2u32.pow((attempt.min(17) - 1) as u32)).min(CAP);
            assert!(wait >= ceiling / 2 && wait <= ceiling, "attempt {attempt}: {wait:?}");
        }
        assert!(backoff(1) <= Duration::from_secs(2));
        assert!(backoff(100) <= CAP);
    }

    #[test]
    fn spans_read_in_their_largest_whole_unit() {
        assert_eq!(span_text(DEFAULT_RETRY_FOR), "1d");
        assert_eq!(span_text(Duration::from_secs(36 * 3600)), "36h");
        assert_eq!(span_text(Duration::from_secs(90 * 60)), "90m");
        assert_eq!(span_text(Duration::from_secs(45)), "45s");
    }

    #[test]
    fn the_providers_retry_after_wins_when_later() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let at = parse_retry_after("120", now).unwrap();
        assert_eq!(at, now + Duration::from_secs(120));
        assert_eq!(next_attempt(now, 1, Some(at)), at);
        assert!(next_attempt(now, 1, Some(now)) > now);
        let date = parse_retry_after("Thu, 01 Jan 1970 00:01:00 +0000", now).unwrap();
        assert_eq!(date, now + Duration::from_secs(60));
        assert_eq!(parse_retry_after("soon", now), None);
        // A hostile header cannot park a job for years.
        assert_eq!(parse_retry_after("99999999999", now), Some(now + Duration::from_secs(86400)));
    }
}
