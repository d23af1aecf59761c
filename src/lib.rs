//! Mission Control: a terminal operator console for software delivery.
//!
//! The binary (`mctl`) is a thin entry point; everything lives here so tests and
//! benchmarks drive the same code the operator runs.

pub mod cli;
pub mod config;
pub mod console;
pub mod db;
pub mod domain;
pub mod error;
pub mod logging;
pub mod mcp;
pub mod seed;
pub mod snapshot;
pub mod store;
pub mod sync;
