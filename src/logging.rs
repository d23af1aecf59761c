//! Logs go to a daily-rolling file in the state directory, never to the
//! terminal (the console owns the screen). `MC_LOG` sets the level or
//! per-target filters, e.g. `debug` or `mission_control=debug,tokio_postgres=warn`.

use std::path::Path;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// Starts file logging. Keep the guard alive for the life of the process so
/// buffered lines are flushed. Returns `None` (and logs nothing) when the log
/// directory cannot be used: logging must never stop an operator.
pub fn init(log_dir: &Path) -> Option<WorkerGuard> {
    std::fs::create_dir_all(log_dir).ok()?;
    let appender = RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix("mctl")
        .filename_suffix("log")
        .max_log_files(14)
        .build(log_dir)
        .ok()?;
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter: Targets = std::env::var("MC_LOG")
        .ok()
        .and_then(|spec| spec.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let layer = tracing_subscriber::fmt::layer().with_writer(writer).with_ansi(false).with_target(true);
    tracing_subscriber::registry().with(filter).with(layer).try_init().ok()?;
    Some(guard)
}
