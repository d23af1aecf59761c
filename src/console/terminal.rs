//! The real terminal: raw mode and the alternate screen behind a guard that
//! always restores them (drop, panic, SIGTERM/SIGHUP), a keyboard thread that
//! can be paused while `$EDITOR` has the terminal, and synchronized frames.

use std::io::{self, Stdout, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossterm::event::{
    self, DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture, Event,
};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::{cursor, execute};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tokio::sync::mpsc::UnboundedSender;

use super::action::Action;

pub type Term = Terminal<CrosstermBackend<Stdout>>;

/// Holds the terminal in console mode; dropping it gives the terminal back.
pub struct TerminalGuard {
    mouse: bool,
    active: bool,
}

impl TerminalGuard {
    pub fn enter(mouse: bool) -> io::Result<(Term, TerminalGuard)> {
        let guard = TerminalGuard { mouse, active: false };
        let mut guard = guard;
        guard.activate()?;
        let terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
        Ok((terminal, guard))
    }

    fn activate(&mut self) -> io::Result<()> {
        terminal::enable_raw_mode()?;
        self.active = true;
        let mut out = io::stdout();
        execute!(out, EnterAlternateScreen, EnableBracketedPaste, cursor::Hide)?;
        if self.mouse {
            execute!(out, EnableMouseCapture)?;
        }
        Ok(())
    }

    /// Hands the terminal back (for `$EDITOR`); `resume` takes it again.
    pub fn suspend(&mut self) {
        restore(self.mouse);
        self.active = false;
    }

    pub fn resume(&mut self, terminal: &mut Term) -> io::Result<()> {
        self.activate()?;
        terminal.clear()
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if self.active {
            restore(self.mouse);
        }
    }
}

/// Puts the terminal back the way the shell had it. Errors are ignored: after
/// a dropped SSH link there is no terminal left to write to.
pub fn restore(mouse: bool) {
    let _ = terminal::disable_raw_mode();
    let mut out = io::stdout();
    if mouse {
        let _ = execute!(out, DisableMouseCapture);
    }
    let _ = execute!(out, DisableBracketedPaste, LeaveAlternateScreen, cursor::Show);
    let _ = out.flush();
}

/// On a panic, restore the terminal before the message is printed.
pub fn install_panic_hook(mouse: bool) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore(mouse);
        previous(info);
    }));
}

/// Draws one frame inside a synchronized update, so slow links never show a
/// half-drawn screen.
pub fn draw(terminal: &mut Term, render: impl FnOnce(&mut ratatui::Frame<'_>)) -> io::Result<()> {
    execute!(io::stdout(), terminal::BeginSynchronizedUpdate)?;
    let result = terminal.draw(render).map(|_| ());
    execute!(io::stdout(), terminal::EndSynchronizedUpdate)?;
    result
}

/// Reads keys on a thread of its own. While paused it does not touch the
/// terminal, so an editor can have it.
pub struct Input {
    paused: Arc<AtomicBool>,
    idle: Arc<AtomicBool>,
}

impl Input {
    pub fn spawn(tx: UnboundedSender<Action>) -> Input {
        let paused = Arc::new(AtomicBool::new(false));
        let idle = Arc::new(AtomicBool::new(false));
        let (thread_paused, thread_idle) = (paused.clone(), idle.clone());
        std::thread::spawn(move || {
            loop {
                if thread_paused.load(Ordering::SeqCst) {
                    thread_idle.store(true, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                thread_idle.store(false, Ordering::SeqCst);
                match event::poll(Duration::from_millis(50)) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(_) => {
                        let _ = tx.send(Action::Quit);
                        return;
                    }
                }
                let action = match event::read() {
                    Ok(Event::Key(key)) => Action::Key(key),
                    Ok(Event::Mouse(mouse)) => Action::Mouse(mouse),
                    Ok(Event::Paste(text)) => Action::Paste(text),
                    Ok(Event::Resize(mut width, mut height)) => {
                        // Collapse a burst of resizes into the last one.
                        while let Ok(true) = event::poll(Duration::from_millis(15)) {
                            match event::read() {
                                Ok(Event::Resize(w, h)) => (width, height) = (w, h),
                                Ok(other) => {
                                    let _ = tx.send(Action::Resize(width, height));
                                    if let Event::Key(key) = other {
                                        let _ = tx.send(Action::Key(key));
                                    }
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        Action::Resize(width, height)
                    }
                    Ok(_) => continue,
                    // The terminal is gone (hang-up): quit cleanly.
                    Err(_) => Action::Quit,
                };
                if tx.send(action).is_err() {
                    return;
                }
            }
        });
        Input { paused, idle }
    }

    /// Stops reading and waits until the thread is out of `poll`.
    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        for _ in 0..100 {
            if self.idle.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }
}

/// SIGTERM and SIGHUP (a dropped SSH session) quit the console cleanly.
pub fn spawn_signals(tx: UnboundedSender<Action>) {
    use tokio::signal::unix::{SignalKind, signal};
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut hup)) = (signal(SignalKind::terminate()), signal(SignalKind::hangup())) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
        let _ = tx.send(Action::Quit);
    });
}
