//! When a failed job runs again: jittered exponential backoff that honours
//! what the provider said (`Retry-After`, rate-limit reset), and when it stops
//! trying and becomes a dead letter.

use std::time::Duration;

use time::OffsetDateTime;

/// Attempts before a job that keeps failing becomes a dead letter.
pub const MAX_ATTEMPTS: i32 = 8;

const BASE: Duration = Duration::from_secs(2);
const CAP: Duration = Duration::from_secs(15 * 60);

/// How long to wait before attempt `attempt + 1` (`attempt` ≥ 1 failures so
/// far): 2 s doubling up to 15 minutes, with "equal jitter" (half fixed, half
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
