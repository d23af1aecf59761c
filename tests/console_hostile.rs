//! Hostile text in the console: escape sequences, control characters,
//! carriage returns, huge titles, right-to-left and emoji text must render in
//! their cells without disturbing the rest of the screen.

mod common;

use common::TestDb;
use common::console::{NOW, app, ch, key, press, render, screen_text};
use crossterm::event::KeyCode;
use mission_control::console::state::ConsoleOptions;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_titles_stay_in_their_cells() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let project = store.create_project(&common::actor("ana"), "MC", "Hostile", "").await.unwrap();
    let mut keys = Vec::new();
    for _ in HOSTILE {
        let task = store
            .create_task(
                &common::actor("ana"),
                project.id,
                NewTask { title: "placeholder".into(), ..Default::default() },
            )
            .await
            .unwrap();
        keys.push(task.key);
    }
    store
        .create_task(
            &common::actor("ana"),
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
    client
        .execute(
            "UPDATE task SET description = $2 WHERE task_key = $1",
            &[&keys[0], &format!("{}\x1b[31m red?", "long ".repeat(1000))],
        )
        .await
        .unwrap();

    for (width, height) in [(80u16, 24u16), (160, 48)] {
        let mut app = app(&store, project.clone(), width, height, &ConsoleOptions::defaults(false)).await;
        let screen = render(&app);
        assert_clean(&screen);
        assert!(screen.contains("An ordinary neighbour"), "{screen}");
        assert!(screen.contains("screen wipe") && screen.contains("🚀"), "{screen}");
        // Every card row keeps the column separators where the header row has them.
        assert_columns_hold(&draw(&app), &format!("{width}x{height}"));
        // The detail view of the worst one, with a 5,000-character description.
        press(&mut app, &[key(KeyCode::Enter)]).await;
        let detail = render(&app);
        assert_clean(&detail);
        assert!(detail.contains("screen wipe"));
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
