//! Printing results: aligned tables for people, JSON for scripts.
//! Table cells are sanitised (no escape sequences reach the terminal) and
//! measured by display width, so wide characters keep columns aligned.

use std::io::Write;

use serde::Serialize;
use unicode_width::UnicodeWidthStr;

use crate::domain::text;
use crate::error::{Error, Result};

/// Writes one line to stdout. A closed pipe (`mctl task list | head`) ends the
/// process quietly instead of panicking.
pub fn line(text: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{}", text.as_ref()).is_err() {
        std::process::exit(0);
    }
}

pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Io(format!("cannot encode JSON: {e}")))?;
    line(text);
    Ok(())
}

/// A plain text table. Columns are as wide as their widest cell, up to a cap.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
    max_width: usize,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Self {
        Table { headers: headers.to_vec(), rows: Vec::new(), max_width: 60 }
    }

    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.rows.push(cells.into_iter().map(|c| cell(c.as_ref(), self.max_width)).collect());
    }

    pub fn print(&self) {
        if self.rows.is_empty() {
            return;
        }
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.width()).collect();
        for row in &self.rows {
            for (i, c) in row.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(c.width());
                }
            }
        }
        let render = |cells: &mut dyn Iterator<Item = &str>| {
            let mut out = String::new();
            for (i, c) in cells.enumerate() {
                let width = widths.get(i).copied().unwrap_or(0);
                out.push_str(c);
                if i + 1 < widths.len() {
                    out.push_str(&" ".repeat(width.saturating_sub(c.width()) + 2));
                }
            }
            out.trim_end().to_string()
        };
        line(render(&mut self.headers.iter().copied()));
        for row in &self.rows {
            line(render(&mut row.iter().map(String::as_str)));
        }
    }
}

/// Makes a value fit a table cell: one line, no control characters, clipped.
pub fn cell(value: &str, max_width: usize) -> String {
    let one_line = value.replace(['\n', '\r', '\t'], " ");
    let safe = text::for_terminal(&one_line);
    if safe.width() <= max_width {
        return safe.into_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in safe.chars() {
        let w = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if used + w + 1 > max_width {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// Multi-line text (descriptions, page bodies) made safe for the terminal,
/// keeping its line breaks.
pub fn block(value: &str) -> String {
    value.lines().map(|l| text::for_terminal(&l.replace('\t', "    ")).into_owned()).collect::<Vec<_>>().join("\n")
}

pub fn or_dash(value: Option<impl AsRef<str>>) -> String {
    value.map(|v| v.as_ref().to_string()).filter(|v| !v.is_empty()).unwrap_or_else(|| "-".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_single_safe_lines() {
        assert_eq!(cell("a\nb", 10), "a b");
        assert!(!cell("\x1b[2Jx", 10).contains('\x1b'));
        let clipped = cell("日本語のタイトルです", 9);
        assert!(clipped.width() <= 9, "{clipped}");
        assert!(clipped.ends_with('…'));
    }
}
