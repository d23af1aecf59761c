//! Parsers for values typed on the command line: dates, times, key=value pairs.

use time::{Date, Duration, OffsetDateTime, format_description::well_known::Rfc3339, macros::format_description};

use crate::domain::text::clip;

/// `2026-12-01`, `today`, `tomorrow`, `yesterday`, `+3d`, `-2d`, `+1w`.
pub fn date(raw: &str) -> Result<Date, String> {
    let value = raw.trim().to_ascii_lowercase();
    let today = OffsetDateTime::now_utc().date();
    let bad = || format!("invalid date {:?}: use YYYY-MM-DD, today, tomorrow or +3d", clip(raw, 40));
    match value.as_str() {
        "today" => return Ok(today),
        "tomorrow" => return Ok(today + Duration::days(1)),
        "yesterday" => return Ok(today - Duration::days(1)),
        _ => {}
    }
    if let Some(offset) = value.strip_prefix(['+', '-']) {
        let span = duration(offset).map_err(|_| bad())?;
        if span.whole_hours() % 24 != 0 {
            return Err(bad());
        }
        return if value.starts_with('-') { Ok(today - span) } else { Ok(today + span) };
    }
    Date::parse(&value, format_description!("[year]-[month]-[day]")).map_err(|_| bad())
}

/// An RFC 3339 time, or a span relative to now. `direction` says which way a
/// bare span points: `-1` for "ago" (`--since 2h`), `1` for "from now" (`--due 4h`).
/// An explicit sign overrides it.
pub fn when(raw: &str, direction: i32) -> Result<OffsetDateTime, String> {
    let value = raw.trim();
    if let Ok(at) = OffsetDateTime::parse(value, &Rfc3339) {
        return Ok(at);
    }
    if !value.starts_with(['+', '-'])
        && let Ok(day) = date(value)
    {
        return Ok(day.midnight().assume_utc());
    }
    let (sign, span) = match value.as_bytes().first() {
        Some(b'+') => (1, &value[1..]),
        Some(b'-') => (-1, &value[1..]),
        _ => (direction, value),
    };
    let span = duration(span).map_err(|_| {
        format!(
            "invalid time {:?}: use RFC 3339 (2026-12-01T09:00:00Z), a date, or a span like 30m, 4h, 2d",
            clip(raw, 40)
        )
    })?;
    let now = OffsetDateTime::now_utc();
    Ok(if sign < 0 { now - span } else { now + span })
}

/// `30s`, `15m`, `4h`, `2d`, `1w`.
pub fn duration(raw: &str) -> Result<Duration, String> {
    let value = raw.trim();
    let bad = || format!("invalid duration {:?}: use a number and s, m, h, d or w, like 30m", clip(raw, 40));
    let split = value.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = value.split_at(split);
    let n: i64 = number.parse().map_err(|_| bad())?;
    if n > 100_000 {
        return Err(bad());
    }
    Ok(match unit {
        "s" => Duration::seconds(n),
        "m" | "min" => Duration::minutes(n),
        "h" => Duration::hours(n),
        "d" => Duration::days(n),
        "w" => Duration::weeks(n),
        _ => return Err(bad()),
    })
}

/// `key=value` for `--set`.
pub fn key_value(raw: &str) -> Result<(String, String), String> {
    let (key, value) =
        raw.split_once('=').ok_or_else(|| format!("invalid setting {:?}: use key=value", clip(raw, 40)))?;
    let key = key.trim();
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
        return Err(format!("invalid setting name {:?}: use letters, digits, '_', '-' or '.'", clip(key, 40)));
    }
    Ok((key.to_string(), value.trim().to_string()))
}

/// Reads text from a file, or from stdin when the path is `-`.
pub fn text_file(path: &str) -> Result<String, String> {
    let result = if path == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map(|_| text)
    } else {
        std::fs::read_to_string(path)
    };
    result.map_err(|e| format!("cannot read {path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let today = OffsetDateTime::now_utc().date();
        assert_eq!(date("today").unwrap(), today);
        assert_eq!(date("+3d").unwrap(), today + Duration::days(3));
        assert_eq!(date("-1w").unwrap(), today - Duration::weeks(1));
        assert_eq!(date("2026-12-01").unwrap().to_string(), "2026-12-01");
        assert!(date("2026-13-01").is_err());
        assert!(date("+4h").is_err());
    }

    #[test]
    fn times_and_spans() {
        let now = OffsetDateTime::now_utc();
        let ago = when("2h", -1).unwrap();
        assert!((now - ago - Duration::hours(2)).abs() < Duration::seconds(5));
        let ahead = when("4h", 1).unwrap();
        assert!(ahead > now);
        assert_eq!(when("2026-12-01T09:00:00Z", 1).unwrap().hour(), 9);
        assert!(when("soon", 1).is_err());
        assert!(duration("10x").is_err());
    }
}
