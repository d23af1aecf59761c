//! Command mode (`:`): parsing, completion and the verbs it understands.
//!
//! `:move MC-12 review`, `:assign MC-12 @ana`, `:handoff MC-12 @bo blocked "waiting for creds"`,
//! `:archive MC-12`, `:project OPS`, `:sync start|stop|status`, `:MC-12` (jump), `:inbox` …
//! `:settings`, `:q`, and every command name from the keymap (`:undo`, `:new_task`).

use super::keymap::Command;
use super::state::Screen;
use crate::domain::{HandoffKind, TaskKey};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Run(Command),
    Jump(String),
    Screen(Screen),
    Move { key: String, lane: String },
    Assign { key: String, handle: Option<String> },
    Handoff { key: String, to: String, kind: HandoffKind, reason: String },
    Archive { key: String },
    Project(String),
    Sync(SyncVerb),
}

/// `:sync start|stop|status`: the sync worker inside this console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncVerb {
    Start,
    Stop,
    Status,
}

/// The verbs with arguments, for completion and help.
pub const VERBS: &[(&str, &str)] = &[
    ("move", "move KEY LANE"),
    ("assign", "assign KEY @AGENT|none"),
    ("handoff", "handoff KEY @AGENT transfer|blocked REASON"),
    ("archive", "archive KEY"),
    ("project", "project KEY"),
    ("sync", "sync start|stop|status"),
    ("q", "quit"),
];

/// Splits on spaces, keeping "double quoted" runs together.
pub fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut started = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_whitespace() && !quoted => {
                if started {
                    words.push(std::mem::take(&mut current));
                    started = false;
                }
            }
            c => {
                current.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(current);
    }
    words
}

fn task_key(word: Option<&String>, usage: &str) -> Result<String, String> {
    let word = word.ok_or_else(|| format!("usage: :{usage}"))?;
    word.parse::<TaskKey>().map(|k| k.to_string()).map_err(|e| e.0)
}

pub fn parse(line: &str) -> Result<Parsed, String> {
    let words = words(line.trim().trim_start_matches(':'));
    let Some(verb) = words.first() else {
        return Err("type a command, or esc to cancel".into());
    };
    let rest = &words[1..];
    let verb_lower = verb.to_lowercase();
    if let Some(screen) = Screen::from_name(&verb_lower) {
        return Ok(Parsed::Screen(screen));
    }
    Ok(match verb_lower.as_str() {
        "q" | "quit" | "q!" => Parsed::Run(Command::Quit),
        "move" | "mv" => {
            let key = task_key(rest.first(), "move KEY LANE")?;
            if rest.len() < 2 {
                return Err("usage: :move KEY LANE".into());
            }
            Parsed::Move { key, lane: rest[1..].join(" ") }
        }
        "assign" => {
            let key = task_key(rest.first(), "assign KEY @AGENT")?;
            let who = rest.get(1).ok_or("usage: :assign KEY @AGENT (or none)")?;
            let handle = match who.trim_start_matches('@') {
                "none" | "-" => None,
                handle => Some(crate::domain::agent_handle(handle).map_err(|e| e.0)?),
            };
            Parsed::Assign { key, handle }
        }
        "handoff" => {
            let usage = "usage: :handoff KEY @AGENT transfer|blocked \"REASON\"";
            let key = task_key(rest.first(), "handoff KEY @AGENT transfer|blocked REASON")?;
            let to = crate::domain::agent_handle(rest.get(1).ok_or(usage)?).map_err(|e| e.0)?;
            let (kind, reason_words) = match rest.get(2).map(|w| w.parse::<HandoffKind>()) {
                Some(Ok(kind)) => (kind, &rest[3.min(rest.len())..]),
                _ => (HandoffKind::Transfer, &rest[2.min(rest.len())..]),
            };
            let reason = reason_words.join(" ");
            if reason.trim().is_empty() {
                return Err(format!("give a reason: {usage}"));
            }
            Parsed::Handoff { key, to, kind, reason }
        }
        "archive" => Parsed::Archive { key: task_key(rest.first(), "archive KEY")? },
        "project" => {
            let key = rest.first().ok_or("usage: :project KEY")?;
            Parsed::Project(crate::domain::project_key(key).map_err(|e| e.0)?)
        }
        "open" | "goto" => Parsed::Jump(task_key(rest.first(), "open KEY")?),
        "sync" => Parsed::Sync(match rest.first().map(|w| w.to_lowercase()).as_deref() {
            Some("start" | "run") => SyncVerb::Start,
            Some("stop") => SyncVerb::Stop,
            None | Some("status") => SyncVerb::Status,
            Some(_) => return Err("usage: :sync start|stop|status".into()),
        }),
        _ => {
            if let Ok(key) = verb.parse::<TaskKey>() {
                return Ok(Parsed::Jump(key.to_string()));
            }
            match Command::from_name(&verb_lower.replace('-', "_")) {
                Some(command) => Parsed::Run(command),
                None => return Err(format!("unknown command {:?}: try :help", crate::domain::text::clip(verb, 30))),
            }
        }
    })
}

/// What completion can offer.
#[derive(Debug, Default, Clone)]
pub struct Candidates<'a> {
    pub task_keys: Vec<&'a str>,
    pub lanes: Vec<&'a str>,
    pub agents: Vec<&'a str>,
    pub projects: Vec<&'a str>,
}

/// Completions for the last word of `line`, as whole replacement lines.
pub fn complete(line: &str, candidates: &Candidates<'_>) -> Vec<String> {
    let ends_with_space = line.ends_with(' ');
    let words = words(line);
    let (done, partial) = if ends_with_space || words.is_empty() {
        (words.as_slice(), "")
    } else {
        (&words[..words.len() - 1], words.last().map(String::as_str).unwrap_or(""))
    };
    let position = done.len();
    let verb = done.first().map(|w| w.to_lowercase());
    let options: Vec<String> = match (position, verb.as_deref()) {
        (0, _) => {
            let mut all: Vec<String> = VERBS.iter().map(|(v, _)| v.to_string()).collect();
            all.extend(Screen::ALL.iter().map(|s| s.name().to_string()));
            all.extend(Command::ALL.iter().map(|c| c.name().to_string()));
            all.extend(candidates.task_keys.iter().map(|k| k.to_string()));
            all
        }
        (1, Some("move" | "assign" | "handoff" | "archive" | "open")) => {
            candidates.task_keys.iter().map(|k| k.to_string()).collect()
        }
        (_, Some("move")) => candidates.lanes.iter().map(|l| quote(l)).collect(),
        (2, Some("assign")) => {
            let mut all: Vec<String> = candidates.agents.iter().map(|a| format!("@{a}")).collect();
            all.push("none".into());
            all
        }
        (2, Some("handoff")) => candidates.agents.iter().map(|a| format!("@{a}")).collect(),
        (3, Some("handoff")) => vec!["transfer".into(), "blocked".into()],
        (1, Some("project")) => candidates.projects.iter().map(|p| p.to_string()).collect(),
        (1, Some("sync")) => vec!["start".into(), "stop".into(), "status".into()],
        _ => Vec::new(),
    };
    let lower = partial.to_lowercase();
    let mut matches: Vec<String> = options
        .into_iter()
        .filter(|o| o.trim_matches('"').to_lowercase().starts_with(lower.trim_start_matches('"')))
        .collect();
    matches.sort();
    matches.dedup();
    let prefix: Vec<String> = done.iter().map(|w| quote(w)).collect();
    matches
        .into_iter()
        .map(|m| if prefix.is_empty() { format!("{m} ") } else { format!("{} {m} ", prefix.join(" ")) })
        .collect()
}

fn quote(word: &str) -> String {
    if word.contains(' ') { format!("\"{word}\"") } else { word.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse(":move MC-12 review").unwrap(), Parsed::Move { key: "MC-12".into(), lane: "review".into() });
        assert_eq!(
            parse("move mc-12 In Progress").unwrap(),
            Parsed::Move { key: "MC-12".into(), lane: "In Progress".into() }
        );
        assert_eq!(
            parse(":assign MC-12 @ana").unwrap(),
            Parsed::Assign { key: "MC-12".into(), handle: Some("ana".into()) }
        );
        assert_eq!(parse(":assign MC-12 none").unwrap(), Parsed::Assign { key: "MC-12".into(), handle: None });
        assert_eq!(
            parse(":handoff MC-12 @bo blocked \"waiting for creds\"").unwrap(),
            Parsed::Handoff {
                key: "MC-12".into(),
                to: "bo".into(),
                kind: HandoffKind::Blocked,
                reason: "waiting for creds".into()
            }
        );
        assert_eq!(parse(":project ops").unwrap(), Parsed::Project("OPS".into()));
        assert_eq!(parse(":q").unwrap(), Parsed::Run(Command::Quit));
        assert_eq!(parse(":MC-7").unwrap(), Parsed::Jump("MC-7".into()));
        assert_eq!(parse(":risks").unwrap(), Parsed::Screen(Screen::Risks));
        assert_eq!(parse(":undo").unwrap(), Parsed::Run(Command::Undo));
        assert_eq!(parse(":sync start").unwrap(), Parsed::Sync(SyncVerb::Start));
        assert_eq!(parse(":sync STOP").unwrap(), Parsed::Sync(SyncVerb::Stop));
        assert_eq!(parse(":sync").unwrap(), Parsed::Sync(SyncVerb::Status));
        assert!(parse(":sync sideways").unwrap_err().contains("usage"));
        assert!(parse(":move MC-12").is_err());
        assert!(parse(":handoff MC-12 @bo blocked").unwrap_err().contains("reason"));
        assert!(parse(":frobnicate").unwrap_err().contains("unknown command"));
        assert!(parse(":move MC- done").is_err());
    }

    #[test]
    fn completes_by_position() {
        let c = Candidates {
            task_keys: vec!["MC-1", "MC-12"],
            lanes: vec!["Ready", "In Progress"],
            agents: vec!["ana", "bo"],
            projects: vec!["MC", "OPS"],
        };
        assert!(complete("mo", &c).contains(&"move ".to_string()));
        assert_eq!(complete("move MC-1", &c), vec!["move MC-1 ", "move MC-12 "]);
        assert_eq!(complete("move MC-1 in", &c), vec!["move MC-1 \"In Progress\" "]);
        assert_eq!(complete("assign MC-1 @a", &c), vec!["assign MC-1 @ana "]);
        assert_eq!(complete("project o", &c), vec!["project OPS "]);
        assert_eq!(complete("handoff MC-1 @bo b", &c), vec!["handoff MC-1 @bo blocked "]);
        assert_eq!(complete("sync st", &c), vec!["sync start ", "sync status ", "sync stop "]);
    }
}
