//! Key bindings: which key runs which command, per context. The defaults ship
//! in `assets/keymap.toml`; a `keymap.toml` in the config directory overrides
//! any of them. Help is generated from this table, so it never drifts.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

const DEFAULT_KEYMAP: &str = include_str!("../../assets/keymap.toml");

/// Where a binding applies. A key is looked up in the focused context first,
/// then in `Global`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Context {
    Global,
    Board,
    List,
    Detail,
    Drawer,
    Recovery,
}

impl Context {
    pub const ALL: [Context; 6] =
        [Context::Global, Context::Board, Context::List, Context::Detail, Context::Drawer, Context::Recovery];

    pub fn name(self) -> &'static str {
        match self {
            Context::Global => "global",
            Context::Board => "board",
            Context::List => "list",
            Context::Detail => "detail",
            Context::Drawer => "drawer",
            Context::Recovery => "recovery",
        }
    }
}

/// Declares the commands: variant, config name, whether it changes data, and
/// the help text.
macro_rules! commands {
    ($($variant:ident => $name:literal, $mutates:literal, $help:literal;)+) => {
        /// Everything a key (or `:name`, or the help palette) can ask for.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Command { $($variant),+ }

        impl Command {
            pub const ALL: &'static [Command] = &[$(Command::$variant),+];

            pub fn name(self) -> &'static str {
                match self { $(Command::$variant => $name),+ }
            }

            pub fn help(self) -> &'static str {
                match self { $(Command::$variant => $help),+ }
            }

            /// Disabled in read-only sessions.
            pub fn mutates(self) -> bool {
                match self { $(Command::$variant => $mutates),+ }
            }

            pub fn from_name(name: &str) -> Option<Command> {
                Command::ALL.iter().copied().find(|c| c.name() == name)
            }
        }
    };
}

commands! {
    Quit => "quit", false, "quit mctl";
    Help => "help", false, "show this help (type to filter, enter runs)";
    CommandLine => "command_line", false, "command mode (:move MC-12 review, :MC-12 to jump)";
    Filter => "filter", false, "filter this screen: text, @agent, #label, !priority";
    GoInbox => "go_inbox", false, "screen 1: inbox";
    GoToday => "go_today", false, "screen 2: today";
    GoWork => "go_work", false, "screen 3: work board";
    GoPlanning => "go_planning", false, "screen 4: planning";
    GoDelivery => "go_delivery", false, "screen 5: delivery";
    GoRisks => "go_risks", false, "screen 6: risks";
    GoRecovery => "go_recovery", false, "screen 7: recovery";
    GoSettings => "go_settings", false, "screen 8: settings";
    NextScreen => "next_screen", false, "next screen";
    PrevScreen => "prev_screen", false, "previous screen";
    ToggleAudit => "toggle_audit", false, "show or hide the audit drawer";
    FocusNext => "focus_next", false, "switch focus between the screen and the audit drawer";
    Undo => "undo", true, "undo your last change of this session";
    Refresh => "refresh", false, "reload everything now";
    Up => "up", false, "move up";
    Down => "down", false, "move down";
    Left => "left", false, "previous lane / section";
    Right => "right", false, "next lane / section";
    PageUp => "page_up", false, "page up";
    PageDown => "page_down", false, "page down";
    Top => "top", false, "first item";
    Bottom => "bottom", false, "last item";
    Open => "open", false, "open the selected item";
    Back => "back", false, "close / clear marks";
    MoveLeft => "move_left", true, "move the task (or marked tasks) to the previous lane";
    MoveRight => "move_right", true, "move the task (or marked tasks) to the next lane";
    MoveUp => "move_up", true, "move the task up in its lane";
    MoveDown => "move_down", true, "move the task down in its lane";
    NewTask => "new_task", true, "create a task";
    Edit => "edit", true, "edit the task (title, priority, labels, due) or the page in $EDITOR";
    Assign => "assign", true, "assign the task (or marked tasks) to an agent";
    Archive => "archive", true, "archive the task (or marked tasks), after confirming";
    Handoff => "handoff", true, "open a handoff on the task (transfer or blocked)";
    ToggleMark => "toggle_mark", false, "mark or unmark the task for a bulk action";
    MarkRange => "mark_range", false, "mark every task from the last mark to here";
    FollowUp => "follow_up", true, "create a follow-up task from the failed pipeline";
    AcceptHandoff => "accept_handoff", true, "accept the selected handoff";
    RejectHandoff => "reject_handoff", true, "reject the selected handoff";
    ResolveHandoff => "resolve_handoff", true, "resolve the selected handoff";
    CancelHandoff => "cancel_handoff", true, "cancel the selected handoff";
    Follow => "follow", false, "follow the audit tail or pause it";
    CreateSnapshot => "create_snapshot", true, "take a snapshot of the project now, with a label";
    SnapshotDiff => "snapshot_diff", false, "what changed since the selected snapshot";
    RestoreSnapshot => "restore_snapshot", true, "restore the snapshot (or the tasks marked in its diff)";
    TakeLocal => "take_local", true, "settle the sync conflict: keep the local value (sent to the remote copy)";
    TakeRemote => "take_remote", true, "settle the sync conflict: take the remote copy's value";
    RetryDead => "retry_dead", true, "queue the selected sync dead letter again";
    RetryAllDead => "retry_all_dead", true, "queue every sync dead letter of the project again";
}

/// A key as bindings spell it: `ctrl+c`, `shift+left`, `H`, `enter`, `?`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub modifiers: KeyModifiers,
}

impl Key {
    /// Normalises a terminal key event: for printable characters the case
    /// carries shift, so `H` is `H`, not `shift+h`.
    pub fn from_event(event: &KeyEvent) -> Key {
        let mut modifiers = event.modifiers & (KeyModifiers::CONTROL | KeyModifiers::ALT | KeyModifiers::SHIFT);
        let code = match event.code {
            KeyCode::Char(c) => {
                modifiers.remove(KeyModifiers::SHIFT);
                KeyCode::Char(c)
            }
            KeyCode::BackTab => {
                modifiers.insert(KeyModifiers::SHIFT);
                KeyCode::Tab
            }
            other => other,
        };
        Key { code, modifiers }
    }

    pub fn parse(spec: &str) -> Result<Key, String> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err("an empty key".into());
        }
        let mut modifiers = KeyModifiers::NONE;
        let mut rest = spec;
        // "+" alone is a key; "ctrl++" is ctrl and plus.
        while let Some((head, tail)) = rest.split_once('+') {
            if tail.is_empty() {
                break;
            }
            match head.to_ascii_lowercase().as_str() {
                "ctrl" | "control" => modifiers |= KeyModifiers::CONTROL,
                "alt" | "meta" => modifiers |= KeyModifiers::ALT,
                "shift" => modifiers |= KeyModifiers::SHIFT,
                other => return Err(format!("unknown modifier {other:?} in {spec:?}")),
            }
            rest = tail;
        }
        let code = match rest.to_ascii_lowercase().as_str() {
            "enter" | "return" => KeyCode::Enter,
            "esc" | "escape" => KeyCode::Esc,
            "space" => KeyCode::Char(' '),
            "tab" => KeyCode::Tab,
            "backspace" => KeyCode::Backspace,
            "delete" | "del" => KeyCode::Delete,
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            "pgup" | "pageup" => KeyCode::PageUp,
            "pgdn" | "pagedown" => KeyCode::PageDown,
            f if f.len() >= 2 && f.starts_with('f') && f[1..].parse::<u8>().is_ok() => {
                KeyCode::F(f[1..].parse().unwrap_or(1))
            }
            _ => {
                let mut chars = rest.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => {
                        // shift+a means A.
                        if modifiers.contains(KeyModifiers::SHIFT) && c.is_ascii_alphabetic() {
                            modifiers.remove(KeyModifiers::SHIFT);
                            KeyCode::Char(c.to_ascii_uppercase())
                        } else {
                            KeyCode::Char(c)
                        }
                    }
                    _ => return Err(format!("unknown key {rest:?} in {spec:?}")),
                }
            }
        };
        if let KeyCode::Char(c) = code
            && modifiers.contains(KeyModifiers::CONTROL)
        {
            return Ok(Key { code: KeyCode::Char(c.to_ascii_lowercase()), modifiers });
        }
        Ok(Key { code, modifiers })
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.modifiers.contains(KeyModifiers::CONTROL) {
            f.write_str("ctrl+")?;
        }
        if self.modifiers.contains(KeyModifiers::ALT) {
            f.write_str("alt+")?;
        }
        if self.modifiers.contains(KeyModifiers::SHIFT) {
            f.write_str("shift+")?;
        }
        match self.code {
            KeyCode::Char(' ') => f.write_str("space"),
            KeyCode::Char(c) => write!(f, "{c}"),
            KeyCode::Enter => f.write_str("enter"),
            KeyCode::Esc => f.write_str("esc"),
            KeyCode::Tab => f.write_str("tab"),
            KeyCode::Backspace => f.write_str("backspace"),
            KeyCode::Delete => f.write_str("delete"),
            KeyCode::Up => f.write_str("up"),
            KeyCode::Down => f.write_str("down"),
            KeyCode::Left => f.write_str("left"),
            KeyCode::Right => f.write_str("right"),
            KeyCode::Home => f.write_str("home"),
            KeyCode::End => f.write_str("end"),
            KeyCode::PageUp => f.write_str("pgup"),
            KeyCode::PageDown => f.write_str("pgdn"),
            KeyCode::F(n) => write!(f, "f{n}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// The live bindings.
#[derive(Debug, Clone, Default)]
pub struct Keymap {
    bindings: BTreeMap<Context, HashMap<Key, Command>>,
}

type KeymapFile = BTreeMap<String, BTreeMap<String, Vec<String>>>;

impl Keymap {
    /// The shipped defaults, overridden by `user` (the text of a keymap file)
    /// when given. Returns the keymap and warnings to show at start: bad
    /// entries and keys bound twice.
    pub fn load(user: Option<&str>) -> (Keymap, Vec<String>) {
        let mut warnings = Vec::new();
        let mut table: KeymapFile = toml::from_str(DEFAULT_KEYMAP).expect("the shipped keymap parses");
        if let Some(text) = user {
            match toml::from_str::<KeymapFile>(text) {
                Ok(overrides) => {
                    for (context, commands) in overrides {
                        let entry = table.entry(context).or_default();
                        // A user binding for a command replaces its default keys in that section.
                        entry.extend(commands);
                    }
                }
                Err(e) => warnings.push(format!("keymap.toml ignored: {}", e.message().replace('\n', " "))),
            }
        }
        let mut keymap = Keymap::default();
        for (context_name, commands) in &table {
            let Some(context) = Context::ALL.iter().copied().find(|c| c.name() == context_name) else {
                warnings.push(format!("keymap: unknown section [{context_name}]"));
                continue;
            };
            for (command_name, keys) in commands {
                let Some(command) = Command::from_name(command_name) else {
                    warnings.push(format!("keymap: unknown command {command_name:?} in [{context_name}]"));
                    continue;
                };
                for spec in keys {
                    match Key::parse(spec) {
                        Ok(key) => {
                            let map = keymap.bindings.entry(context).or_default();
                            if let Some(previous) = map.insert(key, command)
                                && previous != command
                            {
                                warnings.push(format!(
                                    "keymap conflict: {key} in [{context_name}] is bound to both {} and {}",
                                    previous.name(),
                                    command.name()
                                ));
                            }
                        }
                        Err(e) => warnings.push(format!("keymap: {e}")),
                    }
                }
            }
        }
        warnings.extend(keymap.shadowing());
        (keymap, warnings)
    }

    /// Context bindings that hide a different global command on the same key.
    fn shadowing(&self) -> Vec<String> {
        let Some(global) = self.bindings.get(&Context::Global) else { return Vec::new() };
        let mut warnings = Vec::new();
        for (context, map) in &self.bindings {
            if *context == Context::Global {
                continue;
            }
            for (key, command) in map {
                if let Some(other) = global.get(key)
                    && other != command
                {
                    warnings.push(format!(
                        "keymap conflict: {key} is {} in [{}] but {} in [global]",
                        command.name(),
                        context.name(),
                        other.name()
                    ));
                }
            }
        }
        warnings
    }

    /// The command a key runs in `context`, falling back to global bindings.
    pub fn lookup(&self, context: Context, key: Key) -> Option<Command> {
        self.bindings
            .get(&context)
            .and_then(|m| m.get(&key))
            .or_else(|| self.bindings.get(&Context::Global).and_then(|m| m.get(&key)))
            .copied()
    }

    /// Keys bound to a command in a context (or globally), for help and hints.
    pub fn keys_for(&self, context: Context, command: Command) -> Vec<Key> {
        let mut keys: Vec<Key> = Vec::new();
        for map in [context, Context::Global].iter().filter_map(|c| self.bindings.get(c)) {
            // Single characters first, then named keys, alphabetically: stable help.
            let mut found: Vec<Key> = map.iter().filter(|(_, c)| **c == command).map(|(k, _)| *k).collect();
            found.sort_by_key(|k| {
                let text = k.to_string();
                (text.chars().count() > 1, text)
            });
            for key in found {
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        keys
    }

    /// Every command reachable in a context, with its keys: the help page.
    pub fn entries(&self, context: Context) -> Vec<(Command, Vec<Key>)> {
        let mut out: Vec<(Command, Vec<Key>)> = Vec::new();
        for command in Command::ALL {
            let keys = self.keys_for(context, *command);
            if !keys.is_empty() {
                out.push((*command, keys));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_key_specs() {
        assert_eq!(Key::parse("ctrl+c").unwrap(), Key { code: KeyCode::Char('c'), modifiers: KeyModifiers::CONTROL });
        assert_eq!(Key::parse("H").unwrap(), Key { code: KeyCode::Char('H'), modifiers: KeyModifiers::NONE });
        assert_eq!(Key::parse("shift+h").unwrap(), Key::parse("H").unwrap());
        assert_eq!(Key::parse("shift+left").unwrap().modifiers, KeyModifiers::SHIFT);
        assert_eq!(Key::parse("space").unwrap().code, KeyCode::Char(' '));
        assert_eq!(Key::parse("+").unwrap().code, KeyCode::Char('+'));
        assert!(Key::parse("hyper+x").is_err());
        assert!(Key::parse("enterr").is_err());
        assert_eq!(Key::parse("ctrl+r").unwrap().to_string(), "ctrl+r");
    }

    #[test]
    fn terminal_events_match_specs() {
        let shifted = KeyEvent::new(KeyCode::Char('H'), KeyModifiers::SHIFT);
        assert_eq!(Key::from_event(&shifted), Key::parse("H").unwrap());
        let left = KeyEvent::new(KeyCode::Left, KeyModifiers::SHIFT);
        assert_eq!(Key::from_event(&left), Key::parse("shift+left").unwrap());
    }

    #[test]
    fn defaults_have_no_conflicts_and_cover_the_board() {
        let (keymap, warnings) = Keymap::load(None);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(keymap.lookup(Context::Board, Key::parse("L").unwrap()), Some(Command::MoveRight));
        assert_eq!(keymap.lookup(Context::Board, Key::parse("shift+right").unwrap()), Some(Command::MoveRight));
        assert_eq!(keymap.lookup(Context::Board, Key::parse("j").unwrap()), Some(Command::Down));
        assert_eq!(keymap.lookup(Context::List, Key::parse("q").unwrap()), Some(Command::Quit));
    }

    #[test]
    fn user_overrides_and_conflicts_are_reported() {
        let (keymap, warnings) = Keymap::load(Some("[board]\narchive = [\"X\"]\nassign = [\"X\"]\n"));
        assert!(warnings.iter().any(|w| w.contains("conflict") && w.contains('X')), "{warnings:?}");
        assert!(keymap.lookup(Context::Board, Key::parse("X").unwrap()).is_some());
        let (_, warnings) = Keymap::load(Some("[board]\nfly = [\"z\"]\n"));
        assert!(warnings.iter().any(|w| w.contains("unknown command")), "{warnings:?}");
        let (_, warnings) = Keymap::load(Some("not toml ["));
        assert!(warnings.iter().any(|w| w.contains("ignored")), "{warnings:?}");
        let (_, warnings) = Keymap::load(Some("[board]\nquit = [\"z\"]\n[global]\nhelp = [\"z\"]\n"));
        assert!(warnings.iter().any(|w| w.contains("[global]")), "{warnings:?}");
    }
}
