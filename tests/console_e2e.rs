//! The console in a real terminal (tmux): start it, press keys, read the
//! screen, quit, and check the terminal was given back in a sane state —
//! also when the console is killed with SIGTERM.

#![allow(clippy::disallowed_methods)] // straight to PostgreSQL, never through a pooler

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Cli, TestDb};

/// A tmux server of our own, so tests never touch the user's sessions.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Tmux {
        let socket = format!("mctl-test-{}-{}", std::process::id(), fastrand::u32(..));
        Tmux { socket }
    }

    fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux is needed for the terminal test: install tmux");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "console"])
    }

    fn keys(&self, keys: &[&str]) {
        for key in keys {
            self.run(&["send-keys", "-t", "console", key]);
            // Keys sent back to back would reach the console as one escape sequence.
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(Instant::now() < deadline, "{text:?} never appeared; the screen was:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn pane(&self, format: &str) -> String {
        self.run(&["display-message", "-p", "-t", "console", format]).trim().to_string()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

/// Starts `mctl` in a 100×30 tmux pane; after it exits the pane prints the
/// exit code and whether the terminal is back in line mode with echo
/// (`MODES=icanon echo`; raw mode would print `-icanon -echo`).
fn start(tmux: &Tmux, cli: &Cli) {
    let mctl = env!("CARGO_BIN_EXE_mctl");
    let home = cli.home.path();
    let script = format!(
        "MC_DATABASE_URL='{url}' MC_CONFIG_DIR='{home}/config' MC_DATA_DIR='{home}/data' MC_STATE_DIR='{home}/state' \
         MC_OPERATOR=ana TERM=xterm-256color '{mctl}' --project DEMO; echo \"EXIT=$?\"; echo MODES=$(stty -a | tr ' ;' '\\n\\n' | grep -xE -- '-?(icanon|echo)'); sleep 60",
        url = cli.url,
        home = home.display(),
    );
    tmux.run(&["new-session", "-d", "-s", "console", "-x", "100", "-y", "30", "sh", "-c", &script]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_terminal() {
    let db = TestDb::new().await;
    let cli = Cli::new(&db);
    cli.run(&["seed", "demo"]).ok();
    let tmux = Tmux::new();
    start(&tmux, &cli);

    // Loaded, and change notifications flowing.
    tmux.wait_for("● live");
    // Notifications can be flowing a moment before the board has arrived.
    let screen = tmux.wait_for("DEMO-4");
    assert!(screen.contains("In Progress"), "{screen}");
    assert_eq!(tmux.pane("#{alternate_on}"), "1", "the console uses the alternate screen");

    // Move the first Inbox card one lane right, and see it there.
    tmux.keys(&["L"]);
    tmux.wait_for("moved DEMO-4 to Ready");
    // Help, from the live keymap.
    tmux.keys(&["?"]);
    tmux.wait_for("Help — type to filter");
    tmux.keys(&["Escape"]);
    // Command mode jumps to a task's detail.
    tmux.keys(&[":", "DEMO-13", "Enter"]);
    tmux.wait_for("Enable 3DS2 frictionless flow");
    tmux.keys(&["Escape", "q"]);

    let after = tmux.wait_for("MODES=");
    assert!(after.contains("EXIT=0"), "{after}");
    assert_eq!(tmux.pane("#{alternate_on}"), "0", "the alternate screen was left");
    assert_eq!(tmux.pane("#{cursor_flag}"), "1", "the cursor is visible again");
    assert!(after.contains("MODES=icanon echo"), "the terminal is back in cooked mode:\n{after}");

    let audit =
        cli.run(&["--json", "--project", "DEMO", "audit", "list", "--entity", "DEMO-4", "--limit", "1"]).ok().json();
    assert_eq!(audit[0]["action"], "task.move");
    assert_eq!(audit[0]["source"], "console");
    assert_eq!(audit[0]["actor"], "ana");
}

/// Starts the console, sends it `signal`, and checks it left cleanly.
async fn signal_gives_the_terminal_back(signal: &str) {
    let db = TestDb::new().await;
    let cli = Cli::new(&db);
    cli.run(&["seed", "demo"]).ok();
    let tmux = Tmux::new();
    start(&tmux, &cli);
    tmux.wait_for("In Progress");
    // The console is a child of the pane's shell; pick ours by its database URL.
    let pids = Command::new("pgrep").arg("-f").arg("mctl --project DEMO").output().unwrap();
    let ours: Vec<String> = String::from_utf8_lossy(&pids.stdout)
        .lines()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| String::from_utf8_lossy(&env).contains(&cli.url))
        })
        .map(str::to_string)
        .collect();
    assert_eq!(ours.len(), 1, "exactly one console runs for this test: {ours:?}");
    Command::new("kill").arg(format!("-{signal}")).arg(&ours[0]).status().unwrap();
    let after = tmux.wait_for("MODES=");
    assert!(after.contains("EXIT=0"), "a clean exit on SIG{signal}: {after}");
    assert_eq!(tmux.pane("#{alternate_on}"), "0");
    assert!(after.contains("MODES=icanon echo"), "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_gives_the_terminal_back() {
    signal_gives_the_terminal_back("TERM").await;
}

/// A dropped SSH session arrives as SIGHUP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_gives_the_terminal_back() {
    signal_gives_the_terminal_back("HUP").await;
}
