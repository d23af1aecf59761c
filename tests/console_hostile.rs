//! Hostile text in the console: escape sequences, control characters,
//! carriage returns, huge titles, right-to-left and emoji text must render in
//! their cells, control characters as visible placeholders, without
//! disturbing the rest of the screen. The database holds titles of at most
//! 500 characters (the longest is tried with escapes in it); a 5,000-character
//! title, as a provider could send, is drawn from state alone.

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

mod common;

use common::TestDb;
use common::console::{NOW, app, ch, key, press, render, screen_text};
use crossterm::event::KeyCode;
use mission_control::console::state::ConsoleOptions;
use mission_control::domain::text::MAX_TITLE_CHARS;
use mission_control::store::tasks::NewTask;

const HOSTILE: &[&str] = &[
    "\x1b[2J\x1b[H screen wipe",
    "\x1b]0;owned\x07 window title",
    "carriage\rreturn overwrite",
    "bidi \u{202e}txet desrever\u{202c} trick",
    "עברית وعربية mixed RTL",
    "emoji 🚀🔥👩‍💻 and 日本語 wide",
];

fn assert_clean(screen: &str) {
    for (n, line) in screen.lines().enumerate() {
        assert!(
            !line.chars().any(|c| c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c)),
            "line {n} carries a control character: {line:?}"
        );
    }
}

/// The x positions of the board's column separators on row `y` of the frame.
fn separators(buffer: &ratatui::buffer::Buffer, y: u16) -> Vec<u16> {
    (0..buffer.area.width).filter(|x| buffer[(*x, y)].symbol() == "│").collect()
}

/// Draws the app and checks that every board row has its separators where
/// the lane header row has them.
fn assert_columns_hold(buffer: &ratatui::buffer::Buffer, label: &str) {
    let expected = separators(buffer, 1);
    assert!(!expected.is_empty(), "{label}: no columns");
    for y in 1..buffer.area.height - 1 {
        assert_eq!(separators(buffer, y), expected, "{label}: row {y} was pushed:\n{}", screen_text(buffer));
    }
}

fn draw(app: &mission_control::console::app::App) -> ratatui::buffer::Buffer {
    let mut terminal =
        ratatui::Terminal::new(ratatui::backend::TestBackend::new(app.state.width, app.state.height)).unwrap();
    terminal.draw(|frame| app.draw(frame)).unwrap();
    terminal.backend().buffer().clone()
}

/// The longest title the product accepts (the domain limit, which the
/// schema's CHECK repeats), opening with a screen wipe, a cursor jump and a
/// window-title sequence, and ending in a marker word.
fn longest_hostile_title() -> String {
    let head = "\x1b[2J\x1b[H\x1b]0;owned\x07 huge";
    let tail = " END";
    let fill = MAX_TITLE_CHARS - head.chars().count() - tail.chars().count();
    let title = format!("{head}{}{tail}", &" word".repeat(fill)[..fill]);
    assert_eq!(title.chars().count(), MAX_TITLE_CHARS);
    title
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_titles_stay_in_their_cells() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let ana = common::actor("ana");
    let project = store.create_project(&ana, "MC", "Hostile", "").await.unwrap();
    // Through the repository, as any client would: the limit holds, the escapes are stored.
    let too_long = NewTask { title: format!("{}x", longest_hostile_title()), ..Default::default() };
    let err = store.create_task(&ana, project.id, too_long).await.unwrap_err();
    assert!(err.to_string().contains(&format!("limit is {MAX_TITLE_CHARS}")), "{err}");
    let longest = NewTask {
        title: longest_hostile_title(),
        description: "steps:\n\x1b[31m red?\x07 and on".into(),
        ..Default::default()
    };
    let longest = store.create_task(&ana, project.id, longest).await.unwrap();
    assert_eq!(longest.title, longest_hostile_title(), "stored as given");
    let mut keys = Vec::new();
    for _ in HOSTILE {
        let task = store
            .create_task(&ana, project.id, NewTask { title: "placeholder".into(), ..Default::default() })
            .await
            .unwrap();
        keys.push(task.key);
    }
    store
        .create_task(
            &ana,
            project.id,
            NewTask { title: "An ordinary neighbour".into(), lane: Some("Ready".into()), ..Default::default() },
        )
        .await
        .unwrap();
    // Text as a provider or a direct database write could leave it: the
    // repository refuses line breaks in titles, the console must cope anyway.
    let client = db.client().await;
    for (key, title) in keys.iter().zip(HOSTILE) {
        client.execute("UPDATE task SET title = $2 WHERE task_key = $1", &[key, title]).await.unwrap();
    }

    for (width, height) in [(80u16, 24u16), (160, 48)] {
        let mut app = app(&store, project.clone(), width, height, &ConsoleOptions::defaults(false)).await;
        let screen = render(&app);
        assert_clean(&screen);
        assert!(screen.contains("An ordinary neighbour"), "{screen}");
        assert!(screen.contains("screen wipe") && screen.contains("🚀"), "{screen}");
        // Control characters show as their control pictures (ESC ␛, BEL ␇),
        // a carriage return as a space.
        for shown in ["␛[2J␛[H␛]0;owned␇", "␛[2J␛[H screen", "␛]0;owned␇ window", "carriage return"] {
            assert!(screen.contains(shown), "{width}x{height}: no {shown:?} in\n{screen}");
        }
        // Every card row keeps the column separators where the header row has them.
        assert_columns_hold(&draw(&app), &format!("{width}x{height}"));
        // The detail view of the longest title shows all of it, wrapped, with the placeholders.
        assert_eq!(app.state.board.selected().map(|c| c.key.as_str()), Some(longest.key.as_str()));
        press(&mut app, &[key(KeyCode::Enter)]).await;
        let detail = render(&app);
        assert_clean(&detail);
        for shown in ["␛[2J␛[H␛]0;owned␇ huge", "END", "␛[31m red?␇ and on"] {
            assert!(detail.contains(shown), "{width}x{height}: no {shown:?} in the detail\n{detail}");
        }
        // The audit drawer shows the titles safely too.
        press(&mut app, &[key(KeyCode::Esc), ch('A')]).await;
        assert_clean(&render(&app));
    }
}

#[test]
fn a_five_thousand_character_title_fits_its_card() {
    use mission_control::console::action::Action;
    use mission_control::console::data::{Loaded, QueryKey};
    use mission_control::console::state::AppState;
    use mission_control::console::update::update;
    use mission_control::domain::*;
    use mission_control::store::board::{BoardLane, Card};

    let project = Project {
        id: 1,
        key: "MC".into(),
        name: "x".into(),
        description: String::new(),
        settings: serde_json::json!({}),
        dashboard: serde_json::json!({}),
        last_task_number: 2,
        archived: false,
        version: 1,
        created_at: NOW,
        updated_at: NOW,
    };
    let mut state = AppState::new(project, "ana", &ConsoleOptions::defaults(false), NOW);
    let lane = |id: i64, name: &str, titles: &[String]| BoardLane {
        lane: Lane {
            id,
            project_id: 1,
            name: name.into(),
            position: id as i32,
            wip_limit: None,
            category: LaneCategory::Unstarted,
            role: LaneRole::Normal,
            visible: true,
            sync: true,
            open_count: titles.len() as i32,
        },
        cards: titles
            .iter()
            .enumerate()
            .map(|(i, title)| Card {
                id: id * 100 + i as i64,
                key: format!("MC-{}", id * 100 + i as i64),
                title: title.clone(),
                priority: Priority::Urgent,
                assignee: Some("a-very-long-agent-handle-indeed".into()),
                labels: vec![],
                due_on: None,
                rank: i as i64,
                version: 1,
                open_handoffs: 12,
                sync_state: Some(SyncState::Conflict),
                updated_at: NOW,
            })
            .collect(),
    };
    let huge = format!("{}\x1b[2J", "🚀界".repeat(2500));
    let id = state.requests.issue(QueryKey::Board);
    update(
        &mut state,
        Action::Loaded {
            id,
            result: Ok(Loaded::Board(vec![lane(1, "Left", &[huge]), lane(2, "Right", &["neighbour".to_string()])])),
        },
    );
    for (width, height) in [(80u16, 24u16), (200, 60), (41, 10)] {
        state.width = width;
        state.height = height;
        let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(width, height)).unwrap();
        terminal.draw(|frame| mission_control::console::draw::draw(frame, &state)).unwrap();
        let screen = screen_text(terminal.backend().buffer());
        assert_clean(&screen);
        if width >= 80 {
            assert!(screen.contains("neighbour"), "{width}x{height}:\n{screen}");
        } else {
            assert!(screen.contains('▶'), "one column fits; the marker says there are more:\n{screen}");
        }
        assert_columns_hold(terminal.backend().buffer(), &format!("{width}x{height}"));
    }
    // Too small to draw: a notice, not a panic.
    state.width = 20;
    state.height = 5;
    let mut terminal = ratatui::Terminal::new(ratatui::backend::TestBackend::new(20, 5)).unwrap();
    terminal.draw(|frame| mission_control::console::draw::draw(frame, &state)).unwrap();
    assert!(screen_text(terminal.backend().buffer()).contains("mctl needs"));
}
