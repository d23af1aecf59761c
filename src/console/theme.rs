//! Colours and text styles. The default theme uses the 16 ANSI colours and
//! reversed selection; `NO_COLOR` gives a monochrome one; a light theme ships
//! too, and `theme.toml` in the config directory overrides any style.

use std::collections::BTreeMap;

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;

use crate::domain::Priority;

const DARK: &str = include_str!("../../assets/themes/dark.toml");
const LIGHT: &str = include_str!("../../assets/themes/light.toml");

#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    pub base: Style,
    pub muted: Style,
    pub accent: Style,
    pub header: Style,
    pub selected: Style,
    pub marked: Style,
    pub ok: Style,
    pub warn: Style,
    pub danger: Style,
    pub border: Style,
    pub focus_border: Style,
    pub tab_active: Style,
    pub key: Style,
    pub urgent: Style,
    pub high: Style,
    pub medium: Style,
    pub low: Style,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    #[serde(default)]
    styles: BTreeMap<String, StyleSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct StyleSpec {
    fg: Option<String>,
    bg: Option<String>,
    #[serde(default)]
    modifiers: Vec<String>,
}

impl Theme {
    /// A named built-in theme (`dark`, `light`, `mono`), with `overrides` (the
    /// text of a user theme file) on top. `NO_COLOR` forces `mono`.
    /// Returns the theme and any warnings about the user file.
    pub fn load(name: &str, overrides: Option<&str>, no_color: bool) -> (Theme, Vec<String>) {
        let mut warnings = Vec::new();
        if no_color || name == "mono" {
            return (Theme::mono(), warnings);
        }
        let base = match name {
            "light" => LIGHT,
            "dark" | "" => DARK,
            other => {
                warnings.push(format!("unknown theme {other:?}: using dark"));
                DARK
            }
        };
        let mut specs: BTreeMap<String, StyleSpec> =
            toml::from_str::<ThemeFile>(base).expect("the shipped themes parse").styles;
        if let Some(text) = overrides {
            match toml::from_str::<ThemeFile>(text) {
                Ok(file) => specs.extend(file.styles),
                Err(e) => warnings.push(format!("theme.toml ignored: {}", e.message().replace('\n', " "))),
            }
        }
        let mut style = |name: &str| match specs.get(name) {
            Some(spec) => match spec.to_style() {
                Ok(style) => style,
                Err(e) => {
                    warnings.push(format!("theme: {name}: {e}"));
                    Style::default()
                }
            },
            None => Style::default(),
        };
        let theme = Theme {
            base: style("base"),
            muted: style("muted"),
            accent: style("accent"),
            header: style("header"),
            selected: style("selected"),
            marked: style("marked"),
            ok: style("ok"),
            warn: style("warn"),
            danger: style("danger"),
            border: style("border"),
            focus_border: style("focus_border"),
            tab_active: style("tab_active"),
            key: style("key"),
            urgent: style("urgent"),
            high: style("high"),
            medium: style("medium"),
            low: style("low"),
        };
        (theme, warnings)
    }

    /// No colours at all: emphasis only through bold, dim, underline and reverse.
    pub fn mono() -> Theme {
        let plain = Style::default();
        let bold = plain.add_modifier(Modifier::BOLD);
        Theme {
            base: plain,
            muted: plain.add_modifier(Modifier::DIM),
            accent: bold,
            header: bold,
            selected: plain.add_modifier(Modifier::REVERSED),
            marked: bold.add_modifier(Modifier::UNDERLINED),
            ok: plain,
            warn: bold,
            danger: bold.add_modifier(Modifier::UNDERLINED),
            border: plain,
            focus_border: bold,
            tab_active: bold.add_modifier(Modifier::REVERSED),
            key: bold,
            urgent: bold.add_modifier(Modifier::UNDERLINED),
            high: bold,
            medium: plain,
            low: plain.add_modifier(Modifier::DIM),
        }
    }

    pub fn priority(&self, priority: Priority) -> Style {
        match priority {
            Priority::Urgent => self.urgent,
            Priority::High => self.high,
            Priority::Medium => self.medium,
            Priority::Low | Priority::None => self.low,
        }
    }
}

impl StyleSpec {
    fn to_style(&self) -> Result<Style, String> {
        let mut style = Style::default();
        if let Some(fg) = &self.fg {
            style = style.fg(color(fg)?);
        }
        if let Some(bg) = &self.bg {
            style = style.bg(color(bg)?);
        }
        for name in &self.modifiers {
            style = style.add_modifier(match name.as_str() {
                "bold" => Modifier::BOLD,
                "dim" => Modifier::DIM,
                "italic" => Modifier::ITALIC,
                "underlined" => Modifier::UNDERLINED,
                "reversed" => Modifier::REVERSED,
                other => return Err(format!("unknown modifier {other:?}")),
            });
        }
        Ok(style)
    }
}

fn color(name: &str) -> Result<Color, String> {
    Ok(match name.to_ascii_lowercase().as_str() {
        "default" | "reset" => Color::Reset,
        "black" => Color::Black,
        "red" => Color::Red,
        "green" => Color::Green,
        "yellow" => Color::Yellow,
        "blue" => Color::Blue,
        "magenta" => Color::Magenta,
        "cyan" => Color::Cyan,
        "gray" | "grey" => Color::Gray,
        "darkgray" | "darkgrey" => Color::DarkGray,
        "lightred" => Color::LightRed,
        "lightgreen" => Color::LightGreen,
        "lightyellow" => Color::LightYellow,
        "lightblue" => Color::LightBlue,
        "lightmagenta" => Color::LightMagenta,
        "lightcyan" => Color::LightCyan,
        "white" => Color::White,
        other => return Err(format!("unknown colour {other:?} (use one of the 16 ANSI names)")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_themes_load_cleanly() {
        for name in ["dark", "light", "mono"] {
            let (theme, warnings) = Theme::load(name, None, false);
            assert!(warnings.is_empty(), "{name}: {warnings:?}");
            assert!(theme.selected.add_modifier.contains(Modifier::REVERSED));
        }
    }

    #[test]
    fn no_color_is_monochrome() {
        let (theme, _) = Theme::load("dark", None, true);
        assert_eq!(theme, Theme::mono());
        assert_eq!(theme.danger.fg, None);
    }

    #[test]
    fn overrides_apply_and_bad_ones_warn() {
        let (theme, warnings) = Theme::load("dark", Some("[styles]\ndanger = { fg = \"magenta\" }\n"), false);
        assert!(warnings.is_empty());
        assert_eq!(theme.danger.fg, Some(Color::Magenta));
        let (_, warnings) = Theme::load("dark", Some("[styles]\nok = { fg = \"chartreuse\" }\n"), false);
        assert!(warnings.iter().any(|w| w.contains("chartreuse")), "{warnings:?}");
    }
}
