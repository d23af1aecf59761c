//! Text that came from a person, the database or a provider: validation on the
//! way in, and safe display on the way out.

use std::borrow::Cow;

use super::InvalidInput;

pub const MAX_TITLE_CHARS: usize = 500;
pub const MAX_DESCRIPTION_CHARS: usize = 100_000;

/// Trims a task title and checks it is 1..=500 characters with no line breaks.
pub fn task_title(raw: &str) -> Result<String, InvalidInput> {
    let title = raw.trim();
    if title.is_empty() {
        return Err(InvalidInput::new("the title is empty: give the task a title"));
    }
    let chars = title.chars().count();
    if chars > MAX_TITLE_CHARS {
        return Err(InvalidInput::new(format!("the title is {chars} characters long: the limit is {MAX_TITLE_CHARS}")));
    }
    if title.contains(['\n', '\r']) {
        return Err(InvalidInput::new(
            "the title has a line break: keep it on one line and put details in the description",
        ));
    }
    Ok(title.to_string())
}

/// Checks a required one-line name (lane, cycle, module, project...).
pub fn name(what: &str, raw: &str, max_chars: usize) -> Result<String, InvalidInput> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(InvalidInput::new(format!("the {what} is empty")));
    }
    let chars = value.chars().count();
    if chars > max_chars {
        return Err(InvalidInput::new(format!("the {what} is {chars} characters long: the limit is {max_chars}")));
    }
    if value.chars().any(char::is_control) {
        return Err(InvalidInput::new(format!("the {what} contains control characters")));
    }
    Ok(value.to_string())
}

/// Checks free text (descriptions, reasons, notes) against a size limit.
pub fn long_text(what: &str, raw: &str, max_chars: usize) -> Result<String, InvalidInput> {
    let chars = raw.chars().count();
    if chars > max_chars {
        return Err(InvalidInput::new(format!("the {what} is {chars} characters long: the limit is {max_chars}")));
    }
    if raw.contains('\0') {
        return Err(InvalidInput::new(format!("the {what} contains a NUL byte")));
    }
    Ok(raw.to_string())
}

/// Normalises and checks labels: lowercase, no spaces or commas, 1..=40 chars, deduplicated.
pub fn labels<I, S>(raw: I) -> Result<Vec<String>, InvalidInput>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out: Vec<String> = Vec::new();
    for label in raw {
        let label = label.as_ref().trim().trim_start_matches('#').to_lowercase();
        if label.is_empty() {
            continue;
        }
        if label.chars().count() > 40 || label.chars().any(|c| c.is_whitespace() || c.is_control() || c == ',') {
            return Err(InvalidInput::new(format!(
                "invalid label {:?}: labels are one word of at most 40 characters",
                clip(&label, 40)
            )));
        }
        if !out.contains(&label) {
            out.push(label);
        }
    }
    if out.len() > 20 {
        return Err(InvalidInput::new("a task can carry at most 20 labels"));
    }
    Ok(out)
}

/// Shortens text to at most `max` characters, marking the cut with `…`.
pub fn clip(text: &str, max: usize) -> Cow<'_, str> {
    if text.chars().count() <= max {
        Cow::Borrowed(text)
    } else {
        let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        Cow::Owned(out)
    }
}

/// Makes untrusted text safe to put on a terminal line: control characters
/// (C0, DEL, C1) become visible Unicode control pictures or `�`, and bidi
/// override/isolate marks are dropped so they cannot reorder the rest of the line.
/// Escape sequences therefore never reach the terminal.
pub fn for_terminal(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_replacing) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\u{0}'..='\u{1f}' => out.push(char::from_u32(0x2400 + c as u32).unwrap_or('\u{fffd}')),
            '\u{7f}' => out.push('\u{2421}'),
            '\u{80}'..='\u{9f}' => out.push('\u{fffd}'),
            c if is_bidi_control(c) => {}
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_replacing(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
}

/// `2026-11-27 14:05:09` in UTC.
pub fn utc_time(at: time::OffsetDateTime) -> String {
    use time::macros::format_description;
    at.to_offset(time::UtcOffset::UTC)
        .format(format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_rules() {
        assert_eq!(task_title("  Fix login  ").unwrap(), "Fix login");
        assert!(task_title("   ").is_err());
        assert!(task_title(&"x".repeat(501)).is_err());
        assert!(task_title(&"é".repeat(500)).is_ok());
        assert!(task_title("a\nb").is_err());
    }

    #[test]
    fn labels_are_normalised() {
        assert_eq!(labels(["Backend", "#ops", "backend", ""]).unwrap(), vec!["backend", "ops"]);
        assert!(labels(["two words"]).is_err());
    }

    #[test]
    fn terminal_text_has_no_escapes() {
        let hostile = "\x1b[2Jboom\x1b]0;x\x07\r\u{202e}evil\u{9b}";
        let safe = for_terminal(hostile);
        assert!(!safe.chars().any(|c| c.is_control()), "{safe:?}");
        assert!(safe.contains("boom") && safe.contains("evil"));
        assert!(safe.starts_with('\u{241b}'));
        assert!(matches!(for_terminal("plain 日本語"), Cow::Borrowed(_)));
    }

    #[test]
    fn clip_marks_the_cut() {
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
    }
}
